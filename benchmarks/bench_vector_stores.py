"""LanceDB vs OpenSearch (local node, k-NN lucene HNSW) on the same ~100k real chunks, in one run.

Reuses the chunks and vectors that bench_scale.py left in its home (run that first). For each store:
indexing throughput (bulk load + index build), dense query latency p50/p99, recall@10 against exact
search (LanceDB flat search on the same vectors is the ground truth for both), and BM25 latency.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import bench_settings, percentile, resources_for, save  # noqa: E402
from core.index_schema import chunk_schema  # noqa: E402
from infra.local.opensearch_node import OpenSearchNode  # noqa: E402
from resources.lancedb_store import LanceDBVectorStore  # noqa: E402
from resources.opensearch_store import OpenSearchVectorStore  # noqa: E402


def load_rows(home: Path) -> pa.Table:
    res = resources_for(home)
    from assets.knowledge.state import CHUNKS, CHUNKS_TABLE, read_table, vectors_schema, vectors_table

    emb = res["embedder"]
    chunks = read_table(res["pipeline_state"], CHUNKS_TABLE, CHUNKS)
    vecs = read_table(
        res["pipeline_state"],
        vectors_table(emb.model_id),
        vectors_schema(emb.dimension),
        columns=["chunk_id", "vector"],
    )
    idx = pc.index_in(chunks.column("chunk_id"), value_set=vecs.column("chunk_id"))
    if idx.null_count:
        raise SystemExit(f"{idx.null_count} chunks have no cached vector: run benchmarks/bench_scale.py first")
    rows = chunks.append_column("vector", vecs.column("vector").take(idx))
    return rows.select(chunk_schema(emb.dimension).names).cast(chunk_schema(emb.dimension))


def measure(store, rows: pa.Table, queries: np.ndarray, truth: list[list[str]], words: list[str]) -> dict:
    t0 = time.perf_counter()
    store.create_generation("bench", rows.schema.field("vector").type.list_size)
    for start in range(0, rows.num_rows, 10_000):
        store.upsert("bench", rows.slice(start, 10_000))
    info = store.refresh_indexes("bench")
    load_s = time.perf_counter() - t0
    store.promote("bench")
    for q in queries[:20]:
        store.search_dense(q, 10)
    lat, recall = [], []
    for q, t in zip(queries, truth):
        s = time.perf_counter()
        hits = store.search_dense(q, 10)
        lat.append((time.perf_counter() - s) * 1000)
        recall.append(len({h.chunk_id for h in hits} & set(t)) / 10)
    bm = []
    for w in words:
        s = time.perf_counter()
        store.search_bm25(w, 10)
        bm.append((time.perf_counter() - s) * 1000)
    return {
        "rows": store.count("bench"),
        "index_seconds": round(load_s, 1),
        "rows_per_second": round(rows.num_rows / load_s, 1),
        "index": info,
        "dense_p50_ms": round(percentile(lat, 50), 2),
        "dense_p99_ms": round(percentile(lat, 99), 2),
        "recall@10_vs_exact": round(sum(recall) / len(recall), 4),
        "bm25_p50_ms": round(percentile(bm, 50), 2),
        "bm25_p99_ms": round(percentile(bm, 99), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", default=None)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--port", type=int, default=9250)
    args = ap.parse_args()
    base = bench_settings(Path("/nonexistent"))
    home = Path(args.home) if args.home else base.cache / "bench-scale"
    rows = load_rows(home)
    rng = random.Random(3)
    picks = rng.sample(range(rows.num_rows), args.queries)
    res = resources_for(home)
    runtime = res["embedder"].runtime()
    queries = runtime.embed([rows.column("title")[i].as_py() for i in picks])
    words = [rows.column("title")[i].as_py() for i in picks[:100]]
    tmp = base.cache / "bench-vector-stores"
    lance = LanceDBVectorStore(uri=str(tmp / f"lance-{uuid.uuid4().hex[:6]}"), ann_min_rows=10_000)
    # ground truth: exact cosine search over the same vectors
    lance.create_generation("truth", rows.schema.field("vector").type.list_size)
    for start in range(0, rows.num_rows, 20_000):
        lance.upsert("truth", rows.slice(start, 20_000))
    truth = [[h.chunk_id for h in lance.search_dense(q, 10, generation="truth", exact=True)] for q in queries]
    out = {"chunks": rows.num_rows, "queries": len(queries)}
    out["lancedb"] = measure(lance, rows, queries, truth, words)
    print("lancedb", out["lancedb"], flush=True)
    node = OpenSearchNode(tmp / "opensearch", args.port, heap="2g").start(timeout_s=120)
    try:
        os_store = OpenSearchVectorStore(hosts=node.url, index_prefix=f"bench{uuid.uuid4().hex[:6]}")
        out["opensearch"] = {
            **measure(os_store, rows, queries, truth, words),
            "node_startup_seconds": round(node.startup_seconds, 1),
        }
        print("opensearch", out["opensearch"], flush=True)
    finally:
        node.stop()
    print("saved", save("vector_stores", out))


if __name__ == "__main__":
    main()
