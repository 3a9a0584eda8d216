"""Ray Serve applications: the LLM (llama-server supervised by a replica) and the embedding model.

The same applications run on a local Ray cluster and, on EKS, in a KubeRay RayService (where the
LLM application is vLLM's; see ``infra/render.py``). Both speak the OpenAI routes, so the gateway
does not care which one it talks to.

LLM app: the replica starts ``llama-server`` and proxies ``/v1/chat/completions`` (streaming too),
``/v1/models`` and ``/health``, and relays the server's ``/metrics`` and ``/slots`` read-only (the
capacity test samples its queue and KV-cache use there). A request that meets a dead server gets a
clean 503 with an OpenAI error body, and the replica restarts the server; Serve's health check
restarts the replica when the server cannot be brought back.

Embedding app: ``/v1/embeddings`` (OpenAI shape) with ``@serve.batch`` so concurrent requests share
one ONNX forward pass.

(No ``from __future__ import annotations`` here: FastAPI inside a Serve ingress class must see the
real ``Request`` annotation, or it takes ``request`` for a query parameter.)
"""

import asyncio
import json
import logging
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from ray import serve

from core.capacity import slot_counts

log = logging.getLogger("agentic.serve")

llm_api = FastAPI(title="agentic llm")
embed_api = FastAPI(title="agentic embedder")


def openai_error(status: int, message: str, kind: str = "server_error") -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"message": message, "type": kind, "code": status}})


def _json_or_error(content: bytes, status: int) -> dict:
    try:
        return json.loads(content)
    except ValueError:
        return {"error": {"message": content.decode(errors="replace")[:500], "type": "server_error", "code": status}}


@serve.deployment(
    name="llm",
    ray_actor_options={"num_cpus": 0},
    max_ongoing_requests=32,
    health_check_period_s=5,
    health_check_timeout_s=30,
)
@serve.ingress(llm_api)
class LlamaServerDeployment:
    def __init__(
        self,
        binary: str,
        env: dict,
        model_path: str,
        alias: str,
        ctx_size: int,
        parallel: int,
        threads: int,
        log_path: str = "",
        speculative: str = "",
    ):
        from infra.local.llama_server import LlamaServer

        self.server = LlamaServer(
            Path(binary),
            env,
            Path(model_path),
            alias,
            ctx_size=ctx_size,
            parallel=parallel,
            threads=threads,
            log_path=Path(log_path) if log_path else None,
            speculative=speculative,
        )
        self.server.start()
        self.alias = alias
        self.client = httpx.AsyncClient(base_url=self.server.url, timeout=httpx.Timeout(600, connect=5))
        self._restart_lock = asyncio.Lock()

    async def _recover(self) -> None:
        async with self._restart_lock:
            if self.server.running():
                return
            log.warning("llama-server is down; restarting")
            await asyncio.to_thread(self.server.ensure)
            self.client = httpx.AsyncClient(base_url=self.server.url, timeout=httpx.Timeout(600, connect=5))

    def check_health(self) -> None:
        # Serve calls this every health_check_period_s; raising makes Serve replace the replica.
        if not self.server.running():
            self.server.ensure()
        if not self.server.healthy():
            raise RuntimeError("llama-server is not healthy")

    @llm_api.get("/health")
    async def health(self):
        if not self.server.running():
            await self._recover()
        pid = self.server.proc.pid if self.server.proc else None
        return {"status": "ok", "model": self.alias, "restarts": self.server.restarts, "server_pid": pid}

    @llm_api.get("/v1/models")
    async def models(self):
        return {"object": "list", "data": [{"id": self.alias, "object": "model", "owned_by": "llama.cpp"}]}

    @llm_api.get("/metrics")
    async def metrics(self):
        """llama-server's own Prometheus metrics (requests processing and deferred, tokens), relayed read-only."""
        return await self._relay_get("/metrics")

    @llm_api.get("/slots")
    async def slots(self):
        """llama-server's slots as counts only (context, busy, tokens held): the capacity test's KV-cache use. The
        server's own answer carries each slot's prompt, another caller's text: never relayed."""
        r = await self._relay_get("/slots")
        if r.status_code != 200:
            return r
        return JSONResponse(slot_counts(json.loads(r.body)))

    async def _relay_get(self, path: str):
        if not self.server.running():
            await self._recover()
        try:
            r = await self.client.get(path)
        except httpx.HTTPError as exc:
            return openai_error(503, f"model server unavailable ({type(exc).__name__})")
        return Response(content=r.content, status_code=r.status_code, media_type=r.headers.get("content-type"))

    @llm_api.post("/v1/chat/completions")
    async def chat(self, request: Request):
        body = await request.body()
        try:
            payload = await request.json()
        except Exception:
            return openai_error(400, "request body must be JSON", "invalid_request_error")
        if not self.server.running():
            await self._recover()
        headers = {"content-type": "application/json"}
        try:
            if payload.get("stream"):
                req = self.client.build_request("POST", "/v1/chat/completions", content=body, headers=headers)
                upstream = await self.client.send(req, stream=True)
                if upstream.status_code != 200:
                    content = await upstream.aread()
                    await upstream.aclose()
                    return JSONResponse(
                        status_code=upstream.status_code, content=_json_or_error(content, upstream.status_code)
                    )

                async def relay():
                    try:
                        async for chunk in upstream.aiter_raw():
                            yield chunk
                    except httpx.HTTPError:
                        asyncio.create_task(self._recover())
                        yield b'data: {"error": {"message": "model server stopped mid-stream", "type": "server_error", "code": 503}}\n\n'
                    finally:
                        await upstream.aclose()

                return StreamingResponse(relay(), media_type="text/event-stream")
            r = await self.client.post("/v1/chat/completions", content=body, headers=headers)
            return JSONResponse(status_code=r.status_code, content=_json_or_error(r.content, r.status_code))
        except httpx.HTTPError as exc:
            asyncio.create_task(self._recover())
            return openai_error(
                503, f"model server unavailable ({type(exc).__name__}); it is being restarted, retry shortly"
            )


@serve.deployment(name="embedder", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=64)
@serve.ingress(embed_api)
class EmbeddingDeployment:
    def __init__(self, spec: dict, model_id: str):
        from core.embedding import OnnxEmbedder

        self.embedder = OnnxEmbedder(**spec)
        self.model_id = model_id
        self.dimension = spec["dimension"]

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def _embed(self, texts: list[str]) -> list[list[float]]:
        vectors = await asyncio.to_thread(self.embedder.embed, texts)
        return vectors.tolist()

    @embed_api.get("/health")
    async def health(self):
        return {"status": "ok", "model": self.model_id, "dimension": self.dimension}

    @embed_api.get("/v1/models")
    async def models(self):
        return {"object": "list", "data": [{"id": self.model_id, "object": "model", "owned_by": "onnxruntime"}]}

    @embed_api.post("/v1/embeddings")
    async def embeddings(self, request: Request):
        try:
            payload = await request.json()
        except Exception:
            return openai_error(400, "request body must be JSON", "invalid_request_error")
        inputs = payload.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs or not all(isinstance(t, str) and t.strip() for t in inputs):
            return openai_error(
                400, "input must be a non-empty string or a list of non-empty strings", "invalid_request_error"
            )
        vectors = await asyncio.gather(*(self._embed(t) for t in inputs))
        tokens = sum(self.embedder.count_tokens(inputs))
        return {
            "object": "list",
            "model": self.model_id,
            "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


def embedding_app(args: dict):
    """Application builder for a RayService ``serveConfigV2`` (``import_path: resources.serve_apps:embedding_app``)."""
    return EmbeddingDeployment.bind(args["spec"], args["model_id"])
