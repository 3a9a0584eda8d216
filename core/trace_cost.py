"""Cost per answer from traces: each answer's tokens per model, priced by measured throughput or per token, with its
latency, aggregated per (route, model) and per route in bounded memory.

An answer is one ``agentic.answer`` root span and its descendants. Its route is the root's ``agentic.route``; its
latency the root's duration. Tokens are counted once, from the agent's own LLM-call spans:

- the LiteLLM gateway's spans (``litellm_request``, ``raw_gen_ai_request``, the proxy's request span, or any span with
  ``litellm.*`` attributes) and everything under them are skipped: they repeat the call the agent already recorded;
- a span with token counts is counted only when no ancestor was (Strands' ``invoke_agent`` span carries the sum of
  its ``chat`` children, so the sum is counted and the children are not).

A self-hosted model's call costs the node time it takes: tokens / measured tokens per second per node x the node's
price per second (the measurement counts prompt and completion tokens alike). A model with a per-token price in the
price book (Bedrock) is priced per token. Any other model is unpriced, and so is every answer that used it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

ROOT_SPAN = "agentic.answer"
GATEWAY_SPANS = frozenset({"litellm_request", "raw_gen_ai_request", "Received Proxy Server Request"})
INPUT_KEYS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt")
OUTPUT_KEYS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.token_count.completion")
MODEL_KEYS = ("gen_ai.response.model", "gen_ai.request.model", "llm.model_name")
PROVIDER_PREFIXES = ("openai/", "hosted_vllm/", "bedrock/", "converse/")


class SpanLike(Protocol):
    span_id: str
    parent_id: str | None
    name: str
    attributes: dict

    @property
    def seconds(self) -> float: ...


@dataclass(frozen=True)
class AnswerRecord:
    trace_id: str
    route: str
    seconds: float
    tokens: dict[str, tuple[int, int]]  # model -> (input tokens, output tokens)
    mode: str = "fast"
    status: str = "UNSET"


def _first(attrs: dict, keys: tuple[str, ...]) -> Any:
    return next((attrs[k] for k in keys if attrs.get(k) not in (None, "")), None)


def is_gateway_span(span: SpanLike) -> bool:
    return span.name in GATEWAY_SPANS or any(str(k).startswith("litellm.") for k in span.attributes)


def llm_usage(span: SpanLike) -> tuple[str, int, int] | None:
    """(model, input tokens, output tokens) of a span that records an LLM call, else None."""
    tin, tout = _first(span.attributes, INPUT_KEYS), _first(span.attributes, OUTPUT_KEYS)
    if tin is None and tout is None:
        return None
    model = str(_first(span.attributes, MODEL_KEYS) or "unknown")
    return model, int(tin or 0), int(tout or 0)


def answer_record(root: SpanLike, spans: Iterable[SpanLike], trace_id: str = "") -> AnswerRecord:
    """One answer from its root span and its trace's spans (spans outside the root's subtree are ignored)."""
    children: dict[str, list[SpanLike]] = {}
    for s in spans:
        if s.parent_id and s.span_id != root.span_id:
            children.setdefault(s.parent_id, []).append(s)
    tokens: dict[str, tuple[int, int]] = {}
    stack = list(children.get(root.span_id, []))
    while stack:  # depth-first from the root; a counted or gateway span's subtree is not entered
        s = stack.pop()
        if is_gateway_span(s):
            continue
        usage = llm_usage(s)
        if usage is not None:
            model, tin, tout = usage
            a, b = tokens.get(model, (0, 0))
            tokens[model] = (a + tin, b + tout)
            continue
        stack.extend(children.get(s.span_id, []))
    attrs = root.attributes
    return AnswerRecord(
        trace_id=trace_id or getattr(root, "trace_id", ""),
        route=str(attrs.get("agentic.route") or "unknown"),
        seconds=root.seconds,
        tokens=tokens,
        mode=str(attrs.get("agentic.mode") or "fast"),
        status=getattr(root, "status", "UNSET"),
    )


def batched(items: Iterable, n: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch


def iter_answers(
    roots: Iterable[SpanLike],
    fetch: Callable[[str], list[SpanLike]],
    batch: int = 20,
    mapper: Callable[..., Iterable] = map,
) -> Iterator[AnswerRecord]:
    """Answers from root spans, fetching their traces ``batch`` at a time (``mapper`` may be a thread pool's map):
    memory holds one batch of traces, whatever the number of answers."""
    for group in batched(roots, batch):
        for root, spans in zip(group, mapper(fetch, [r.trace_id for r in group])):
            yield answer_record(root, spans)


# ------------------------------------------------------------------ prices


@dataclass(frozen=True)
class ModelPrice:
    model: str
    basis: str  # "node time" | "per token"
    usd_per_input_token: float
    usd_per_output_token: float
    source: str

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return tokens_in * self.usd_per_input_token + tokens_out * self.usd_per_output_token


def normalize_model(model: str) -> str:
    m = model.strip().lower()
    for prefix in PROVIDER_PREFIXES:
        if m.startswith(prefix):
            m = m[len(prefix) :]
    return m


class Pricer:
    """Model name -> ModelPrice (None: unpriced), from the measured throughputs (``core.cost.Throughput``) of the
    serving option ``model_options`` names for it, else the price book's per-token Bedrock prices."""

    def __init__(self, throughputs: Iterable, book, model_options: dict[str, str]):
        self.options = {t.option: t for t in throughputs}
        self.book = book
        self.model_options = {normalize_model(k): v for k, v in model_options.items()}
        self._cache: dict[str, ModelPrice | None] = {}  # one entry per distinct model name

    def __call__(self, model: str) -> ModelPrice | None:
        if model not in self._cache:
            self._cache[model] = self._price(model)
        return self._cache[model]

    def _price(self, model: str) -> ModelPrice | None:
        name = normalize_model(model)
        t = self.options.get(self.model_options.get(name, ""))
        if t is not None and t.tokens_per_s > 0:
            hourly = self.book.price(f"ec2_{t.instance}_hour") * t.nodes
            per_token = hourly / 3600 / t.tokens_per_s
            return ModelPrice(
                model,
                "node time",
                per_token,
                per_token,
                f"{t.option}: {t.tokens_per_s:,.0f} tokens/s per node, {t.nodes:g} x {t.instance} at ${hourly:.4f}/h",
            )
        for key in self.book.prices:  # e.g. bedrock_claude-3-5-haiku_input_mtok for anthropic.claude-3-5-haiku-...
            if key.startswith("bedrock_") and key.endswith("_input_mtok"):
                short = key[len("bedrock_") : -len("_input_mtok")]
                out_key = f"bedrock_{short}_output_mtok"
                if short in name and out_key in self.book.prices:
                    return ModelPrice(
                        model,
                        "per token",
                        self.book.price(key) / 1e6,
                        self.book.price(out_key) / 1e6,
                        f"Bedrock {short}: ${self.book.price(key):g} / ${self.book.price(out_key):g} per 1M tokens "
                        "in / out",
                    )
        return None


# ------------------------------------------------------------------ aggregation in bounded memory


class LatencyHistogram:
    """Log-spaced buckets (each 2% wide) with exact count, sum, min and max: a quantile is within 1% of a sample's
    value, and memory is bounded by the range of values (under 1,200 buckets from 1 ms to a day), not their number."""

    GAMMA = 1.02
    FLOOR_S = 1e-3

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, seconds: float) -> None:
        x = max(float(seconds), self.FLOOR_S)
        i = math.ceil(math.log(x) / math.log(self.GAMMA))
        self.buckets[i] = self.buckets.get(i, 0) + 1
        self.count += 1
        self.total += float(seconds)
        self.min = min(self.min, float(seconds))
        self.max = max(self.max, float(seconds))

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def quantile(self, q: float) -> float | None:
        """Nearest-rank quantile: the value at rank ceil(q * n), estimated as its bucket's midpoint."""
        if not self.count:
            return None
        rank = max(1, math.ceil(q * self.count))
        if rank == self.count:  # the largest value is known exactly (p95 of fewer than 20 values is the max)
            return self.max
        seen = 0
        for i in sorted(self.buckets):
            seen += self.buckets[i]
            if seen >= rank:
                mid = 2 * self.GAMMA**i / (self.GAMMA + 1)
                return min(max(mid, self.min), self.max)
        return self.max


@dataclass
class _Acc:
    answers: int = 0
    priced_answers: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    costliest: tuple[float, str] = (-1.0, "")  # (USD, trace id) of the most expensive priced answer


@dataclass
class CostReport:
    rows: list[dict]  # per (route, model)
    routes: list[dict]  # per route
    answers: int
    priced: int
    unpriced: int
    without_llm_calls: int
    prices: dict[str, dict | None]  # model -> how it was priced (None: unpriced)


def _latency(h: LatencyHistogram) -> dict:
    r = lambda v: None if v is None else round(v, 3)  # noqa: E731
    return {"latency_mean_s": r(h.mean), "latency_p50_s": r(h.quantile(0.5)), "latency_p95_s": r(h.quantile(0.95))}


def _usd(acc: _Acc, priced: bool) -> dict:
    per = acc.cost_usd / acc.priced_answers if priced and acc.priced_answers else None
    return {
        "usd_per_answer": None if per is None else round(per, 8),
        "usd_per_1000_answers": None if per is None else round(per * 1000, 5),
    }


def aggregate(answers: Iterable[AnswerRecord], price: Callable[[str], ModelPrice | None]) -> CostReport:
    """Per (route, model): answers that used the model, their tokens, the answers' latency (mean, p50, p95) and the
    model's cost per answer; per route: all its answers, with the cost per answer over the priced ones."""
    by_model: dict[tuple[str, str], _Acc] = {}
    by_route: dict[str, _Acc] = {}
    n = priced_n = no_llm = 0
    for a in answers:
        n += 1
        route = by_route.setdefault(a.route, _Acc())
        route.answers += 1
        route.latency.add(a.seconds)
        total, priced = 0.0, True
        for model, (tin, tout) in a.tokens.items():
            acc = by_model.setdefault((a.route, model), _Acc())
            acc.answers += 1
            acc.tokens_in += tin
            acc.tokens_out += tout
            acc.latency.add(a.seconds)
            route.tokens_in += tin
            route.tokens_out += tout
            p = price(model)
            if p is None:
                priced = False
                continue
            cost = p.cost(tin, tout)
            acc.priced_answers += 1
            acc.cost_usd += cost
            total += cost
        no_llm += not a.tokens
        if priced:
            priced_n += 1
            route.priced_answers += 1
            route.cost_usd += total
            if total > route.costliest[0]:
                route.costliest = (total, a.trace_id)
    rows = []
    for (route, model), acc in sorted(by_model.items()):
        p = price(model)
        rows.append(
            {
                "route": route,
                "model": model,
                "answers": acc.answers,
                "tokens_in": acc.tokens_in,
                "tokens_out": acc.tokens_out,
                "tokens_per_answer": round((acc.tokens_in + acc.tokens_out) / acc.answers, 1),
                **_latency(acc.latency),
                **_usd(acc, p is not None),
                "basis": p.basis if p else "unpriced",
            }
        )
    routes = [
        {
            "route": route,
            "answers": acc.answers,
            "priced_answers": acc.priced_answers,
            "unpriced_answers": acc.answers - acc.priced_answers,
            "tokens_in": acc.tokens_in,
            "tokens_out": acc.tokens_out,
            **_latency(acc.latency),
            **_usd(acc, True),
            "costliest_trace": acc.costliest[1] or None,
        }
        for route, acc in sorted(by_route.items())
    ]
    models = sorted({m for _, m in by_model})
    prices = {m: (vars(p) if (p := price(m)) else None) for m in models}
    return CostReport(rows, routes, n, priced_n, n - priced_n, no_llm, prices)


def markdown(report: CostReport) -> str:
    """The per (route, model) table, then the per-route totals."""
    f = lambda v, spec: "unpriced" if v is None else format(v, spec)  # noqa: E731
    g = lambda v: "" if v is None else f"{v:.2f}"  # noqa: E731
    lines = [
        "| route | model | answers | tokens in | tokens out | mean s | p95 s | $ per answer | $ per 1,000 answers | basis |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    lines += [
        f"| {r['route']} | {r['model']} | {r['answers']:,} | {r['tokens_in']:,} | {r['tokens_out']:,} | "
        f"{g(r['latency_mean_s'])} | {g(r['latency_p95_s'])} | {f(r['usd_per_answer'], '.6f')} | "
        f"{f(r['usd_per_1000_answers'], '.4f')} | {r['basis']} |"
        for r in report.rows
    ]
    lines += [
        "",
        "| route | answers | priced | tokens in | tokens out | mean s | p50 s | p95 s | $ per answer | $ per 1,000 answers |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['route']} | {r['answers']:,} | {r['priced_answers']:,} | {r['tokens_in']:,} | {r['tokens_out']:,} | "
        f"{g(r['latency_mean_s'])} | {g(r['latency_p50_s'])} | {g(r['latency_p95_s'])} | "
        f"{f(r['usd_per_answer'], '.6f')} | {f(r['usd_per_1000_answers'], '.4f')} |"
        for r in report.routes
    ]
    return "\n".join(lines)
