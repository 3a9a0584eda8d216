"""Shared helpers for the benchmarks: a seeded home, timed in-process materializations, retrieval metrics."""

from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path

from resources.ray_cluster import apply_ray_env_defaults, ray_on_loopback  # noqa: E402

apply_ray_env_defaults()
ray_on_loopback()  # every Ray node here is a single node on 127.0.0.1

import dagster as dg  # noqa: E402

from assets.knowledge import knowledge_assets, knowledge_checks  # noqa: E402
from pipelines.profiles import build_resources  # noqa: E402
from pipelines.settings import Settings, load_settings  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def bench_settings(home: Path) -> Settings:
    base = load_settings({k: v for k, v in os.environ.items() if k != "AGENTIC_HOME"})
    return Settings(
        profile="local", home=home, cache=base.cache, corpus_limit=base.corpus_limit, ray_address=base.ray_address
    )


def materialize(resources: dict, run_config: dict | None = None) -> tuple[float, dict]:
    t0 = time.perf_counter()
    result = dg.materialize(
        [*knowledge_assets, *knowledge_checks],
        resources=resources,
        instance=dg.DagsterInstance.ephemeral(),
        run_config=run_config,
    )
    wall = time.perf_counter() - t0
    if not result.success:
        raise RuntimeError("materialization failed")
    meta = {}
    for ev in result.get_asset_materialization_events():
        m = ev.event_specific_data.materialization
        meta[m.asset_key.to_user_string()] = {
            k: v.value for k, v in m.metadata.items() if isinstance(v.value, int | float | str)
        }
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    if not all(checks.values()):
        raise RuntimeError(f"asset checks failed: {checks}")
    return wall, meta


def chunk_run_config(max_tokens: int, overlap: int) -> dict:
    return {"ops": {"document_chunks": {"config": {"max_tokens": max_tokens, "overlap_tokens": overlap}}}}


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or "unknown",
    }


def retrieval_metrics(ranked_doc_keys: list[list[str]], relevant: list[str], k: int = 10) -> dict:
    """recall@k and nDCG@k with one relevant document per query (doc-level: duplicates of a doc count once)."""
    recall = ndcg = mrr = 0.0
    for ranked, rel in zip(ranked_doc_keys, relevant):
        seen: list[str] = []
        for d in ranked:
            if d not in seen:
                seen.append(d)
        seen = seen[:k]
        if rel in seen:
            r = seen.index(rel) + 1
            recall += 1
            ndcg += 1 / math.log2(r + 1)
            mrr += 1 / r
    n = max(1, len(relevant))
    return {
        f"recall@{k}": round(recall / n, 4),
        f"ndcg@{k}": round(ndcg / n, 4),
        f"mrr@{k}": round(mrr / n, 4),
        "queries": len(relevant),
    }


def percentile(xs: list[float], p: float) -> float:
    s = sorted(xs)
    if not s:
        return float("nan")
    idx = min(len(s) - 1, max(0, math.ceil(p / 100 * len(s)) - 1))
    return s[idx]


def save(name: str, data: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    data = {
        "benchmark": name,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        **data,
    }
    path.write_text(json.dumps(data, indent=2))
    return path


def resources_for(home: Path) -> dict:
    return build_resources(bench_settings(home))
