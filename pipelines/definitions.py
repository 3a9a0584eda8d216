"""The one entry point of the code location: ``pipelines.definitions:defs``. Each stage owns its assets, checks, jobs,
schedules and sensors and exposes them as one ``Definitions``; the code location merges them and adds the
deployment's resources and executor (``pipelines.profiles``)."""

from __future__ import annotations

import dagster as dg

from assets.cost import cost_defs
from assets.evaluation import evaluation_defs
from assets.governance import governance_defs
from assets.knowledge import knowledge_defs
from assets.observability import observability_defs
from assets.platform import platform_defs
from assets.serving import serving_defs
from pipelines.profiles import build_executor, build_resources
from pipelines.secrets import ensure_local_secrets
from pipelines.settings import Settings, load_settings


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or load_settings()
    ensure_local_secrets(settings)
    return dg.Definitions.merge(
        knowledge_defs,
        serving_defs,
        evaluation_defs,
        platform_defs,
        observability_defs,
        cost_defs,
        governance_defs(settings.audit_retention_days),
        dg.Definitions(resources=build_resources(settings), executor=build_executor(settings)),
    )


defs = build_definitions()
