"""The local LLM behind Ray Serve's request router: an ingress hands each chat request to one of several llama-server
replicas through a DeploymentHandle, so the router Serve is configured with picks the replica: Ray's
``PrefixCacheAffinityRouter`` (requests whose messages share a prefix go where that prefix was sent, while the
replicas' queues differ by less than ``imbalanced_threshold``; past it, the less loaded of two) or Serve's default
power-of-two-choices router. What ``benchmarks/bench_routing.py`` compares; on eks Ray Serve LLM renders the same
router for vLLM (``infra/platform/ray_services.py``).

Each replica writes its llama-server's loopback URL to ``<run_dir>/replica-<id>.url`` so a benchmark can read that
server's own counters (prompt tokens processed) without going through the router.

(No ``from __future__ import annotations``: FastAPI inside a Serve ingress class must see the real ``Request``.)
"""

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from ray import serve
from ray.serve.config import RequestRouterConfig
from ray.serve.handle import DeploymentHandle

from resources.serve_apps import openai_error

# Ray Serve LLM's router; imported from its module, since ``ray.serve.llm`` itself insists on vLLM being installed
PREFIX_ROUTER = "ray.llm._internal.serve.routing_policies.prefix_aware.prefix_aware_router.PrefixCacheAffinityRouter"
ROUTERS = ("default", "prefix")
logger = logging.getLogger("ray.serve")

routed_api = FastAPI(title="agentic routed llm")


@dataclass
class ChatRequest:
    """What the ingress passes on: ``messages`` is what the prefix router matches (it reads that attribute)."""

    messages: list[dict]
    body: dict


def router_config(router: str, imbalanced_threshold: float) -> RequestRouterConfig | None:
    if router not in ROUTERS:
        raise ValueError(f"unknown router {router!r}; choose from {ROUTERS}")
    if router == "default":
        return None
    return RequestRouterConfig(
        request_router_class=PREFIX_ROUTER,
        request_router_kwargs={"imbalanced_threshold": imbalanced_threshold},
    )


@serve.deployment(name="llama", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=16)
class LlamaReplica:
    """One llama-server, started by this replica and stopped with it."""

    def __init__(self, binary: str, env: dict, model_path: str, alias: str, ctx_size: int, parallel: int,
                 threads: int, run_dir: str):  # fmt: skip
        from infra.local.llama_server import LlamaServer

        rid = serve.get_replica_context().replica_id.unique_id
        run = Path(run_dir)
        run.mkdir(parents=True, exist_ok=True)
        self.server = LlamaServer(Path(binary), env, Path(model_path), alias, ctx_size=ctx_size, parallel=parallel,
                                  threads=threads, log_path=run / f"llama-server-{rid}.log")  # fmt: skip
        self.server.start()
        self.url_file = run / f"replica-{rid}.url"
        self.url_file.write_text(self.server.url)
        self.client = httpx.AsyncClient(base_url=self.server.url, timeout=httpx.Timeout(600, connect=5))

    def __del__(self):
        self.server.stop()
        self.url_file.unlink(missing_ok=True)

    def check_health(self) -> None:
        if not self.server.healthy():
            raise RuntimeError("llama-server is not healthy")

    async def chat(self, req: ChatRequest):
        async for part in relay_chat(self.server, self.client, req.body):
            yield part


async def relay_chat(server, client: httpx.AsyncClient, body: dict):
    """The upstream status first, then the response body as it comes (server-sent events when streaming). A request
    whose connection drops before any byte came back is sent once more, after restarting the llama-server if it died
    (what a container restart does on eks), and the cause goes to the replica's log: the suite once saw a 500 here
    with nothing to say why. If that fails too, the answer is the LLM app's clean 503 with an OpenAI error body."""
    for attempt in (1, 2):
        sent = False
        try:
            async with client.stream("POST", "/v1/chat/completions", json=body) as upstream:
                sent = True
                yield upstream.status_code
                async for chunk in upstream.aiter_raw():
                    yield chunk
            return
        except httpx.TransportError as exc:
            if sent:
                raise
            failure = f"model server unavailable ({type(exc).__name__})"
            if attempt == 2 or not await _recovered(server, exc):
                # the LLM app's answer to a server it cannot reach (``resources.serve_apps``), not a bare 500
                error = openai_error(503, f"{failure}; retry shortly")
                yield error.status_code
                yield error.body
                return


async def _recovered(server, exc: Exception) -> bool:
    """After a dropped request: restart the llama-server if it died (its exit code and log tail go to the replica's
    log); False when it cannot be brought back."""
    await asyncio.sleep(0.5)  # a server that is going down: let it finish, so it is restarted, not retried
    if server.running():
        logger.warning("llama-server %s dropped a request (%r) and still runs; sending once more", server.url, exc)
        return True
    code = server.proc.returncode if server.proc is not None else None
    logger.warning("llama-server %s dropped a request (%r): it exited with %s, restarting it; log: %s", server.url,
                   exc, code, _tail(server.log_path))  # fmt: skip
    try:
        await asyncio.to_thread(server.ensure)
    except Exception as failed:  # noqa: BLE001 - a server that cannot start is answered 503 and left to the health check
        logger.warning("llama-server %s could not be restarted: %s", server.url, failed)
        return False
    return True


def _tail(path, size: int = 600) -> str:
    """The last ``size`` bytes of a log that may have grown long."""
    if not path:
        return "(none)"
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - size))
            return f.read().decode(errors="replace")
    except OSError:
        return "(unreadable)"


@serve.deployment(name="llm-ingress", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=64)
@serve.ingress(routed_api)
class RoutedLLM:
    def __init__(self, replicas: DeploymentHandle, alias: str):
        self.replicas = replicas.options(stream=True)
        self.alias = alias

    @routed_api.get("/health")
    async def health(self):
        return {"status": "ok", "model": self.alias}

    @routed_api.get("/v1/models")
    async def models(self):
        return {"object": "list", "data": [{"id": self.alias, "object": "model", "owned_by": "llama.cpp"}]}

    @routed_api.post("/v1/chat/completions")
    async def chat(self, request: Request):
        try:
            payload = await request.json()
        except ValueError:
            return JSONResponse(status_code=400, content={"error": {"message": "request body must be JSON"}})
        chunks = self.replicas.chat.remote(ChatRequest(payload.get("messages") or [], payload))
        status = await chunks.__anext__()
        if payload.get("stream") and status == 200:

            async def relay():
                async for chunk in chunks:
                    yield chunk

            return StreamingResponse(relay(), media_type="text/event-stream")
        body = b"".join([c async for c in chunks])
        return Response(content=body, status_code=status, media_type="application/json")


def routed_app(
    spec: dict,
    router: str,
    replicas: int,
    imbalanced_threshold: float = 2.0,
    autoscaling: dict | None = None,
    max_ongoing: int = 0,
):
    """The ingress and ``replicas`` llama-server replicas behind ``router`` (or as many as Serve's ``autoscaling``
    config decides from the requests in flight per replica). ``spec``: LlamaReplica's arguments. ``max_ongoing``: the
    requests a replica takes at once (0: the deployment's 16); more wait in Serve for a free replica."""
    options: dict = {"autoscaling_config": autoscaling} if autoscaling else {"num_replicas": replicas}
    if max_ongoing:
        options["max_ongoing_requests"] = max_ongoing
    chosen = router_config(router, imbalanced_threshold)
    if chosen is not None:  # else Serve's default router
        options["request_router_config"] = chosen
    return RoutedLLM.bind(LlamaReplica.options(**options).bind(**spec), spec["alias"])


def replica_urls(run_dir: str | Path) -> list[str]:
    return sorted(p.read_text().strip() for p in Path(run_dir).glob("replica-*.url"))
