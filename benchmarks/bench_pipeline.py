"""Pipeline throughput vs the raw embedder, vs one text per call, and retrieval quality, in one run.

* pipeline: chunks/s from parse to index (document_inventory .. vector_index, checks included) on a fresh home;
* raw: the same embedder runtime on the same chunk texts, batched, in one process with all cores;
* per call: the same runtime, one text per call (the reference design's method), on a subset;
* quality: each article's title as the query; recall@10 / nDCG@10 / MRR@10 of its own article, dense vs BM25 vs hybrid.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assets.knowledge.state import CHUNKS, CHUNKS_TABLE, read_table  # noqa: E402
from benchmarks.common import bench_settings, materialize, resources_for, retrieval_metrics, save  # noqa: E402
from core.access import FULL_SCOPE  # noqa: E402
from core.corpus import ARTICLE_TABLE, document_key, load_sample  # noqa: E402
from core.documents import parse_document  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--per-call-sample", type=int, default=300)
    ap.add_argument("--queries", type=int, default=1000)
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="agentic-bench-"))
    res = resources_for(home)
    base = bench_settings(home)
    t0 = time.perf_counter()
    res["ray_cluster"].ensure()
    ray_start = time.perf_counter() - t0
    docs = load_sample(base.pubmed_dir / ARTICLE_TABLE, args.docs)
    for pmid, data in docs:
        res["document_store"].put(document_key(pmid), data)

    wall, meta = materialize(res)
    texts = read_table(res["pipeline_state"], CHUNKS_TABLE, CHUNKS, columns=["text"]).column("text").to_pylist()
    n = len(texts)
    pipeline_cps = n / wall

    runtime = res["embedder"].build(threads=os.cpu_count())
    runtime.embed(texts[:32])
    t = time.perf_counter()
    runtime.embed(texts)
    raw_cps = n / (time.perf_counter() - t)

    sample = texts[: args.per_call_sample]
    t = time.perf_counter()
    for text in sample:
        runtime.embed([text])
    per_call_cps = len(sample) / (time.perf_counter() - t)

    out = {
        "documents": len(docs),
        "chunks": n,
        "ray_cluster_start_seconds_excluded": round(ray_start, 1),
        "pipeline": {
            "wall_seconds": round(wall, 1),
            "chunks_per_second": round(pipeline_cps, 1),
            "step_seconds": {k: v.get("seconds") for k, v in meta.items()},
            "ray_embed_chunks_per_second": meta["chunk_embeddings"]["chunks_per_second"],
        },
        "raw_embedder_chunks_per_second": round(raw_cps, 1),
        "per_call_chunks_per_second": round(per_call_cps, 1),
        "ratio_pipeline_vs_raw": round(pipeline_cps / raw_cps, 3),
        "ratio_ray_embed_step_vs_raw": round(meta["chunk_embeddings"]["chunks_per_second"] / raw_cps, 3),
        "ratio_pipeline_vs_per_call": round(pipeline_cps / per_call_cps, 2),
        "ratio_raw_vs_per_call": round(raw_cps / per_call_cps, 2),
    }
    print({k: v for k, v in out.items() if k != "pipeline"}, flush=True)

    # Retrieval quality: title -> its own abstract.
    picks = docs[: args.queries]
    titles = [parse_document("q", d).title for _, d in picks]
    relevant = [document_key(p) for p, _ in picks]
    quality = {}
    for mode in ("dense", "bm25", "hybrid"):
        t = time.perf_counter()
        ranked = [[h.doc_key for h in res["retriever"].search(q, k=30, mode=mode, scope=FULL_SCOPE)] for q in titles]
        ms = (time.perf_counter() - t) / len(titles) * 1000
        quality[mode] = {**retrieval_metrics(ranked, relevant, 10), "mean_ms": round(ms, 2)}
    out["title_to_abstract"] = quality
    print(quality, flush=True)
    print("saved", save("pipeline", out))


if __name__ == "__main__":
    main()
