"""The cost of the read-scope filter on query latency (and recall), LanceDB and OpenSearch, in one run.

Rows: real PubMed chunks embedded by the real ONNX model (``--docs`` abstracts), repeated ``--copies`` times with a
little noise on the vectors so the table reaches a size where the ANN index is used (the text, hence BM25, repeats).
Each document gets one group of 50 (``g00``..``g49``) and ``public`` for one in five. Scopes measured: none (the
admin), public (~20% of rows), one group (~2%), three groups (~6%). For each: dense ANN p50/p99 and recall@10 against
an exact search under the same filter, BM25 p50, and the ratio to the unfiltered latency.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import bench_settings, machine, percentile, save  # noqa: E402
from core.access import ReadScope, index_groups  # noqa: E402
from core.chunking import Chunker  # noqa: E402
from core.corpus import ARTICLE_TABLE, chunk_row, load_sample  # noqa: E402
from core.documents import parse_document  # noqa: E402
from core.index_schema import chunk_schema  # noqa: E402
from resources.embedder import EmbedderResource  # noqa: E402
from resources.lancedb_store import LanceDBVectorStore  # noqa: E402
from resources.vector_store import ACCESS_FILTER  # noqa: E402

SCOPES = {
    "admin (no filter)": ReadScope.of({"*"}),
    "public (~20%)": ReadScope.of({"public"}),
    "one group (~2%)": ReadScope.of({"g07"}),
    "three groups (~6%)": ReadScope.of({"g01", "g02", "g03"}),
}


def build_rows(settings, docs: int, copies: int, seed: int = 5) -> tuple[pa.Table, EmbedderResource]:
    embedder = EmbedderResource(tokenizer_path=str(settings.model_dir / "tokenizer.json"))
    runtime = embedder.runtime()
    chunker = Chunker(embedder.count_tokens)
    rng = random.Random(seed)
    out = []
    for pmid, data in load_sample(settings.pubmed_dir / ARTICLE_TABLE, docs):
        doc = parse_document(f"pubmed/{pmid}.xml", data)
        groups = [f"g{rng.randrange(50):02d}"] + (["public"] if rng.random() < 0.2 else [])
        for c in chunker.chunk(doc.sections):
            out.append({**chunk_row(pmid, doc, c), "groups": index_groups(groups)})
    vecs = runtime.embed([r["text"] for r in out])
    nrng = np.random.default_rng(seed)
    rows = []
    for copy in range(copies):
        noisy = vecs + (nrng.normal(0, 0.02, vecs.shape).astype(np.float32) if copy else 0)
        noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
        for r, v in zip(out, noisy):
            rows.append({**r, "chunk_id": f"{r['chunk_id']}-c{copy}", "doc_key": f"{r['doc_key']}#{copy}", "vector": v})
    return pa.Table.from_pylist(rows, schema=chunk_schema(embedder.dimension)), embedder


def measure(store, rows: pa.Table, queries: np.ndarray, words: list[str]) -> dict:
    dim = rows.schema.field("vector").type.list_size
    t0 = time.perf_counter()
    store.create_generation("bench", dim)
    with store.bulk_load("bench"):
        for start in range(0, rows.num_rows, 10_000):
            store.upsert("bench", rows.slice(start, 10_000))
    store.refresh_indexes("bench")
    store.promote("bench")
    out = {"rows": store.count("bench"), "load_seconds": round(time.perf_counter() - t0, 1)}
    for q in queries[:10]:
        store.search_dense(q, 10)
    base = None
    for name, scope in SCOPES.items():
        value = scope.filter_value()
        filters = None if value is None else {ACCESS_FILTER: value}
        lat, bm, recall = [], [], []
        for q in queries:
            s = time.perf_counter()
            hits = store.search_dense(q, 10, filters)
            lat.append((time.perf_counter() - s) * 1000)
            exact = {h.chunk_id for h in store.search_dense(q, 10, filters, exact=True)}
            recall.append(len({h.chunk_id for h in hits} & exact) / max(1, len(exact)))
        for w in words:
            s = time.perf_counter()
            store.search_bm25(w, 10, filters)
            bm.append((time.perf_counter() - s) * 1000)
        row = {
            "dense_p50_ms": round(percentile(lat, 50), 2),
            "dense_p99_ms": round(percentile(lat, 99), 2),
            "recall@10_vs_exact_filtered": round(sum(recall) / len(recall), 4),
            "bm25_p50_ms": round(percentile(bm, 50), 2),
        }
        if base is None:
            base = row
        row["dense_p50_ratio"] = round(row["dense_p50_ms"] / base["dense_p50_ms"], 2)
        row["bm25_p50_ratio"] = round(row["bm25_p50_ms"] / base["bm25_p50_ms"], 2)
        out[name] = row
        print(type(store).__name__, name, row, flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=3000)
    ap.add_argument("--copies", type=int, default=8)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--opensearch", action="store_true", help="also a local OpenSearch node (`make opensearch` files)")
    ap.add_argument("--port", type=int, default=9251)
    args = ap.parse_args()
    settings = bench_settings(Path("/nonexistent"))
    t0 = time.perf_counter()
    rows, embedder = build_rows(settings, args.docs, args.copies)
    build_s = time.perf_counter() - t0
    rng = random.Random(9)
    picks = rng.sample(range(rows.num_rows), args.queries)
    queries = embedder.runtime().embed([rows.column("title")[i].as_py() for i in picks])
    words = [rows.column("title")[i].as_py() for i in picks[:50]]
    tmp = settings.cache / "bench-access"
    out = {
        "rows": rows.num_rows,
        "documents": args.docs * args.copies,
        "real_chunks": rows.num_rows // args.copies,
        "rows_build_seconds": round(build_s, 1),
        "queries": len(queries),
        "machine": machine(),
        "load_average_at_start": os.getloadavg()[0],
    }
    lance = LanceDBVectorStore(uri=str(tmp / f"lance-{uuid.uuid4().hex[:6]}"), ann_min_rows=10_000)
    out["lancedb"] = measure(lance, rows, queries, words)
    if args.opensearch:
        from infra.local.opensearch_node import OpenSearchNode
        from resources.opensearch_store import OpenSearchVectorStore

        node = OpenSearchNode(tmp / "opensearch", args.port, heap="2g").start(timeout_s=180)
        try:
            store = OpenSearchVectorStore(hosts=node.url, index_prefix=f"acl{uuid.uuid4().hex[:6]}")
            out["opensearch"] = measure(store, rows, queries, words)
        finally:
            node.stop()
    out["load_average_at_end"] = os.getloadavg()[0]
    print("saved", save("access_filter", out))


if __name__ == "__main__":
    main()
