"""The agentic API: OpenAI-compatible chat completions, /query, /health, /metrics.

``POST /v1/chat/completions`` answers the last user message through the answer service (the
fast path; ``"metadata": {"mode": "agent"}`` in the body selects the orchestrator), streaming
too (Server-Sent Events, OpenAI chunk format, citations in a final chunk's ``agentic`` field).
Every route but ``/health`` needs ``Authorization: Bearer <AGENTIC_API_KEY>``; without a key
configured the app refuses to start (never open by default).
"""

from __future__ import annotations

import hmac
import json
import time
import uuid
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import BaseModel, Field, field_validator

from agents.service import AnswerService

MODEL_NAME = "agentic-rag"


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        if isinstance(self.content, list):
            return "\n".join(part.get("text", "") for part in self.content if part.get("type") == "text")
        return ""


class ChatRequest(BaseModel):
    model: str = MODEL_NAME
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1, le=4096)
    temperature: float | None = Field(default=None, ge=0, le=2)
    metadata: dict[str, Any] | None = None


class QueryRequest(BaseModel):
    question: str = Field(min_length=1, max_length=4000)
    filters: dict[str, Any] | None = None
    mode: Literal["auto", "agent"] = "auto"

    @field_validator("question")
    @classmethod
    def not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("question is blank")
        return v


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("agentic_requests_total", "HTTP requests", ["path", "status"], registry=self.registry)
        self.latency = Histogram(
            "agentic_request_seconds",
            "Request latency",
            ["path"],
            registry=self.registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160),
        )
        self.tokens = Counter("agentic_llm_tokens_total", "LLM tokens used to answer", ["kind"], registry=self.registry)
        self.routes = Counter(
            "agentic_answer_routes_total", "Answers by route taken", ["route"], registry=self.registry
        )
        self.llm_calls = Counter("agentic_llm_calls_total", "LLM calls made to answer", registry=self.registry)

    def answered(self, answer) -> None:
        self.routes.labels(answer.route).inc()
        self.tokens.labels("prompt").inc(answer.tokens.get("prompt", 0))
        self.tokens.labels("completion").inc(answer.tokens.get("completion", 0))
        self.llm_calls.inc(answer.llm_calls)


def _err(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"message": message, "type": kind, "code": status}})


def create_app(service: AnswerService, api_key: str) -> FastAPI:
    if not api_key:
        raise ValueError("AGENTIC_API_KEY is empty: the API never runs without a key")
    app = FastAPI(title="agentic-rag", version="0.1.0")
    metrics = Metrics()
    app.state.metrics = metrics

    def require_key(request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
            raise HTTPException(
                status_code=401, detail="missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"}
            )

    @app.middleware("http")
    async def measure(request: Request, call_next):
        t = time.perf_counter()
        response = await call_next(request)
        path = request.scope.get("route").path if request.scope.get("route") else "unmatched"
        metrics.requests.labels(path, str(response.status_code)).inc()
        metrics.latency.labels(path).observe(time.perf_counter() - t)
        return response

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        kind = "authentication_error" if exc.status_code == 401 else "invalid_request_error"
        return JSONResponse(
            status_code=exc.status_code,
            content={"error": {"message": exc.detail, "type": kind, "code": exc.status_code}},
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors())
        return _err(422, f"invalid request: {problems}", "invalid_request_error")

    @app.get("/health")
    def health():
        return {"status": "ok", "model": MODEL_NAME}

    @app.get("/metrics", dependencies=[Depends(require_key)])
    def prometheus():
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models", dependencies=[Depends(require_key)])
    def models():
        return {"object": "list", "data": [{"id": MODEL_NAME, "object": "model", "created": 0, "owned_by": "agentic"}]}

    def _upstream_error(exc: Exception) -> JSONResponse:
        import openai

        if isinstance(exc, openai.APIStatusError):
            return _err(502, f"model gateway returned {exc.status_code}; retry shortly", "upstream_error")
        if isinstance(exc, openai.APIConnectionError | openai.APITimeoutError):
            return _err(503, "model gateway unreachable; retry shortly", "upstream_unavailable")
        raise exc

    @app.post("/query", dependencies=[Depends(require_key)])
    def query(req: QueryRequest):
        try:
            answer = service.answer(req.question, req.filters, req.mode)
        except ValueError as exc:
            return _err(400, str(exc), "invalid_request_error")
        except Exception as exc:  # upstream failures become clean 5xx with a reason, not a traceback
            return _upstream_error(exc)
        metrics.answered(answer)
        return answer.to_dict()

    @app.post("/v1/chat/completions", dependencies=[Depends(require_key)])
    def chat(req: ChatRequest):
        if req.model not in (MODEL_NAME, "default"):
            return _err(404, f"model {req.model!r} not found; use {MODEL_NAME!r}", "invalid_request_error")
        users = [m for m in req.messages if m.role == "user" and m.text().strip()]
        if not users:
            return _err(400, "messages must contain a non-empty user message", "invalid_request_error")
        question = users[-1].text()
        meta = req.metadata or {}
        mode = meta.get("mode", "auto")
        filters = meta.get("filters")
        cid = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        try:
            if not req.stream or mode == "agent":
                answer = service.answer(question, filters, mode)
                metrics.answered(answer)
                if req.stream:  # the orchestrator is not token-streamed: one chunk, then done
                    return StreamingResponse(_one_chunk_stream(cid, created, answer), media_type="text/event-stream")
                return {
                    "id": cid,
                    "object": "chat.completion",
                    "created": created,
                    "model": MODEL_NAME,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": answer.answer},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": answer.tokens.get("prompt", 0),
                        "completion_tokens": answer.tokens.get("completion", 0),
                        "total_tokens": answer.tokens.get("prompt", 0) + answer.tokens.get("completion", 0),
                    },
                    "agentic": _extra(answer),
                }
            plan = service.plan(question, filters)
        except ValueError as exc:
            return _err(400, str(exc), "invalid_request_error")
        except Exception as exc:
            return _upstream_error(exc)

        def events():
            head = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": MODEL_NAME}
            yield _sse(
                {
                    **head,
                    "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
                }
            )
            try:
                for text in service.stream_answer(plan):
                    yield _sse({**head, "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]})
            except Exception as exc:
                yield _sse(
                    {
                        "error": {
                            "message": f"answer interrupted: {type(exc).__name__}",
                            "type": "upstream_error",
                            "code": 502,
                        }
                    }
                )
                yield "data: [DONE]\n\n"
                return
            answer = plan.result
            metrics.answered(answer)
            yield _sse(
                {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "agentic": _extra(answer)}
            )
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def _extra(answer) -> dict:
    return {
        "citations": answer.citations,
        "relevance": answer.relevance,
        "route": answer.route,
        "trace_id": answer.trace_id,
        "llm_calls": answer.llm_calls,
        "notes": answer.notes,
    }


def _sse(obj: dict) -> str:
    return f"data: {json.dumps(obj)}\n\n"


def _one_chunk_stream(cid: str, created: int, answer):
    head = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": MODEL_NAME}
    yield _sse(
        {
            **head,
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": answer.answer}, "finish_reason": None}],
        }
    )
    yield _sse({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "agentic": _extra(answer)})
    yield "data: [DONE]\n\n"
