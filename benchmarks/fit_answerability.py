"""Fit core.answerability's per-source weights and its threshold on the dev split, per model, into
``core/answerability_fit.json``. Re-run after ``bench_answers.py --split dev --features --llm X`` wrote the dev
features of that model:

    python benchmarks/fit_answerability.py --llm 1.5b [--default]

Training examples are sources: the article a covered question was written from (label 1) and every source
retrieved for an uncovered question (label 0); other sources of covered questions are left out (they may or may not
address it, and no one labelled them). A question's score is its best source's. The threshold is the highest that
keeps the covered dev questions refused at or below 5 %; ``related`` (sources named as near the question, never
cited) is half of it, a display rule rather than a fitted number. Reports in-sample and 5-fold cross-validated AUROC.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.answerability import ANSWERABILITY_VERSION, FIT_PATH, Features, Fit  # noqa: E402
from core.relevance import auroc  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
MAX_REFUSED = 0.05


def _features(s: dict) -> Features:
    return Features(s["judge"], s["overlap"], s["dense"], s["lead"])


def _vector(s: dict) -> list[float]:
    return _features(s).vector()


def examples(rows: list[dict]) -> tuple[list[list[float]], list[int]]:
    xs, ys = [], []
    for r in rows:
        for s in r["sources"]:
            if r["covered"] and s["id"] != r["gold_id"]:
                continue
            xs.append(_vector(s))
            ys.append(1 if r["covered"] else 0)
    return xs, ys


def logistic(xs: list[list[float]], ys: list[int], l2: float = 0.01, steps: int = 4000, lr: float = 0.1) -> list[float]:
    """Plain gradient descent on the mean log-loss (a few hundred examples, three features: no library needed)."""
    w = [0.0] * (len(xs[0]) + 1)
    n = len(xs)
    for _ in range(steps):
        grad = [0.0] * len(w)
        for x, y in zip(xs, ys):
            z = w[0] + sum(a * b for a, b in zip(w[1:], x))
            err = 1.0 / (1.0 + math.exp(-max(min(z, 40), -40))) - y
            grad[0] += err
            for j, v in enumerate(x):
                grad[j + 1] += err * v
        w = [wj - lr * (g / n + (l2 * wj if j else 0.0)) for j, (wj, g) in enumerate(zip(w, grad))]
    return w


def question_scores(rows: list[dict], fit: Fit) -> list[tuple[int, float]]:
    return [
        (
            r["covered"],
            max((fit.score(_features(s)) for s in r["sources"]), default=0.0),
        )
        for r in rows
    ]


def threshold_for(scored: list[tuple[int, float]]) -> float:
    covered = sorted(s for c, s in scored if c)
    allowed = int(MAX_REFUSED * len(covered))  # covered questions that may fall below the threshold
    return covered[allowed] if covered else 0.5


def _auroc(scored: list[tuple[int, float]]) -> float:
    return auroc([s for c, s in scored if c], [s for c, s in scored if not c])


def cross_validated(rows: list[dict], folds: int = 5) -> float:
    scored = []
    for f in range(folds):
        train = [r for i, r in enumerate(rows) if i % folds != f]
        held = [r for i, r in enumerate(rows) if i % folds == f]
        w = logistic(*examples(train))
        scored += question_scores(held, Fit(w, 0.5, 0.25))
    return _auroc(scored)


def fit_rows(rows: list[dict], model: str) -> dict:
    """The fit of one model from its dev features: weights, threshold and what they score on dev."""
    w = logistic(*examples(rows))
    fit = Fit(w, 0.5, 0.25)
    scored = question_scores(rows, fit)
    threshold = threshold_for(scored)
    judge_only = [(r["covered"], max((s["judge"] for s in r["sources"]), default=0.0)) for r in rows]
    out = {
        "version": ANSWERABILITY_VERSION,
        "weights": [round(v, 4) for v in w],
        "features": ["bias", "logit(judge P(yes))", "subject_overlap", "dense", "lead"],
        "threshold": round(threshold, 4),
        "related": round(threshold / 2, 4),
        "fitted_on": {
            "split": "dev",
            "questions": len(rows),
            "covered": sum(r["covered"] for r in rows),
            "llm": model,
            "auroc_in_sample": round(_auroc(scored), 3),
            "auroc_5fold": round(cross_validated(rows), 3),
            "auroc_judge_alone": round(_auroc(judge_only), 3),
            "covered_refused": round(
                sum(1 for c, s in scored if c and s < threshold) / max(1, sum(c for c, _ in scored)), 3
            ),
            "uncovered_answered": round(
                sum(1 for c, s in scored if not c and s >= threshold) / max(1, sum(1 for c, _ in scored if not c)), 3
            ),
        },
    }
    return out


def main() -> int:
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--llm", default="1.5b")
    ap.add_argument("--default", action="store_true", help="the fit used for models that have none")
    ap.add_argument("--k", type=int, default=0, help="fit the features collected with --k (bench_answers.py --k)")
    ap.add_argument("--out", default=str(FIT_PATH), help="the fits file to write (a candidate's, to compare)")
    args = ap.parse_args()
    name = f"answerability_features_dev_{args.llm}" + (f"_k{args.k}" if args.k else "")
    data = json.loads((RESULTS / f"{name}.json").read_text())
    out = fit_rows(data["rows"], data["model"])
    out["fitted_on"]["k"] = data.get("k", 5)
    path = Path(args.out)
    fits = json.loads(path.read_text()) if path.exists() else {"default": data["model"], "fits": {}}
    fits["fits"][data["model"]] = out
    if args.default:
        fits["default"] = data["model"]
    path.write_text(json.dumps(fits, indent=1) + "\n")
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
