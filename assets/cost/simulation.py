"""A simulated month on the local control plane: traffic drives replicas, Karpenter provisions and consolidates
NodeClaims, and the node-hours they had are priced."""

import base64

import dagster as dg

from assets.cost.render import simulation_png
from assets.cost.state import BILL_RECORD, SIMULATION_RECORD, asset
from core.cost import (
    Item,
    price_items,
)
from core.simulation import DEFAULT_PROFILE, ReplicaPolicy, price_timeline
from resources.platform import PlatformResource
from resources.pricing import PriceBookResource
from resources.state_store import PipelineStateStore


class SimulationConfig(dg.Config):
    # answers per hour over one representative day (default: a clinical day, peak ~1,000/h); a month is 30.4 of them
    answers_per_hour: list[float] = list(DEFAULT_PROFILE)
    step_seconds: float = 20.0  # wall seconds per simulated hour (Karpenter needs ~10 s to provision or consolidate)
    poll_seconds: float = 1.0
    # vLLM Qwen3-14B TP4 on one g6.12xlarge: ~1,000 answers/h at ~2,000 tokens each (an assumption: no GPU measured here)
    llm_answers_per_replica_hour: float = 1000.0
    embed_answers_per_replica_hour: float = 20000.0


@asset(
    kinds={"kubernetes", "karpenter"},
    deps=[dg.AssetKey("node_pools"), dg.AssetKey("bill_of_materials")],
    description="A simulated month on the local control plane: a day of traffic (answers per hour) sets the model "
    "workers' replicas hour by hour on a compressed clock, Karpenter provisions and consolidates real NodeClaims for them "
    "(the platform's own pod specs and NodePools, consolidateAfter compressed alike), and the node-hours the NodeClaims "
    "really had are priced and scaled to a month, next to the static bill of materials. Needs `agentic cluster up` "
    "(AGENTIC_PLATFORM_TARGET=cluster); never runs on EKS.",
)
def simulated_month(
    context: dg.AssetExecutionContext,
    config: SimulationConfig,
    platform: PlatformResource,
    prices: PriceBookResource,
    pipeline_state: PipelineStateStore,
) -> dg.MaterializeResult:
    cfg = platform.load()
    book = prices.load(cfg.region)
    llm = ReplicaPolicy(config.llm_answers_per_replica_hour, 0, cfg.models.llm_max_replicas)
    embed = ReplicaPolicy(config.embed_answers_per_replica_hour, 1, cfg.models.embedder_max_replicas)
    schedule = [
        {"hour": h, "answers": a, "gpu-llm": llm.replicas(a), "cpu-embed": embed.replicas(a)}
        for h, a in enumerate(config.answers_per_hour)
    ]
    try:
        timeline = platform.simulate(schedule, config.step_seconds, config.poll_seconds, context.log.info)
    except NotImplementedError as exc:
        raise dg.Failure(str(exc)) from exc
    hours = float(len(schedule))
    lines = price_timeline(timeline, hours, book)
    bom = pipeline_state.read_json(BILL_RECORD) or {"items": []}
    # like for like: the static lines of the pools the simulated workers run on (heads, gateway, API and Dagster on
    # the general pool are not part of the simulation)
    simulated_pools = {x["pool"] for x in lines} | {"gpu", "graviton"}
    static = [
        {"pool": i["dimension"].split(" pool")[0], "dimension": i["dimension"], "monthly_usd": x["monthly_usd"]}
        for i, x in zip(bom["items"], price_items([Item(**i) for i in bom["items"]], book))
        if i["service"].startswith("Amazon EC2") and i["dimension"].split(" pool")[0] in simulated_pools
    ]
    record = {
        "schedule": schedule,
        "step_seconds": config.step_seconds,
        "node_claims": [vars(s) for s in timeline.spans.values()],
        "nodes": timeline.nodes,
        "simulated": lines,
        "simulated_monthly_usd": round(sum(x["monthly_usd"] for x in lines), 2),
        "static_bill_of_materials": static,
        "static_monthly_usd": round(sum(x["monthly_usd"] for x in static), 2),
    }
    pipeline_state.write_json(SIMULATION_RECORD, record)
    png = simulation_png(timeline, sorted({s.pool for s in timeline.spans.values()}))
    md = [
        "| pool | instance | node-hours (day) | node-hours (month) | $/h | $/month |",
        "|---|---|---:|---:|---:|---:|",
    ]
    md += [
        f"| {x['pool']} | {x['instance_type']} | {x['node_hours_simulated']:.2f} | {x['node_hours_month']:,.0f} | "
        f"{x['usd_per_hour']:.4f} | {x['monthly_usd']:,.2f} |"
        for x in lines
    ]
    return dg.MaterializeResult(
        metadata={
            "simulated_monthly_usd": record["simulated_monthly_usd"],
            "static_monthly_usd": record["static_monthly_usd"],
            "node_claims": len(timeline.spans),
            "peak_llm_replicas": max(r["gpu-llm"] for r in schedule),
            "table": dg.MetadataValue.md("\n".join(md)),
            "static": dg.MetadataValue.json(static),
            "plot": dg.MetadataValue.md(f"![simulated day](data:image/png;base64,{base64.b64encode(png).decode()})"),
            "record": f"{pipeline_state.describe()}/{SIMULATION_RECORD}.json",
        }
    )
