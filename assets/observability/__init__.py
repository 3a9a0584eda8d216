"""The observability stage: the dashboards and SLO alerts the platform ships (``monitoring_config``) and the check
that every alert can be acted on. Traces and metrics at run time are the services' own (docs/observability.md)."""

import dagster as dg

from assets.observability.monitoring import alerts_have_runbooks, monitoring_config

observability_assets = [monitoring_config]
observability_checks = [alerts_have_runbooks]
observability_defs = dg.Definitions(assets=observability_assets, asset_checks=observability_checks)

__all__ = [
    "alerts_have_runbooks",
    "monitoring_config",
    "observability_assets",
    "observability_checks",
    "observability_defs",
]
