"""Schedules of the code location."""

import dagster as dg

from pipelines.jobs import cost_job, evaluation_job, knowledge_job

nightly_reembedding_schedule = dg.ScheduleDefinition(
    name="nightly_reembedding",
    job=knowledge_job,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Nightly: picks up embedding-model or chunker changes (new ids re-embed, a new model builds a new "
    "generation); cheap when nothing changed, since every step diffs against the last run.",
)

weekly_evaluation_schedule = dg.ScheduleDefinition(
    name="weekly_evaluation",
    job=evaluation_job,
    cron_schedule="0 4 * * 1",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Weekly: the RAG evaluation on the golden set (judged sample included), appended to the trend.",
)

monthly_cost_schedule = dg.ScheduleDefinition(
    name="monthly_cost_report",
    job=cost_job,
    cron_schedule="0 6 2 * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Monthly, on the 2nd (Cost Explorer has the last month by then): the cost report and actual spend.",
)


def daily_governance_schedule(job) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="daily_governance",
        job=job,
        cron_schedule="30 0 * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Daily: audit retention (whole days dropped) and the keys in force, after the UTC day closes.",
    )
