"""The cost per answer, by route and model, from the answers' own traces."""

import base64
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import dagster as dg

from assets.cost.measured import measured_throughputs
from assets.cost.state import ANSWER_COSTS_RECORD, asset
from core.plots import cost_per_answer_png
from core.trace_cost import ROOT_SPAN, Pricer, aggregate, iter_answers
from core.trace_cost import markdown as cost_markdown
from resources.platform import PlatformResource
from resources.pricing import PriceBookResource
from resources.state_store import PipelineStateStore
from resources.traces import TraceStoreResource


class AnswerCostConfig(dg.Config):
    days: float = 7.0  # answers whose root span started within this many days
    page_size: int = 200  # root spans per page read from the trace store
    trace_batch: int = 20  # traces fetched (in parallel) and held at once
    fetch_threads: int = 4
    # the serving option (measured_throughputs) whose measured tokens/s prices a model seen in traces; the local
    # 1.5B is llama.cpp on CPU (measured here), eks's Qwen3-14B the H100 measurement (the nearest measured)
    model_options: dict[str, str] = {
        "qwen2.5-coder-1.5b-instruct": "cpu-graviton",
        "qwen2.5-1.5b": "gpu-h100-qwen2.5-1.5b",
        "qwen3-14b": "gpu-h100-qwen3-14b",
    }


@asset(
    kinds={"python", "opentelemetry"},
    deps=[dg.AssetKey("price_book")],
    description="Cost per answer by route and model, from the answers' own traces (Phoenix on local, Langfuse on eks): "
    "each `agentic.answer` of the last N days, its LLM calls' tokens (counted once, from the agent's spans, not the "
    "gateway's) priced as node time at the measured throughput (Bedrock per token), its latency from the root span "
    "(mean, p50, p95); a markdown table and a bar chart per route and model.",
)
def answer_costs(
    context: dg.AssetExecutionContext,
    config: AnswerCostConfig,
    platform: PlatformResource,
    prices: PriceBookResource,
    traces: TraceStoreResource,
    pipeline_state: PipelineStateStore,
) -> dg.MaterializeResult:
    book = prices.load(platform.load().region)
    options, _ = measured_throughputs()
    pricer = Pricer(options, book, config.model_options)
    since = datetime.now(timezone.utc) - timedelta(days=config.days)
    t0 = time.perf_counter()
    # one batch of traces in memory at a time; the report's accumulators are per (route, model)
    with ThreadPoolExecutor(max(1, config.fetch_threads)) as pool:
        answers = iter_answers(
            traces.iter_spans(ROOT_SPAN, since, config.page_size), traces.spans, config.trace_batch, pool.map
        )
        report = aggregate(answers, pricer)
    seconds = time.perf_counter() - t0
    context.log.info(f"{report.answers} answers read in {seconds:.1f} s, {report.unpriced} unpriced")
    md = cost_markdown(report)
    png = cost_per_answer_png(report.rows)
    record = {
        "since": since.isoformat(),
        "price_book": book.as_of,
        "region": book.region,
        "rows": report.rows,
        "routes": report.routes,
        "prices": report.prices,
        "answers": report.answers,
        "priced": report.priced,
        "unpriced": report.unpriced,
    }
    pipeline_state.write_json(ANSWER_COSTS_RECORD, record)
    pipeline_state.put_bytes(f"{ANSWER_COSTS_RECORD}.png", png)
    costliest = {r["route"]: traces.trace_url(r["costliest_trace"]) for r in report.routes if r["costliest_trace"]}
    return dg.MaterializeResult(
        metadata={
            "answers_read": report.answers,
            "answers_priced": report.priced,
            "answers_unpriced": report.unpriced,
            "answers_without_llm_calls": report.without_llm_calls,
            "days": config.days,
            "read_seconds": round(seconds, 2),
            "answers_per_second": round(report.answers / seconds, 1) if seconds > 0 else 0.0,
            "table": dg.MetadataValue.md(md),
            "plot": dg.MetadataValue.md(f"![cost per answer](data:image/png;base64,{base64.b64encode(png).decode()})"),
            "prices": dg.MetadataValue.json(report.prices),
            "costliest_answer_by_route": dg.MetadataValue.json(costliest),
            "record": f"{pipeline_state.describe()}/{ANSWER_COSTS_RECORD}.json",
        }
    )
