"""Conversation history for ``/query``'s ``conversation_id``: kept in the state store, so any API replica continues a
conversation another one started (a local folder on ``local``, S3 on ``eks``). Bounded: the newest ``max_turns``
turns per conversation, each cut to ``max_chars``."""

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

    def history(self, conversation_id: str) -> list[Turn]:
        if not self.valid(conversation_id):
            raise ValueError("conversation_id must be 8-64 letters, digits, '-' or '_'")
        record = self.state.read_json(PREFIX + conversation_id) or {}
        return [Turn(t["role"], t["content"]) for t in record.get("turns", [])]

    def append(self, conversation_id: str, question: str, answer: str, answer_id: str = "") -> None:
        with self._lock:  # one writer per process; replicas write whole objects, last writer wins per turn pair
            record = self.state.read_json(PREFIX + conversation_id) or {"id": conversation_id, "turns": []}
            record["turns"] += [
                {"role": "user", "content": question[: self.max_chars]},
                {"role": "assistant", "content": answer[: self.max_chars], "answer_id": answer_id},
            ]
            record["turns"] = record["turns"][-self.max_turns :]
            record["updated_at"] = time.time()
            self.state.write_json(PREFIX + conversation_id, record)
