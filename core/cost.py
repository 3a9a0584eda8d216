"""Cost maths as plain functions: bill of materials -> priced monthly lines, scenarios, unit economics, break-even.

A bill-of-materials item is ``{service, dimension, quantity, price_key, assumption}``; its monthly cost is
``quantity x price`` (quantity already in the price's unit: hours, GB-months, users, ...). Lines are rounded to cents
and the total is the sum of the rounded lines, the way a pricing calculator's table adds up.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

HOURS_PER_MONTH = 730.0
PRICE_FILE = Path(__file__).resolve().parents[1] / "infra" / "prices" / "aws-prices.json"


class UnknownRegion(ValueError):
    pass


@dataclass
class PriceBook:
    region: str
    as_of: str
    prices: dict[str, dict]
    provenance: str = ""

    def price(self, key: str) -> float:
        if key not in self.prices:
            raise KeyError(f"no price for {key!r} in {self.region} (price book of {self.as_of})")
        return float(self.prices[key]["usd"])


def load_price_book(region: str, path: Path | None = None) -> PriceBook:
    return price_book_from(json.loads(Path(path or PRICE_FILE).read_text()), region)


def price_book_from(data: dict, region: str) -> PriceBook:
    """The book for ``region`` from a price book document (the shipped file's shape)."""
    if region not in data["regions"]:
        raise UnknownRegion(
            f"no prices for region {region!r}: the price book ({data['as_of']}) covers {sorted(data['regions'])}; "
            "run `agentic cost --refresh-prices` with AWS credentials to fetch them from the Price List API"
        )
    return PriceBook(region, data["as_of"], data["regions"][region], data.get("provenance", ""))


@dataclass
class Item:
    service: str
    dimension: str
    quantity: float
    price_key: str
    assumption: str = ""
    group: str = "platform"  # platform | omitted-by-reference | usage

    def as_dict(self) -> dict:
        return asdict(self)


def price_items(items: list[Item], book: PriceBook) -> list[dict]:
    lines = []
    for it in items:
        unit = book.price(it.price_key)
        lines.append(
            {
                "service": it.service,
                "dimension": it.dimension,
                "quantity": it.quantity,
                "unit_price_usd": unit,
                "monthly_usd": round(it.quantity * unit + 1e-9, 2),
                "assumption": it.assumption,
                "group": it.group,
                "price_key": it.price_key,
            }
        )
    return lines


def merge_lines(lines: list[dict]) -> list[dict]:
    """One line per (service, dimension): its priced parts summed unrounded, then rounded to cents, the way a pricing
    calculator's row adds up (e.g. NAT hours + NAT data)."""
    out: dict[tuple[str, str], dict] = {}
    for line in lines:
        out.setdefault((line["service"], line["dimension"]), {**line, "parts": []})["parts"].append(line)
    for line in out.values():
        line["monthly_usd"] = round(sum(p["quantity"] * p["unit_price_usd"] for p in line["parts"]) + 1e-9, 2)
    return list(out.values())


def total(lines: list[dict]) -> float:
    return round(sum(line["monthly_usd"] for line in lines), 2)


# ------------------------------------------------------------------ the reference design's table


REFERENCE_TOTAL = 447.47


def reference_items(hours: float = HOURS_PER_MONTH) -> list[Item]:
    """The reference design's README table (us-east-1, November 2025), as quantities x unit prices. Where the table gives
    only a dollar figure, the usage that produces it is written down as an explicit assumption."""
    h = hours
    return [
        Item("Amazon EKS", "1 cluster", 1 * h, "eks_cluster_hour", "1 cluster x 730 h"),
        Item("Amazon VPC", "3 NAT gateways", 3 * h, "nat_gateway_hour", "3 NAT gateways x 730 h"),
        Item(
            "Amazon VPC",
            "3 NAT gateways",
            2.667,
            "nat_gateway_gb",
            "2.667 GB processed (the residue of the reference line after hours)",
        ),
        Item("Amazon EC2", "2 m6g.large", 2 * h, "ec2_m6g.large_hour", "2 nodes x 730 h, on-demand"),
        Item(
            "Amazon Managed Service for Prometheus",
            "metrics ingestion and queries",
            1000,
            "amp_ingest_million_samples",
            "1,000 M samples ingested per month",
        ),
        Item(
            "Amazon Managed Service for Prometheus",
            "metrics ingestion and queries",
            106,
            "amp_query_billion_samples",
            "106 B samples processed by queries per month",
        ),
        Item("Amazon Managed Grafana", "1 editor + 1 viewer", 1, "amg_editor_month", "1 editor"),
        Item("Amazon Managed Grafana", "1 editor + 1 viewer", 1, "amg_viewer_month", "1 viewer"),
        Item("Amazon EBS", "gp2 volumes and snapshots", 160, "ebs_gp2_gb_month", "2 x 80 GB gp2 node volumes"),
        Item("Amazon EBS", "gp2 volumes and snapshots", 39.4, "ebs_snapshot_gb_month", "39.4 GB of snapshots"),
        Item("Elastic Load Balancing", "1 ALB", 1 * h, "alb_hour", "1 ALB x 730 h"),
        Item("Elastic Load Balancing", "1 ALB", 0.04 * h, "alb_lcu_hour", "0.04 LCU on average"),
        Item("Amazon VPC", "public IPv4 addresses", 1 * h, "public_ipv4_hour", "1 public IPv4 address x 730 h"),
        Item("AWS KMS", "customer managed keys", 7, "kms_key_month", "7 keys; requests within the 20,000 free"),
        Item("Amazon CloudWatch", "logs", 6, "cloudwatch_logs_gb", "6 GB of logs ingested"),
        Item("Amazon ECR", "image storage", 5, "ecr_gb_month", "5 GB of images"),
    ]


def reference_lines(book: PriceBook) -> list[dict]:
    return merge_lines(price_items(reference_items(), book))


# ------------------------------------------------------------------ the platform's bill of materials


@dataclass
class UsageAssumptions:
    hours_per_month: float = HOURS_PER_MONTH
    nat_gb_processed: float = 50.0  # container pulls, model downloads at scale-up, S3 via gateway endpoint is free
    amp_million_samples: float = 1000.0
    amp_query_billion_samples: float = 106.0
    grafana_editors: int = 1
    grafana_viewers: int = 1
    ebs_snapshot_gb: float = 40.0
    alb_lcu_average: float = 0.04
    kms_keys: int = 7
    cloudwatch_logs_gb: float = 6.0
    ecr_gb: float = 10.0  # two images (app, Neuron variant), a few tags each
    eval_runs_per_month: float = 4.33  # the weekly evaluation (re-embedding-triggered runs add to this)
    judged_questions_per_run: int = 300
    judge_calls_per_question: int = 6  # faithfulness 2, answer relevancy 1, context precision k=... (batched), recall 1
    judge_input_tokens_per_call: int = 1200
    judge_output_tokens_per_call: int = 250
    judge_model: str = "claude-3-5-haiku"

    def as_dict(self) -> dict:
        return asdict(self)


def platform_items(cfg, usage: UsageAssumptions) -> list[Item]:
    """The bill of materials of a ``PlatformConfig``: node pools at their expected instance types, counts and hours,
    the VPC's NAT layout, load balancers, OpenSearch, observability, EBS, KMS, logs, images, the judge's tokens."""
    h = usage.hours_per_month
    items = [Item("Amazon EKS", "1 cluster", h, "eks_cluster_hour", f"1 cluster x {h:g} h")]
    nat = cfg.vpc.nat_gateways if not cfg.vpc.existing_subnet_ids else 0
    if nat:
        items += [
            Item("Amazon VPC", f"{nat} NAT gateways", nat * h, "nat_gateway_hour", f"{nat} x {h:g} h"),
            Item(
                "Amazon VPC",
                f"{nat} NAT gateways",
                usage.nat_gb_processed,
                "nat_gateway_gb",
                f"{usage.nat_gb_processed:g} GB processed",
            ),
        ]
        items.append(
            Item("Amazon VPC", "public IPv4 addresses", nat * h, "public_ipv4_hour", f"{nat} NAT elastic IPs x {h:g} h")
        )
    ec2_hours = 0.0
    for pool in cfg.node_pools:
        if not pool.expected_instance or pool.expected_count <= 0:
            continue
        hours = pool.expected_count * pool.hours_per_day / 24 * h
        group = "omitted-by-reference" if pool.name in ("gpu", "graviton", "inferentia") else "platform"
        items.append(
            Item(
                "Amazon EC2",
                f"{pool.name} pool: {pool.expected_count:g} x {pool.expected_instance}",
                hours,
                f"ec2_{pool.expected_instance}_hour",
                f"{pool.expected_count:g} nodes x {pool.hours_per_day:g} h/day ({pool.purpose})",
                group,
            )
        )
        items.append(
            Item(
                "Amazon EBS",
                f"{pool.name} pool volumes",
                pool.expected_count * pool.volume_gi,
                "ebs_gp3_gb_month",
                f"{pool.expected_count:g} x {pool.volume_gi} GB gp3",
                group,
            )
        )
        ec2_hours += hours
    items += vision_items(cfg, h)
    items.append(
        Item("Amazon EBS", "snapshots", usage.ebs_snapshot_gb, "ebs_snapshot_gb_month", f"{usage.ebs_snapshot_gb:g} GB")
    )
    items += [
        Item(
            "Amazon Managed Service for Prometheus",
            "metrics ingestion and queries",
            usage.amp_million_samples,
            "amp_ingest_million_samples",
            f"{usage.amp_million_samples:g} M samples ingested",
        ),
        Item(
            "Amazon Managed Service for Prometheus",
            "metrics ingestion and queries",
            usage.amp_query_billion_samples,
            "amp_query_billion_samples",
            f"{usage.amp_query_billion_samples:g} B samples queried",
        ),
        Item(
            "Amazon Managed Grafana",
            "users",
            usage.grafana_editors,
            "amg_editor_month",
            f"{usage.grafana_editors} editor(s)",
        ),
        Item(
            "Amazon Managed Grafana",
            "users",
            usage.grafana_viewers,
            "amg_viewer_month",
            f"{usage.grafana_viewers} viewer(s)",
        ),
        Item(
            "Elastic Load Balancing",
            f"{cfg.load_balancers} ALBs",
            cfg.load_balancers * h,
            "alb_hour",
            f"{cfg.load_balancers} ALBs x {h:g} h",
            "omitted-by-reference" if cfg.load_balancers > 1 else "platform",
        ),
        Item(
            "Elastic Load Balancing",
            f"{cfg.load_balancers} ALBs",
            cfg.load_balancers * usage.alb_lcu_average * h,
            "alb_lcu_hour",
            f"{usage.alb_lcu_average:g} LCU average each",
            "omitted-by-reference" if cfg.load_balancers > 1 else "platform",
        ),
        Item("AWS KMS", "customer managed keys", usage.kms_keys, "kms_key_month", f"{usage.kms_keys} keys"),
        Item(
            "Amazon CloudWatch",
            "logs",
            usage.cloudwatch_logs_gb,
            "cloudwatch_logs_gb",
            f"{usage.cloudwatch_logs_gb:g} GB ingested",
        ),
        Item("Amazon ECR", "image storage", usage.ecr_gb, "ecr_gb_month", f"{usage.ecr_gb:g} GB"),
    ]
    o = cfg.opensearch
    items += [
        Item(
            "Amazon OpenSearch Service",
            f"{o.instance_count} x {o.instance_type}",
            o.instance_count * h,
            f"opensearch_{o.instance_type}_hour",
            f"{o.instance_count} data nodes x {h:g} h",
            "omitted-by-reference",
        ),
        Item(
            "Amazon OpenSearch Service",
            f"{o.instance_count} x {o.instance_type}",
            o.instance_count * o.volume_gi,
            "opensearch_gp3_gb_month",
            f"{o.instance_count} x {o.volume_gi} GB gp3",
            "omitted-by-reference",
        ),
    ]
    calls = usage.eval_runs_per_month * usage.judged_questions_per_run * usage.judge_calls_per_question
    items += [
        Item(
            "Amazon Bedrock",
            f"judge tokens ({usage.judge_model})",
            calls * usage.judge_input_tokens_per_call / 1e6,
            f"bedrock_{usage.judge_model}_input_mtok",
            f"{usage.eval_runs_per_month:g} runs x {usage.judged_questions_per_run} questions x "
            f"{usage.judge_calls_per_question} calls x {usage.judge_input_tokens_per_call} input tokens",
            "omitted-by-reference",
        ),
        Item(
            "Amazon Bedrock",
            f"judge tokens ({usage.judge_model})",
            calls * usage.judge_output_tokens_per_call / 1e6,
            f"bedrock_{usage.judge_model}_output_mtok",
            f"... x {usage.judge_output_tokens_per_call} output tokens",
            "omitted-by-reference",
        ),
    ]
    return items


def vision_items(cfg, hours_per_month: float) -> list[Item]:
    """The vision model's always-on replicas, one GPU node each (``models.vision_instance``, a 1 x L4 g6.xlarge by
    default: the LLM's 4-GPU node has no GPU to spare), at the GPU pool's hours. Its own lines, not the pool's
    ``expected_count``: the pool's expected node stands for the LLM's replicas, and the simulated month scales those."""
    m = cfg.models
    if not m.vision or m.vision_min_replicas <= 0:
        return []
    pool = next((p for p in cfg.node_pools if p.name == "gpu"), None)
    per_day = pool.hours_per_day if pool else 24.0
    volume = pool.volume_gi if pool else 100
    n = m.vision_min_replicas
    return [
        Item(
            "Amazon EC2",
            f"vision model on the gpu pool: {n} x {m.vision_instance}",
            n * per_day / 24 * hours_per_month,
            f"ec2_{m.vision_instance}_hour",
            f"{n} replica(s) x {m.vision_gpus_per_replica} GPU, {m.vision_model_id} on vLLM, {per_day:g} h/day",
            "omitted-by-reference",
        ),
        Item(
            "Amazon EBS",
            "vision model volumes",
            n * volume,
            "ebs_gp3_gb_month",
            f"{n} x {volume} GB gp3",
            "omitted-by-reference",
        ),
    ]


def auto_mode_fee(lines: list[dict], book: PriceBook) -> dict:
    """EKS Auto Mode's management fee on the EC2 it manages (an approximation: a fraction of on-demand)."""
    ec2 = sum(
        p["quantity"] * p["unit_price_usd"] for line in lines if line["service"] == "Amazon EC2" for p in line["parts"]
    )
    frac = book.price("eks_auto_mode_fee_fraction")
    return {
        "service": "Amazon EKS",
        "dimension": "Auto Mode management fee",
        "quantity": round(ec2, 2),
        "unit_price_usd": frac,
        "monthly_usd": round(ec2 * frac, 2),
        "assumption": f"{frac:.0%} of the EC2 on-demand cost Auto Mode manages (approximation)",
        "group": "omitted-by-reference",
        "price_key": "eks_auto_mode_fee_fraction",
        "parts": [],
    }


def omitted_lines(cfg, usage: UsageAssumptions, book: PriceBook) -> list[dict]:
    """What the reference table leaves out, priced from the platform's own bill of materials: GPU nodes, the Graviton Ray
    workers, the OpenSearch domain, the judge's tokens, load balancers beyond the one it counts, Auto Mode's fee."""
    items = []
    for it in platform_items(cfg, usage):
        if it.group != "omitted-by-reference":
            continue
        if it.service == "Elastic Load Balancing":
            extra = cfg.load_balancers - 1
            it = Item(
                it.service,
                f"{extra} extra ALB(s)",
                it.quantity * extra / cfg.load_balancers,
                it.price_key,
                f"{extra} beyond the reference's one",
                it.group,
            )
        items.append(it)
    lines = merge_lines(price_items(items, book))
    lines.append(auto_mode_fee(merge_lines(price_items(platform_items(cfg, usage), book)), book))
    return lines


def platform_lines(cfg, usage: UsageAssumptions, book: PriceBook) -> list[dict]:
    lines = merge_lines(price_items(platform_items(cfg, usage), book))
    lines.append(auto_mode_fee(lines, book))
    return lines


# ------------------------------------------------------------------ unit economics


@dataclass
class Throughput:
    option: str  # e.g. "gpu-g6.12xlarge"
    model: str
    tokens_per_s: float  # processed tokens (prompt + completion) per second per node, at the measured batch
    where: str  # where and how it was measured (or "assumption: ...")
    instance: str
    nodes: float = 1.0  # nodes per serving replica (normally 1)
    tokens_per_answer: float = 0.0
    measured: bool = True
    extra: dict = field(default_factory=dict)


def unit_costs(t: Throughput, book: PriceBook) -> dict:
    hourly = book.price(f"ec2_{t.instance}_hour") * t.nodes
    per_mtok = hourly / (t.tokens_per_s * 3600) * 1e6 if t.tokens_per_s else None
    per_answer = per_mtok * t.tokens_per_answer / 1e6 if per_mtok is not None and t.tokens_per_answer else None
    return {
        "option": t.option,
        "model": t.model,
        "instance": t.instance,
        "hourly_usd": round(hourly, 4),
        "tokens_per_s": t.tokens_per_s,
        "usd_per_million_tokens": round(per_mtok, 4) if per_mtok is not None else None,
        "usd_per_answer": round(per_answer, 6) if per_answer is not None else None,
        "measured": t.measured,
        "where": t.where,
        **t.extra,
    }


def monthly_cost_for_traffic(
    tokens_per_s_needed: float, t: Throughput, book: PriceBook, hours: float = HOURS_PER_MONTH
) -> float:
    """Always-on nodes enough for the traffic (at least one): a serving fleet cannot run a fraction of a node."""
    nodes = max(1, math.ceil(tokens_per_s_needed / t.tokens_per_s))
    return nodes * t.nodes * book.price(f"ec2_{t.instance}_hour") * hours


def break_even(
    cpu: Throughput, gpu: Throughput, book: PriceBook, tokens_per_answer: float, max_cpu_nodes: int = 100_000
) -> dict:
    """The smallest traffic (answers/day) at which an always-on GPU fleet costs no more than a CPU fleet for the same
    traffic. Both costs are step functions of traffic; the CPU fleet's steps are where a crossing can first happen."""
    pc = cpu.nodes * book.price(f"ec2_{cpu.instance}_hour")
    pg = gpu.nodes * book.price(f"ec2_{gpu.instance}_hour")
    for n in range(1, max_cpu_nodes + 1):
        t = (n - 1) * cpu.tokens_per_s + 1e-6  # just past the (n-1)-th CPU node's capacity: n CPU nodes needed
        gpus = max(1, math.ceil(t / gpu.tokens_per_s))
        if gpus * pg <= n * pc:
            return {
                "answers_per_day": max(1, math.ceil(t * 86400 / tokens_per_answer)),
                "cpu_nodes": n,
                "gpu_nodes": gpus,
                "cpu_monthly_usd": round(n * pc * HOURS_PER_MONTH, 2),
                "gpu_monthly_usd": round(gpus * pg * HOURS_PER_MONTH, 2),
                "tokens_per_answer": tokens_per_answer,
            }
    return {"answers_per_day": None, "reason": f"the GPU fleet is not cheaper up to {max_cpu_nodes} CPU nodes"}


def compare_with_cost_explorer(ce, estimate_lines: list[dict], cluster: str, today: float | None = None) -> dict:
    t = time.gmtime(today or time.time())
    first = f"{t.tm_year:04d}-{t.tm_mon:02d}-01"
    prev = f"{t.tm_year - (t.tm_mon == 1):04d}-{(t.tm_mon - 2) % 12 + 1:02d}-01"
    resp = ce.get_cost_and_usage(
        TimePeriod={"Start": prev, "End": first},
        Granularity="MONTHLY",
        Metrics=["UnblendedCost"],
        GroupBy=[{"Type": "DIMENSION", "Key": "SERVICE"}],
        Filter={"Tags": {"Key": "agentic/cluster", "Values": [cluster], "MatchOptions": ["EQUALS"]}},
    )
    actual = {
        g["Keys"][0]: float(g["Metrics"]["UnblendedCost"]["Amount"]) for r in resp["ResultsByTime"] for g in r["Groups"]
    }
    estimate: dict[str, float] = {}
    for line in estimate_lines:
        estimate[line["service"]] = estimate.get(line["service"], 0.0) + line["monthly_usd"]
    services = sorted(set(actual) | set(estimate))
    return {
        "period": [prev, first],
        "services": [
            {"service": s, "estimate_usd": round(estimate.get(s, 0.0), 2), "actual_usd": round(actual.get(s, 0.0), 2)}
            for s in services
        ],
        "estimate_total_usd": round(sum(estimate.values()), 2),
        "actual_total_usd": round(sum(actual.values()), 2),
    }
