"""Evaluation logic as plain functions: the golden set, metrics that need no LLM, summaries and the promotion gate.

The assets in ``assets/evaluation/`` call these; nothing here talks to a model, a store or Dagster.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

GOLDEN_SET_VERSION = "golden-v1"  # bump when the selection or templating rules change
# the section labels that hold an abstract's conclusions (a label alone here; inside chunk text in core.answering)
CONCLUSION_LABELS = r"conclusions?(?: and relevance)?|interpretation|implications?"
_CONCLUSION_LABEL = re.compile(rf"^\s*(?:{CONCLUSION_LABELS})\s*:?\s*$", re.I)
_WS = re.compile(r"\s+")

# Metrics: higher is better for all of them. Judge metrics come from RAGAS, the rest need no LLM.
JUDGE_METRICS = ("faithfulness", "answer_relevancy", "context_precision", "context_recall")
ID_METRICS = ("id_context_precision", "id_context_recall", "hit_at_k", "mrr")
TEXT_METRICS = ("rouge_l",)


@dataclass(frozen=True)
class GoldenItem:
    id: str  # stable: hash of the gold document key and the set version
    question: str  # the article's title phrased as a question
    reference: str  # the abstract's conclusions, the reference answer
    gold_doc_keys: tuple[str, ...]  # the documents that answer it
    retrieval_query: str  # the bare title: a retrieval pair (title -> its abstract)
    title: str

    def as_row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "question": self.question,
            "reference": self.reference,
            "gold_doc_keys": list(self.gold_doc_keys),
            "retrieval_query": self.retrieval_query,
            "title": self.title,
        }


def title_as_question(title: str) -> str:
    """Deterministic templating: a title that already asks keeps its question; others become
    'What did the study "<title>" find?' (the study's own words, so the question has one right source)."""
    t = _WS.sub(" ", title).strip()
    if t.endswith("?"):
        return t
    t = t.rstrip(" .;:")
    return f'What did the study "{t}" find?'


def eval_split(key: str) -> str:
    """The hand-written evaluation sets' fixed split of an article or item id: "dev" or "test" (a hash, so it never
    moves; ``benchmarks/eval_sets.py`` reads the sets by it, the capacity asset takes its prompts from dev)."""
    return "dev" if hashlib.sha256(f"agentic-eval-split:{key}".encode()).digest()[0] < 128 else "test"


def is_conclusion_label(label: str) -> bool:
    return bool(label) and bool(_CONCLUSION_LABEL.match(label))


def conclusions_of(sections: Iterable[tuple[str, str]]) -> str:
    """The text of the conclusions section(s), or '' when the abstract has none."""
    parts = [
        text.strip() for label, text in sections if label and _CONCLUSION_LABEL.match(label) and text and text.strip()
    ]
    return " ".join(parts)


def build_golden_set(
    documents: Iterable[dict],
    size: int = 300,
    min_reference_chars: int = 60,
    max_reference_chars: int = 800,
    min_title_words: int = 4,
) -> tuple[list[GoldenItem], str]:
    """Pick up to ``size`` documents with a conclusions section, in a stable pseudo-random order (hash of key),
    so adding documents changes the set only where a new document sorts in. Returns (items, version)."""
    candidates = []
    for d in documents:
        title = _WS.sub(" ", d.get("title") or "").strip()
        sections = d["sections"] if isinstance(d.get("sections"), list) else json.loads(d.get("sections") or "[]")
        reference = conclusions_of((s[0], s[1]) for s in sections)
        if len(title.split()) < min_title_words or len(reference) < min_reference_chars:
            continue
        if len(reference) > max_reference_chars:
            cut = reference[:max_reference_chars]
            reference = cut[: cut.rfind(". ") + 1] or cut
        order = hashlib.sha256(f"{GOLDEN_SET_VERSION}:{d['key']}".encode()).hexdigest()
        candidates.append((order, d["key"], title, reference))
    candidates.sort()
    items = [
        GoldenItem(
            id=order[:16],
            question=title_as_question(title),
            reference=reference,
            gold_doc_keys=(key,),
            retrieval_query=title,
            title=title,
        )
        for order, key, title, reference in candidates[:size]
    ]
    return merge_golden(items, size)


def merge_golden(items: Iterable[GoldenItem], size: int = 300) -> tuple[list[GoldenItem], str]:
    """The golden set from per-shard selections (each ``build_golden_set`` of one shard): the ``size`` items first in
    the stable hash order, the same set a single pass over the whole corpus selects. Returns (items, version)."""
    chosen = sorted(items, key=lambda i: i.id)[:size]
    digest = hashlib.sha256(json.dumps([i.as_row() for i in chosen], sort_keys=True).encode()).hexdigest()[:12]
    return chosen, f"{GOLDEN_SET_VERSION}-{len(chosen)}-{digest}"


def unique_in_order(values: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    return [v for v in values if not (v in seen or seen.add(v))]


def id_metrics(retrieved_doc_keys: list[str], gold_doc_keys: Iterable[str]) -> dict[str, float]:
    """ID-based context precision/recall over documents (as RAGAS' ID-based metrics define them, on ids):
    precision = |retrieved ∩ gold| / |retrieved|, recall = |retrieved ∩ gold| / |gold|; plus hit@k and MRR."""
    gold = set(gold_doc_keys)
    if not gold:
        raise ValueError("a golden item needs at least one gold document")
    ranked = unique_in_order(retrieved_doc_keys)
    hits = [k for k in ranked if k in gold]
    first = next((i for i, k in enumerate(ranked, start=1) if k in gold), None)
    return {
        "id_context_precision": len(hits) / len(ranked) if ranked else 0.0,
        "id_context_recall": len(set(hits)) / len(gold),
        "hit_at_k": 1.0 if hits else 0.0,
        "mrr": 1.0 / first if first else 0.0,
    }


def rouge_l(response: str, reference: str) -> float:
    """ROUGE-L F1 (rouge-score, with stemming) of the answer against the reference conclusions."""
    from rouge_score import rouge_scorer

    if not response.strip() or not reference.strip():
        return 0.0
    return float(rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True).score(reference, response)["rougeL"].fmeasure)


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def summarize(rows: list[dict], metrics: Iterable[str]) -> dict[str, Any]:
    """Mean of each metric over the questions that have a score, with how many scored and how many failed.
    A failed judgement (``<metric>_error`` set) counts as a failure, never as a zero."""
    out: dict[str, Any] = {"questions": len(rows)}
    for m in metrics:
        vals = [r[m] for r in rows if _finite(r.get(m))]
        failures = sum(1 for r in rows if r.get(f"{m}_error"))
        if vals or failures:
            out[m] = round(sum(vals) / len(vals), 4) if vals else None
            out[f"{m}_n"] = len(vals)
            out[f"{m}_failures"] = failures
    return out


@dataclass
class GateResult:
    passed: bool
    reasons: list[str] = field(default_factory=list)
    compared: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "reasons": self.reasons, "compared": self.compared}


def promotion_gate(
    candidate: dict[str, Any],
    baseline: dict[str, Any] | None,
    tolerance: float = 0.02,
    gate_metrics: Iterable[str] = (),
    max_failure_rate: float = 0.2,
) -> GateResult:
    """A candidate passes when, for every gate metric present in both summaries, it is not worse than the
    baseline by more than ``tolerance`` (absolute), and judge failures stay under ``max_failure_rate``.
    No baseline (nothing serving yet, or no comparable run) -> passes, and says so."""
    reasons: list[str] = []
    compared: dict[str, dict[str, float | None]] = {}
    ok = True
    for m in gate_metrics:
        n_fail = candidate.get(f"{m}_failures", 0) or 0
        n_ok = candidate.get(f"{m}_n", 0) or 0
        if n_fail and n_fail / (n_fail + n_ok) > max_failure_rate:
            ok = False
            reasons.append(f"{m}: {n_fail} of {n_fail + n_ok} judgements failed (> {max_failure_rate:.0%})")
        c = candidate.get(m)
        b = (baseline or {}).get(m)
        compared[m] = {"candidate": c, "baseline": b}
        if c is None or b is None:
            continue
        delta = c - b
        compared[m]["delta"] = round(delta, 4)
        if delta < -tolerance:
            ok = False
            reasons.append(f"{m}: {c:.3f} vs serving {b:.3f} ({delta:+.3f}, tolerance {tolerance})")
    if baseline is None:
        reasons.append("no baseline to compare with (nothing serving, or no evaluation of it on this golden set)")
    elif ok:
        reasons.append(
            f"not worse than serving beyond {tolerance} on {', '.join(k for k, v in compared.items() if 'delta' in v) or 'no shared metric'}"
        )
    return GateResult(ok, reasons, compared)
