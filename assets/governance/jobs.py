"""The governance stage's job (its retention is a deployment setting) and schedule."""

import dagster as dg

from assets.stage import stopped_schedule


def governance_job_for(retention_days: int):
    return dg.define_asset_job(
        "governance_job",
        selection=dg.AssetSelection.groups("governance"),
        config={"ops": {"audit_trail": {"config": {"retention_days": retention_days}}}},
        description="The audit trail's retention and summary, and the API keys in force (AGENTIC_AUDIT_RETENTION_DAYS).",
    )


def daily_governance_schedule(job) -> dg.ScheduleDefinition:
    return stopped_schedule(
        "daily_governance",
        job,
        "30 0 * * *",
        "Daily: audit retention (whole days dropped) and the keys in force, after the UTC day closes.",
    )
