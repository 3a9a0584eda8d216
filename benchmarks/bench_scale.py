"""At scale: the whole PubMed corpus (33k abstracts, ~100k chunks of <=128 tokens).

Measures, in one run on this machine:
  * full pipeline wall time (parse -> index) and chunks/s;
  * a re-run with 1% of the documents changed, as a fraction of the full run;
  * dense ANN query latency (p50/p99) and recall@10 against exact search over the same table;
  * hybrid query latency.
The home lives in the user cache so a later run reuses the vectors (pass --fresh to rebuild).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS, bench_settings, chunk_run_config, materialize, percentile, resources_for, save  # noqa: E402
from core.access import FULL_SCOPE  # noqa: E402
from core.corpus import ARTICLE_TABLE, document_key, load_sample  # noqa: E402
from core.documents import parse_document  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=0, help="0 = the whole corpus")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--overlap", type=int, default=24)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("--home", default=None)
    args = ap.parse_args()

    base = bench_settings(Path("/nonexistent"))
    home = Path(args.home) if args.home else base.cache / "bench-scale"
    if args.fresh and home.exists():
        shutil.rmtree(home)
    res = resources_for(home)
    res["ray_cluster"].ensure()  # a warm cluster, as with `ray start`; its start is not part of the pipeline
    corpus = load_sample(base.pubmed_dir / ARTICLE_TABLE, 0)
    docs = corpus[: args.docs] if args.docs else corpus
    store = res["document_store"]
    t0 = time.perf_counter()
    for pmid, data in docs:
        store.put(document_key(pmid), data)
    seed_s = time.perf_counter() - t0
    cfg = chunk_run_config(args.max_tokens, args.overlap)
    out: dict = {"documents": len(docs), "seed_seconds": round(seed_s, 1)}

    wall, meta = materialize(res, cfg)
    out["full_run"] = {
        "wall_seconds": round(wall, 1),
        "chunks": meta["document_chunks"]["chunks"],
        "embedded": meta["chunk_embeddings"]["embedded_this_run"],
        "embed_chunks_per_second": meta["chunk_embeddings"]["chunks_per_second"],
        "pipeline_chunks_per_second": round(meta["chunk_embeddings"]["embedded_this_run"] / wall, 1),
        "from_scratch": meta["chunk_embeddings"]["embedded_this_run"] == meta["document_chunks"]["chunks"],
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "step_seconds": {k: v.get("seconds") for k, v in meta.items()},
    }
    print(out["full_run"], flush=True)

    # 1% of documents changed: each gets another (unindexed) article's content.
    rng = random.Random(1)
    n_change = max(1, len(docs) // 100)
    changed = rng.sample(range(len(docs)), n_change)
    donors = rng.sample(range(len(docs)), n_change)
    for i, j in zip(changed, donors):
        pmid, data = docs[i]
        store.put(
            document_key(pmid),
            data.replace(b"</AbstractText>", b" (revised)</AbstractText>", 1) if i == j else docs[j][1],
        )
    wall_inc, meta_inc = materialize(res, cfg)
    baseline, baseline_from = wall, "this run"
    if not out["full_run"]["embedded"]:
        # The vectors were already cached: compare with the last from-scratch full run on this machine.
        prev = RESULTS / "scale.json"
        if prev.exists():
            old = json.loads(prev.read_text())
            full = (
                old.get("full_run", {})
                if old.get("full_run", {}).get("from_scratch")
                else old.get("full_run_baseline", {})
            )
            if full.get("wall_seconds"):
                baseline, baseline_from = (
                    full["wall_seconds"],
                    f"from-scratch run of {full.get('measured_at', 'an earlier run')}",
                )
                out["full_run_baseline"] = full
    out["one_percent_rerun"] = {
        "changed_documents": n_change,
        "wall_seconds": round(wall_inc, 2),
        "embedded": meta_inc["chunk_embeddings"]["embedded_this_run"],
        "fraction_of_full_run": round(wall_inc / baseline, 4) if baseline > wall_inc * 2 else None,
        "full_run_compared": baseline_from,
        "step_seconds": {k: v.get("seconds") for k, v in meta_inc.items()},
    }
    # restore originals so the next run starts from the same corpus
    for i in changed:
        pmid, data = docs[i]
        store.put(document_key(pmid), data)
    materialize(res, cfg)
    print(out["one_percent_rerun"], flush=True)

    # Latency and recall at scale.
    vs, emb = res["vector_store"], res["embedder"].runtime()
    gen = vs.serving_generation()
    out["index_rows"] = vs.count(gen)
    picks = rng.sample(range(len(docs)), args.queries)
    queries = [parse_document("q", docs[i][1]).title for i in picks]
    vectors = emb.embed(queries, prefix=res["embedder"].query_prefix)
    for v in vectors[:20]:  # warm caches
        vs.search_dense(v, 10)
    lat, recall = [], []
    for v in vectors:
        t = time.perf_counter()
        ann = vs.search_dense(v, 10)
        lat.append((time.perf_counter() - t) * 1000)
        exact = vs.search_dense(v, 10, exact=True)
        recall.append(len({h.chunk_id for h in ann} & {h.chunk_id for h in exact}) / 10)
    hyb = []
    for q in queries[:200]:
        t = time.perf_counter()
        res["retriever"].search(q, k=10, mode="hybrid", scope=FULL_SCOPE)
        hyb.append((time.perf_counter() - t) * 1000)
    exact_lat = []
    for v in vectors[:100]:
        t = time.perf_counter()
        vs.search_dense(v, 10, exact=True)
        exact_lat.append((time.perf_counter() - t) * 1000)
    out["dense_ann"] = {
        "index": vs.ann_index_type,
        "nprobes": vs.nprobes,
        "queries": len(lat),
        "p50_ms": round(percentile(lat, 50), 2),
        "p99_ms": round(percentile(lat, 99), 2),
        "recall@10_vs_exact": round(sum(recall) / len(recall), 4),
    }
    out["dense_exact"] = {"p50_ms": round(percentile(exact_lat, 50), 2), "p99_ms": round(percentile(exact_lat, 99), 2)}
    out["hybrid_end_to_end_incl_query_embedding"] = {
        "p50_ms": round(percentile(hyb, 50), 2),
        "p99_ms": round(percentile(hyb, 99), 2),
    }
    print(out, flush=True)
    print("saved", save("scale", out))


if __name__ == "__main__":
    main()
