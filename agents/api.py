"""The agentic API: OpenAI-compatible chat completions, /query, /health, /metrics.

``POST /v1/chat/completions`` answers the last user message in the context of the whole
conversation (a follow-up is rewritten into a standalone question) through the answer service
(the fast path; ``"metadata": {"mode": "agent"}`` in the body selects the orchestrator),
streaming too (Server-Sent Events, OpenAI chunk format, citations in a final chunk's ``agentic``
field). ``POST /query`` takes a ``conversation_id`` and keeps the history itself.
``POST /v1/feedback`` records thumbs or a 1-5 score for an answer id or trace id; every answer is
recorded with its lineage so feedback can be traced back to what produced it.
Every route but ``/health`` needs ``Authorization: Bearer <key>``: a principal's key from the key store
(``agentic keys create``) or the deployment's AGENTIC_API_KEY (the admin principal); without an admin key configured
the app refuses to start (never open by default). Every answer and search reads only the documents the caller's
groups may read (the filter is inside the store query). Per key: a request rate and a concurrency limit (429 with
Retry-After), and a body size limit (413). Every request but ``/health`` and ``/metrics`` leaves an audit record.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import BaseModel, Field, field_validator

from agents.service import AnswerService
from core.access import AuditRecord, ConcurrencyLimiter, Principal, RateLimiter, hash_token, question_hash

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
    messages: list[ChatMessage] = Field(min_length=1, max_length=200)
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1, le=4096)
    temperature: float | None = Field(default=None, ge=0, le=2)
    metadata: dict[str, Any] | None = None


class QueryRequest(BaseModel):
    question: str = Field(min_length=1, max_length=4000)
    filters: dict[str, Any] | None = None
    mode: Literal["auto", "agent"] = "auto"
    conversation_id: str | None = Field(default=None, max_length=64)

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


RETRY_AFTER_S = 5  # a llama-server restart took 2-4 s here


def _err(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"message": message, "type": kind, "code": status}})


@dataclass(frozen=True)
class Limits:
    """Per key: sustained requests per minute (bursts of ``burst_factor`` times that per minute's worth, at least 2)
    and requests in flight; a principal's key may set its own. Per request: body bytes. 0 = unlimited."""

    rate_per_minute: int = 60
    burst_factor: float = 0.25
    concurrency: int = 4
    max_body_bytes: int = 256 * 1024


class Authenticator:
    """Bearer token -> principal through the key store, cached for ``ttl_s`` (a revoked key stops working within
    that); the cache is keyed by a hash of the token and bounded."""

    def __init__(self, keys, ttl_s: float = 5.0, max_entries: int = 10_000):
        self.keys, self.ttl_s, self.max_entries = keys, ttl_s, max_entries
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def __call__(self, token: str) -> Principal | None:
        if not token:
            return None
        h = hash_token(token)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(h)
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]
        principal = self.keys.authenticate(token)
        with self._lock:
            if len(self._cache) >= self.max_entries:
                self._cache.clear()
            self._cache[h] = (now, principal)
        return principal


UNAUDITED = ("/health", "/metrics")


def require_key(request: Request) -> Principal:
    """The caller (authenticated by the app's middleware), or 401."""
    principal = getattr(request.state, "principal", None)
    if principal is None:
        raise HTTPException(
            status_code=401, detail="missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"}
        )
    return principal


Caller = Annotated[Principal, Depends(require_key)]


def create_app(
    service: AnswerService,
    keys,
    records=None,
    conversations=None,
    audit=None,
    limits: Limits | None = None,
    auth_ttl_s: float = 5.0,
) -> FastAPI:
    """``keys``: a ``resources.access.KeyStoreResource`` (its ``admin_key`` is the admin principal's token).
    ``records``: an ``agents.records.AnswerRecords`` (answers + feedback); ``conversations``: an
    ``agents.conversations.ConversationStore``; ``audit``: an ``agents.audit.AuditTrail``. All live in the state
    store; without them the API answers but keeps no records and ``/query`` refuses a ``conversation_id``."""
    if not getattr(keys, "admin_key", ""):
        raise ValueError("AGENTIC_API_KEY is empty: the API never runs without a key")
    limits = limits or Limits()
    authenticate = Authenticator(keys, auth_ttl_s)
    rate, inflight = RateLimiter(), ConcurrencyLimiter()
    app = FastAPI(title="agentic-rag", version="0.1.0")
    metrics = Metrics()
    app.state.metrics = metrics
    app.state.audit = audit

    def _audit(request: Request, status: int, t0: float) -> None:
        path = request.url.path
        if audit is None or path in UNAUDITED:
            return
        p: Principal | None = getattr(request.state, "principal", None)
        info = getattr(request.state, "audit", {}) or {}
        audit.record(
            AuditRecord(
                time=time.time(),
                principal=p.name if p else "",
                key_id=p.key_id if p else "",
                path=path,
                status=status,
                question_sha256=question_hash(info.get("question", "")),
                route=info.get("route", ""),
                doc_ids=list(info.get("doc_ids", [])),
                answer_id=info.get("answer_id", ""),
                ms=round((time.perf_counter() - t0) * 1000, 1),
            )
        )

    @app.middleware("http")
    async def admit_and_measure(request: Request, call_next):
        """Authenticate, apply the key's limits, then measure and audit (for a stream: when its last chunk is sent)."""
        t = time.perf_counter()
        request.state.audit = {}
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        principal = authenticate(token.strip()) if scheme.lower() == "bearer" else None
        request.state.principal = principal
        slot = None
        response = None
        if principal is not None and request.url.path not in UNAUDITED:
            per_minute = principal.rate_per_minute or limits.rate_per_minute
            burst = max(2, int(per_minute * limits.burst_factor))
            ok, wait = rate.check(principal.key_id or principal.name, per_minute, burst)
            if not ok:
                response = _err(429, f"rate limit of {per_minute} requests/minute for this key", "rate_limit_error")
                response.headers["Retry-After"] = str(max(1, int(wait + 0.999)))
            else:
                cap = principal.concurrency or limits.concurrency
                slot = principal.key_id or principal.name
                if not inflight.acquire(slot, cap):
                    slot = None
                    response = _err(429, f"at most {cap} requests in flight for this key", "rate_limit_error")
                    response.headers["Retry-After"] = "1"
        if response is None and request.method in ("POST", "PUT", "PATCH") and limits.max_body_bytes:
            length = request.headers.get("content-length")
            if length is None:
                response = _err(411, "a Content-Length header is required", "invalid_request_error")
            elif not length.isdigit() or int(length) > limits.max_body_bytes:
                response = _err(413, f"request body larger than {limits.max_body_bytes} bytes", "invalid_request_error")
        if response is not None:
            if slot is not None:
                inflight.release(slot)
            _finish(request, response.status_code, t)
            return response
        try:
            response = await call_next(request)
        except BaseException:
            if slot is not None:
                inflight.release(slot)
            raise
        inner = response.body_iterator

        async def body():
            try:
                async for chunk in inner:
                    yield chunk
            finally:
                if slot is not None:
                    inflight.release(slot)
                _finish(request, response.status_code, t)

        response.body_iterator = body()
        return response

    def _finish(request: Request, status: int, t: float) -> None:
        path = request.scope.get("route").path if request.scope.get("route") else "unmatched"
        metrics.requests.labels(path, str(status)).inc()
        metrics.latency.labels(path).observe(time.perf_counter() - t)
        _audit(request, status, t)

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

        if isinstance(exc, openai.APIStatusError) and exc.status_code == 503:
            # the model server is restarting (its replica says so): unavailable for now, not a broken gateway
            unavailable = _err(503, "model server restarting; retry shortly", "upstream_unavailable")
        elif isinstance(exc, openai.APIStatusError):
            return _err(502, f"model gateway returned {exc.status_code}; retry shortly", "upstream_error")
        elif isinstance(exc, openai.APIConnectionError | openai.APITimeoutError):
            unavailable = _err(503, "model gateway unreachable; retry shortly", "upstream_unavailable")
        else:
            raise exc
        unavailable.headers["Retry-After"] = str(RETRY_AFTER_S)
        return unavailable

    def _record(answer, request: Request) -> None:
        metrics.answered(answer)
        request.state.audit.update(
            route=answer.route,
            answer_id=answer.answer_id,
            doc_ids=[c.get("id", "") for c in answer.citations if c.get("origin") == "knowledge_base"],
        )
        if records is not None:
            records.record_answer(answer.to_dict())

    if records is not None:
        from agents.feedback_api import register_feedback_routes

        register_feedback_routes(app, records, require_key)

    def _owner(principal: Principal) -> str | None:
        return None if principal.admin else principal.name

    @app.post("/query")
    def query(req: QueryRequest, request: Request, principal: Caller):
        history = []
        cid = req.conversation_id
        request.state.audit["question"] = req.question
        try:
            if cid is not None:
                if conversations is None:
                    return _err(400, "this deployment keeps no conversations", "invalid_request_error")
                history = conversations.history(cid, owner=_owner(principal))
            answer = service.answer(
                req.question, req.filters, req.mode, history=history, conversation_id=cid, scope=principal.scope()
            )
        except LookupError as exc:
            return _err(404, str(exc).strip("'\""), "invalid_request_error")
        except ValueError as exc:
            return _err(400, str(exc), "invalid_request_error")
        except Exception as exc:  # upstream failures become clean 5xx with a reason, not a traceback
            return _upstream_error(exc)
        if cid is not None:
            conversations.append(cid, req.question, answer.answer, answer.answer_id, owner=_owner(principal))
        _record(answer, request)
        return answer.to_dict()

    @app.post("/v1/conversations", dependencies=[Depends(require_key)])
    def new_conversation():
        if conversations is None:
            return _err(400, "this deployment keeps no conversations", "invalid_request_error")
        return {"conversation_id": conversations.new_id()}

    @app.post("/v1/chat/completions")
    def chat(req: ChatRequest, request: Request, principal: Caller):
        if req.model not in (MODEL_NAME, "default"):
            return _err(404, f"model {req.model!r} not found; use {MODEL_NAME!r}", "invalid_request_error")
        last = max((i for i, m in enumerate(req.messages) if m.role == "user" and m.text().strip()), default=None)
        if last is None:
            return _err(400, "messages must contain a non-empty user message", "invalid_request_error")
        question = req.messages[last].text()
        request.state.audit["question"] = question
        scope = principal.scope()
        # the conversation so far: every user and assistant turn before the question (system prompts are ours)
        history = [
            {"role": m.role, "content": m.text()} for m in req.messages[:last] if m.role in ("user", "assistant")
        ]
        meta = req.metadata or {}
        mode = meta.get("mode", "auto")
        filters = meta.get("filters")
        cid = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        try:
            if not req.stream or mode == "agent":
                answer = service.answer(question, filters, mode, history=history, scope=scope)
                _record(answer, request)
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
            plan = service.plan(question, filters, history, scope=scope)
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
            answer.principal = principal.name
            _record(answer, request)
            yield _sse(
                {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "agentic": _extra(answer)}
            )
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def _extra(answer) -> dict:
    return {
        "answer_id": answer.answer_id,
        "verdict": answer.verdict,
        "standalone_question": answer.standalone_question,
        "evidence": answer.evidence,
        "lineage": answer.lineage,
        "citations": answer.citations,
        "relevance": answer.relevance,
        "answerability": answer.answerability,
        "verdict_steps": answer.verdict_steps,
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


def stateful_app(
    service: AnswerService, keys, limits: Limits | None = None, auth_ttl_s: float = 5.0, audit_flush_s: float = 2.0
):
    """The API as a deployment runs it (`agentic serve`, and the suite's server): answers and feedback,
    conversations and the audit trail kept in the answer service's state store. Returns (app, audit trail); close the
    trail when the server stops, so its last records are written."""
    from agents.audit import AuditTrail
    from agents.conversations import ConversationStore
    from agents.records import AnswerRecords

    audit = AuditTrail(service.state, flush_s=audit_flush_s)
    app = create_app(
        service,
        keys,
        records=AnswerRecords(service.state),
        conversations=ConversationStore(service.state),
        audit=audit,
        limits=limits,
        auth_ttl_s=auth_ttl_s,
    )
    return app, audit
