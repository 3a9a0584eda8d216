"""The API's admission middleware: authenticate the bearer token, apply the key's rate and concurrency limits and the
body size limit, then measure and audit every request (a stream when its last chunk is sent)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from core.access import AuditRecord, ConcurrencyLimiter, Principal, RateLimiter, question_hash

UNAUDITED = frozenset({"/health", "/metrics"})


def error_response(status: int, message: str, kind: str) -> JSONResponse:
    """The OpenAI error body."""
    return JSONResponse(status_code=status, content={"error": {"message": message, "type": kind, "code": status}})


def require_key(request: Request) -> Principal:
    """The caller (authenticated by the app's middleware), or 401."""
    principal = getattr(request.state, "principal", None)
    if principal is None:
        raise HTTPException(
            status_code=401, detail="missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"}
        )
    return principal


Caller = Annotated[Principal, Depends(require_key)]


class Admission:
    """Who is calling and whether they may, per request; and what each request cost and returned."""

    def __init__(self, authenticate, limits, metrics, audit=None):
        self.authenticate, self.limits, self.metrics, self.audit = authenticate, limits, metrics, audit
        self.rate, self.inflight = RateLimiter(), ConcurrencyLimiter()
        metrics.in_flight.set_function(self.inflight.total)

    def install(self, app: FastAPI) -> None:
        app.middleware("http")(self.admit_and_measure)

    def _refusal(self, request: Request, principal: Principal | None) -> tuple[JSONResponse | None, str | None]:
        """(a refusal, or None; the concurrency slot taken, or None)."""
        limits = self.limits
        if principal is not None and request.url.path not in UNAUDITED:
            per_minute = principal.rate_per_minute or limits.rate_per_minute
            burst = max(2, int(per_minute * limits.burst_factor))
            ok, wait = self.rate.check(principal.key_id or principal.name, per_minute, burst)
            if not ok:
                response = error_response(
                    429, f"rate limit of {per_minute} requests/minute for this key", "rate_limit_error"
                )
                response.headers["Retry-After"] = str(max(1, int(wait + 0.999)))
                return response, None
            cap = principal.concurrency or limits.concurrency
            slot = principal.key_id or principal.name
            if not self.inflight.acquire(slot, cap):
                response = error_response(429, f"at most {cap} requests in flight for this key", "rate_limit_error")
                response.headers["Retry-After"] = "1"
                return response, None
            too_big = self._body_refusal(request)
            if too_big is not None:
                self.inflight.release(slot)
                return too_big, None
            return None, slot
        return self._body_refusal(request), None

    def _body_refusal(self, request: Request) -> JSONResponse | None:
        max_bytes = self.limits.max_body_bytes
        if request.method not in ("POST", "PUT", "PATCH") or not max_bytes:
            return None
        length = request.headers.get("content-length")
        if length is None:
            return error_response(411, "a Content-Length header is required", "invalid_request_error")
        if not length.isdigit() or int(length) > max_bytes:
            return error_response(413, f"request body larger than {max_bytes} bytes", "invalid_request_error")
        return None

    async def admit_and_measure(self, request: Request, call_next):
        t = time.perf_counter()
        request.state.audit = {}
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        principal = self.authenticate(token.strip()) if scheme.lower() == "bearer" else None
        request.state.principal = principal
        response, slot = self._refusal(request, principal)
        if response is not None:
            self.finish(request, response.status_code, t)
            return response
        try:
            response = await call_next(request)
        except BaseException:
            if slot is not None:
                self.inflight.release(slot)
            raise
        inner = response.body_iterator

        async def body():
            try:
                async for chunk in inner:
                    yield chunk
            finally:
                if slot is not None:
                    self.inflight.release(slot)
                self.finish(request, response.status_code, t)

        response.body_iterator = body()
        return response

    def finish(self, request: Request, status: int, t: float) -> None:
        path = request.scope.get("route").path if request.scope.get("route") else "unmatched"
        self.metrics.requests.labels(path, str(status)).inc()
        self.metrics.latency.labels(path).observe(time.perf_counter() - t)
        self._audit(request, status, t)

    def _audit(self, request: Request, status: int, t0: float) -> None:
        path = request.url.path
        if self.audit is None or path in UNAUDITED:
            return
        p: Principal | None = getattr(request.state, "principal", None)
        info = getattr(request.state, "audit", {}) or {}
        self.audit.record(
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
