"""Fit core.verdict's calibration on the dev split, per model, into ``core/verdict_fit.json``:

    python benchmarks/fit_verdict.py --llm 1.5b [--default]

For each covered dev question (hand-labelled supports / refutes / insufficient), the model reads the conclusions
section of the abstract the question was written from, with ``core.verdict``'s prompt, and its probabilities of
yes / no / uncertain at the first token are kept. A logistic function of the log-odds of "yes" is fitted to the label
"supports"; reported: the model's own word, in-sample and leave-one-out accuracy of the calibrated verdict (the
three labels, and supports against the rest), and the AUROC of the model's log-odds. The probabilities are saved in
``benchmarks/results/verdict_dev_<llm>.json``. Only the dev split is read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import eval_sets  # noqa: E402
from benchmarks.common import save  # noqa: E402
from benchmarks.fit_answerability import logistic  # noqa: E402
from core import verdict  # noqa: E402
from core.evaluation import conclusions_of  # noqa: E402
from core.gguf import get_model  # noqa: E402
from core.relevance import auroc  # noqa: E402
from core.text_formats import parse_pubmed_article  # noqa: E402
from infra.local.llama_server import LlamaServer, resolve_binary  # noqa: E402


def covered_items(cache: Path, split: str = "dev") -> list[dict]:
    """The split's covered questions, each with what the classifier reads of its abstract (``core.verdict.reading``:
    its conclusions, or the end of its last section when none is labelled). Only ``bench_answers.py`` asks for test."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from core.corpus import ARTICLE_TABLE

    items = eval_sets.covered(split)
    table = pq.read_table(cache / "pubmed" / ARTICLE_TABLE)
    wanted = pa.array([r["pmid"] for r in items], pa.string())
    xml = {r["pmid"]: r["xml"] for r in table.filter(pc.is_in(table.column("pmid"), value_set=wanted)).to_pylist()}
    out = []
    for r in items:
        doc = parse_pubmed_article(ET.fromstring(xml[r["pmid"]]), r["pmid"])
        labelled = conclusions_of([(s.label, s.text) for s in doc.sections])
        reading = verdict.reading(labelled, doc.sections[-1].text)
        out.append({**r, "conclusion": reading, "labelled": bool(labelled.strip())})
    return out


def probabilities(url: str, messages: list[dict]) -> dict[str, float]:
    """P(yes), P(no), P(uncertain) at the first token the model writes after ``messages``."""
    body = {
        "model": "fit",
        "messages": messages,
        "max_tokens": 1,
        "temperature": 0.0,
        "logprobs": True,
        "top_logprobs": 20,
    }
    req = urllib.request.Request(
        f"{url}/v1/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=300) as r:
        choice = json.load(r)["choices"][0]
    first = (choice.get("logprobs") or {}).get("content") or [{}]
    return verdict.choice_probabilities(first[0].get("top_logprobs") or [], choice["message"]["content"])


def _accuracy(rows: list[dict], fit_of) -> dict:
    """Share right, three labels and supports-vs-rest; ``fit_of(i)`` is the fit that scores row i."""
    three = two = 0
    for i, r in enumerate(rows):
        d = verdict.decide(r["p"], fit_of(i))
        three += d.verdict == r["label"]
        two += (d.verdict == "supports") == (r["label"] == "supports")
    return {"three_labels": round(three / len(rows), 3), "supports_vs_rest": round(two / len(rows), 3)}


def fit_rows(rows: list[dict], model: str, leave_one_out: bool = True) -> dict:
    """The fit of one model from its dev probabilities; ``leave_one_out``: also its leave-one-out accuracy (77 refits)."""
    xs = [[verdict.log_odds_yes(r["p"])] for r in rows]
    ys = [int(r["label"] == "supports") for r in rows]
    full = verdict.Fit(logistic(xs, ys))

    def left_out(i: int) -> verdict.Fit:
        return verdict.Fit(logistic(xs[:i] + xs[i + 1 :], ys[:i] + ys[i + 1 :], steps=1500))

    said = sum(verdict.decide(r["p"], full).said == r["label"] for r in rows)
    pos = [x[0] for x, y in zip(xs, ys) if y]
    neg = [x[0] for x, y in zip(xs, ys) if not y]
    return {
        "version": verdict.VERDICT_VERSION,
        "weights": [round(v, 4) for v in full.weights],
        "features": ["bias", "log-odds of yes"],
        "fitted_on": {
            "split": "dev",
            "questions": len(rows),
            "labels": {k: sum(r["label"] == k for r in rows) for k in ("supports", "refutes", "insufficient")},
            "llm": model,
            "model_word_agreement": round(said / len(rows), 3),
            "auroc_log_odds": round(auroc(pos, neg), 3),
            "in_sample": _accuracy(rows, lambda i: full),
            "leave_one_out": _accuracy(rows, left_out) if leave_one_out else None,
        },
    }


def _read(url: str, item: dict) -> dict[str, float]:
    return probabilities(url, verdict.messages(item["question"], item["conclusion"]))


def classify(llm: str, split: str = "dev", read=_read, parallel: int = 1) -> tuple[str, list[dict]]:
    """The served model's name, and its probabilities on each of the split's covered questions (a llama-server of
    its own, stopped after). ``read(url, item)``: what is kept as a row's ``p`` (the prompt in use by default)."""
    cache = Path(os.environ.get("AGENTIC_CACHE", Path.home() / ".cache" / "agentic"))
    spec = get_model(llm)
    path = cache / "models" / "llm" / spec.file_name
    binary, env, _ = resolve_binary(cache, path)
    server = LlamaServer(binary, env, path, spec.served_name, ctx_size=4096, parallel=parallel)
    server.start()
    rows = []
    try:
        for item in covered_items(cache, split):
            rows.append({"id": item["id"], "label": item["label"], "p": read(server.url, item)})
    finally:
        server.stop()
    return spec.served_name, rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--llm", default="1.5b")
    ap.add_argument("--default", action="store_true", help="the fit used for models that have none")
    args = ap.parse_args()
    t0 = time.perf_counter()
    model, rows = classify(args.llm)
    spec = get_model(args.llm)
    out = fit_rows(rows, model)
    out["fitted_on"]["seconds"] = round(time.perf_counter() - t0, 1)
    fits = json.loads(verdict.FIT_PATH.read_text()) if verdict.FIT_PATH.exists() else None
    fits = fits or {"default": spec.served_name, "fits": {}}
    fits["fits"][spec.served_name] = out
    if args.default:
        fits["default"] = spec.served_name
    verdict.FIT_PATH.write_text(json.dumps(fits, indent=1) + "\n")
    save(f"verdict_dev_{args.llm}", {"model": spec.served_name, "split": "dev", "fit": out, "rows": rows})
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
