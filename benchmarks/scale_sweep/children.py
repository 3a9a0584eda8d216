"""What runs in a step's own process: one knowledge asset materialized (as a pod per step would on eks), or the raw
embedder throughput run."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import sys
import time
from pathlib import Path

from benchmarks.scale_sweep.common import HASHED_MODEL_ID, MARK, mb, rss_kb

# ------------------------------------------------------------------ child processes


def child_step(args: argparse.Namespace) -> None:
    """One knowledge step in this process: build the resources for the home, materialize the asset (with its checks)."""
    t0 = time.perf_counter()
    import dagster as dg

    from assets.knowledge import knowledge_assets, knowledge_checks
    from benchmarks.common import bench_settings
    from pipelines.profiles import build_resources
    from resources.embedder import EmbedderResource

    settings = bench_settings(Path(args.home))
    if args.shards:
        settings = dataclasses.replace(settings, state_shards=args.shards)
    if args.opensearch_port:  # the eks profile's index: the step only sends bulk requests, the node builds the index
        settings = dataclasses.replace(settings, vector_store="opensearch", opensearch_port=args.opensearch_port)
    res = build_resources(settings)
    if args.embedder == "hashed":
        res["embedder"] = EmbedderResource(
            kind="hashed", model_id=HASHED_MODEL_ID, tokenizer_path=res["embedder"].tokenizer_path
        )
    setup_s = time.perf_counter() - t0
    rss_setup = rss_kb()
    t1 = time.perf_counter()
    result = dg.materialize(
        [*knowledge_assets, *knowledge_checks],
        selection=[args.step],
        resources=res,
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    seconds = time.perf_counter() - t1
    meta: dict = {}
    for ev in result.get_asset_materialization_events():
        m = ev.event_specific_data.materialization
        meta.update({k: v.value for k, v in m.metadata.items() if isinstance(v.value, bool | int | float)})
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    out = {
        "step": args.step,
        "success": result.success,
        "seconds": round(seconds, 3),
        "setup_seconds": round(setup_s, 3),
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork+exec, so it would report the parent's size
        "peak_rss_mb": mb(rss_kb("self", "VmHWM")),
        "rss_after_setup_mb": mb(rss_setup),
        "metadata": meta,
        "checks": checks,
    }
    print(MARK + json.dumps(out), flush=True)
    sys.stdout.flush()
    os._exit(0 if result.success else 1)  # skip interpreter teardown (Ray, LanceDB threads): not part of the step


def child_raw(args: argparse.Namespace) -> None:
    """The model alone (and the hashed embedder) on a random sample of the home's chunk texts, in this process, at the
    Ray workers' niceness (Ray starts its workers at nice 15): on a shared machine the comparison is then like for like."""
    if args.raw_nice:
        os.nice(args.raw_nice)
    from benchmarks.common import bench_settings
    from core.embedding import HashedEmbedder
    from pipelines.profiles import build_resources

    settings = bench_settings(Path(args.home))
    if args.shards:
        settings = dataclasses.replace(settings, state_shards=args.shards)
    res = build_resources(settings)
    texts: list[str] = []
    for _, t in res["pipeline_state"].iter_shards("chunks", columns=["text"]):
        texts += t.column("text").to_pylist()
    sample = random.Random(0).sample(texts, min(args.raw_sample, len(texts)))
    emb = res["embedder"]
    model = emb.build(threads=args.raw_threads)
    model.embed(sample[:64])  # warm up
    t = time.perf_counter()
    model.embed(sample)
    onnx_s = time.perf_counter() - t
    hashed = HashedEmbedder(emb.tokenizer_path, dimension=emb.dimension, max_tokens=emb.max_tokens)
    hashed.embed(sample[:64])
    t = time.perf_counter()
    hashed.embed(sample)
    hashed_s = time.perf_counter() - t
    tokens = sum(model.count_tokens(sample))
    out = {
        "chunks_in_home": len(texts),
        "sample_chunks": len(sample),
        "sample_tokens_mean": round(tokens / max(1, len(sample)), 1),
        "threads": args.raw_threads,
        "niceness": os.nice(0),
        "onnx_seconds": round(onnx_s, 2),
        "onnx_chunks_per_second": round(len(sample) / onnx_s, 2),
        "hashed_seconds": round(hashed_s, 3),
        "hashed_chunks_per_second": round(len(sample) / hashed_s, 1),
    }
    print(MARK + json.dumps(out), flush=True)
    os._exit(0)
