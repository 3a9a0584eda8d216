"""Answers and the feedback on them, kept in the pipeline state store (a folder locally, S3 on eks).

Layout (small JSON objects, one per answer / feedback, partitioned by UTC day so listings stay cheap):

- ``answers/date-YYYY-MM-DD/<answer_id>.json``: the answer (its documented fields only) plus ``at``
- ``answers/by_trace/<trace_id>.json``: {answer_id, date}, so feedback can name an answer by its trace id
- ``feedback/date-YYYY-MM-DD/<feedback_id>.json``: {feedback_id, answer_id, trace_id, score, thumbs, comment, at,
  date}. The day is the *answer's* day and the id a hash of the answer id: one feedback per answer (a later one
  replaces it, a retried request writes the same object), and a day's feedback rate is over that day's answers.

(``date-`` rather than Hive's ``date=``: state keys allow no ``=``.) Every write is keyed by an id, so writing the same thing twice is a no-op. Reads stream over ``list_keys``.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterator

from core.feedback import InvalidFeedback, feedback_id, is_hex_id, normalize_feedback, utc_date
from resources.state_store import PipelineStateStore

ANSWERS = "answers"
FEEDBACK = "feedback"
# What an answer record keeps (Answer.to_dict()'s documented fields): anything else a caller passes (request
# headers, raw contexts) is dropped, so a record stays small and never holds a secret.
ANSWER_FIELDS = (
    "answer_id",
    "trace_id",
    "question",
    "answer",
    "citations",
    "relevance",
    "route",
    "llm_calls",
    "tokens",
    "timings_ms",
    "notes",
    "verdict",
    "evidence",
    "standalone_question",
    "relevance_evidence",
    "conversation_id",
    "lineage",
    "principal",
    "at",
)


def _dates_back(today: str, days: int) -> list[str]:
    d = dt.date.fromisoformat(today)
    return [(d - dt.timedelta(days=i)).isoformat() for i in range(days + 1)]


def _dates_since(since: str, today: str) -> list[str]:
    start, end = dt.date.fromisoformat(since), dt.date.fromisoformat(today)
    return [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


def _date_of_key(key: str) -> str | None:
    part = key.split("/")[1] if key.count("/") >= 2 else ""
    return part[len("date-") :] if part.startswith("date-") else None


class AnswerRecords:
    """Answer and feedback records over a ``PipelineStateStore``. ``clock`` (epoch seconds) is for tests."""

    def __init__(self, store: PipelineStateStore, lookback_days: int = 30, clock: Callable[[], float] = time.time):
        self.store = store
        self.lookback_days = lookback_days
        self.clock = clock

    # ------------------------------------------------------------ answers
    @staticmethod
    def _answer_key(date: str, answer_id: str) -> str:
        return f"{ANSWERS}/date-{date}/{answer_id}.json"

    def record_answer(self, answer: dict) -> dict:
        """Store an answer (``Answer.to_dict()``) with ``at``; returns the stored record. Idempotent: an answer that
        already carries ``at`` (one read back and written again) lands on the same key."""
        answer_id = answer.get("answer_id")
        if not is_hex_id(answer_id):
            raise ValueError("answer_id must be a 32-character hex string")
        record = {k: answer[k] for k in ANSWER_FIELDS if k in answer}
        record.setdefault("at", self.clock())
        date = utc_date(float(record["at"]))
        self.store.put_bytes(self._answer_key(date, answer_id), json.dumps(record, default=str).encode())
        trace_id = record.get("trace_id")
        if is_hex_id(trace_id):
            index = {"answer_id": answer_id, "date": date}
            self.store.put_bytes(f"{ANSWERS}/by_trace/{trace_id}.json", json.dumps(index).encode())
        return record

    def answer_on(self, date: str, answer_id: str) -> dict | None:
        """The answer stored on ``date`` (one direct read; a feedback record names its answer's date)."""
        if not is_hex_id(answer_id):
            return None
        raw = self.store.get_bytes(self._answer_key(date, answer_id))
        return None if raw is None else json.loads(raw)

    def find_answer(self, answer_id: str | None = None, trace_id: str | None = None) -> dict | None:
        """The stored answer by id (today and the ``lookback_days`` before, one direct read per day) or by trace id
        (through its index object); None when unknown or malformed."""
        if answer_id is not None:
            if not is_hex_id(answer_id):
                return None
            for date in _dates_back(utc_date(self.clock()), self.lookback_days):
                found = self.answer_on(date, answer_id)
                if found is not None:
                    return found
            return None
        if trace_id is not None and is_hex_id(trace_id):
            raw = self.store.get_bytes(f"{ANSWERS}/by_trace/{trace_id}.json")
            if raw is None:
                return None
            index = json.loads(raw)
            found = self.answer_on(index["date"], index["answer_id"]) if index.get("date") else None
            return found if found is not None else self.find_answer(answer_id=index["answer_id"])
        return None

    def iter_answer_dates(self, since_date: str | None = None) -> Iterator[str]:
        """The day of every stored answer (from the keys alone: no object is read), one at a time."""
        for prefix in self._prefixes(ANSWERS, since_date):
            for key in self.store.list_keys(prefix):
                date = _date_of_key(key)
                if date and key.endswith(".json") and (since_date is None or date >= since_date):
                    yield date

    # ------------------------------------------------------------ feedback
    def record_feedback(self, payload: dict, owner: str | None = None) -> dict:
        """Validate (``core.feedback``; ``InvalidFeedback``, a ValueError), find the answer (``LookupError`` if
        unknown, or if ``owner`` is given and did not ask it) and store the feedback; returns the stored record."""
        fb = normalize_feedback(payload)
        if fb["answer_id"] is not None:
            answer = self.find_answer(answer_id=fb["answer_id"])
            if answer is None or (owner is not None and answer.get("principal", "") != owner):
                raise LookupError(f"no answer with answer_id {fb['answer_id']}")
            if fb["trace_id"] is not None and answer.get("trace_id") != fb["trace_id"]:
                raise InvalidFeedback("trace_id does not belong to answer_id", "trace_id")
        else:
            answer = self.find_answer(trace_id=fb["trace_id"])
            if answer is None or (owner is not None and answer.get("principal", "") != owner):
                raise LookupError(f"no answer with trace_id {fb['trace_id']}")
        date = utc_date(float(answer["at"]))
        record = {
            "feedback_id": feedback_id(answer["answer_id"]),
            "answer_id": answer["answer_id"],
            "trace_id": answer.get("trace_id"),
            "score": fb["score"],
            "thumbs": fb["thumbs"],
            "comment": fb["comment"],
            "at": self.clock(),
            "date": date,
        }
        key = f"{FEEDBACK}/date-{date}/{record['feedback_id']}.json"
        self.store.put_bytes(key, json.dumps(record).encode())
        return record

    def iter_feedback(self, since_date: str | None = None) -> Iterator[dict]:
        """Every feedback record (on answers of ``since_date`` or later), one object read at a time."""
        for prefix in self._prefixes(FEEDBACK, since_date):
            for key in self.store.list_keys(prefix):
                date = _date_of_key(key)
                if not date or not key.endswith(".json") or (since_date is not None and date < since_date):
                    continue
                raw = self.store.get_bytes(key)
                if raw is not None:  # deleted between the listing and the read
                    yield json.loads(raw)

    def _prefixes(self, kind: str, since_date: str | None) -> list[str]:
        if since_date is None:
            return [f"{kind}/date-"]
        today = utc_date(self.clock())
        return [f"{kind}/date-{d}/" for d in _dates_since(since_date, today)] if since_date <= today else []
