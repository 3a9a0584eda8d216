"""The governance stage: who holds keys, and what every request did (the audit trail and its retention)."""

import dagster as dg

from assets.governance.audit import AuditConfig, api_keys_inventory, audit_trail, keys_rotated_recently
from assets.governance.jobs import daily_governance_schedule, governance_job_for

governance_assets = [audit_trail, api_keys_inventory]
governance_checks = [keys_rotated_recently]


def governance_defs(retention_days: int) -> dg.Definitions:
    """The stage's definitions; the audit trail's retention is a deployment setting, given by the code location."""
    job = governance_job_for(retention_days)
    return dg.Definitions(
        assets=governance_assets,
        asset_checks=governance_checks,
        jobs=[job],
        schedules=[daily_governance_schedule(job)],
    )


__all__ = [
    "AuditConfig",
    "api_keys_inventory",
    "audit_trail",
    "governance_assets",
    "governance_checks",
    "governance_defs",
]
