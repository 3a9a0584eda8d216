"""llama-server's speculative decoding on the structured answer call, against none (dev questions only).

For each of the first ``--items`` covered dev questions: the answer call as the service makes it (its system text,
task, grammar, max tokens and temperature) over three sources, the question's own abstract and two others drawn with a
fixed seed, sent one at a time to one llama-server (the 1.5B model, 2 threads, one slot) per variant. Recorded per
variant: wall time, llama-server's own prompt and decode times and tokens, drafted and accepted tokens, and how many
answers came out the same text as the first variant's (sampling at the service's temperature, 0.1, so not all do).
The variants tried are the defaults; the one chosen is ``infra.local.llama_server.SPECULATIVE["ngram"]``.
Result: benchmarks/results/speculative_1.5b.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.answers import AgentConfig  # noqa: E402
from benchmarks import eval_sets  # noqa: E402
from benchmarks.common import save  # noqa: E402
from infra.local.llama_server import SPECULATIVE  # noqa: E402

VARIANTS = {
    "none": [],
    "simple_n3m16": SPECULATIVE["ngram"],  # the one chosen: 3-token lookups drafting up to 16
    "mapk_n3m16": ["--spec-type", "ngram-map-k", "--spec-ngram-map-k-size-n", "3", "--spec-ngram-map-k-size-m", "16"],
    "simple_n2m8": ["--spec-type", "ngram-simple", "--spec-ngram-simple-size-n", "2", "--spec-ngram-simple-size-m", "8"],
    "simple_n4m8": ["--spec-type", "ngram-simple", "--spec-ngram-simple-size-n", "4", "--spec-ngram-simple-size-m", "8"],
    "simple_n3m32": ["--spec-type", "ngram-simple", "--spec-ngram-simple-size-n", "3", "--spec-ngram-simple-size-m", "32"],
}  # fmt: skip


def requests(n: int, table_path: Path) -> list[dict]:
    """The answer call's request bodies for the first ``n`` covered dev questions."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from agents.prompts import answer_messages
    from agents.sources import Source
    from core import answering
    from core.grammar import schema_to_gbnf
    from core.text_formats import parse_pubmed_article

    items = eval_sets.covered("dev")[:n]
    table = pq.read_table(table_path)
    others = random.Random(0).sample(table.column("pmid").to_pylist(), 2 * n)
    wanted = pa.array([i["pmid"] for i in items] + others)
    rows = {r["pmid"]: r["xml"] for r in table.filter(pc.is_in(table.column("pmid"), value_set=wanted)).to_pylist()}
    del table

    def source(k: int, pmid: str) -> Source:
        doc = parse_pubmed_article(ET.fromstring(rows[pmid]), pmid)
        return Source(k, f"PMID:{pmid}", doc.title, " ".join(s.text for s in doc.sections)[:2000], "knowledge_base")

    cfg, out = AgentConfig(), []
    # a yes/no question whose first source is judged to address it: the answer call the service then makes
    grammar = schema_to_gbnf(answering.answer_schema(3, True, cfg.max_quotes, cfg.max_sentences, [1], None))
    for k, item in enumerate(items):
        sources = [source(j, p) for j, p in enumerate([item["pmid"], others[2 * k], others[2 * k + 1]], 1)]
        out.append({
            "messages": answer_messages(item["question"], sources, True, cfg.max_quotes, [1]),
            "max_tokens": cfg.answer_max_tokens, "temperature": cfg.temperature, "grammar": grammar,
        })  # fmt: skip
    return out


def run_variant(
    name: str, extra: list[str], bodies: list[dict], model: Path, cache: Path, logs: Path, slots: int = 1
) -> list[dict]:
    from infra.local.llama_server import LlamaServer, resolve_binary

    binary, env, _origin = resolve_binary(cache, probe_model=model, threads=2)

    class Server(LlamaServer):
        def command(self) -> list[str]:
            return super().command() + extra

    server = Server(
        binary, env, model, "m", ctx_size=4096 * slots, parallel=slots, threads=2, log_path=logs / f"{name}.log"
    )
    server.start(timeout_s=180)
    try:
        out = []
        for body in bodies:
            t0 = time.perf_counter()
            reply = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=600).json()
            text = reply["choices"][0]["message"]["content"]
            out.append({"s": round(time.perf_counter() - t0, 2), "timings": reply.get("timings"), "text": text})
        return out
    finally:
        server.stop()


def summary(results: dict[str, list[dict]]) -> dict:
    base = next(iter(results.values()))
    out = {}
    for name, res in results.items():
        t = [r["timings"] for r in res]
        decode_ms, decoded = sum(x["predicted_ms"] for x in t), sum(x["predicted_n"] for x in t)
        out[name] = {
            "wall_s": round(sum(r["s"] for r in res), 1),
            "decode_ms": round(decode_ms),
            "decoded_tokens": decoded,
            "decode_tokens_per_s": round(1000 * decoded / decode_ms, 2),
            "prompt_ms": round(sum(x["prompt_ms"] for x in t)),
            "drafted": sum(x.get("draft_n", 0) for x in t),
            "accepted": sum(x.get("draft_n_accepted", 0) for x in t),
            "same_text_as_first": sum(a["text"] == b["text"] for a, b in zip(base, res)),
        }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=6)
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"of {','.join(VARIANTS)}; the first is the base")
    ap.add_argument("--slots", type=int, default=1, help="llama-server slots, 4096 tokens each (the stack runs 4)")
    ap.add_argument("--out", default="speculative_1.5b")
    args = ap.parse_args()
    from core.corpus import ARTICLE_TABLE
    from core.gguf import get_model
    from pipelines.settings import load_settings

    settings = load_settings()  # the user cache setup filled (AGENTIC_CACHE): the model and the article table
    cache = settings.cache
    model = cache / "models" / "llm" / get_model("1.5b").file_name
    bodies = requests(args.items, settings.pubmed_dir / ARTICLE_TABLE)
    logs = Path(tempfile.mkdtemp(prefix="bench-speculative-"))
    results = {}
    for name in args.variants.split(","):
        results[name] = run_variant(name, VARIANTS[name], bodies, model, cache, logs, args.slots)
        print(name, summary({name: results[name]})[name], flush=True)
    out = {"items": args.items, "split": "dev", "slots": args.slots, "variants": {k: VARIANTS[k] for k in results}}
    out["summary"], out["answers"] = summary(results), results
    print(json.dumps(out["summary"], indent=1), "\n->", save(args.out, out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
