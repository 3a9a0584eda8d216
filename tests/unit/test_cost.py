"""Cost reports: the reference table reproduced line by line, the platform's bill of materials, unit economics from the
measured benchmark results, Price List refresh and Cost Explorer at their botocore boundary (no AWS in tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import boto3
import dagster as dg
import pytest
from botocore.stub import Stubber

from core.cost import (
    REFERENCE_TOTAL,
    Throughput,
    UnknownRegion,
    UsageAssumptions,
    break_even,
    load_price_book,
    omitted_lines,
    platform_lines,
    reference_lines,
    total,
    unit_costs,
)
from infra.platform.config import load_platform_config

REPO = Path(__file__).resolve().parents[2]

REFERENCE = [  # the reference design's README table, us-east-1, November 2025
    ("Amazon EKS", "1 cluster", 73.00),
    ("Amazon VPC", "3 NAT gateways", 98.67),
    ("Amazon EC2", "2 m6g.large", 112.42),
    ("Amazon Managed Service for Prometheus", "metrics ingestion and queries", 100.60),
    ("Amazon Managed Grafana", "1 editor + 1 viewer", 14.00),
    ("Amazon EBS", "gp2 volumes and snapshots", 17.97),
    ("Elastic Load Balancing", "1 ALB", 16.66),
    ("Amazon VPC", "public IPv4 addresses", 3.65),
    ("AWS KMS", "customer managed keys", 7.00),
    ("Amazon CloudWatch", "logs", 3.00),
    ("Amazon ECR", "image storage", 0.50),
]


def test_reference_table_is_reproduced_line_by_line():
    book = load_price_book("us-east-1")
    lines = reference_lines(book)
    assert [(x["service"], x["dimension"], x["monthly_usd"]) for x in lines] == REFERENCE
    assert total(lines) == REFERENCE_TOTAL == 447.47
    for line in lines:  # every line is quantity x a dated, sourced unit price, with its assumption written down
        for part in line["parts"]:
            assert part["assumption"] and book.prices[part["price_key"]]["source"].startswith("https://aws.amazon.com/")


@pytest.mark.e2e
def test_cli_prints_the_reference_scenario_as_json(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "cost", "--reference", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "AGENTIC_HOME": str(tmp_path)},
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [(x["service"], x["dimension"], x["monthly_usd"]) for x in out["lines"]] == REFERENCE and out[
        "total_usd"
    ] == 447.47
    omitted = {x["service"] + ": " + x["dimension"]: x["monthly_usd"] for x in out["omitted"]}
    assert any(k.startswith("Amazon EC2: gpu pool") for k in omitted) and any(
        k.startswith("Amazon OpenSearch Service") for k in omitted
    )
    assert (
        any("judge tokens" in k for k in omitted)
        and any("extra ALB" in k for k in omitted)
        and any("graviton pool" in k for k in omitted)
    )
    assert out["total_with_omitted_usd"] == pytest.approx(447.47 + out["omitted_total_usd"], abs=0.01)


def test_bill_of_materials_follows_the_platform_config():
    book = load_price_book("us-east-1")
    cfg = load_platform_config()
    base = total(platform_lines(cfg, UsageAssumptions(), book))
    one_nat = load_platform_config(overrides={"vpc": {"nat_gateways": 1, "azs": 3}})

    def nat(c):
        return next(x for x in platform_lines(c, UsageAssumptions(), book) if x["dimension"].endswith("NAT gateways"))

    assert nat(cfg)["monthly_usd"] > nat(one_nat)["monthly_usd"] and nat(one_nat)["dimension"] == "1 NAT gateways"
    no_gpu = load_platform_config(
        overrides={
            "node_pools": [
                dict(p.__dict__, expected_count=0 if p.name == "gpu" else p.expected_count) for p in cfg.node_pools
            ]
        }
    )
    gpu_line = next(x for x in platform_lines(cfg, UsageAssumptions(), book) if x["dimension"].startswith("gpu pool:"))
    assert gpu_line["monthly_usd"] == round(730 * book.price("ec2_g6.12xlarge_hour"), 2)
    # the vision model: one GPU per always-on replica, a 1 x L4 node each, priced from the same book
    lines = platform_lines(cfg, UsageAssumptions(), book)
    vision = next(x for x in lines if x["dimension"].startswith("vision model on the gpu pool"))
    assert vision["service"] == "Amazon EC2" and vision["price_key"] == "ec2_g6.xlarge_hour"
    assert vision["monthly_usd"] == round(cfg.models.vision_min_replicas * 730 * book.price("ec2_g6.xlarge_hour"), 2)
    assert any(x["dimension"] == "vision model volumes" for x in lines)
    assert any(x["dimension"] == vision["dimension"] for x in omitted_lines(cfg, UsageAssumptions(), book))
    # dropping the GPU pool removes its EC2 and EBS lines and their Auto Mode fee
    assert total(platform_lines(no_gpu, UsageAssumptions(), book)) < base - gpu_line["monthly_usd"]
    assert {x["service"] for x in omitted_lines(cfg, UsageAssumptions(), book)} >= {
        "Amazon EC2",
        "Amazon OpenSearch Service",
        "Amazon Bedrock",
    }
    with pytest.raises(UnknownRegion, match="eu-west-1"):
        load_price_book("eu-west-1")


def test_unit_costs_and_break_even_arithmetic():
    book = load_price_book("us-east-1")
    cpu = Throughput("cpu", "m", 400.0, "test", "c7g.2xlarge", tokens_per_answer=2000)
    gpu = Throughput("gpu", "m", 12000.0, "test", "p5.48xlarge", nodes=1 / 8, tokens_per_answer=2000)
    c = unit_costs(cpu, book)
    assert c["usd_per_million_tokens"] == pytest.approx(0.289 / (400 * 3600) * 1e6, rel=1e-3)
    assert c["usd_per_answer"] == pytest.approx(c["usd_per_million_tokens"] * 2000 / 1e6, rel=1e-3)
    be = break_even(cpu, gpu, book, 2000)
    gpu_hour, cpu_hour = 55.04 / 8, 0.289
    n = be["cpu_nodes"]
    assert n * cpu_hour >= gpu_hour > (n - 1) * cpu_hour  # the first CPU fleet size that costs as much as one GPU
    assert be["answers_per_day"] == pytest.approx((n - 1) * 400 * 86400 / 2000, rel=1e-3)


def test_cost_assets_report_unit_economics_from_measured_results(tmp_path):
    from assets.cost import cost_assets
    from pipelines.profiles import build_resources
    from pipelines.settings import load_settings

    res = build_resources(load_settings({"AGENTIC_HOME": str(tmp_path)}))
    from assets.serving import capacity_plan

    result = dg.materialize(
        [
            capacity_plan,
            *(a for a in cost_assets if a.key.to_user_string() not in ("simulated_month", "answer_costs")),
        ],  # simulated_month needs a cluster (test_kube_cluster), answer_costs a trace store (test_trace_cost)
        resources={k: res[k] for k in ("platform", "aws", "prices", "pipeline_state")},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    meta = {
        e.asset_key.to_user_string(): {k: getattr(v, "value", v) for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
    }
    assert meta["monthly_cost_report"]["reference_total_usd"] == 447.47
    assert meta["monthly_cost_report"]["plot"].startswith("![monthly cost](data:image/png;base64,")
    state = res["pipeline_state"]
    report = state.read_json("cost/monthly_cost_report")
    assert state.get_bytes("cost/monthly_cost_report.png").startswith(b"\x89PNG")
    options = {o["option"]: o for o in report["scenarios"]["options"]}
    assert "cpu-graviton" in options and options["inferentia-inf2"]["note"].startswith("not measured")
    ue = state.read_json("cost/unit_economics")
    cpu = next(o for o in ue["options"] if o["option"] == "cpu-graviton")
    bench = json.loads((REPO / "benchmarks" / "results" / "answer_latency_1.5b.json").read_text())
    toks = sum(r["answer_tokens"]["prompt"] + r["answer_tokens"]["completion"] for r in bench["rows"])
    assert cpu["measured_tokens_per_s_2vcpu"] == round(
        toks / sum(r["answer_s"] for r in bench["rows"]), 1
    )  # from the measurement
    assert "measured" in cpu["where"] and cpu["usd_per_million_tokens"] > 0
    assert meta["actual_spend"]["mode"].startswith("skipped")
    # serving per hardware variant beside Bedrock, from the capacity plan materialized in the same run
    plan = report["capacity_plan"]
    assert plan["chosen"] and plan["bedrock"]["usd_per_1000_answers"] > 0
    assert (
        "Serving the LLM, per hardware variant" in meta["monthly_cost_report"]["report"]
        and "Bedrock" in meta["monthly_cost_report"]["report"]
    )


def test_price_list_refresh_and_cost_explorer_requests_are_valid_at_the_boundary(tmp_path):
    from core.cost import compare_with_cost_explorer
    from resources.pricing import REFRESHED_KEY, PriceBookResource
    from resources.state_store import LocalStateStore

    state = LocalStateStore(root=str(tmp_path / "state"))
    prices = PriceBookResource(state=state)
    pricing = boto3.client("pricing", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    keys = [
        k
        for k in load_price_book("us-east-1").prices
        if (k.startswith("ec2_") or k.startswith("opensearch_")) and k.endswith("_hour")
    ]
    with Stubber(pricing) as stub:
        for key in keys:
            usd = "0.0800000000" if key == "ec2_m6g.large_hour" else str(load_price_book("us-east-1").price(key))
            item = {
                "product": {"sku": key},
                "terms": {"OnDemand": {"t": {"priceDimensions": {"d": {"unit": "Hrs", "pricePerUnit": {"USD": usd}}}}}},
            }
            stub.add_response("get_products", {"PriceList": [json.dumps(item)], "FormatVersion": "aws_v1"})
        changed = prices.refresh(pricing, "us-east-1")
    assert changed == {"ec2_m6g.large_hour": {"was": 0.077, "now": 0.08}}
    book = prices.load("us-east-1")
    assert book.price("ec2_m6g.large_hour") == 0.08 and "Price List API" in book.prices["ec2_m6g.large_hour"]["source"]
    assert load_price_book("us-east-1").price("ec2_m6g.large_hour") == 0.077  # the shipped book is untouched
    # the refresh is in the state store, so another step (another pod on eks) with only the store sees it
    assert state.read_json(REFRESHED_KEY)["regions"]["us-east-1"]["ec2_m6g.large_hour"]["usd"] == 0.08
    other_step = PriceBookResource(state=LocalStateStore(root=str(tmp_path / "state")))
    assert other_step.load("us-east-1").price("ec2_m6g.large_hour") == 0.08
    assert not list(tmp_path.glob("*.json")) and not (tmp_path / "cost").exists()  # nothing beside the store

    ce = boto3.client("ce", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(ce) as stub:
        stub.add_response(
            "get_cost_and_usage",
            {
                "ResultsByTime": [
                    {
                        "Groups": [
                            {
                                "Keys": ["Amazon EC2"],
                                "Metrics": {"UnblendedCost": {"Amount": "3500.25", "Unit": "USD"}},
                            },
                            {
                                "Keys": ["Amazon Elastic Kubernetes Service"],
                                "Metrics": {"UnblendedCost": {"Amount": "73.0", "Unit": "USD"}},
                            },
                        ]
                    }
                ]
            },
        )
        out = compare_with_cost_explorer(
            ce, [{"service": "Amazon EC2", "monthly_usd": 3928.28}], "agentic-rag", today=1796000000
        )
    assert out["period"] == ["2026-10-01", "2026-11-01"] and out["actual_total_usd"] == 3573.25
    assert {s["service"] for s in out["services"]} == {"Amazon EC2", "Amazon Elastic Kubernetes Service"}


def test_simulation_timeline_takes_the_instance_type_once_karpenter_sets_it():
    # Regression: a NodeClaim seen before Karpenter labelled its instance type kept "?" and failed pricing.
    from core.cost import load_price_book
    from core.simulation import Timeline, price_timeline

    t = Timeline(step_s=10.0)
    t.observe(
        0.0,
        [{"name": "a", "pool": "general", "instance_type": ""}, {"name": "b", "pool": "general", "instance_type": ""}],
    )
    t.observe(10.0, [{"name": "a", "pool": "general", "instance_type": "m7i.large"}])  # b deleted before launch
    t.observe(30.0, [])
    lines = price_timeline(t, until_h=3.0, book=load_price_book("us-east-1"))
    assert [(line["instance_type"], line["node_hours_simulated"]) for line in lines] == [("m7i.large", 3.0)]
