"""A simulated month on the local control plane: traffic drives replicas, Karpenter provisions and consolidates
NodeClaims, and the node-hours they had are priced."""

import base64

import dagster as dg

from assets.cost.measured import load_result
from assets.cost.render import simulation_png
from assets.cost.state import BILL_RECORD, EMBED_MEASURED, SIMULATION_RECORD, asset
from assets.serving.state import CAPACITY_PLAN_RECORD
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


def llm_policy(plan: dict | None, max_replicas: int) -> tuple[ReplicaPolicy, str]:
    """The LLM workers' policy from the capacity plan: the configured variant's answers per replica-hour at the SLO,
    at the plan's headroom."""
    if plan is None:
        raise dg.Failure(f"{CAPACITY_PLAN_RECORD} is not in the state store: materialize capacity_plan first")
    row = next((r for r in plan["variants"] if r["variant"] == plan.get("configured")), None)
    if row is None or row.get("answers_per_replica_hour") is None:
        why = "the platform's GPU pool matches no variant" if row is None else row.get("reason", "")
        raise dg.Failure(f"the capacity plan has no capacity for the deployed LLM variant: {why}")
    policy = ReplicaPolicy(row["answers_per_replica_hour"], 0, max_replicas, plan["headroom"])
    return policy, f"{row['variant']}: {row['answers_per_replica_hour']:,.0f} answers/h per replica ({row['basis']})"


def embed_policy(max_replicas: int) -> tuple[ReplicaPolicy, str]:
    """The embedder's replicas from its measured served rate (one text per request, 16 clients; the same model the
    pipeline indexes with, on this machine's 2 vCPUs; an answer embeds one query)."""
    measured = load_result(EMBED_MEASURED)
    if measured is None:
        raise dg.Failure(f"benchmarks/results/{EMBED_MEASURED} is missing: the embedder's capacity is measured there")
    per_hour = measured["served_one_text_per_request_16_clients_cps"] * 3600
    return ReplicaPolicy(per_hour, 1, max_replicas), f"{EMBED_MEASURED}: {per_hour:,.0f} queries/h per replica"


@asset(
    kinds={"kubernetes", "karpenter"},
    deps=[dg.AssetKey("node_pools"), dg.AssetKey("bill_of_materials"), dg.AssetKey("capacity_plan")],
    description="A simulated month on the local control plane: a day of traffic (answers per hour) sets the model "
    "workers' replicas hour by hour on a compressed clock (the LLM's capacity from the capacity plan, the embedder's as measured), Karpenter provisions and consolidates real NodeClaims for them "
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
    llm, llm_basis = llm_policy(pipeline_state.read_json(CAPACITY_PLAN_RECORD), cfg.models.llm_max_replicas)
    embed, embed_basis = embed_policy(cfg.models.embedder_max_replicas)
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
        "capacity": {"gpu-llm": llm_basis, "cpu-embed": embed_basis},
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
            "capacity": dg.MetadataValue.json(record["capacity"]),
            "table": dg.MetadataValue.md("\n".join(md)),
            "static": dg.MetadataValue.json(static),
            "plot": dg.MetadataValue.md(f"![simulated day](data:image/png;base64,{base64.b64encode(png).decode()})"),
            "record": f"{pipeline_state.describe()}/{SIMULATION_RECORD}.json",
        }
    )
