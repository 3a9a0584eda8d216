"""The capacity planner (core/capacity_plan.py) and its asset: the queueing arithmetic, the engines built from their
sources, the plan's choice, and the simulated month's replica policy taken from the plan."""

from __future__ import annotations

import json
import math
from pathlib import Path

import dagster as dg
import pytest

from core import capacity_plan as cp

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
SOURCES = json.loads((REPO / "infra" / "capacity" / "sources.json").read_text())
W = cp.Workload(prompt=1000, prompt_p95=1500, output=100, output_p95=200)


def test_operating_point_is_the_closed_loop_arithmetic():
    # 10 ms per step plus 1 ms per sequence; prefill 10,000 tokens/s (0.1 s per mean prompt)
    e = cp.Engine(base_ms=10, per_seq_ms=1, prefill_tokens_per_s=10_000, max_batch=64)
    p = cp.operating_point(e, W, 4)
    e2e = 100 * 0.014 + 4 * 0.1  # 100 steps of 14 ms, and the four prefills that pass during one request
    assert p["e2e_mean_ms"] == pytest.approx(1000 * e2e)
    assert p["answers_per_s"] == pytest.approx(4 / e2e)
    assert p["e2e_p95_ms"] == pytest.approx(1000 * (0.15 + 3 * 0.1 + 200 * 0.014))
    # each of the 3 others prefills 0.1 of every 1.8 s: the 95th percentile of Binomial(3, 0.056) is 1 ahead
    assert p["ttft_p95_ms"] == pytest.approx(1000 * (0.15 + 0.1 + 0.014))


def test_capacity_at_slo_is_the_busiest_batch_that_meets_both_percentiles():
    e = cp.Engine(base_ms=10, per_seq_ms=1, prefill_tokens_per_s=10_000, max_batch=64)
    slo = cp.Slo(ttft_p95_ms=1000, e2e_p95_ms=8000)
    best = cp.capacity_at_slo(e, W, slo)
    assert best["e2e_p95_ms"] <= 8000 and best["ttft_p95_ms"] <= 1000
    above = cp.operating_point(e, W, best["concurrency"] + 1)
    assert above["e2e_p95_ms"] > 8000 or above["ttft_p95_ms"] > 1000
    assert cp.capacity_at_slo(e, W, cp.Slo(10, 10)) is None


def test_the_published_sweep_is_fitted_by_a_line_within_ten_percent():
    pts = SOURCES["published"]["gpu-h100"]["points"]
    e = cp.published_engine(pts, 10_000, 256, "ml.energy")
    for p in pts:
        assert e.step_ms(p["avg_batch_size"]) == pytest.approx(p["median_itl_ms"], rel=0.10)
    # the line's floor is the weights read once per step: 29.5 GB at 3.35 TB/s is 8.8 ms, reached at ~75% of peak
    assert 8.8 < e.base_ms < 8.8 / 0.6
    # its throughput in the published setting (batch / median step) is within 15% of what was published
    for p in pts:
        assert 1000 * p["avg_batch_size"] / e.step_ms(p["avg_batch_size"]) == pytest.approx(
            p["output_tokens_per_s"], rel=0.15
        )


def test_variants_name_a_source_or_the_reason_they_are_not_planned():
    h100 = json.loads((REPO / "benchmarks" / "results" / "gpu_decode_h100.json").read_text())
    variants = {v.name: v for v in cp.variants_from_sources(SOURCES, h100, W)}
    assert variants["gpu-h100"].basis == "published" and "ml-energy/leaderboard" in variants["gpu-h100"].engine.source
    assert variants["gpu-l4-tp4"].basis == "scaled" and "L4" in variants["gpu-l4-tp4"].engine.source
    # one 24 GB GPU cannot hold 29.5 GB of bf16 weights
    assert variants["gpu-l4"].engine is None and "do not fit" in variants["gpu-l4"].reason
    assert variants["inf2"].engine is None and variants["inf2"].reason
    for v in variants.values():
        assert (v.engine is not None and v.engine.source) or v.reason
    # four L4s read at 1.2 TB/s against one H100's 3.35: decode steps 2.8x as long
    ratio = variants["gpu-l4-tp4"].engine.step_ms(8) / variants["gpu-h100"].engine.step_ms(8)
    assert ratio == pytest.approx(3350 / 1200, rel=1e-6)


def test_plan_picks_the_cheapest_variant_that_meets_the_slo_and_packs_replicas_into_nodes():
    fast = cp.Engine(5, 0.1, 50_000, 128, source="a")
    slow = cp.Engine(20, 0.5, 10_000, 32, source="b")
    variants = [
        cp.Variant("big", "p5.48xlarge", gpus_per_node=8, gpus_per_replica=1, engine=fast, basis="published"),
        cp.Variant("small", "g6.12xlarge", gpus_per_node=4, gpus_per_replica=4, engine=slow, basis="scaled"),
        cp.Variant("unpriced", "g6e.xlarge", engine=fast, basis="scaled"),
        cp.Variant("none", "inf2.8xlarge", reason="no source"),
    ]
    prices = {"p5.48xlarge": 55.04, "g6.12xlarge": 4.6016}
    slo = cp.Slo(3000, 15000)
    profile = [100.0, 5000.0, 0.0, 2000.0]
    out = cp.plan(variants, W, slo, profile, prices, headroom=0.8)
    rows = {r["variant"]: r for r in out["variants"]}
    small = rows["small"]
    per = cp.capacity_at_slo(slow, W, slo)["answers_per_s"] * 3600
    assert small["replicas"] == [math.ceil(a / (per * 0.8)) if a else 0 for a in profile]
    assert small["nodes"] == small["replicas"]  # one replica fills a g6.12xlarge
    assert rows["big"]["nodes"] == [math.ceil(r / 8) for r in rows["big"]["replicas"]]  # up to 8 share a p5
    # a 4-hour profile stands for a day: each hour is 6 of them
    assert small["daily_usd"] == pytest.approx(sum(small["nodes"]) * 4.6016 * 6, abs=0.01)
    assert small["usd_per_1000_answers"] == pytest.approx(small["daily_usd"] / (sum(profile) * 6) * 1000, rel=1e-3)
    assert out["chosen"] == min((r for r in rows.values() if r["planned"]), key=lambda r: r["monthly_usd"])["variant"]
    assert not rows["unpriced"]["planned"] and "price book" in rows["unpriced"]["reason"]
    assert not rows["none"]["planned"] and rows["none"]["reason"] == "no source"


def test_bedrock_costs_count_input_and_output_tokens():
    b = cp.bedrock_costs(W, input_usd_mtok=0.8, output_usd_mtok=4.0)
    assert b["usd_per_1000_answers"] == pytest.approx((1000 * 0.8 + 100 * 4.0) / 1e6 * 1000)
    assert b["usd_per_million_output_tokens"] == pytest.approx((1000 * 0.8 + 100 * 4.0) / 100)


def test_capacity_plan_asset_plans_the_shipped_sources_and_the_month_reads_it(tmp_path):
    from assets.cost.simulation import llm_policy
    from assets.serving import CAPACITY_PLAN_RECORD, capacity_plan
    from pipelines.profiles import build_resources
    from pipelines.settings import load_settings

    res = build_resources(load_settings({"AGENTIC_HOME": str(tmp_path)}))
    result = dg.materialize(
        [capacity_plan],
        resources={k: res[k] for k in ("platform", "prices", "pipeline_state")},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    plan = res["pipeline_state"].read_json(CAPACITY_PLAN_RECORD)
    rows = {r["variant"]: r for r in plan["variants"]}
    assert plan["configured"] == "gpu-l4-tp4"  # the platform's GPU pool: g6.12xlarge, 4 GPUs per replica
    assert plan["chosen"] in rows and rows[plan["chosen"]]["planned"]
    for r in rows.values():  # every planned number traces to a source; the rest say why not
        assert (r["planned"] and r["source"]) or r["reason"]
    assert plan["bedrock"]["usd_per_1000_answers"] > 0
    l4 = rows["gpu-l4-tp4"]  # one g6.12xlarge-hour buys this many Bedrock answers
    want = l4["usd_per_hour_node"] / (plan["bedrock"]["usd_per_1000_answers"] / 1000)
    assert l4["break_even_answers_per_hour_vs_bedrock"] == pytest.approx(want, abs=1)
    meta = result.asset_materializations_for_node("capacity_plan")[0].metadata
    assert "Bedrock" in meta["table"].value and meta["chosen"].value == plan["chosen"]
    # the simulated month sizes the deployed variant from the plan, at the plan's headroom
    policy, basis = llm_policy(plan, max_replicas=2)
    per = rows["gpu-l4-tp4"]["answers_per_replica_hour"]
    assert policy.replicas(per * plan["headroom"]) == 1 and policy.replicas(per * plan["headroom"] + 1) == 2
    assert basis.startswith("gpu-l4-tp4: ")
    with pytest.raises(dg.Failure, match="materialize capacity_plan first"):
        llm_policy(None, 2)


def _autoscaling(manifests: list[dict], name: str) -> dict:
    import yaml

    rs = next(m for m in manifests if m["metadata"]["name"] == name)
    app = yaml.safe_load(rs["spec"]["serveConfigV2"])["applications"][0]
    deployment = app["args"]["llm_configs"][0]["deployment_config"]
    # a replica takes no more requests than it scales at: the rest wait in Serve for a free replica
    assert deployment["max_ongoing_requests"] == deployment["autoscaling_config"]["target_ongoing_requests"]
    return deployment["autoscaling_config"]


def test_the_llm_rayservice_scales_at_the_plans_concurrency_not_a_constant():
    from infra.capacity import DEFAULT_SLO, configured_variant, slo_concurrency, variants, workload
    from infra.platform.config import load_platform_config
    from infra.platform.ray_services import render_model_deployments

    cfg = load_platform_config()
    target = _autoscaling(render_model_deployments(cfg), "agentic-llm")["target_ongoing_requests"]
    w = workload()
    v = configured_variant(cfg, variants(w))
    assert target == slo_concurrency(cfg) == cp.capacity_at_slo(v.engine, w, DEFAULT_SLO)["concurrency"]
    above = cp.operating_point(v.engine, w, target + 1)  # one more request in flight would miss the SLO
    assert above["e2e_p95_ms"] > DEFAULT_SLO.e2e_p95_ms or above["ttft_p95_ms"] > DEFAULT_SLO.ttft_p95_ms
    # a stricter SLO gives a lower target; an explicit setting wins; a variant the plan cannot size is refused
    assert slo_concurrency(cfg, cp.Slo(3000, 11000)) < target
    pinned = load_platform_config(overrides={"models": {**vars(cfg.models), "llm_target_ongoing_requests": 5}})
    assert _autoscaling(render_model_deployments(pinned), "agentic-llm")["target_ongoing_requests"] == 5
    assert _autoscaling(render_model_deployments(cfg), "agentic-llm-neuron")["target_ongoing_requests"] == 8
    pools = [{**vars(p), "expected_instance": "g6.xlarge"} if p.name == "gpu" else vars(p) for p in cfg.node_pools]
    one_l4 = load_platform_config(
        overrides={"node_pools": pools, "models": {**vars(cfg.models), "llm_gpus_per_replica": 1}}
    )
    with pytest.raises(ValueError, match="do not fit"):
        render_model_deployments(one_l4)


def test_uncached_prompts_follow_the_slots_prefix_cache():
    from core.capacity import conversation_record

    record = conversation_record(
        "s", [{"role": "system", "content": "sys " * 50}, {"role": "user", "content": "q " * 100}], ["why? " * 4], 64
    )
    count = lambda text: len(text.split())  # noqa: E731
    first, follow = cp.uncached_prompts(record, count)
    assert first == 100 + cp.TEMPLATE_TOKENS + 3  # the system text is the cached prefix
    assert follow == 4 + cp.TEMPLATE_TOKENS + 3 + cp.REPLY_END_TOKENS  # the reply is in the slot already
    # a CPU server whose decode is compute-bound gains no throughput from a second request in flight
    e = cp.Engine(base_ms=14, per_seq_ms=0, prefill_tokens_per_s=127, max_batch=2, compute_per_seq_ms=32)
    one, two = (cp.predict_level(e, [first, follow], 64, c) for c in (1, 2))
    assert two["requests_per_s"] == pytest.approx(one["requests_per_s"])
    assert two["e2e_p95_ms"] > one["e2e_p95_ms"]


def test_the_llm_rayservice_routes_by_prefix_as_the_local_benchmark_does():
    import yaml

    from infra.platform.config import load_platform_config
    from infra.platform.ray_services import LLM_ROUTER, render_model_deployments
    from resources.serve_routing import PREFIX_ROUTER, router_config

    cfg = load_platform_config()
    rs = next(m for m in render_model_deployments(cfg) if m["metadata"]["name"] == "agentic-llm")
    app = yaml.safe_load(rs["spec"]["serveConfigV2"])["applications"][0]
    routing = app["args"]["llm_configs"][0]["deployment_config"]["request_router_config"]
    # Ray Serve LLM's public class is the one the local benchmark loads from its module (ray.serve.llm needs vLLM)
    assert LLM_ROUTER.rsplit(".", 1)[1] == PREFIX_ROUTER.rsplit(".", 1)[1] == "PrefixCacheAffinityRouter"
    assert routing["request_router_kwargs"] == {"imbalanced_threshold": cfg.models.llm_router_imbalanced_threshold}
    local = router_config("prefix", cfg.models.llm_router_imbalanced_threshold)  # Serve accepts these kwargs
    assert local.request_router_kwargs == routing["request_router_kwargs"]
    assert router_config("default", 2.0) is None
    with pytest.raises(ValueError, match="unknown router"):
        router_config("round-robin", 2.0)
