"""Capacity planning: how many answers per hour one model replica serves within a latency SLO, on each hardware
variant, and the cheapest variant and replica schedule for a day of traffic. Pure logic; the ``capacity_plan``
asset reads the sources (``infra/capacity/sources.json``, ``benchmarks/results``) and the price book.

A replica is described by its decode step (the time one step takes when ``b`` requests decode together, median, and
its p95 over median), its prefill rate and the largest batch its memory holds (``Engine``). An answer is one request
of ``prompt`` uncached prompt tokens and ``output`` tokens out (``Workload``). In a closed loop of ``b`` requests a
request's prefill stalls the others' decoding, so over one request's life every other request's prefill passes once:

    end-to-end (mean) = output x step(b) + b x prefill time
    answers/s         = b / end-to-end

p95 end-to-end takes p95 prompt and output and the step's p95; p95 TTFT waits behind the prefills in progress when
the request arrives (binomial: each other request is prefilling a share ``prefill / end-to-end`` of its time).
The design and its limits are in docs/serving.md ("Capacity plan").
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

DAYS_PER_MONTH = 30.4
KV_MEMORY_SHARE = 0.9  # vLLM's default gpu_memory_utilization: the share of GPU memory for weights and KV cache


@dataclass(frozen=True)
class Workload:
    """One answer as the engine sees it: uncached prompt tokens and output tokens, mean and p95."""

    prompt: float
    prompt_p95: float
    output: float
    output_p95: float
    source: str = ""

    @classmethod
    def from_rows(cls, rows: list[tuple[float, float]], source: str = "") -> Workload:
        """From (prompt tokens, output tokens) per answer."""
        if not rows:
            raise ValueError("a workload needs at least one measured answer")
        prompts, outputs = [p for p, _ in rows], [o for _, o in rows]
        return cls(mean(prompts), percentile(prompts, 95), mean(outputs), percentile(outputs, 95), source)


@dataclass(frozen=True)
class Engine:
    """One replica: decode step(b) = max(base + per_seq x b, compute_per_seq x b) ms (median); ``p95_ratio``: the
    step's p95 over its median at a batch, interpolated; prefill rate; the largest batch memory holds."""

    base_ms: float
    per_seq_ms: float
    prefill_tokens_per_s: float
    max_batch: int
    compute_per_seq_ms: float = 0.0
    p95_ratio: tuple[tuple[float, float], ...] = ((1.0, 1.0),)
    source: str = ""

    def step_ms(self, b: int) -> float:
        return max(self.base_ms + self.per_seq_ms * b, self.compute_per_seq_ms * b)

    def step_p95_ms(self, b: int) -> float:
        return self.step_ms(b) * interpolate(self.p95_ratio, b)


@dataclass(frozen=True)
class Slo:
    ttft_p95_ms: float
    e2e_p95_ms: float


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def percentile(xs: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    s = sorted(xs)
    k = (len(s) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def interpolate(table: tuple[tuple[float, float], ...], x: float) -> float:
    """Piecewise-linear in ``x`` over sorted (x, y) pairs, flat outside them."""
    pts = sorted(table)
    if x <= pts[0][0]:
        return pts[0][1]
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return pts[-1][1]


def binomial_quantile(n: int, p: float, q: float) -> int:
    """The smallest k with P(Binomial(n, p) <= k) >= q."""
    acc = 0.0
    for k in range(n + 1):
        acc += math.comb(n, k) * p**k * (1 - p) ** (n - k)
        if acc >= q - 1e-12:
            return k
    return n


def operating_point(engine: Engine, w: Workload, b: int) -> dict:
    """Throughput and latency of one replica with ``b`` requests in flight (closed loop)."""
    step, step95 = engine.step_ms(b) / 1000, engine.step_p95_ms(b) / 1000
    tau, tau95 = w.prompt / engine.prefill_tokens_per_s, w.prompt_p95 / engine.prefill_tokens_per_s
    e2e = w.output * step + b * tau
    ahead = binomial_quantile(b - 1, min(1.0, tau / e2e), 0.95) if b > 1 else 0
    ttft95 = tau95 + ahead * tau + step
    e2e95 = tau95 + (b - 1) * tau + w.output_p95 * step95
    return {
        "concurrency": b,
        "answers_per_s": b / e2e,
        "output_tokens_per_s": b * w.output / e2e,
        "e2e_mean_ms": 1000 * e2e,
        "ttft_p95_ms": 1000 * ttft95,
        "e2e_p95_ms": 1000 * e2e95,
        "step_ms": 1000 * step,
    }


def capacity_at_slo(engine: Engine, w: Workload, slo: Slo) -> dict | None:
    """The operating point with the most answers/s whose p95 TTFT and end-to-end meet the SLO (None: none does)."""
    best = None
    for b in range(1, engine.max_batch + 1):
        p = operating_point(engine, w, b)
        if p["ttft_p95_ms"] <= slo.ttft_p95_ms and p["e2e_p95_ms"] <= slo.e2e_p95_ms:
            if best is None or p["answers_per_s"] > best["answers_per_s"]:
                best = p
    return best


# -- engines from their sources -------------------------------------------------------------------------------------


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least squares y = a + b x."""
    mx, my = mean(xs), mean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return my - slope * mx, slope


def published_engine(points: list[dict], prefill_tokens_per_s: float, max_batch: int, source: str) -> Engine:
    """A published batch sweep (mean batch, median and p95 inter-token latency): the step fitted as a line in the
    batch (weights read once per step, then a cost per sequence), the p95/median ratio as published per batch."""
    xs = [p["avg_batch_size"] for p in points]
    base, per_seq = fit_line(xs, [p["median_itl_ms"] for p in points])
    ratio = tuple((p["avg_batch_size"], p["p95_itl_ms"] / p["median_itl_ms"]) for p in points)
    return Engine(base, per_seq, prefill_tokens_per_s, max_batch, p95_ratio=ratio, source=source)


def max_batch(memory_gb: float, gpus: int, weight_bytes: float, kv_bytes_per_token: float, context: float) -> int:
    """Requests whose KV cache (``context`` tokens each) fits beside the weights (0: the weights do not fit)."""
    free = KV_MEMORY_SHARE * memory_gb * 1e9 * gpus - weight_bytes
    return max(0, int(free // (kv_bytes_per_token * context)))


def scaled_engine(ref: Engine, ref_gpu: dict, gpu: dict, gpus: int, batch: int) -> Engine:
    """Another GPU from a reference engine: decode steps scale with memory bandwidth (weights and KV cache are read
    once per step, split over ``gpus`` by tensor parallelism), prefill with dense bf16 FLOPS. Tensor parallelism's
    all-reduce over PCIe is not modelled: the estimate is optimistic for ``gpus`` > 1."""
    bw = ref_gpu["bandwidth_gb_s"] / (gpus * gpu["bandwidth_gb_s"])
    flops = gpus * gpu["bf16_dense_tflops"] / ref_gpu["bf16_dense_tflops"]
    return Engine(
        ref.base_ms * bw,
        ref.per_seq_ms * bw,
        ref.prefill_tokens_per_s * flops,
        batch,
        p95_ratio=ref.p95_ratio,
        source=f"scaled from {ref.source}: bandwidth x{1 / bw:.2f}, bf16 FLOPS x{flops:.2f} ({gpu['source']})",
    )


def cpu_engine(model: dict, read_gb_s: float, slots: int, source: str) -> Engine:
    """llama-server on this CPU from ``bench_physical_bound``'s measurement of one request: a decode step reads the
    weights (the bandwidth floor) and costs the measured single-request time per sequence in it (decode here is
    compute-bound: it scaled with the cores, not with the bandwidth); prefill at the measured rate."""
    decode, prefill = model["decode_tokens_per_s"], model["prefill_tokens_per_s"]
    return Engine(
        1000 * model["decode_bytes_per_token"] / (read_gb_s * 1e9),
        0.0,
        mean(prefill),
        slots,
        compute_per_seq_ms=1000 / mean(decode),
        source=source,
    )


# -- the plan -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    name: str
    instance: str
    gpus_per_node: int = 1
    gpus_per_replica: int = 1
    engine: Engine | None = None
    basis: str = ""  # published | scaled | measured
    reason: str = ""  # why it cannot be planned (no source, does not fit)


def replicas_for(answers_per_hour: float, per_replica_hour: float, headroom: float) -> int:
    """Replicas so that each runs at most ``headroom`` of its capacity at the SLO; none for no traffic."""
    return math.ceil(answers_per_hour / (per_replica_hour * headroom)) if answers_per_hour > 0 else 0


def plan_variant(v: Variant, w: Workload, slo: Slo, profile: list[float], price: float | None, headroom: float) -> dict:
    row: dict = {"variant": v.name, "instance": v.instance, "basis": v.basis, "planned": False}
    if v.engine is None:
        return {**row, "reason": v.reason}
    cap = capacity_at_slo(v.engine, w, slo)
    if cap is None:
        first = operating_point(v.engine, w, 1)
        return {**row, "reason": f"no batch meets the SLO (one request alone: p95 TTFT {first['ttft_p95_ms']:.0f} "
                f"ms, end-to-end {first['e2e_p95_ms']:.0f} ms)"}  # fmt: skip
    per_hour = cap["answers_per_s"] * 3600
    row.update({"capacity": cap, "answers_per_replica_hour": round(per_hour, 1), "source": v.engine.source})
    if price is None:
        return {**row, "reason": f"{v.instance} is not in the price book"}
    replicas = [replicas_for(a, per_hour, headroom) for a in profile]
    nodes = [math.ceil(r * v.gpus_per_replica / v.gpus_per_node) for r in replicas]
    day = sum(nodes) * price * 24 / len(profile)
    replica_hour = price * v.gpus_per_replica / v.gpus_per_node
    return {
        **row,
        "planned": True,
        "usd_per_hour_node": price,
        "replicas": replicas,
        "nodes": nodes,
        "daily_usd": round(day, 2),
        "monthly_usd": round(day * DAYS_PER_MONTH, 2),
        "usd_per_1000_answers": round(day / (sum(profile) * 24 / len(profile)) * 1000, 4) if sum(profile) else None,
        "usd_per_1000_answers_at_capacity": round(replica_hour / per_hour * 1000, 4),
        "usd_per_million_output_tokens_at_capacity": round(replica_hour / (per_hour * w.output) * 1e6, 4),
    }


def plan(
    variants: list[Variant],
    w: Workload,
    slo: Slo,
    profile: list[float],
    prices: dict[str, float | None],
    headroom: float,
) -> dict:
    """Every variant's capacity and cost for the day ``profile`` (answers per hour), and the cheapest that meets the
    SLO at every hour (ties: the first listed)."""
    rows = [plan_variant(v, w, slo, profile, prices.get(v.instance), headroom) for v in variants]
    planned = [r for r in rows if r["planned"]]
    chosen = min(planned, key=lambda r: r["monthly_usd"])["variant"] if planned else None
    return {"slo": asdict(slo), "workload": asdict(w), "headroom": headroom, "variants": rows, "chosen": chosen}


def markdown(record: dict) -> str:
    """The plan as a table: each variant, the chosen and the deployed one marked, Bedrock's row last."""
    lines = [
        "| variant | instance | basis | answers/h per replica at the SLO | batch | $/month | $ per 1,000 answers "
        "| $ per 1M output tokens at capacity | answers/h above which one node beats Bedrock | not planned because |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    fmt = lambda v, spec: "" if v is None else format(v, spec)  # noqa: E731
    for r in record["variants"]:
        cap = r.get("capacity") or {}
        mark = " (chosen)" if r["variant"] == record["chosen"] else ""
        mark += " (configured)" if r["variant"] == record["configured"] else ""
        lines.append(
            f"| {r['variant']}{mark} | {r['instance']} | {r['basis']} | {fmt(r.get('answers_per_replica_hour'), ',.0f')} "
            f"| {fmt(cap.get('concurrency'), 'd')} | {fmt(r.get('monthly_usd'), ',.0f')} "
            f"| {fmt(r.get('usd_per_1000_answers'), '.3f')} | {fmt(r.get('usd_per_million_output_tokens_at_capacity'), '.3f')} "
            f"| {fmt(r.get('break_even_answers_per_hour_vs_bedrock'), ',d')} | {r.get('reason', '')} |"
        )
    b = record["bedrock"]
    lines.append(
        f"| Bedrock {b['model']} | managed | price book | | | | {b['usd_per_1000_answers']:.3f} "
        f"| {b['usd_per_million_output_tokens']:.3f} | | (per token, input included) |"
    )
    return "\n".join(lines)


def bedrock_costs(w: Workload, input_usd_mtok: float, output_usd_mtok: float) -> dict:
    """A managed model's cost for the same answers: per 1,000 answers (its prompt and output tokens) and per 1M
    output tokens (with the input each output token brings along)."""
    per_answer = (w.prompt * input_usd_mtok + w.output * output_usd_mtok) / 1e6
    return {
        "usd_per_1000_answers": round(per_answer * 1000, 4),
        "usd_per_million_output_tokens": round(per_answer / w.output * 1e6, 4),
    }


def measured_prefill(doc: dict, model: str) -> float:
    """Prompt tokens/s of the largest measured batch's prefill (``bench_gpu_decode``'s rows)."""
    rows = [r for r in doc["models"][model]["rows"] if r.get("prefill_seconds")]
    best = max(rows, key=lambda r: r["batch"])
    return best["batch"] * best["prompt_tokens"] / best["prefill_seconds"]


def variants_from_sources(sources: dict, gpu_measured: dict, w: Workload) -> list[Variant]:
    """The variants of ``infra/capacity/sources.json``: the published sweep's GPU as published (its prefill from our
    own measurement on that GPU), the other GPUs scaled from it by their datasheets, the rest unplannable with the
    reason given there. A GPU whose memory cannot hold the weights and one request's KV cache is not planned."""
    model, gpus = sources["model"], sources["gpus"]
    weights = model["parameters"] * model["bytes_per_parameter"]
    context = w.prompt_p95 + w.output_p95
    pre = sources["prefill"]
    prefill = measured_prefill(gpu_measured, pre["model"])
    refs = {}
    for name, pub in sources["published"].items():
        spec = next(v for v in sources["variants"] if v["name"] == name)
        batch = max_batch(gpus[spec["gpu"]]["memory_gb"], spec["gpus_per_replica"], weights, model["kv_bytes_per_token"], context)  # fmt: skip
        refs[spec["gpu"]] = published_engine(pub["points"], prefill, batch, f"{pub['source']} ({pub['url']})")
    out = []
    for v in sources["variants"]:
        base = Variant(v["name"], v["instance"], v.get("gpus_per_node", 1), v.get("gpus_per_replica", 1))
        if "unsupported" in v:
            out.append(Variant(**{**asdict(base), "reason": v["unsupported"]}))
            continue
        gpu = gpus[v["gpu"]]
        batch = max_batch(gpu["memory_gb"], base.gpus_per_replica, weights, model["kv_bytes_per_token"], context)
        if batch < 1:
            reason = f"{model['source_id']} bf16 ({weights / 1e9:.1f} GB) and one request's KV cache do not fit in "
            out.append(
                Variant(**{**asdict(base), "reason": reason + f"{base.gpus_per_replica} x {gpu['memory_gb']} GB"})
            )
            continue
        ref_gpu = next(iter(refs))
        if v["gpu"] in refs:
            engine, basis = refs[v["gpu"]], "published"
        else:
            engine, basis = scaled_engine(refs[ref_gpu], gpus[ref_gpu], gpu, base.gpus_per_replica, batch), "scaled"
        out.append(Variant(**{**asdict(base), "engine": engine, "basis": basis}))
    return out


# -- the planner checked against a load test ------------------------------------------------------------------------

TEMPLATE_TOKENS = 5  # a ChatML message's framing: <|im_start|>, the role, a newline, <|im_end|>, a newline
REPLY_END_TOKENS = 2  # a reply cut at max_tokens was never closed in the slot: its <|im_end|> and newline are new


def uncached_prompts(record: dict, count) -> list[int]:
    """The prompt tokens each request of an AIPerf ``multi_turn`` conversation makes the server process, with its
    prefix cache: the system text is the slot's cached prefix; a first turn pays its own text (sources, question,
    the run's marker); a later turn pays its own text and the close of the reply before it, whose tokens the slot
    generated and holds (llama-server's counters: 18-21 uncached tokens for a follow-up, 6 Dec). ``count``: text ->
    tokens."""
    out = []
    for turn in (t for t in record["turns"] if t.get("role") != "system"):
        own = count(turn["text"]) + TEMPLATE_TOKENS + 3  # and the assistant header the prompt ends with
        out.append(own if not out else own + REPLY_END_TOKENS)
    return out


def predict_level(engine: Engine, prompts: list[int], output: int, concurrency: int) -> dict:
    """What the model says a closed-loop level of these requests will measure."""
    w = Workload.from_rows([(p, output) for p in prompts], "the level's own requests")
    point = operating_point(engine, w, min(concurrency, engine.max_batch))
    return {**point, "requests_per_s": point["answers_per_s"], "prompt_mean": w.prompt, "prompt_p95": w.prompt_p95}
