"""Does the knowledge base cover a question? A score from retrieval evidence, not from the LLM's own grade.

An LLM asked to grade passages for "What is the capital of France?" grades a medical abstract 5/5 as readily as
the right one, so the route to web search never fired. The evidence that does separate them is in retrieval
itself:

- ``dense``: the cosine similarity of the best dense hit (an on-topic paraphrase sits far above an unrelated one);
- ``agreement``: whether dense and BM25 found the same documents (for an off-topic question each returns its own
  unrelated best guesses);
- ``coverage``: the share of the question's content words that occur in the top documents.

They are combined by a logistic function fitted on half of the harder golden set's questions (on topic) and half of
``benchmarks/data/off_topic.txt`` over 1,197 indexed abstracts (``bench_answers.py --relevance-only`` writes the
features); on the other halves it scored AUROC 0.999. Dense similarity alone separates these sets almost as well
(0.999); coverage (0.968) and agreement (0.836) are there for what a paraphrase set does not test: an on-topic
question in other words than the abstracts', and an off-topic one that shares a word with them. Pure functions.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from core.answering import content_words

# Fitted offline (see the module docstring); the score is P(on topic) under that fit.
WEIGHTS = {"bias": -13.5, "dense": 15.4, "agreement": 1.4, "coverage": 9.5}
RELEVANCE_VERSION = "relevance-v1-dense-agreement-coverage"


@dataclass
class RelevanceEvidence:
    dense: float  # best dense cosine similarity
    agreement: float  # share of the top dense documents also among the BM25 candidates
    coverage: float  # share of the question's content words found in the top documents
    score: float  # P(on topic) in [0, 1]

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in asdict(self).items()}


def score_of(dense: float, agreement: float, coverage: float) -> float:
    z = WEIGHTS["bias"] + WEIGHTS["dense"] * dense + WEIGHTS["agreement"] * agreement + WEIGHTS["coverage"] * coverage
    return 1.0 / (1.0 + math.exp(-z))


def relevance_evidence(
    question: str,
    dense_docs: list[tuple[str, float]],
    bm25_docs: list[str],
    top_texts: list[str],
    top: int = 3,
) -> RelevanceEvidence:
    """``dense_docs``: (doc key, cosine) best first; ``bm25_docs``: doc keys best first; ``top_texts``: title + text
    of the best fused hits."""
    dense = max((s for _, s in dense_docs), default=0.0)
    top_dense = list(dict.fromkeys(k for k, _ in dense_docs))[:top]
    bm25 = set(bm25_docs)
    agreement = sum(1 for k in top_dense if k in bm25) / len(top_dense) if top_dense else 0.0
    words = set(content_words(question))
    vocab = set(content_words(" ".join(top_texts)))
    coverage = (
        (sum(1 for w in words if w in vocab or any(v.startswith(w[:6]) for v in vocab)) / len(words)) if words else 0.0
    )
    return RelevanceEvidence(dense, agreement, coverage, score_of(dense, agreement, coverage))


def auroc(positives: list[float], negatives: list[float]) -> float:
    """Area under the ROC curve: P(a random positive scores above a random negative), ties count half."""
    if not positives or not negatives:
        return float("nan")
    wins = 0.0
    for p in positives:
        for n in negatives:
            wins += 1.0 if p > n else 0.5 if p == n else 0.0
    return wins / (len(positives) * len(negatives))
