"""Build the harder golden set (``assets/evaluation/data/golden_hard.jsonl``) from the corpus.

    python benchmarks/build_hard_set.py [--supports 110] [--negatives 110] [--llm 1.5b] [--base-url URL]

Every abstract of the 33,272 with a CONCLUSIONS section gets a claim sentence and its polarity from code
(``core.hard_set.claim_of``);
candidates are taken in a stable hash order, up to ``--supports`` supporting and ``--negatives`` refuting or
insufficient ones; the local LLM (its own llama-server on 127.0.0.1, or ``--base-url``) writes one positive yes/no
question per claim, and code keeps only questions that pass ``question_problems`` (about the claim, yes/no, no
negation, not the title's words). The output file is versioned by its rules, size and digest and committed; the
``eval_questions_hard`` asset reads it and keeps the items whose documents are indexed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OUT = Path(__file__).resolve().parents[1] / "assets" / "evaluation" / "data" / "golden_hard.jsonl"


def candidates(table_path: Path, want: dict[str, int]) -> list[tuple[str, str, str, str, str, str]]:
    """(order, polarity, doc_key, title, conclusion, claim) for the first ``want[polarity]`` (x2 for rejects) per class."""
    import heapq

    import pyarrow.parquet as pq

    from core.corpus import document_bytes, document_key
    from core.documents import parse_pubmed_xml
    from core.evaluation import conclusions_of
    from core.hard_set import claim_of, order_key

    heaps: dict[str, list] = {"supports": [], "negative": []}
    pf = pq.ParquetFile(table_path)
    for batch in pf.iter_batches(batch_size=2000, columns=["pmid", "xml"]):  # bounded: one batch + the heaps
        for pmid, xml in zip(batch.column("pmid").to_pylist(), batch.column("xml").to_pylist()):
            key = document_key(pmid)
            doc = parse_pubmed_xml(key, document_bytes(xml))
            conclusion = conclusions_of((s.label, s.text) for s in doc.sections)
            if not (60 <= len(conclusion) <= 700) or len(doc.title.split()) < 4:
                continue
            found = claim_of(conclusion)
            if found is None:
                continue
            claim, polarity = found
            group = "supports" if polarity == "supports" else "negative"
            item = (order_key(key), polarity, key, doc.title, conclusion, claim)
            heap = heaps[group]
            limit = 2 * want[group]
            # keep the `limit` smallest order keys: a max-heap by negated key
            entry = (_neg(item[0]), item)
            if len(heap) < limit:
                heapq.heappush(heap, entry)
            elif entry > heap[0]:
                heapq.heapreplace(heap, entry)
    out = []
    for heap in heaps.values():
        out += sorted(item for _, item in heap)
    return sorted(out)


def _neg(hexkey: str) -> str:
    return "".join("0123456789abcdef"[15 - int(c, 16)] for c in hexkey)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--supports", type=int, default=110)
    ap.add_argument("--negatives", type=int, default=110)
    ap.add_argument("--llm", default="1.5b")
    ap.add_argument("--base-url", default="")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()

    import openai

    from core.corpus import ARTICLE_TABLE
    from core.hard_set import (
        QUESTION_SCHEMA,
        HardItem,
        composition,
        question_messages,
        question_problems,
        set_version,
        title_overlap,
    )
    from pipelines.settings import load_settings

    settings = load_settings()
    server = None
    base_url = args.base_url
    if not base_url:
        from core.gguf import get_model
        from infra.local.llama_server import LlamaServer, resolve_binary

        path = settings.cache / "models" / "llm" / get_model(args.llm).file_name
        binary, env, _ = resolve_binary(settings.cache, path)
        server = LlamaServer(binary, env, path, "chat", ctx_size=4096, parallel=1)
        server.start()
        base_url = f"{server.url}/v1"
    client = openai.OpenAI(base_url=base_url, api_key="local", max_retries=1)
    want = {"supports": args.supports, "negative": args.negatives}
    t0 = time.perf_counter()
    pool = candidates(settings.pubmed_dir / ARTICLE_TABLE, want)
    print(f"{len(pool)} candidates in {time.perf_counter() - t0:.0f}s", flush=True)
    kept: dict[str, list[HardItem]] = {"supports": [], "negative": []}
    rejected = 0
    try:
        for order, polarity, key, title, conclusion, claim in pool:
            group = "supports" if polarity == "supports" else "negative"
            if len(kept[group]) >= want[group]:
                continue
            r = client.chat.completions.create(
                model="chat",
                messages=question_messages(claim, title),
                max_tokens=80,
                temperature=0.2,
                response_format={"type": "json_schema", "json_schema": {"name": "q", "schema": QUESTION_SCHEMA}},
            )
            try:
                question = str(json.loads(r.choices[0].message.content or "{}").get("question", "")).strip()
            except ValueError:
                question = ""
            problems = question_problems(question, title, claim, polarity) if question else ["no question"]
            if problems:
                rejected += 1
                print(f"  rejected ({'; '.join(problems)}): {question[:100]}", flush=True)
                continue
            kept[group].append(
                HardItem(
                    order[:16],
                    question,
                    polarity,
                    key,
                    title,
                    conclusion,
                    claim,
                    round(title_overlap(question, title), 3),
                )
            )
            done = sum(len(v) for v in kept.values())
            if done % 10 == 0:
                print(f"{done} kept, {rejected} rejected, {time.perf_counter() - t0:.0f}s", flush=True)
    finally:
        if server is not None:
            server.stop()
    items = sorted(kept["supports"] + kept["negative"], key=lambda i: i.id)
    version = set_version(items)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as f:
        f.write(json.dumps({"version": version, "composition": composition(items), "llm": args.llm}) + "\n")
        for item in items:
            f.write(json.dumps(item.as_row()) + "\n")
    print(json.dumps({"version": version, "composition": composition(items), "rejected": rejected}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
