"""Try other readings of the verdict beside ``core.verdict``'s, on the dev split only, before changing the product:

    python benchmarks/explore_verdict.py --llm 1.5b

Each covered dev question's conclusion (``fit_verdict.covered_items``) is read with every prompt in ``VARIANTS``
(one constrained token each, on a llama-server of its own). Then each combination of readings is scored as the
product would use it: a logistic function of the combined log-odds, fitted on dev, with leave-one-out accuracy over
the three labels and the AUROC of supports against the rest. Writes ``results/verdict_explore_<llm>.json``; changes
nothing in ``core``. The variants were written before this ran, from how a small model errs (it leans to "yes" on
any conclusion about the question's subject, and few-shot prompts lean to the last examples' labels), not from any
item.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import save  # noqa: E402
from benchmarks.fit_answerability import logistic  # noqa: E402
from benchmarks.fit_verdict import covered_items  # noqa: E402
from core import verdict  # noqa: E402
from core.chunking import split_sentences  # noqa: E402
from core.gguf import get_model  # noqa: E402
from core.relevance import auroc  # noqa: E402
from infra.local.llama_server import LlamaServer, resolve_binary  # noqa: E402

# the inverted question: "does it say no?" A model that leans to "yes" leans here to the other side, so the two
# readings' biases pull apart, and their difference keeps what they agree on
INVERTED_SYSTEM = (
    "You read a study's conclusion and a question. Say whether the conclusion answers the question NO: it found no "
    "effect, no difference, similar or comparable results, no association, or the opposite of what the question "
    "asks. Reply with one word: yes (it answers no) or no (it answers yes, or it is uncertain)."
)
_INVERTED = {"yes": "no", "no": "yes", "uncertain": "no"}


def _shots(system: str, shots, turn) -> list[dict]:
    out = [{"role": "system", "content": system}]
    for q, c, a in shots:
        out += [
            {"role": "user", "content": turn(q, c)},
            {"role": "assistant", "content": a},
        ]
    return out


def base(question: str, conclusion: str) -> list[dict]:
    return verdict.messages(question, conclusion)


def reversed_shots(question: str, conclusion: str) -> list[dict]:
    out = _shots(verdict.SYSTEM, tuple(reversed(verdict.SHOTS)), verdict._turn)
    return out + [{"role": "user", "content": verdict._turn(question, conclusion)}]


def inverted(question: str, conclusion: str) -> list[dict]:
    shots = tuple((q, c, _INVERTED[a]) for q, c, a in verdict.SHOTS)
    out = _shots(INVERTED_SYSTEM, shots, verdict._turn)
    return out + [{"role": "user", "content": verdict._turn(question, conclusion)}]


def first_sentence(question: str, conclusion: str, labelled: bool = True) -> list[dict]:
    """The labelled conclusions' first sentence alone: it states the main finding, and what follows often hedges it
    ("However, results varied ..."), which a small model reads as a "no". An unlabelled reading is kept whole."""
    sentences = split_sentences(conclusion) if labelled else []
    return verdict.messages(question, sentences[0] if sentences else conclusion)


VARIANTS = {
    "base": base,
    "reversed_shots": reversed_shots,
    "inverted": inverted,
    "first_sentence": first_sentence,
}


def probabilities(url: str, messages: list[dict]) -> dict[str, float]:
    body = {
        "model": "x",
        "messages": messages,
        "max_tokens": 1,
        "temperature": 0.0,
        "logprobs": True,
    }
    body["top_logprobs"] = 20
    req = urllib.request.Request(
        f"{url}/v1/chat/completions",
        json.dumps(body).encode(),
        {"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=300) as r:
        choice = json.load(r)["choices"][0]
    first = (choice.get("logprobs") or {}).get("content") or [{}]
    return verdict.choice_probabilities(first[0].get("top_logprobs") or [], choice["message"]["content"])


def _messages(name: str, item: dict) -> list[dict]:
    if name == "first_sentence":
        return first_sentence(item["question"], item["conclusion"], item["labelled"])
    return VARIANTS[name](item["question"], item["conclusion"])


def collect(llm: str, names: list[str]) -> list[dict]:
    cache = Path(os.environ.get("AGENTIC_CACHE", Path.home() / ".cache" / "agentic"))
    spec = get_model(llm)
    path = cache / "models" / "llm" / spec.file_name
    binary, env, _ = resolve_binary(cache, path)
    server = LlamaServer(binary, env, path, spec.served_name, ctx_size=4096, parallel=len(names))
    server.start()
    rows = []
    try:
        for item in covered_items(cache, "dev"):
            p = {name: probabilities(server.url, _messages(name, item)) for name in names}
            rows.append({"id": item["id"], "label": item["label"], "p": p})
    finally:
        server.stop()
    return rows


def feature(p: dict, combo: tuple[str, ...]) -> float:
    """The combination's log-odds of "supports": the mean over its readings (an inverted reading counts negated)."""
    vals = [(-1.0 if name == "inverted" else 1.0) * verdict.log_odds_yes(p[name]) for name in combo]
    return sum(vals) / len(vals)


def _decide(p: dict, w: list[float], x: float, ref: str) -> str:
    """As ``core.verdict.decide``: supports at one half; else "no" or "uncertain" as the ``ref`` reading found likelier."""
    z = w[0] + w[1] * x
    if 1.0 / (1.0 + math.exp(-max(min(z, 40.0), -40.0))) >= 0.5:
        return "supports"
    return "insufficient" if p[ref].get("uncertain", 0.0) > p[ref].get("no", 0.0) else "refutes"


def score(rows: list[dict], combo: tuple[str, ...]) -> dict:
    xs = [[feature(r["p"], combo)] for r in rows]
    ys = [int(r["label"] == "supports") for r in rows]
    full = logistic(xs, ys)
    ref = combo[0] if combo[0] != "inverted" else "base"
    loo = 0
    for i, r in enumerate(rows):
        w = logistic(xs[:i] + xs[i + 1 :], ys[:i] + ys[i + 1 :], steps=1500)
        loo += _decide(r["p"], w, xs[i][0], ref) == r["label"]
    ins = sum(_decide(r["p"], full, x[0], ref) == r["label"] for r, x in zip(rows, xs))
    pos = [x[0] for x, y in zip(xs, ys) if y]
    neg = [x[0] for x, y in zip(xs, ys) if not y]
    return {
        "auroc": round(auroc(pos, neg), 3),
        "in_sample": ins,
        "leave_one_out": loo,
        "n": len(rows),
    }


COMBOS = (
    ("base",),
    ("reversed_shots",),
    ("inverted",),
    ("base", "reversed_shots"),
    ("base", "inverted"),
)
COMBOS += (
    ("base", "reversed_shots", "inverted"),
    ("first_sentence",),
    ("base", "first_sentence"),
)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--llm", default="1.5b")
    ap.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"which readings, of {', '.join(VARIANTS)}",
    )
    ap.add_argument(
        "--out",
        default="",
        help="the results file's name (default verdict_explore_<llm>)",
    )
    args = ap.parse_args()
    t0 = time.perf_counter()
    names = args.variants.split(",")
    rows = collect(args.llm, names)
    scores = {"+".join(c): score(rows, c) for c in COMBOS if set(c) <= set(names)}
    out = {
        "split": "dev",
        "llm": args.llm,
        "seconds": round(time.perf_counter() - t0, 1),
        "scores": scores,
    }
    save(
        args.out or f"verdict_explore_{args.llm}",
        {**out, "variants": names, "rows": rows},
    )
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
