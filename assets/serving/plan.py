"""The capacity plan: each hardware variant's answers per hour at the SLO (from a measurement or a named published
benchmark, ``infra/capacity/sources.json``), and the cheapest variant and replica schedule for a day of traffic.
The simulated month sizes its model workers from this record; nothing in the cost path assumes a capacity."""

import dagster as dg

from assets.serving.state import CAPACITY_PLAN_RECORD, asset
from core import capacity_plan as cp
from core.simulation import DEFAULT_PROFILE
from infra.capacity import DEFAULT_SLO, configured_variant, variants, workload
from resources.platform import PlatformResource
from resources.pricing import PriceBookResource
from resources.state_store import PipelineStateStore


class CapacityPlanConfig(dg.Config):
    # answers per hour over one representative day (default: the simulated month's clinical day)
    answers_per_hour: list[float] = list(DEFAULT_PROFILE)
    ttft_p95_ms: float = DEFAULT_SLO.ttft_p95_ms  # SLO of an answer, the production model
    e2e_p95_ms: float = DEFAULT_SLO.e2e_p95_ms
    headroom: float = 0.8  # each replica runs at most this share of its capacity at the SLO (a policy, not a capacity)


@asset(
    kinds={"python"},
    deps=[dg.AssetKey("price_book")],
    description="The capacity plan: each hardware variant's answers per hour within the SLO (a published benchmark "
    "with its source and settings, or scaled from it by datasheet bandwidth and FLOPS, each labelled; variants with "
    "no source listed with the reason), the replicas and nodes each hour of a day of traffic needs, and the cheapest "
    "variant; cost per 1,000 answers and per 1M output tokens beside Bedrock's per-token price. The simulated month "
    "sizes its LLM workers from it.",
)
def capacity_plan(
    config: CapacityPlanConfig,
    platform: PlatformResource,
    prices: PriceBookResource,
    pipeline_state: PipelineStateStore,
) -> dg.MaterializeResult:
    cfg = platform.load()
    book = prices.load(cfg.region)
    w = workload()
    options = variants(w)
    priced = {v.instance: book.prices[f"ec2_{v.instance}_hour"]["usd"] for v in options if f"ec2_{v.instance}_hour" in book.prices}  # fmt: skip
    slo = cp.Slo(config.ttft_p95_ms, config.e2e_p95_ms)
    record = cp.plan(options, w, slo, config.answers_per_hour, priced, config.headroom)
    bedrock = "claude-3-5-haiku"
    record["bedrock"] = {
        "model": bedrock,
        **cp.bedrock_costs(
            w, book.price(f"bedrock_{bedrock}_input_mtok"), book.price(f"bedrock_{bedrock}_output_mtok")
        ),
    }
    per_answer = record["bedrock"]["usd_per_1000_answers"] / 1000
    for row in record["variants"]:  # the steady traffic above which an always-on node costs less than Bedrock
        if row["planned"]:
            row["break_even_answers_per_hour_vs_bedrock"] = round(row["usd_per_hour_node"] / per_answer)
    record.update({"answers_per_hour": config.answers_per_hour, "region": cfg.region, "price_book": book.as_of})
    deployed = configured_variant(cfg, options)
    record["configured"] = deployed.name if deployed else None
    pipeline_state.write_json(CAPACITY_PLAN_RECORD, record)
    by = {r["variant"]: r for r in record["variants"]}
    chosen, configured = by.get(record["chosen"] or ""), by.get(record["configured"] or "")
    return dg.MaterializeResult(
        metadata={
            "chosen": record["chosen"] or "none",
            "chosen_monthly_usd": chosen["monthly_usd"] if chosen else None,
            "configured": record["configured"] or "none",
            "configured_monthly_usd": configured.get("monthly_usd") if configured else None,
            "variants_planned": sum(r["planned"] for r in record["variants"]),
            "workload": dg.MetadataValue.json(record["workload"]),
            "table": dg.MetadataValue.md(cp.markdown(record)),
            "record": f"{pipeline_state.describe()}/{CAPACITY_PLAN_RECORD}.json",
        }
    )
