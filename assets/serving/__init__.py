"""The serving stage: model artifacts -> deployments (Ray Serve / KubeRay) -> the LiteLLM gateway, with checks that
send real requests to what was deployed, and the stack's measured capacity (``serving_capacity``, its own job: a load
test is never part of bringing the stack up). Each asset records what it produced in the state store (``state.py``)."""

import dagster as dg

from assets.serving.capacity import serving_capacity
from assets.serving.gateway import gateway_routes_models, model_gateway
from assets.serving.models import endpoints_answer, model_artifacts, model_deployments
from assets.serving.plan import capacity_plan
from assets.serving.state import CAPACITY_PLAN_RECORD, MANIFEST_KEY

serving_assets = [model_artifacts, model_deployments, model_gateway]
serving_checks = [endpoints_answer, gateway_routes_models]

serving_job = dg.define_asset_job(
    "serving_job",
    selection=dg.AssetSelection.assets(*serving_assets),
    description="Model artifacts -> Ray Serve deployments (LLM + embedder) -> LiteLLM gateway, with endpoint checks.",
)
capacity_job = dg.define_asset_job(
    "capacity_job",
    selection=dg.AssetSelection.assets(serving_capacity),
    description="Load test of the running stack (AIPerf, the agent's prompts): the highest load meeting the latency SLO.",
)
serving_defs = dg.Definitions(
    assets=[*serving_assets, serving_capacity, capacity_plan],
    asset_checks=serving_checks,
    jobs=[serving_job, capacity_job],
)

__all__ = [
    "CAPACITY_PLAN_RECORD",
    "MANIFEST_KEY",
    "capacity_plan",
    "capacity_job",
    "endpoints_answer",
    "gateway_routes_models",
    "model_artifacts",
    "model_deployments",
    "model_gateway",
    "serving_assets",
    "serving_capacity",
    "serving_checks",
    "serving_defs",
    "serving_job",
]
