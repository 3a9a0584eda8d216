"""Model serving: one interface, two implementations; the serving assets never branch on which.

- ``LocalRayServe`` (local): the GGUF LLM assembled from its part wheels, Ray Serve applications on the local Ray
  cluster (an LLM app supervising llama-server, a batched embedding app), endpoints probed with real requests.
- ``KubeRayServing`` (eks): vLLM loads Qwen3-14B (and the vision model, Qwen2.5-VL-7B) inside the cluster; the
  RayServices are rendered, validated and saved in the state store for the platform group to apply; endpoints are
  cluster DNS names, probed by the platform's readiness checks, not from here.

A deployment record may name a ``vision`` model and endpoint (eks); locally there is none (no vision-language model
can be had offline here), so the gateway gets no ``vision`` route and the knowledge side uses ``NoVision``.
"""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg
import httpx

from resources.ray_cluster import RayResource


class ServingError(RuntimeError):
    pass


MANIFEST_KEY = "serving/model_deployments.yaml"  # the rendered RayServices and RayCluster (KubeRay)


class ModelServingResource(dg.ConfigurableResource):
    """What the serving assets call: ``prepare`` the model files, ``deploy`` them, ``probe`` the endpoints."""

    def prepare(self, llm_key: str, embedder, log) -> tuple[dict, dict, str | None]:
        """(artifact manifest for the state store, asset metadata, data version or None)."""
        raise NotImplementedError

    def deploy(self, artifacts: dict, embedder, store, log) -> tuple[dict, dict]:
        """(deployment record for the state store: endpoints, model names; asset metadata)."""
        raise NotImplementedError

    def probe(self, record: dict, embedder) -> tuple[bool, dict]:
        """Do the endpoints answer real requests from here? (passed, metadata). The same on both profiles: locally
        Ray Serve on loopback, on eks the RayServices' in-cluster Services, reached from the check's own pod; an
        endpoint that does not answer fails the check."""
        from resources.probes import chat_ok, embed_ok

        c_ok, chat = chat_ok(record["endpoints"]["llm"], record["llm"])
        e_ok, emb = embed_ok(record["endpoints"]["embedder"], record["embedder"], embedder.dimension)
        return c_ok and e_ok, {"chat": dg.MetadataValue.json(chat), "embeddings": dg.MetadataValue.json(emb)}


class KubeRayServing(ModelServingResource):
    """eks: the RayServices (vLLM on the GPU pool, the embedder on Graviton) rendered from the platform config."""

    config_path: str = ""
    llm_source: str = "Qwen/Qwen3-14B"

    def prepare(self, llm_key: str, embedder, log) -> tuple[dict, dict, str | None]:
        from infra.platform.config import load_platform_config

        # vLLM loads the weights from their source inside the cluster; the embedding image carries its model
        manifest = {
            "llm": {"key": "qwen3-14b", "served_name": "qwen3-14b", "source": self.llm_source},
            "embedder": {"model_id": embedder.model_id, "path": embedder.model_path, "dimension": embedder.dimension},
        }
        meta = {"llm": "qwen3-14b (vLLM loads it in the cluster)", "embedder": embedder.model_id}
        m = load_platform_config(self.config_path or None).models
        if m.vision:
            manifest["vision"] = {"served_name": m.vision_model_id, "source": m.vision_source}
            meta["vision"] = f"{m.vision_model_id} ({m.vision_source}; vLLM loads it in the cluster)"
        return manifest, meta, None

    def deploy(self, artifacts: dict, embedder, store, log) -> tuple[dict, dict]:
        import yaml

        from infra.platform.config import load_platform_config
        from infra.platform.manifests import render_model_deployments, vision_endpoint
        from infra.validate import validate_manifest

        cfg = load_platform_config(self.config_path or None)
        manifests = render_model_deployments(cfg)
        errors = [f"{m['kind']}/{m['metadata']['name']}: {e}" for m in manifests for e in validate_manifest(m)]
        if errors:
            raise ServingError("rendered model deployments do not match their schemas:\n" + "\n".join(errors[:20]))
        store.put_bytes(MANIFEST_KEY, yaml.safe_dump_all(manifests, sort_keys=False).encode())
        out = f"{store.describe().rstrip('/')}/{MANIFEST_KEY}"
        ns = cfg.namespace  # KubeRay names each RayService's Serve endpoint <name>-serve-svc
        record = {
            "endpoints": {
                "llm": f"http://agentic-llm-serve-svc.{ns}:8000/llm/v1",
                "embedder": f"http://agentic-embed-serve-svc.{ns}:8000/embed/v1",
            },
            "llm": cfg.models.llm_model_id,
            "embedder": embedder.model_id,
            "manifest": out,
        }
        meta = {
            "mode": "kuberay (rendered; the platform group applies it)",
            "manifest": out,
            "objects": dg.MetadataValue.json([f"{m['kind']}/{m['metadata']['name']}" for m in manifests]),
        }
        if cfg.models.vision:
            record["endpoints"]["vision"] = vision_endpoint(cfg)
            record["vision"] = cfg.models.vision_model_id
            meta["vision_model"] = f"{cfg.models.vision_model_id} ({cfg.models.vision_source})"
            meta["vision_endpoint"] = vision_endpoint(cfg)
        return record, meta


class LocalRayServe(ModelServingResource):
    """local: Ray Serve applications on this home's Ray cluster."""

    ray_cluster: RayResource
    cache_dir: str  # user cache: part wheels, assembled GGUF files, llama.cpp build
    state_dir: str  # logs of the servers
    llm: str = "0.5b"  # key of core.gguf.LLM_CATALOG
    http_host: str = "127.0.0.1"
    http_port: int = 8001  # Ray Serve's HTTP proxy (the API itself listens on 8000)
    ctx_size: int = 16384
    parallel: int = 4  # llama-server slots (concurrent requests)
    threads: int = 0  # 0 = all cores
    speculative: str = ""  # "ngram": llama-server's n-gram speculative decoding (infra.local.llama_server)

    @property
    def base_url(self) -> str:
        return f"http://{self.http_host}:{self.http_port}"

    def endpoints(self) -> dict[str, str]:
        return {"llm": f"{self.base_url}/llm/v1", "embedder": f"{self.base_url}/embed/v1"}

    def prepare(self, llm_key: str, embedder, log) -> tuple[dict, dict, str | None]:
        from core.gguf import assemble, get_model, sha256_file

        model = get_model(llm_key or self.llm)
        cache = Path(self.cache_dir)
        llm = assemble(model, cache / "pkgs", cache / "models" / "llm")
        log(
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
        meta = {
            "llm": model.served_name,
            "llm_path": dg.MetadataValue.path(llm["path"]),
            "llm_sha256": llm["sha256"],
            "llm_mb": round(llm["bytes"] / 1e6, 1),
            "llm_parts": model.parts,
            "assembled": not llm["reused"],
            "assembly_seconds": round(llm["seconds"], 2),
            "embedder": embedder.model_id,
            "embedder_sha256": onnx_sha,
        }
        return manifest, meta, llm["sha256"][:16] + onnx_sha[:16]

    def deploy(self, artifacts: dict, embedder, store, log) -> tuple[dict, dict]:
        info = self.serve(
            model_path=artifacts["llm"]["path"],
            served_name=artifacts["llm"]["served_name"],
            embedder_spec=embedder.spec(threads=1),
            embed_model_id=embedder.model_id,
        )
        log(f"Ray Serve apps ready in {info['deploy_seconds']:.1f} s: {info['endpoints']}")
        record = {
            "endpoints": info["endpoints"],
            "llm": artifacts["llm"]["served_name"],
            "embedder": embedder.model_id,
            "llm_binary": info["llm_binary"],
        }
        meta = {
            "mode": "ray-serve-local",
            "llm_endpoint": dg.MetadataValue.url(info["endpoints"]["llm"]),
            "embedder_endpoint": dg.MetadataValue.url(info["endpoints"]["embedder"]),
            "llm_model": artifacts["llm"]["served_name"],
            "llm_binary": info["llm_binary"],
            "deploy_seconds": round(info["deploy_seconds"], 1),
            "apps": dg.MetadataValue.json(self.status()),
        }
        return record, meta

    def serve(self, model_path: str, served_name: str, embedder_spec: dict, embed_model_id: str) -> dict:
        from ray import serve

        from infra.local.llama_server import resolve_binary
        from resources.serve_apps import EmbeddingDeployment, LlamaServerDeployment

        self.ray_cluster.ensure()
        binary, env, origin = resolve_binary(Path(self.cache_dir), probe_model=Path(model_path), threads=self.threads)
        logs = Path(self.state_dir) / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        serve.start(http_options={"host": self.http_host, "port": self.http_port})
        llm_app = LlamaServerDeployment.bind(
            str(binary),
            env,
            model_path,
            served_name,
            self.ctx_size,
            self.parallel,
            self.threads,
            str(logs / "llama-server.log"),
            self.speculative,
        )
        serve.run(llm_app, name="llm", route_prefix="/llm", blocking=False)
        embed_app = EmbeddingDeployment.bind(embedder_spec, embed_model_id)
        serve.run(embed_app, name="embedder", route_prefix="/embed", blocking=False)
        self.wait_ready(timeout_s=300)
        return {"endpoints": self.endpoints(), "llm_binary": origin, "deploy_seconds": time.perf_counter() - t0}

    def wait_ready(self, timeout_s: float = 300) -> None:
        deadline = time.time() + timeout_s
        last = ""
        while time.time() < deadline:
            try:
                a = httpx.get(f"{self.base_url}/llm/health", timeout=5)
                b = httpx.get(f"{self.base_url}/embed/health", timeout=5)
                if a.status_code == 200 and b.status_code == 200:
                    return
                last = f"llm {a.status_code}, embedder {b.status_code}"
            except httpx.HTTPError as exc:
                last = str(exc)
            time.sleep(1)
        raise ServingError(f"Ray Serve applications not ready after {timeout_s:.0f} s: {last}")

    def status(self) -> dict:
        from ray import serve

        self.ray_cluster.ensure()
        st = serve.status()
        return {
            name: app.status.value if hasattr(app.status, "value") else str(app.status)
            for name, app in st.applications.items()
        }
