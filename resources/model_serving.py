"""Model serving: Ray Serve applications on the local Ray cluster, a KubeRay RayService on EKS.

``deploy()`` starts (or updates) the LLM and embedding applications and returns their endpoints.
On ``eks`` the resource renders the RayService manifest (vLLM + the embedding app) instead; the
platform assets validate and apply it.
"""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg
import httpx

from resources.ray_cluster import RayResource


class ServingError(RuntimeError):
    pass


class ModelServingResource(dg.ConfigurableResource):
    mode: str = "ray-serve-local"  # "ray-serve-local" | "kuberay" (render only)
    ray_cluster: RayResource
    cache_dir: str  # user cache: part wheels, assembled GGUF files, llama.cpp build
    state_dir: str  # logs of the servers
    llm: str = "0.5b"  # key of core.gguf.LLM_CATALOG
    http_host: str = "127.0.0.1"
    http_port: int = 8001  # Ray Serve's HTTP proxy (the API itself listens on 8000)
    ctx_size: int = 16384
    parallel: int = 4  # llama-server slots (concurrent requests)
    threads: int = 0  # 0 = all cores

    @property
    def base_url(self) -> str:
        return f"http://{self.http_host}:{self.http_port}"

    def endpoints(self) -> dict[str, str]:
        return {"llm": f"{self.base_url}/llm/v1", "embedder": f"{self.base_url}/embed/v1"}

    def deploy(self, model_path: str, served_name: str, embedder_spec: dict, embed_model_id: str) -> dict:
        from ray import serve

        from infra.local.llama_server import resolve_binary
        from resources.serve_apps import EmbeddingDeployment, LlamaServerDeployment

        self.ray_cluster.ensure()
        binary, env, origin = resolve_binary(Path(self.cache_dir), probe_model=Path(model_path))
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
