"""Feedback routes: ``POST /v1/feedback`` (thumbs/score on an answer) and ``GET /v1/answers/{answer_id}``.

Both need the API key (the ``require_key`` dependency of the app). Errors use the OpenAI error body
``{"error": {"message", "type", "code", "param"}}`` whatever the app's own handlers are: 400 for a body that is not a
JSON object, 413 for a body over ``MAX_BODY_BYTES``, 422 for invalid fields, 404 for an unknown answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from agents.records import AnswerRecords
from core.feedback import MAX_COMMENT_CHARS, InvalidFeedback

# A 2,000-character comment is at most ~12 KB as JSON (\uXXXX escapes); anything much larger is not feedback.
MAX_BODY_BYTES = 16 * 1024

FEEDBACK_BODY_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "answer_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
        "trace_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
        "thumbs": {"type": "string", "enum": ["up", "down"]},
        "score": {"type": "integer", "minimum": 1, "maximum": 5},
        "comment": {"type": "string", "maxLength": MAX_COMMENT_CHARS},
    },
    "description": "answer_id or trace_id (at least one), thumbs or score (at least one), an optional comment.",
}


def _error(status: int, message: str, param: str | None = None) -> JSONResponse:
    return JSONResponse(
        status_code=status,
        content={"error": {"message": message, "type": "invalid_request_error", "code": status, "param": param}},
    )


async def _read_body(request: Request) -> bytes | None:
    """The body, or None once it exceeds MAX_BODY_BYTES (read no further)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return None
    return bytes(body)


def _may_see(principal, answer: dict) -> bool:
    """An answer is its asker's (and the admins'): it may quote documents another principal may not read."""
    return principal is not None and (principal.admin or answer.get("principal", "") == principal.name)


def register_feedback_routes(app: FastAPI, records: AnswerRecords, require_key: Callable) -> None:
    """Add the feedback routes to ``app``; ``require_key`` is the app's API-key dependency, which returns the caller
    (a ``core.access.Principal``) or raises 401."""

    @app.post(
        "/v1/feedback",
        status_code=201,
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": FEEDBACK_BODY_SCHEMA}}}
        },
    )
    async def post_feedback(request: Request, principal: Any = Depends(require_key)):  # noqa: B008
        body = await _read_body(request)
        if body is None:
            return _error(413, f"request body larger than {MAX_BODY_BYTES} bytes")
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return _error(400, "the body must be a JSON object")
        if not isinstance(payload, dict):
            return _error(400, "the body must be a JSON object")
        if principal is None:
            return _error(404, "no answer for this caller", "answer_id")
        try:
            record = await run_in_threadpool(
                records.record_feedback, payload, None if principal.admin else principal.name
            )
        except InvalidFeedback as exc:
            return _error(422, str(exc), exc.param)
        except LookupError as exc:
            return _error(404, str(exc).strip("'\""), "trace_id" if "trace_id" in str(exc) else "answer_id")
        return JSONResponse(
            status_code=201,
            content={"feedback_id": record["feedback_id"], "answer_id": record["answer_id"], "recorded": True},
        )

    @app.get("/v1/answers/{answer_id}")
    def get_answer(answer_id: str, principal: Any = Depends(require_key)):  # noqa: B008
        found = records.find_answer(answer_id=answer_id.lower())
        if found is None or not _may_see(principal, found):
            # another principal's answer may quote documents this caller may not read: for them it does not exist
            return _error(404, f"no answer with answer_id {answer_id[:64]}", "answer_id")
        return found
