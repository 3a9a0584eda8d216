"""``POST /v1/chat/completions``, OpenAI-compatible: the last user message answered in the context of the whole
conversation (a follow-up is rewritten into a standalone question) through the answer service (the fast path;
``"metadata": {"mode": "agent"}`` selects the orchestrator), streaming too (Server-Sent Events in the OpenAI chunk
format, the citations and the rest of the answer in a final chunk's ``agentic`` field)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from agents.admission import Caller, error_response

MODEL_NAME = "agentic-rag"


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None
    # an assistant message may carry back its answer's ``agentic.citations``: a follow-up that refers back ("What
    # did the control group get?") is then answered from the study it cited (OpenAI clients send none: ignored)
    citations: list[dict[str, Any]] | None = Field(default=None, max_length=50)

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


def agentic_fields(answer) -> dict:
    """What an answer carries beyond OpenAI's fields: citations, verdict, evidence, lineage, route, trace."""
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


def sse(obj: dict) -> str:
    return f"data: {json.dumps(obj)}\n\n"


def _head(cid: str, created: int) -> dict:
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": MODEL_NAME}


def one_chunk_stream(cid: str, created: int, answer) -> Iterator[str]:
    head = _head(cid, created)
    delta = {"role": "assistant", "content": answer.answer}
    yield sse({**head, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    yield sse(
        {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "agentic": agentic_fields(answer)}
    )
    yield "data: [DONE]\n\n"


def completion(cid: str, created: int, answer) -> dict:
    """The whole answer as one ``chat.completion``."""
    prompt, out = answer.tokens.get("prompt", 0), answer.tokens.get("completion", 0)
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": MODEL_NAME,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.answer}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": out, "total_tokens": prompt + out},
        "agentic": agentic_fields(answer),
    }


def streamed(service, plan, cid: str, created: int, principal, answered: Callable) -> Iterator[str]:
    """The fast path's answer as chunks (sent after the support check: nothing a check withdraws is shown first)."""
    head = _head(cid, created)
    yield sse({**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})
    try:
        for text in service.stream_answer(plan):
            yield sse({**head, "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]})
    except Exception as exc:
        error = {"message": f"answer interrupted: {type(exc).__name__}", "type": "upstream_error", "code": 502}
        yield sse({"error": error})
        yield "data: [DONE]\n\n"
        return
    answer = plan.result
    answer.principal = principal.name
    answered(answer)
    yield sse(
        {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "agentic": agentic_fields(answer)}
    )
    yield "data: [DONE]\n\n"


def register_chat_routes(app: FastAPI, service, answered: Callable, upstream_error: Callable) -> None:
    """``answered(answer, request)`` records an answer (metrics, audit, records); ``upstream_error(exc)`` maps a model
    failure to a clean 5xx."""

    @app.post("/v1/chat/completions")
    def chat(req: ChatRequest, request: Request, principal: Caller):
        if req.model not in (MODEL_NAME, "default"):
            return error_response(404, f"model {req.model!r} not found; use {MODEL_NAME!r}", "invalid_request_error")
        last = max((i for i, m in enumerate(req.messages) if m.role == "user" and m.text().strip()), default=None)
        if last is None:
            return error_response(400, "messages must contain a non-empty user message", "invalid_request_error")
        question = req.messages[last].text()
        request.state.audit["question"] = question
        # the conversation so far: every user and assistant turn before the question (system prompts are ours)
        history = [
            {"role": m.role, "content": m.text(), "citations": m.citations}
            for m in req.messages[:last]
            if m.role in ("user", "assistant")
        ]
        meta = req.metadata or {}
        mode, filters = meta.get("mode", "auto"), meta.get("filters")
        cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        try:
            if not req.stream or mode == "agent":
                answer = service.answer(question, filters, mode, history=history, scope=principal.scope())
                answered(answer, request)
                if req.stream:  # the orchestrator is not token-streamed: one chunk, then done
                    return StreamingResponse(one_chunk_stream(cid, created, answer), media_type="text/event-stream")
                return completion(cid, created, answer)
            plan = service.plan(question, filters, history, scope=principal.scope())
        except ValueError as exc:
            return error_response(400, str(exc), "invalid_request_error")
        except Exception as exc:
            return upstream_error(exc)
        events = streamed(service, plan, cid, created, principal, lambda a: answered(a, request))
        return StreamingResponse(events, media_type="text/event-stream")
