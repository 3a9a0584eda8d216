"""The evaluation stage's job and schedule."""

import dagster as dg

evaluation_job = dg.define_asset_job(
    "evaluation_job",
    selection=dg.AssetSelection.groups("evaluation"),
    description="Golden set -> RAG evaluation (retrieval metrics on the set; agent answers, ROUGE and the RAGAS judge on a sample) "
    "-> history and trend -> promotion gate -> serving index; user feedback -> candidate golden items and the daily "
    "feedback rate.",
)

weekly_evaluation_schedule = dg.ScheduleDefinition(
    name="weekly_evaluation",
    job=evaluation_job,
    cron_schedule="0 4 * * 1",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Weekly: the RAG evaluation on the golden set (judged sample included), appended to the trend.",
)
