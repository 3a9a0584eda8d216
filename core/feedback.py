"""User feedback on answers: validation, what counts as negative, golden-set candidates, and the daily rollup.

A feedback payload names the answer (``answer_id`` and/or ``trace_id``, both 32 lowercase hex characters) and says
what the user thought: ``thumbs`` ("up"/"down") and/or ``score`` (1-5), with an optional comment. One fills in the
other: thumbs up is score 5 and down is 1; score 4-5 is up, 1-2 down and 3 ``neutral``.

Pure functions: no storage, no clock (callers pass times in).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterable
from typing import Any

MAX_COMMENT_CHARS = 2000
THUMBS = ("up", "down")
SCORES = range(1, 6)
NEEDS_REVIEW = "needs_review"
REVIEW_STATUSES = (NEEDS_REVIEW, "accepted", "rejected")
FIELDS = ("answer_id", "trace_id", "thumbs", "score", "comment")
_HEX32 = re.compile(r"^[0-9a-f]{32}$")


class InvalidFeedback(ValueError):
    """A payload that cannot be recorded; ``param`` names the offending field (None: the payload as a whole)."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


def is_hex_id(value: Any) -> bool:
    """A 32-hex id (a uuid4 hex answer id or an OpenTelemetry trace id)."""
    return isinstance(value, str) and bool(_HEX32.match(value))


def _id(payload: dict, field: str) -> str | None:
    value = payload.get(field)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _HEX32.match(value.strip().lower()):
        raise InvalidFeedback(f"{field} must be a 32-character hex string", field)
    return value.strip().lower()


def thumbs_of(score: int) -> str:
    return "up" if score >= 4 else "down" if score <= 2 else "neutral"


def normalize_feedback(payload: dict) -> dict:
    """{answer_id, trace_id, score, thumbs, comment} from a client payload; ``InvalidFeedback`` (a ValueError) with
    a message fit for the client otherwise. Unknown fields are refused (a misspelt ``thumb`` must not pass as
    "no rating")."""
    if not isinstance(payload, dict):
        raise InvalidFeedback("the body must be a JSON object")
    unknown = sorted(set(payload) - set(FIELDS))
    if unknown:
        raise InvalidFeedback(f"unknown field(s): {', '.join(map(str, unknown))}; expected {', '.join(FIELDS)}")
    answer_id, trace_id = _id(payload, "answer_id"), _id(payload, "trace_id")
    if answer_id is None and trace_id is None:
        raise InvalidFeedback("answer_id or trace_id is required", "answer_id")

    thumbs = payload.get("thumbs")
    if thumbs is not None and thumbs not in THUMBS:
        raise InvalidFeedback('thumbs must be "up" or "down"', "thumbs")
    score = payload.get("score")
    if score is not None and (isinstance(score, bool) or not isinstance(score, int) or score not in SCORES):
        raise InvalidFeedback("score must be an integer from 1 to 5", "score")
    if thumbs is None and score is None:
        raise InvalidFeedback("thumbs or score is required", "thumbs")
    if thumbs is not None and score is not None and thumbs_of(score) not in (thumbs, "neutral"):
        raise InvalidFeedback(f"thumbs {thumbs!r} contradicts score {score}", "score")
    if score is None:
        score = 5 if thumbs == "up" else 1
    if thumbs is None:
        thumbs = thumbs_of(score)

    comment = payload.get("comment")
    if comment is None:
        comment = ""
    if not isinstance(comment, str):
        raise InvalidFeedback("comment must be a string", "comment")
    comment = comment.strip()
    if len(comment) > MAX_COMMENT_CHARS:
        raise InvalidFeedback(f"comment is longer than {MAX_COMMENT_CHARS} characters", "comment")
    return {"answer_id": answer_id, "trace_id": trace_id, "score": score, "thumbs": thumbs, "comment": comment}


def is_negative(record: dict) -> bool:
    """Thumbs down, or a score of 2 or less."""
    score = record.get("score")
    return record.get("thumbs") == "down" or (isinstance(score, int) and not isinstance(score, bool) and score <= 2)


def feedback_id(answer_id: str) -> str:
    """One feedback per answer: a later one for the same answer replaces it (and a retried POST writes the same key)."""
    return hashlib.sha256(f"feedback|{answer_id}".encode()).hexdigest()[:32]


def candidate_id(answer_id: str) -> str:
    """The golden-candidate id of an answer: stable, so a rerun finds the item (and its review status) again."""
    return "fb-" + hashlib.sha256(f"golden-candidate|{answer_id}".encode()).hexdigest()[:16]


def golden_candidate(feedback: dict, answer: dict) -> dict:
    """A candidate golden item for human review from a (negative) feedback record and the answer it rates."""
    citations = answer.get("citations") or []
    return {
        "id": candidate_id(answer["answer_id"]),
        "answer_id": answer["answer_id"],
        "trace_id": answer.get("trace_id") or feedback.get("trace_id"),
        "question": answer.get("question") or "",
        "answer": answer.get("answer") or "",
        "citations": [str(c["id"]) for c in citations if isinstance(c, dict) and c.get("id") is not None],
        "comment": feedback.get("comment") or "",
        "score": feedback.get("score"),
        "thumbs": feedback.get("thumbs"),
        "route": answer.get("route"),
        "lineage": dict(answer.get("lineage") or {}),
        "feedback_at": feedback.get("at"),
        "status": NEEDS_REVIEW,
    }


def utc_date(epoch_seconds: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(epoch_seconds))


def daily_rollup(answer_dates: Iterable[str], feedback: Iterable[dict]) -> list[dict]:
    """Rows {date, answers, feedback, negative, feedback_rate, negative_rate}, one per day, oldest first.

    ``feedback_rate`` is feedback / answers of the day and ``negative_rate`` negative / feedback (None when the
    denominator is 0). A feedback record's day is its ``date`` (the day of the answer it rates), else the day of its
    ``at``. Both inputs are streamed: memory is three counters per day, whatever the number of records."""
    days: dict[str, list[int]] = {}
    for date in answer_dates:
        days.setdefault(date, [0, 0, 0])[0] += 1
    for record in feedback:
        date = record.get("date") or utc_date(float(record.get("at") or 0))
        counts = days.setdefault(date, [0, 0, 0])
        counts[1] += 1
        counts[2] += is_negative(record)
    return [
        {
            "date": date,
            "answers": a,
            "feedback": f,
            "negative": n,
            "feedback_rate": f / a if a else None,
            "negative_rate": n / f if f else None,
        }
        for date, (a, f, n) in sorted(days.items())
    ]
