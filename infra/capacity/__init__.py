"""The capacity planner's inputs (``sources.json`` beside this file, the measurements in ``benchmarks/results``) and
the deployed variant's numbers the manifests take from the plan (``slo_concurrency``)."""

from __future__ import annotations

import json
from pathlib import Path

from core import capacity_plan as cp

SOURCES = Path(__file__).resolve().parent / "sources.json"
RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
GPU_MEASURED = "gpu_decode_h100.json"  # our own H100 run: the prefill rate
ANSWERS_MEASURED = "answer_latency_1.5b.json"  # the fast path's tokens per answer, as measured
# the SLO of one answer from the production model; the capacity_plan asset's default, and what the manifests assume
DEFAULT_SLO = cp.Slo(ttft_p95_ms=3000.0, e2e_p95_ms=15000.0)


def workload() -> cp.Workload:
    doc = json.loads((RESULTS / ANSWERS_MEASURED).read_text())
    rows = [(r["answer_tokens"]["prompt"], r["answer_tokens"]["completion"]) for r in doc["rows"]]
    src = f"{ANSWERS_MEASURED}: {len(rows)} fast-path answers measured {doc['measured_at'][:10]} (every LLM call's tokens)"
    return cp.Workload.from_rows(rows, src)


def variants(w: cp.Workload) -> list[cp.Variant]:
    sources = json.loads(SOURCES.read_text())
    return cp.variants_from_sources(sources, json.loads((RESULTS / GPU_MEASURED).read_text()), w)


def configured_variant(platform_cfg, options: list[cp.Variant]) -> cp.Variant | None:
    """The variant the platform deploys: its GPU pool's expected instance at the LLM's GPUs per replica."""
    gpu = next((p for p in platform_cfg.node_pools if p.name == "gpu"), None)
    want = (gpu.expected_instance if gpu else "", platform_cfg.models.llm_gpus_per_replica)
    return next((v for v in options if (v.instance, v.gpus_per_replica) == want), None)


def llm_target(platform_cfg) -> int:
    """Requests in flight per LLM replica the platform scales at: an explicit ``models.llm_target_ongoing_requests``,
    else the plan's (``slo_concurrency``). The RayService and the KEDA queue triggers read this one number."""
    return platform_cfg.models.llm_target_ongoing_requests or slo_concurrency(platform_cfg)


def slo_concurrency(platform_cfg, slo: cp.Slo = DEFAULT_SLO) -> int:
    """Requests in flight per replica at which the deployed variant still meets the SLO: the LLM's Ray Serve
    ``target_ongoing_requests``. A variant the plan cannot size is an error, not a default."""
    w = workload()
    v = configured_variant(platform_cfg, variants(w))
    if v is None or v.engine is None:
        why = "no variant matches the GPU pool's expected instance" if v is None else v.reason
        raise ValueError(f"the capacity plan cannot size the deployed LLM: {why}")
    best = cp.capacity_at_slo(v.engine, w, slo)
    if best is None:
        raise ValueError(f"{v.name}: no concurrency meets the SLO {slo}")
    return best["concurrency"]
