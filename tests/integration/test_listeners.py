"""Every server the suite's stack runs listens on loopback: Ray (GCS, raylet, agents, workers, Serve's proxy),
llama-server, the LiteLLM gateway, the API, the web search MCP server, Phoenix (HTTP and its gRPC receiver) and a
`ray start` head with its dashboard, read from /proc while they run. `agentic up` starts the same servers through the
same code (``pipelines.services``: Ray's single-node switch, Phoenix's loopback launcher).

One exception, which Ray 2.60 hard-codes: each Serve replica's inter-deployment gRPC server binds ``[::]:0``
(``ray/serve/_private/replica.py``). It is held to the other half of the rule instead: it refuses a call without the
token and one with a wrong token."""

from __future__ import annotations

import os

import grpc
import pytest

from infra.local.processes import descendants, is_loopback, listening_sockets, pids_naming

HANDLE_REQUEST = "/ray.serve.ASGIService/HandleRequest"


def _refused(port: int) -> list[str]:
    """The status of a replica's HandleRequest called with no token, then with a wrong one."""
    codes = []
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(HANDLE_REQUEST)
        for metadata in ((), (("authorization", "Bearer " + "0" * 64),)):
            try:
                call(b"", timeout=10, metadata=metadata)
                codes.append("OK")
            except grpc.RpcError as exc:
                codes.append(exc.code().name)
    return codes


@pytest.mark.integration
def test_every_listener_of_the_running_stack_is_on_loopback(api_server, trace_store, web_search_mcp, ray_head):
    import ray

    ray.get(ray.remote(lambda: 1).remote())  # a worker process of the session's node is up too
    pids = descendants(os.getpid()) | pids_naming(ray_head["root"] + "/")
    sockets = listening_sockets(pids)
    commands = " ".join(s["command"] for s in sockets)
    # the stack is really there: the node's GCS and raylet, llama-server, the gateway, Phoenix, the head's dashboard
    for name in ("gcs_server", "raylet", "llama-server", "litellm", "serve_on_loopback", "dashboard"):
        assert name in commands, (name, sorted({s["command"][:80] for s in sockets}))
    open_ = [s for s in sockets if not is_loopback(s["address"])]
    replicas = [s for s in open_ if s["command"].startswith("ray::ServeReplica")]
    assert replicas and open_ == replicas, open_
    for s in replicas:
        assert _refused(s["port"]) == ["UNAUTHENTICATED", "UNAUTHENTICATED"], s
