"""The one entry point of the code location: ``pipelines.definitions:defs``."""

from __future__ import annotations

import dagster as dg

from assets.cost import cost_assets
from assets.evaluation import evaluation_assets, evaluation_checks
from assets.governance import governance_assets, governance_checks
from assets.knowledge import knowledge_assets, knowledge_checks
from assets.platform import platform_assets, platform_checks
from assets.serving import serving_assets, serving_checks
from pipelines.jobs import (
    cost_job,
    evaluation_job,
    governance_job_for,
    knowledge_job,
    platform_job,
    rebuild_index_job,
    serving_job,
    simulation_job,
)
from pipelines.profiles import build_executor, build_resources
from pipelines.schedules import (
    daily_governance_schedule,
    monthly_cost_schedule,
    nightly_reembedding_schedule,
    weekly_evaluation_schedule,
)
from pipelines.secrets import ensure_local_secrets
from pipelines.sensors import evaluate_after_reembedding, new_documents_sensor
from pipelines.settings import Settings, load_settings


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or load_settings()
    ensure_local_secrets(settings)
    governance_job = governance_job_for(settings.audit_retention_days)
    return dg.Definitions(
        assets=[
            *knowledge_assets,
            *serving_assets,
            *evaluation_assets,
            *platform_assets,
            *cost_assets,
            *governance_assets,
        ],
        asset_checks=[*knowledge_checks, *serving_checks, *evaluation_checks, *platform_checks, *governance_checks],
        jobs=[
            knowledge_job,
            rebuild_index_job,
            serving_job,
            evaluation_job,
            platform_job,
            cost_job,
            simulation_job,
            governance_job,
        ],
        schedules=[
            nightly_reembedding_schedule,
            weekly_evaluation_schedule,
            monthly_cost_schedule,
            daily_governance_schedule(governance_job),
        ],
        sensors=[new_documents_sensor, evaluate_after_reembedding],
        resources=build_resources(settings),
        executor=build_executor(settings),
    )


defs = build_definitions()
