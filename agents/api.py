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

import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, Field, field_validator

from agents.admission import Admission, Caller, require_key
from agents.admission import error_response as _err
from agents.chat_api import MODEL_NAME, register_chat_routes
from agents.service import AnswerService
from core.access import Principal, hash_token


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
        # the queue KEDA scales the API and the gateway on (infra/platform/autoscaling.py); set by the admission
        self.in_flight = Gauge("agentic_requests_in_flight", "Keyed requests in flight", registry=self.registry)

    def answered(self, answer) -> None:
        self.routes.labels(answer.route).inc()
        self.tokens.labels("prompt").inc(answer.tokens.get("prompt", 0))
        self.tokens.labels("completion").inc(answer.tokens.get("completion", 0))
        self.llm_calls.inc(answer.llm_calls)


RETRY_AFTER_S = 5  # a llama-server restart took 2-4 s here


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
    app = FastAPI(title="agentic-rag", version="0.1.0")
    metrics = Metrics()
    app.state.metrics, app.state.audit = metrics, audit
    Admission(Authenticator(keys, auth_ttl_s), limits or Limits(), metrics, audit).install(app)
    _register_errors(app)
    _register_service_routes(app, metrics)

    def answered(answer, request: Request) -> None:
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
    _register_query(app, service, conversations, answered)
    register_chat_routes(app, service, answered, upstream_error)
    return app


def _register_errors(app: FastAPI) -> None:
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


def _register_service_routes(app: FastAPI, metrics: Metrics) -> None:
    @app.get("/health")
    def health():
        return {"status": "ok", "model": MODEL_NAME}

    @app.get("/metrics", dependencies=[Depends(require_key)])
    def prometheus():
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models", dependencies=[Depends(require_key)])
    def models():
        return {"object": "list", "data": [{"id": MODEL_NAME, "object": "model", "created": 0, "owned_by": "agentic"}]}


def upstream_error(exc: Exception) -> JSONResponse:
    """A model failure as a clean 5xx with a reason: 503 with Retry-After while the model server restarts or the
    gateway is unreachable, 502 for another gateway error; anything else is re-raised."""
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


def _register_query(app: FastAPI, service, conversations, answered) -> None:
    def owner(principal: Principal) -> str | None:
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
                history = conversations.history(cid, owner=owner(principal))
            answer = service.answer(
                req.question, req.filters, req.mode, history=history, conversation_id=cid, scope=principal.scope()
            )
        except LookupError as exc:
            return _err(404, str(exc).strip("'\""), "invalid_request_error")
        except ValueError as exc:
            return _err(400, str(exc), "invalid_request_error")
        except Exception as exc:  # upstream failures become clean 5xx with a reason, not a traceback
            return upstream_error(exc)
        if cid is not None:
            conversations.record(cid, answer, owner=owner(principal))
        answered(answer, request)
        return answer.to_dict()

    @app.post("/v1/conversations", dependencies=[Depends(require_key)])
    def new_conversation():
        if conversations is None:
            return _err(400, "this deployment keeps no conversations", "invalid_request_error")
        return {"conversation_id": conversations.new_id()}


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
