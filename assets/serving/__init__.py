"""The serving stage: model artifacts -> deployments (Ray Serve / KubeRay) -> the LiteLLM gateway, with checks that
send real requests to what was deployed. Each asset records what it produced in the state store (``state.py``)."""

import dagster as dg

from assets.serving.gateway import gateway_routes_models, model_gateway
from assets.serving.models import endpoints_answer, model_artifacts, model_deployments
from assets.serving.state import MANIFEST_KEY

serving_assets = [model_artifacts, model_deployments, model_gateway]
serving_checks = [endpoints_answer, gateway_routes_models]

serving_job = dg.define_asset_job(
    "serving_job",
    selection=dg.AssetSelection.groups("serving"),
    description="Model artifacts -> Ray Serve deployments (LLM + embedder) -> LiteLLM gateway, with endpoint checks.",
)
serving_defs = dg.Definitions(assets=serving_assets, asset_checks=serving_checks, jobs=[serving_job])

__all__ = [
    "MANIFEST_KEY",
    "endpoints_answer",
    "gateway_routes_models",
    "model_artifacts",
    "model_deployments",
    "model_gateway",
    "serving_assets",
    "serving_checks",
    "serving_defs",
    "serving_job",
]
