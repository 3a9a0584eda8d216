"""Cost per answer from traces: the core maths by hand, one contract for both trace stores (a real Phoenix; Langfuse's
public API as a fixture at the protocol boundary, fed by the same OTLP exporter), and the answer_costs asset over the
real Phoenix, checked against the spans' own tokens, the measured throughput and the price book."""

from __future__ import annotations

import base64
import json
import math
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import dagster as dg
import pytest

from core.cost import PriceBook, Throughput, load_price_book
from core.trace_cost import (
    AnswerRecord,
    LatencyHistogram,
    ModelPrice,
    Pricer,
    aggregate,
    answer_record,
    iter_answers,
    markdown,
)
from resources.traces import LangfuseTraceStore, PhoenixTraceStore, Span
from tests.helpers import free_port

# ---------------------------------------------------------------------------------------------- (a) the maths by hand

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _span(sid, parent, name, attrs=None, seconds=1.0, trace="t1"):
    return Span(trace, sid, parent, name, T0, T0 + timedelta(seconds=seconds), "UNSET", attrs or {})


def _llm(model, tin, tout):
    return {"gen_ai.request.model": "chat", "gen_ai.response.model": model, **_usage(tin, tout)}


def _usage(tin, tout):
    return {"gen_ai.usage.input_tokens": tin, "gen_ai.usage.output_tokens": tout}


def test_answer_record_counts_each_call_once():
    root = _span("r", None, "agentic.answer", {"agentic.route": "knowledge_base", "agentic.mode": "agent"}, 8.0)
    spans = [
        root,
        _span("a", "r", "rewrite_question", _llm("m1", 100, 20)),
        _span("b", "r", "generate_answer", _llm("m1", 900, 70)),
        # the gateway's span of the same call (same trace, under the agent's span): not counted again
        _span("g", "b", "litellm_request", {**_llm("m1", 900, 70), "litellm.model_group": "chat"}),
        _span("g2", "r", "raw_gen_ai_request", _llm("m1", 5, 5)),
        # Strands: invoke_agent carries the sum of its chat spans; the sum is counted, the chats are not
        _span("s", "r", "invoke_agent Strands Agents", {"gen_ai.request.model": "m2", **_usage(3000, 300)}),
        _span("c1", "s", "execute_event_loop_cycle"),
        _span("c2", "c1", "chat", {"gen_ai.request.model": "m2", **_usage(1500, 150)}),
        _span("retrieve", "r", "retrieve"),
        # a span outside this answer's subtree
        _span("x", None, "other", _llm("m1", 7, 7)),
    ]
    rec = answer_record(root, spans)
    assert rec == AnswerRecord("t1", "knowledge_base", 8.0, {"m1": (1000, 90), "m2": (3000, 300)}, "agent", "UNSET")
    # no LLM call at all (the refusal path): an answer with no tokens
    bare = _span("r2", None, "agentic.answer", {"agentic.route": "not_in_knowledge_base"}, 2.0)
    assert answer_record(bare, [bare]).tokens == {}


def test_pricer_node_time_and_per_token_and_unpriced():
    book = PriceBook(
        "us-east-1",
        "test",
        {
            "ec2_c7g.2xlarge_hour": {"usd": 0.36},
            "ec2_p5.48xlarge_hour": {"usd": 57.6},
            "bedrock_claude-3-5-haiku_input_mtok": {"usd": 0.8},
            "bedrock_claude-3-5-haiku_output_mtok": {"usd": 4.0},
        },
    )
    options = [
        Throughput("cpu", "1.5B", 100.0, "here", "c7g.2xlarge"),
        Throughput("h100", "14B", 2000.0, "there", "p5.48xlarge", nodes=1 / 8),
        Throughput("inf2", "8B", 0.0, "not measured", "inf2.xlarge", measured=False),
    ]
    price = Pricer(options, book, {"small": "cpu", "big": "h100", "neuron": "inf2"})
    # $0.36/h = $0.0001/s at 100 tokens/s: 1e-6 $ per token, prompt or completion
    assert price("small").cost(1000, 500) == pytest.approx(1500e-6)
    assert price("openai/small").basis == "node time"
    # 1/8 of $57.6/h = $7.2/h = $0.002/s at 2,000 tokens/s: 1e-6 $ per token
    assert price("big").cost(2000, 0) == pytest.approx(2000e-6)
    haiku = price("bedrock/anthropic.claude-3-5-haiku-20241022-v1:0")
    assert haiku.basis == "per token" and haiku.cost(1_000_000, 100_000) == pytest.approx(0.8 + 0.4)
    assert price("neuron") is None and price("mystery") is None


def test_aggregate_by_route_and_model():
    price = {
        "a": ModelPrice("a", "node time", 1e-6, 1e-6, "test"),
        "b": ModelPrice("b", "per token", 2e-6, 10e-6, "test"),
    }.get
    answers = [
        AnswerRecord("t1", "kb", 2.0, {"a": (1000, 100)}),
        AnswerRecord("t2", "kb", 4.0, {"a": (2000, 200), "b": (100, 10)}),
        AnswerRecord("t3", "web", 10.0, {"a": (500, 50), "c": (10, 10)}),  # c is unpriced: so is this answer
        AnswerRecord("t4", "refuse", 1.0, {}),
    ]
    report = aggregate(iter(answers), price)
    rows = {(r["route"], r["model"]): r for r in report.rows}
    # kb/a: 2 answers, (1100 + 2200) tokens x 1e-6 = $0.0033 -> $0.00165 per answer
    assert rows["kb", "a"]["answers"] == 2 and rows["kb", "a"]["tokens_in"] == 3000
    assert rows["kb", "a"]["usd_per_answer"] == pytest.approx(0.00165)
    assert rows["kb", "a"]["usd_per_1000_answers"] == pytest.approx(1.65)
    assert rows["kb", "a"]["latency_mean_s"] == 3.0 and rows["kb", "a"]["latency_p95_s"] == 4.0
    # kb/b: 100 x 2e-6 + 10 x 10e-6 = $0.0003 for its one answer
    assert rows["kb", "b"]["usd_per_answer"] == pytest.approx(0.0003) and rows["kb", "b"]["basis"] == "per token"
    assert rows["web", "c"]["usd_per_answer"] is None and rows["web", "c"]["basis"] == "unpriced"
    assert rows["web", "a"]["usd_per_answer"] == pytest.approx(0.00055)
    routes = {r["route"]: r for r in report.routes}
    # kb: (0.0011 + 0.0022 + 0.0003) / 2 answers
    assert routes["kb"]["usd_per_answer"] == pytest.approx(0.0018) and routes["kb"]["costliest_trace"] == "t2"
    assert routes["web"]["priced_answers"] == 0 and routes["web"]["usd_per_answer"] is None
    assert routes["refuse"]["usd_per_answer"] == 0.0  # no LLM call: no LLM cost
    assert (report.answers, report.priced, report.unpriced, report.without_llm_calls) == (4, 3, 1, 1)
    assert report.prices["c"] is None and report.prices["a"]["basis"] == "node time"
    md = markdown(report)
    assert "| kb | a | 2 | 3,000 | 300 | 3.00 | 4.00 | 0.001650 | 1.6500 | node time |" in md
    assert "| web | c | 1 |" in md and "unpriced" in md


def test_latency_histogram_is_bounded_and_accurate():
    h = LatencyHistogram()
    for i in range(1, 21):
        h.add(float(i))
    assert h.mean == pytest.approx(10.5)
    assert h.quantile(0.5) == pytest.approx(10.0, rel=0.01)  # nearest rank 10
    assert h.quantile(0.95) == pytest.approx(19.0, rel=0.01)  # nearest rank 19
    assert h.quantile(1.0) == 20.0
    big = LatencyHistogram()
    for i in range(200_000):  # memory follows the range of values, not their number
        big.add(0.001 + (i % 10_000) * 0.01)
    assert len(big.buckets) < 700 and big.count == 200_000
    assert big.quantile(0.95) == pytest.approx(95.0, rel=0.01)


def test_iter_answers_fetches_in_bounded_batches():
    roots = [_span(f"r{i}", None, "agentic.answer", {"agentic.route": "kb"}, 1.0, trace=f"t{i}") for i in range(7)]
    batches = []

    def mapper(fn, ids):
        batches.append(len(ids))
        return map(fn, ids)

    out = list(iter_answers(iter(roots), lambda tid: [roots[int(tid[1:])]], batch=3, mapper=mapper))
    assert [a.trace_id for a in out] == [f"t{i}" for i in range(7)] and batches == [3, 3, 1]


# ---------------------------------------------------------------------------------------------- Langfuse at the boundary

LF_PUBLIC, LF_SECRET = "pk-lf-test", "sk-lf-test"


def _any_value(v):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_any_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


def _iso_ms(ns: int) -> str:
    ms = ns // 1_000_000  # whole milliseconds, in integers (a float second would round 0.05 to 0.049)
    t = datetime.fromtimestamp(ms // 1000, tz=timezone.utc) + timedelta(milliseconds=ms % 1000)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class LangfuseFixture:
    """Langfuse's two ends: ``POST /api/public/otel/v1/traces`` takes the OTLP/HTTP protobuf the real exporter sends
    (basic auth), and ``GET /api/public/observations`` answers in the public API's shape, page-numbered: an
    observation per span, ``model`` and ``usageDetails``/``usage`` from the GenAI attributes, every attribute under
    ``metadata.attributes``, ``level`` ERROR for an error status, times in milliseconds."""

    def __init__(self):
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        self.observations: list[dict] = []
        self.requests: list[dict] = []
        outer = self
        auth = "Basic " + base64.b64encode(f"{LF_PUBLIC}:{LF_SECRET}".encode()).decode()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, status, body: bytes, ctype="application/json"):
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                data = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.headers.get("authorization") != auth:
                    return self._send(401, b'{"message":"Invalid credentials"}')
                req = ExportTraceServiceRequest.FromString(data)
                for rs in req.resource_spans:
                    res = {a.key: _any_value(a.value) for a in rs.resource.attributes}
                    for ss in rs.scope_spans:
                        for s in ss.spans:
                            outer.observations.append(outer._observation(s, res, ss.scope.name))
                self._send(200, b"", "application/x-protobuf")

            def do_GET(self):
                url = urlparse(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                outer.requests.append({"path": url.path, **q})
                if self.headers.get("authorization") != auth:
                    return self._send(401, b'{"message":"Invalid credentials"}')
                if url.path != "/api/public/observations":
                    return self._send(404, b'{"message":"not found"}')
                self._send(200, json.dumps(outer._page(q)).encode())

        self.port = free_port()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.port}"

    @staticmethod
    def _observation(s, resource: dict, scope: str) -> dict:
        attrs = {a.key: _any_value(a.value) for a in s.attributes}
        usage = {
            "input": attrs.get("gen_ai.usage.input_tokens"),
            "output": attrs.get("gen_ai.usage.output_tokens"),
        }
        usage = {k: int(v) for k, v in usage.items() if v is not None}
        if usage:
            usage["total"] = sum(usage.values())
        model = attrs.get("gen_ai.response.model") or attrs.get("gen_ai.request.model")
        return {
            "id": s.span_id.hex(),
            "traceId": s.trace_id.hex(),
            "type": "GENERATION" if model else "SPAN",
            "name": s.name,
            "startTime": _iso_ms(s.start_time_unix_nano),
            "endTime": _iso_ms(s.end_time_unix_nano),
            "completionStartTime": None,
            "model": model,
            "modelParameters": {},
            "input": None,
            "output": None,
            "version": None,
            "metadata": {"attributes": attrs, "resourceAttributes": resource, "scope": {"name": scope}},
            "usage": {**usage, "unit": "TOKENS"} if usage else {"input": 0, "output": 0, "total": 0, "unit": "TOKENS"},
            "usageDetails": usage,
            "costDetails": {},
            "level": "ERROR" if s.status.code == 2 else "DEFAULT",
            "statusMessage": s.status.message or None,
            "parentObservationId": s.parent_span_id.hex() or None,
            "environment": "default",
        }

    def _page(self, q: dict) -> dict:
        def ok(o):
            start = datetime.fromisoformat(o["startTime"].replace("Z", "+00:00"))
            return (
                ("traceId" not in q or o["traceId"] == q["traceId"])
                and ("name" not in q or o["name"] == q["name"])
                and (
                    "fromStartTime" not in q
                    or start >= datetime.fromisoformat(q["fromStartTime"].replace("Z", "+00:00"))
                )
                and ("toStartTime" not in q or start < datetime.fromisoformat(q["toStartTime"].replace("Z", "+00:00")))
            )

        rows = sorted((o for o in self.observations if ok(o)), key=lambda o: o["startTime"], reverse=True)
        page, limit = int(q.get("page", 1)), min(int(q.get("limit", 50)), 100)
        return {
            "data": rows[(page - 1) * limit : page * limit],
            "meta": {"page": page, "limit": limit, "totalItems": len(rows), "totalPages": math.ceil(len(rows) / limit)},
        }

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------------------------------------- answers, as traces

M15 = "qwen2.5-coder-1.5b-instruct"
M14 = "qwen3-14b"
HAIKU = "anthropic.claude-3-5-haiku-20241022-v1:0"
NOW_MS = (int(time.time()) - 3600) * 1000  # an hour ago, whole milliseconds (what both stores keep)

# route, mode, seconds, calls: (span name, model, input, output, children), start offset (ms before NOW_MS)
ANSWERS = {
    "A": (
        "knowledge_base",
        "fast",
        6.5,
        [("rewrite_question", M15, 100, 20, []), ("generate_answer", M15, 900, 70, ["litellm"])],
        0,
    ),
    "B": ("knowledge_base", "fast", 9.0, [("generate_answer", M15, 1200, 150, ["litellm"])], 60_000),
    "C": (
        "web_search",
        "fast",
        12.0,
        [("generate_answer", M15, 1500, 200, []), ("check_answer", HAIKU, 400, 30, [])],
        120_000,
    ),
    "D": ("not_in_knowledge_base", "fast", 2.0, [], 180_000),
    "E": (
        "knowledge_base",
        "agent",
        20.0,
        [("invoke_agent Strands Agents", M14, 3000, 300, ["chat", "chat"])],
        240_000,
    ),
    "F": ("web_search", "fast", 4.0, [("generate_answer", "mystery-model", 300, 30, [])], 300_000),
    "OLD": ("knowledge_base", "fast", 5.0, [("generate_answer", M15, 999, 99, [])], 10 * 86_400_000),
}


def _write_answers(exporters) -> dict[str, str]:
    """The answers above as real spans through the real OTLP exporter(s); returns name -> trace id."""
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import Status, StatusCode

    provider = TracerProvider(resource=Resource.create({"service.name": "agentic-api"}))
    for e in exporters:
        provider.add_span_processor(SimpleSpanProcessor(e))
    tracer = provider.get_tracer("agentic.agents")
    ids = {}
    for key, (route, mode, seconds, calls, ago_ms) in ANSWERS.items():
        t0 = (NOW_MS - ago_ms) * 1_000_000
        ms = 1_000_000
        root = tracer.start_span(
            "agentic.answer", start_time=t0, attributes={"agentic.mode": mode, "agentic.question_chars": 42}
        )
        ctx = trace.set_span_in_context(root)
        retrieve = tracer.start_span("retrieve", context=ctx, start_time=t0 + ms, attributes={"agentic.k": 5})
        retrieve.end(end_time=t0 + 40 * ms)
        at = t0 + 50 * ms
        for name, model, tin, tout, children in calls:
            attrs = {"gen_ai.system": "openai", "gen_ai.request.model": "chat", "gen_ai.response.model": model}
            attrs.update({"gen_ai.usage.input_tokens": tin, "gen_ai.usage.output_tokens": tout})
            call = tracer.start_span(name, context=ctx, start_time=at, attributes=attrs)
            cctx = trace.set_span_in_context(call)
            for i, child in enumerate(children):
                if child == "litellm":  # the gateway's own span of the same call, same tokens
                    extra = {**attrs, "litellm.model_group": "chat"}
                    c = tracer.start_span("litellm_request", context=cctx, start_time=at + ms, attributes=extra)
                else:  # Strands' per-call chat spans under invoke_agent: half the sum each
                    half = {**attrs, "gen_ai.usage.input_tokens": tin // 2, "gen_ai.usage.output_tokens": tout // 2}
                    c = tracer.start_span(child, context=cctx, start_time=at + (i + 1) * ms, attributes=half)
                c.end(end_time=at + 900 * ms)
            if name == "check_answer":
                call.set_status(Status(StatusCode.ERROR, "judge said no"))
            call.end(end_time=at + 1000 * ms)
            at += 1000 * ms
        root.set_attribute("agentic.route", route)
        root.end(end_time=t0 + int(seconds * 1000) * ms)
        ids[key] = format(root.get_span_context().trace_id, "032x")
    provider.force_flush()
    provider.shutdown()
    return ids


def _expected_span_count(key: str) -> int:
    return 2 + sum(1 + len(children) for *_, children in ANSWERS[key][3])


COST_PROJECT = "agentic-cost-test"  # the session's Phoenix, a project of this module's own answers


@pytest.fixture(scope="module")
def stores(trace_store):
    """The session's real Phoenix, at the path `agentic up` uses for its home, the Langfuse fixture, and the same
    answers written to both by the real OTLP exporter (to Phoenix in a project of their own). Yields (settings, the
    profile's phoenix store on that project, langfuse store, trace ids, the Langfuse fixture)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    from pipelines.profiles import build_resources
    from pipelines.settings import load_settings

    settings = load_settings({"AGENTIC_HOME": str(trace_store.home)})
    server = trace_store.server
    langfuse = LangfuseFixture()
    try:
        auth = base64.b64encode(f"{LF_PUBLIC}:{LF_SECRET}".encode()).decode()
        ids = _write_answers(
            [
                OTLPSpanExporter(endpoint=f"{server.url}/v1/traces", headers={"x-project-name": COST_PROJECT}),
                OTLPSpanExporter(
                    endpoint=f"{langfuse.url}/api/public/otel/v1/traces", headers={"Authorization": f"Basic {auth}"}
                ),
            ]
        )
        profile = build_resources(settings)["traces"]  # finds this home's Phoenix by its port file
        phoenix = PhoenixTraceStore(port_file=profile.port_file, project=COST_PROJECT)
        assert profile.base_url == server.url
        deadline = time.time() + 60
        while time.time() < deadline:  # Phoenix ingests asynchronously
            counts = {k: len(phoenix.spans(tid)) for k, tid in ids.items()}
            if all(n == _expected_span_count(k) for k, n in counts.items()):
                break
            time.sleep(0.5)
        lf = LangfuseTraceStore(host=langfuse.url, public_key=LF_PUBLIC, secret_key=LF_SECRET)
        yield settings, phoenix, lf, ids, langfuse
    finally:
        langfuse.close()


# ---------------------------------------------------------------------------------------------- (b) the contract

WRITTEN = {
    "agentic.route",
    "agentic.mode",
    "agentic.question_chars",
    "agentic.k",
    "gen_ai.system",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "litellm.model_group",
}


def _comparable(spans: list[Span]) -> list[Span]:
    """The records with the attributes the producer wrote (Phoenix adds OpenInference copies of the GenAI ones)."""
    out = [
        Span(
            s.trace_id,
            s.span_id,
            s.parent_id,
            s.name,
            s.start,
            s.end,
            s.status,
            {k: v for k, v in s.attributes.items() if k in WRITTEN},
        )
        for s in spans
    ]
    return sorted(out, key=lambda s: (s.start, s.span_id))


def test_both_trace_stores_return_the_same_spans(stores):
    _, phoenix, langfuse, ids, fixture = stores
    for key, tid in ids.items():
        p, lf = _comparable(phoenix.spans(tid)), _comparable(langfuse.spans(tid))
        assert len(p) == len(lf) == _expected_span_count(key), key
        for x, y in zip(p, lf):
            assert x == y, (
                key,
                {f: (getattr(x, f), getattr(y, f)) for f in x.__dataclass_fields__ if getattr(x, f) != getattr(y, f)},
            )
        root = next(s for s in p if s.name == "agentic.answer")
        assert root.parent_id is None and root.seconds == ANSWERS[key][2]
        assert answer_record(root, phoenix.spans(tid)) == answer_record(root, langfuse.spans(tid))
    # the judge's error status comes back from both (Langfuse keeps it as the level)
    c = [s for s in langfuse.spans(ids["C"]) if s.name == "check_answer"]
    assert c[0].status == "ERROR"
    # answers of a window, page by page (2 a page): the same roots from both, each once, the old one left out
    since = datetime.now(timezone.utc) - timedelta(days=7)
    p_roots = [s.span_id for s in phoenix.iter_spans("agentic.answer", since, page_size=2)]
    lf_roots = [s.span_id for s in langfuse.iter_spans("agentic.answer", since, page_size=2)]
    assert len(p_roots) == len(set(p_roots)) == len(ANSWERS) - 1
    assert sorted(p_roots) == sorted(lf_roots)  # each store pages in its own order
    pages = [r for r in fixture.requests if r.get("name") == "agentic.answer"]
    assert len(pages) == 3 and {r["limit"] for r in pages} == {"2"} and all("toStartTime" in r for r in pages)
    assert phoenix.trace_url(ids["A"]).endswith(f"/redirects/traces/{ids['A']}")
    assert langfuse.trace_url(ids["A"]) == f"{fixture.url}/trace/{ids['A']}"


def test_langfuse_store_sends_its_key_pair(stores):
    *_, fixture = stores
    wrong = LangfuseTraceStore(host=fixture.url, public_key=LF_PUBLIC, secret_key="sk-wrong")
    import httpx

    with pytest.raises(httpx.HTTPStatusError, match="401"):
        wrong.spans("0" * 32)


# ---------------------------------------------------------------------------------------------- (c) the asset


def test_answer_costs_asset_over_real_phoenix(stores):
    from assets.cost import ANSWER_COSTS_RECORD, answer_costs, measured_throughputs
    from pipelines.profiles import build_resources

    settings, *_ = stores
    res = build_resources(settings)
    result = dg.materialize(
        [answer_costs],
        resources={
            **{k: res[k] for k in ("platform", "prices", "pipeline_state")},
            "traces": PhoenixTraceStore(port_file=res["traces"].port_file, project=COST_PROJECT),
        },
        instance=dg.DagsterInstance.ephemeral(),
        run_config={"ops": {"answer_costs": {"config": {"days": 7, "page_size": 2, "trace_batch": 2}}}},
    )
    assert result.success
    meta = {k: v.value for k, v in result.asset_materializations_for_node("answer_costs")[0].metadata.items()}
    assert (meta["answers_read"], meta["answers_priced"], meta["answers_unpriced"]) == (6, 5, 1)
    assert meta["answers_without_llm_calls"] == 1

    # by hand: tokens x the node's price per second / measured tokens per second (Bedrock: per token)
    book = load_price_book("us-east-1")
    by = {t.option: t for t in measured_throughputs()[0]}
    cpu, h100 = by["cpu-graviton"], by["gpu-h100-qwen3-14b"]
    per_cpu = book.price("ec2_c7g.2xlarge_hour") / 3600 / cpu.tokens_per_s
    per_h100 = book.price("ec2_p5.48xlarge_hour") / 8 / 3600 / h100.tokens_per_s
    haiku = (
        400 * book.price("bedrock_claude-3-5-haiku_input_mtok") / 1e6
        + 30 * book.price("bedrock_claude-3-5-haiku_output_mtok") / 1e6
    )
    a, b = (100 + 20 + 900 + 70) * per_cpu, (1200 + 150) * per_cpu
    c15 = (1500 + 200) * per_cpu
    e = (3000 + 300) * per_h100  # invoke_agent's sum, not its chat spans again

    record = res["pipeline_state"].read_json(ANSWER_COSTS_RECORD)
    rows = {(r["route"], r["model"]): r for r in record["rows"]}
    assert set(rows) == {
        ("knowledge_base", M15),
        ("knowledge_base", M14),
        ("web_search", M15),
        ("web_search", HAIKU),
        ("web_search", "mystery-model"),
    }
    kb15 = rows["knowledge_base", M15]
    assert (kb15["answers"], kb15["tokens_in"], kb15["tokens_out"]) == (2, 2200, 240)  # the gateway's spans not counted
    assert kb15["usd_per_answer"] == pytest.approx((a + b) / 2, abs=1e-8)
    assert kb15["usd_per_1000_answers"] == pytest.approx((a + b) / 2 * 1000, abs=1e-5)
    assert kb15["latency_mean_s"] == pytest.approx(7.75) and kb15["latency_p95_s"] == pytest.approx(9.0)
    assert rows["knowledge_base", M14]["usd_per_answer"] == pytest.approx(e, abs=1e-8)
    assert rows["knowledge_base", M14]["tokens_in"] == 3000
    assert rows["web_search", HAIKU]["usd_per_answer"] == pytest.approx(haiku, abs=1e-8)
    assert rows["web_search", HAIKU]["basis"] == "per token"
    assert rows["web_search", "mystery-model"]["usd_per_answer"] is None
    routes = {r["route"]: r for r in record["routes"]}
    assert routes["knowledge_base"]["answers"] == 3
    assert routes["knowledge_base"]["usd_per_answer"] == pytest.approx((a + b + e) / 3, abs=1e-8)
    assert routes["knowledge_base"]["latency_p50_s"] == pytest.approx(9.0, rel=0.01)
    assert routes["knowledge_base"]["latency_p95_s"] == pytest.approx(20.0)
    assert routes["web_search"]["priced_answers"] == 1 and routes["web_search"]["unpriced_answers"] == 1
    assert routes["web_search"]["usd_per_answer"] == pytest.approx(c15 + haiku, abs=1e-8)
    assert routes["not_in_knowledge_base"]["usd_per_answer"] == 0.0
    assert f"| knowledge_base | {M15} | 2 | 2,200 | 240 | 7.75 | 9.00 | {(a + b) / 2:.6f} |" in meta["table"]
    assert meta["plot"].startswith("![cost per answer](data:image/png;base64,")
    png = res["pipeline_state"].get_bytes(f"{ANSWER_COSTS_RECORD}.png")
    assert png.startswith(b"\x89PNG")
    print("\n" + meta["table"])
