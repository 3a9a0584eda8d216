"""Conversation history for ``/query``'s ``conversation_id``: kept in the state store, so any API replica continues a
conversation another one started (a local folder on ``local``, S3 on ``eks``). Bounded: the newest ``max_turns``
turns per conversation, each cut to ``max_chars``. A conversation belongs to the principal who started it: another
principal's history would carry answers from documents they may not read, so for them it does not exist."""

from __future__ import annotations

import re
import threading
import time
import uuid

from core.conversation import Turn

_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
PREFIX = "conversations/"


class ConversationStore:
    def __init__(self, state, max_turns: int = 20, max_chars: int = 2000):
        self.state, self.max_turns, self.max_chars = state, max_turns, max_chars
        self._lock = threading.Lock()

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex

    @staticmethod
    def valid(conversation_id: str) -> bool:
        return bool(_ID.match(conversation_id or ""))

    def history(self, conversation_id: str, owner: str | None = None) -> list[Turn]:
        """The turns so far. ``owner``: the asking principal (None: the operator, who reads any); a conversation
        owned by someone else raises ``LookupError``, as an unknown one would for them."""
        if not self.valid(conversation_id):
            raise ValueError("conversation_id must be 8-64 letters, digits, '-' or '_'")
        record = self.state.read_json(PREFIX + conversation_id) or {}
        if owner is not None and record.get("owner", owner) != owner:
            raise LookupError(f"no conversation {conversation_id}")
        return [Turn(t["role"], t["content"], tuple(t.get("cited", ()))) for t in record.get("turns", [])]

    def record(self, conversation_id: str, answer, owner: str | None = None) -> None:
        """An ``agents.answers.Answer`` as the conversation's next turn pair, with what it cited."""
        from agents.answers import cited_ids

        cited = cited_ids(answer.citations)
        self.append(conversation_id, answer.question, answer.answer, answer.answer_id, owner, cited)

    def append(
        self,
        conversation_id: str,
        question: str,
        answer: str,
        answer_id: str = "",
        owner: str | None = None,
        cited: tuple[str, ...] = (),
    ) -> None:
        """One question and its answer; ``cited``: the answer's knowledge-base citations, what a follow-up that refers
        back is about."""
        with self._lock:  # one writer per process; replicas write whole objects, last writer wins per turn pair
            record = self.state.read_json(PREFIX + conversation_id) or {"id": conversation_id, "turns": []}
            if owner is not None:
                if record.get("owner", owner) != owner:
                    raise LookupError(f"no conversation {conversation_id}")
                record["owner"] = owner
            record["turns"] += [
                {"role": "user", "content": question[: self.max_chars]},
                {
                    "role": "assistant",
                    "content": answer[: self.max_chars],
                    "answer_id": answer_id,
                    "cited": list(cited),
                },
            ]
            record["turns"] = record["turns"][-self.max_turns :]
            record["updated_at"] = time.time()
            self.state.write_json(PREFIX + conversation_id, record)
