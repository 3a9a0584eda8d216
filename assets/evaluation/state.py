"""The evaluation stage's state: the golden set, per-question results, the run record, the history and its trend.

All of it lives in the pipeline state store (small tables and records, not sharded: they grow with the number of
questions and runs, not with the corpus).
"""

from __future__ import annotations

import pyarrow as pa

from assets.stage import stage_asset
from core.feedback import REVIEW_STATUSES
from resources.state_store import PipelineStateStore

GROUP = "evaluation"
OWNERS = ["team:ml-platform"]
asset = stage_asset(GROUP, OWNERS)
RETRIEVAL_MODES = ("dense", "hybrid")

GOLDEN = pa.schema(
    [
        ("id", pa.string()),
        ("question", pa.string()),
        ("reference", pa.string()),
        ("gold_doc_keys", pa.list_(pa.string())),
        ("retrieval_query", pa.string()),
        ("title", pa.string()),
        ("version", pa.string()),
    ]
)
HISTORY = pa.schema(
    [
        ("run_id", pa.string()),
        ("at", pa.float64()),
        ("golden_version", pa.string()),
        ("generation", pa.string()),
        ("serving_generation", pa.string()),
        ("is_candidate", pa.bool_()),
        ("models", pa.string()),
        ("config", pa.string()),
        ("summary", pa.string()),
        ("baseline", pa.string()),
        ("gate", pa.string()),
    ]
)

GOLDEN_TABLE = "eval_questions"
RESULTS_TABLE = "eval_results"
HISTORY_TABLE = "eval_history"
LAST_RUN_RECORD = "evaluation/last_run"
TREND_PNG = "evaluation/trend.png"


def read_golden(store: PipelineStateStore) -> list[dict]:
    return store.read(GOLDEN_TABLE, GOLDEN).to_pylist()


def read_results(store: PipelineStateStore) -> list[dict]:
    return store.read(RESULTS_TABLE).to_pylist()


def read_history(store: PipelineStateStore) -> list[dict]:
    return store.read(HISTORY_TABLE, HISTORY).to_pylist()


def read_last_run(store: PipelineStateStore) -> dict | None:
    return store.read_json(LAST_RUN_RECORD)


# ------------------------------------------------------------ user feedback (assets/evaluation/feedback.py)
FEEDBACK_CANDIDATES = pa.schema(
    [
        ("id", pa.string()),
        ("answer_id", pa.string()),
        ("trace_id", pa.string()),
        ("question", pa.string()),
        ("answer", pa.string()),
        ("citations", pa.list_(pa.string())),
        ("comment", pa.string()),
        ("score", pa.int64()),
        ("thumbs", pa.string()),
        ("route", pa.string()),
        ("lineage", pa.string()),  # JSON: index generation, chunker version, embedding model, LLM, prompt version
        ("feedback_at", pa.float64()),
        ("status", pa.string()),  # needs_review | accepted | rejected (core.feedback.REVIEW_STATUSES)
    ]
)
FEEDBACK_DAILY = pa.schema(
    [
        ("date", pa.string()),
        ("answers", pa.int64()),
        ("feedback", pa.int64()),
        ("negative", pa.int64()),
        ("feedback_rate", pa.float64()),
        ("negative_rate", pa.float64()),
    ]
)
FEEDBACK_CANDIDATES_TABLE = "eval_feedback_candidates"
FEEDBACK_DAILY_TABLE = "eval_feedback_daily"
FEEDBACK_RATE_PNG = "evaluation/feedback_rate.png"


def read_feedback_candidates(store: PipelineStateStore) -> list[dict]:
    return store.read(FEEDBACK_CANDIDATES_TABLE, FEEDBACK_CANDIDATES).to_pylist()


def read_feedback_daily(store: PipelineStateStore) -> list[dict]:
    return store.read(FEEDBACK_DAILY_TABLE, FEEDBACK_DAILY).to_pylist()


def latest_feedback_rate(store: PipelineStateStore) -> dict | None:
    """The most recent day of the feedback rollup that had answers, or None (no rollup yet)."""
    days = [d for d in read_feedback_daily(store) if d["answers"]]
    return days[-1] if days else None


def set_feedback_candidate_status(store: PipelineStateStore, candidate_id: str, status: str) -> None:
    """A reviewer's verdict on a candidate golden item; ``feedback_candidates`` keeps it on later runs."""
    if status not in REVIEW_STATUSES:
        raise ValueError(f"status must be one of {', '.join(REVIEW_STATUSES)}")
    rows = read_feedback_candidates(store)
    if not any(r["id"] == candidate_id for r in rows):
        raise LookupError(f"no feedback candidate {candidate_id!r}")
    rows = [{**r, "status": status} if r["id"] == candidate_id else r for r in rows]
    store.write(FEEDBACK_CANDIDATES_TABLE, pa.Table.from_pylist(rows, schema=FEEDBACK_CANDIDATES))


GOLDEN_HARD = pa.schema(
    [
        ("id", pa.string()),
        ("question", pa.string()),
        ("polarity", pa.string()),
        ("gold_doc_key", pa.string()),
        ("title", pa.string()),
        ("conclusion", pa.string()),
        ("title_overlap", pa.float64()),
        ("version", pa.string()),
    ]
)
GOLDEN_HARD_TABLE = "eval_questions_hard"


def read_golden_hard(store: PipelineStateStore) -> list[dict]:
    return store.read(GOLDEN_HARD_TABLE, GOLDEN_HARD).to_pylist()
