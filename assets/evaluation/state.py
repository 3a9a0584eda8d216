"""The evaluation stage's state: the golden set, per-question results, the run record, the history and its trend.

All of it lives in the pipeline state store (small tables and records, not sharded: they grow with the number of
questions and runs, not with the corpus).
"""

from __future__ import annotations

import pyarrow as pa

from resources.state_store import PipelineStateStore

GROUP = "evaluation"
OWNERS = ["team:ml-platform"]
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
