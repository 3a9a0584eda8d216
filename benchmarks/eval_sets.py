"""The hand-written answerability evaluation sets and their fixed dev/test split.

``benchmarks/data/answerability/``: ``covered.jsonl`` (yes/no questions written by reading one abstract of the
2,000-article sample that ``agentic run`` indexes, labelled from that abstract), ``uncovered.jsonl`` (medical questions
no article of the sample addresses, each with what was checked), ``conversations.jsonl`` (two turns about one
article; the follow-up's expected details from the abstract). How they were written: ``docs/evaluation-sets.md``.

The split is a hash of the article (covered, conversations: all items about one article fall on the same side) or of
the item id (uncovered). Rules, prompts, weights and thresholds are fit on ``dev`` only; ``test`` is read only by
``bench_answers.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

from core.evaluation import eval_split

DATA = Path(__file__).resolve().parent / "data" / "answerability"
SPLITS = ("dev", "test")


split_of = eval_split


def _read(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]


def covered(split: str) -> list[dict]:
    return [r for r in _read("covered.jsonl") if split_of(r["pmid"]) == split]


def uncovered(split: str) -> list[dict]:
    return [r for r in _read("uncovered.jsonl") if split_of(r["id"]) == split]


def conversations(split: str) -> list[dict]:
    return [r for r in _read("conversations.jsonl") if split_of(r["pmid"]) == split]


def articles() -> list[str]:
    """Every PMID the covered questions and conversations are about (the benchmark makes sure they are indexed)."""
    return sorted({r["pmid"] for name in ("covered.jsonl", "conversations.jsonl") for r in _read(name)})
