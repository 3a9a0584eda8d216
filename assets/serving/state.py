"""What the serving stage records in the pipeline state store (``serving/<asset>``: what each asset produced and
where; on eks every step is its own pod, so the next asset reads it from here) and the rendered KubeRay manifests
(``MANIFEST_KEY``)."""

import dagster as dg

from assets.stage import stage_asset
from resources.model_serving import MANIFEST_KEY
from resources.state_store import PipelineStateStore

GROUP = "serving"
OWNERS = ["team:ml-platform"]
asset = stage_asset(GROUP, OWNERS)
# the capacity plan (its own asset); the cost stage's simulated month sizes its LLM workers from it
CAPACITY_PLAN_RECORD = "serving/capacity_plan"

__all__ = [
    "CAPACITY_PLAN_RECORD",
    "GROUP",
    "MANIFEST_KEY",
    "OWNERS",
    "asset",
    "read_record",
    "write_capacity",
    "write_record",
]


def read_record(state: PipelineStateStore, name: str) -> dict:
    """What an upstream serving asset recorded (``model_artifacts``, ``model_deployments``)."""
    data = state.read_json(f"serving/{name}")
    if data is None:
        raise dg.Failure(f"serving/{name} is not in the state store: materialize the upstream serving assets first")
    return data


def write_record(state: PipelineStateStore, name: str, data: dict) -> None:
    state.write_json(f"serving/{name}", data)


def write_capacity(state: PipelineStateStore, name: str, record: dict, png: bytes) -> str:
    """A capacity record (``serving/serving_capacity/<model>/<hardware>``: the SLO, the rows, the highest load that met
    it) and its curves beside it, as PNG; the key it went to."""
    key = f"serving/serving_capacity/{name}"
    state.write_json(key, record)
    state.put_bytes(f"{key}.png", png)
    return key
