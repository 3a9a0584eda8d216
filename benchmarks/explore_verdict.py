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
        out += [{"role": "user", "content": turn(q, c)}, {"role": "assistant", "content": a}]
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


VARIANTS = {"base": base, "reversed_shots": reversed_shots, "inverted": inverted}


def probabilities(url: str, messages: list[dict]) -> dict[str, float]:
    body = {"model": "x", "messages": messages, "max_tokens": 1, "temperature": 0.0, "logprobs": True}
    body["top_logprobs"] = 20
    req = urllib.request.Request(
        f"{url}/v1/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=300) as r:
        choice = json.load(r)["choices"][0]
    first = (choice.get("logprobs") or {}).get("content") or [{}]
    return verdict.choice_probabilities(first[0].get("top_logprobs") or [], choice["message"]["content"])


def collect(llm: str) -> list[dict]:
    cache = Path(os.environ.get("AGENTIC_CACHE", Path.home() / ".cache" / "agentic"))
    spec = get_model(llm)
    path = cache / "models" / "llm" / spec.file_name
    binary, env, _ = resolve_binary(cache, path)
    server = LlamaServer(binary, env, path, spec.served_name, ctx_size=4096, parallel=len(VARIANTS))
    server.start()
    rows = []
    try:
        for item in covered_items(cache, "dev"):
            p = {
                name: probabilities(server.url, make(item["question"], item["conclusion"]))
                for name, make in VARIANTS.items()
            }
            rows.append({"id": item["id"], "label": item["label"], "p": p})
    finally:
        server.stop()
    return rows


def feature(p: dict, combo: tuple[str, ...]) -> float:
    """The combination's log-odds of "supports": the mean over its readings (an inverted reading counts negated)."""
    vals = [(-1.0 if name == "inverted" else 1.0) * verdict.log_odds_yes(p[name]) for name in combo]
    return sum(vals) / len(vals)


def _decide(p: dict, w: list[float], x: float) -> str:
    z = w[0] + w[1] * x
    if 1.0 / (1.0 + math.exp(-max(min(z, 40.0), -40.0))) >= 0.5:
        return "supports"
    return "insufficient" if p["base"].get("uncertain", 0.0) > p["base"].get("no", 0.0) else "refutes"


def score(rows: list[dict], combo: tuple[str, ...]) -> dict:
    xs = [[feature(r["p"], combo)] for r in rows]
    ys = [int(r["label"] == "supports") for r in rows]
    full = logistic(xs, ys)
    loo = 0
    for i, r in enumerate(rows):
        w = logistic(xs[:i] + xs[i + 1 :], ys[:i] + ys[i + 1 :], steps=1500)
        loo += _decide(r["p"], w, xs[i][0]) == r["label"]
    ins = sum(_decide(r["p"], full, x[0]) == r["label"] for r, x in zip(rows, xs))
    pos = [x[0] for x, y in zip(xs, ys) if y]
    neg = [x[0] for x, y in zip(xs, ys) if not y]
    return {"auroc": round(auroc(pos, neg), 3), "in_sample": ins, "leave_one_out": loo, "n": len(rows)}


COMBOS = (("base",), ("reversed_shots",), ("inverted",), ("base", "reversed_shots"), ("base", "inverted"))
COMBOS += (("base", "reversed_shots", "inverted"),)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--llm", default="1.5b")
    args = ap.parse_args()
    t0 = time.perf_counter()
    rows = collect(args.llm)
    scores = {"+".join(c): score(rows, c) for c in COMBOS}
    out = {"split": "dev", "llm": args.llm, "seconds": round(time.perf_counter() - t0, 1), "scores": scores}
    save(f"verdict_explore_{args.llm}", {**out, "rows": rows})
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
