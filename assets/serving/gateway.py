"""The LiteLLM gateway: its config generated from the deployments, put in force by the gateway resource (a local
proxy, or the config the cluster's Deployment reads), and the check that its routes answer and refuse a wrong key."""

import json

import dagster as dg
import httpx

from assets.serving.models import model_deployments
from assets.serving.state import asset, read_record
from infra.platform.gateway import render_litellm_config
from resources.embedder import EmbedderResource
from resources.gateway import LLMGatewayResource
from resources.probes import chat_ok, embed_ok, vision_ok
from resources.state_store import PipelineStateStore


@asset(
    kinds={"litellm"},
    deps=[model_deployments],
    description="The LiteLLM gateway: config generated from the deployments (model names -> endpoints, retries, timeouts, the "
    "master key by environment reference). Locally the proxy runs from its own venv; agents and evaluation use only it.",
)
def model_gateway(
    context: dg.AssetExecutionContext,
    gateway: LLMGatewayResource,
    pipeline_state: PipelineStateStore,
) -> dg.MaterializeResult:
    dep = read_record(pipeline_state, "model_deployments")
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
    if read_record(pipeline_state, "model_deployments").get("vision"):
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
