"""Try other readings of the verdict beside ``core.verdict``'s, on the dev split only, before changing the product:

    python benchmarks/explore_verdict.py --llm 1.5b

Each covered dev question's conclusion (``fit_verdict.covered_items``: what the product reads of its abstract) is
read with every prompt in ``VARIANTS`` (one constrained token each, on a llama-server of its own). Then each combination of readings is scored as the
product would use it: a logistic function of the combined log-odds, fitted on dev, with leave-one-out accuracy over
the three labels and the AUROC of supports against the rest. Writes ``results/verdict_explore_<llm>.json`` (or ``--out``);
changes nothing in the product. The variants were written before this ran, from how a small model errs (it leans to "yes" on
any conclusion about the question's subject, and few-shot prompts lean to the last examples' labels), not from any
item.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import fit_verdict  # noqa: E402
from benchmarks.common import save  # noqa: E402
from benchmarks.fit_answerability import logistic  # noqa: E402
from core import verdict  # noqa: E402
from core.chunking import split_sentences  # noqa: E402
from core.relevance import auroc  # noqa: E402

# the inverted question: "does it say no?" A model that leans to "yes" leans here to the other side, so the two
# readings' biases pull apart, and their difference keeps what they agree on
INVERTED_SYSTEM = (
    "You read a study's conclusion and a question. Say whether the conclusion answers the question NO: it found no "
    "effect, no difference, similar or comparable results, no association, or the opposite of what the question "
    "asks. Reply with one word: yes (it answers no) or no (it answers yes, or it is uncertain)."
)
_INVERTED = {"yes": "no", "no": "yes", "uncertain": "no"}


def first_sentence(item: dict) -> str:
    """The labelled conclusions' first sentence alone: it states the main finding, and what follows often hedges it
    ("However, results varied ..."), which a small model may read as a "no". An unlabelled reading is kept whole."""
    sentences = split_sentences(item["conclusion"]) if item["labelled"] else []
    return sentences[0] if sentences else item["conclusion"]


# each reading: a covered item -> the classifier's prompt (``core.verdict.messages`` with other parts)
VARIANTS = {
    "base": lambda it: verdict.messages(it["question"], it["conclusion"]),
    "reversed_shots": lambda it: verdict.messages(it["question"], it["conclusion"], shots=verdict.SHOTS[::-1]),
    "inverted": lambda it: verdict.messages(
        it["question"], it["conclusion"], INVERTED_SYSTEM, [(q, c, _INVERTED[a]) for q, c, a in verdict.SHOTS]
    ),
    "first_sentence": lambda it: verdict.messages(it["question"], first_sentence(it)),
}


def collect(llm: str, names: list[str]) -> list[dict]:
    """Each covered dev item's probabilities under each named reading (``fit_verdict.classify``, a slot per reading)."""

    def read(url: str, item: dict) -> dict:
        return {name: fit_verdict.probabilities(url, VARIANTS[name](item)) for name in names}

    return fit_verdict.classify(llm, "dev", read, parallel=len(names))[1]


def feature(p: dict, combo: tuple[str, ...]) -> float:
    """The combination's log-odds of "supports": the mean over its readings (an inverted reading counts negated)."""
    vals = [(-1.0 if name == "inverted" else 1.0) * verdict.log_odds_yes(p[name]) for name in combo]
    return sum(vals) / len(vals)


def _decide(p: dict, w: list[float], x: float, ref: str) -> str:
    """As ``core.verdict.decide``: supports at one half, else "no" or "uncertain", whichever ``ref`` found likelier."""
    z = w[0] + w[1] * x
    if 1.0 / (1.0 + math.exp(-max(min(z, 40.0), -40.0))) >= 0.5:
        return "supports"
    return "insufficient" if p[ref].get("uncertain", 0.0) > p[ref].get("no", 0.0) else "refutes"


def score(rows: list[dict], combo: tuple[str, ...], leave_one_out: bool = True) -> dict:
    """AUROC, in-sample and (``leave_one_out``) leave-one-out accuracy of one combination fitted on ``rows``."""
    xs = [[feature(r["p"], combo)] for r in rows]
    ys = [int(r["label"] == "supports") for r in rows]
    full = logistic(xs, ys)
    ref = combo[0] if combo[0] != "inverted" else "base"
    loo = 0 if leave_one_out else None
    for i, r in enumerate(rows if leave_one_out else []):
        w = logistic(xs[:i] + xs[i + 1 :], ys[:i] + ys[i + 1 :], steps=1500)
        loo += _decide(r["p"], w, xs[i][0], ref) == r["label"]
    ins = sum(_decide(r["p"], full, x[0], ref) == r["label"] for r, x in zip(rows, xs))
    pos = [x[0] for x, y in zip(xs, ys) if y]
    neg = [x[0] for x, y in zip(xs, ys) if not y]
    return {"auroc": round(auroc(pos, neg), 3), "in_sample": ins, "leave_one_out": loo, "n": len(rows)}


COMBOS = (("base",), ("reversed_shots",), ("inverted",), ("base", "reversed_shots"), ("base", "inverted"))
COMBOS += (("base", "reversed_shots", "inverted"), ("first_sentence",), ("base", "first_sentence"))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--llm", default="1.5b")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"which readings, of {', '.join(VARIANTS)}")
    ap.add_argument("--out", default="", help="the results file's name (default verdict_explore_<llm>)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    names = args.variants.split(",")
    rows = collect(args.llm, names)
    scores = {"+".join(c): score(rows, c) for c in COMBOS if set(c) <= set(names)}
    out = {"split": "dev", "llm": args.llm, "seconds": round(time.perf_counter() - t0, 1), "scores": scores}
    save(args.out or f"verdict_explore_{args.llm}", {**out, "variants": names, "rows": rows})
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
