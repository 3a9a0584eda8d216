"""OpenTelemetry for the agents: one tracer provider, OTLP/HTTP export when an endpoint is given.

Strands emits its own spans (agent, cycle, model call, tool) through the global provider; the fast
path adds ``agentic.answer`` with ``retrieve``, ``assess_relevance``, ``web_search`` and
``generate_answer`` children, model calls carrying GenAI token attributes. A provider is always
installed (without an exporter when no endpoint is set) so every answer has a real trace id.
In production the endpoint is Langfuse's OTLP endpoint (headers carry its key).
"""

from __future__ import annotations

import threading

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

_lock = threading.Lock()
_provider: TracerProvider | None = None
_exporting_to: set[str] = set()


def setup_tracing(
    endpoint: str | None = None, headers: dict[str, str] | None = None, service_name: str = "agentic-rag"
) -> TracerProvider:
    """Install the global provider once; add an OTLP exporter per distinct endpoint."""
    global _provider
    with _lock:
        if _provider is None:
            current = trace.get_tracer_provider()
            if isinstance(current, TracerProvider):
                _provider = current
            else:
                _provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
                trace.set_tracer_provider(_provider)
        if endpoint and endpoint not in _exporting_to:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            url = endpoint.rstrip("/")
            if not url.endswith("/v1/traces"):
                url += "/v1/traces"
            _provider.add_span_processor(
                BatchSpanProcessor(OTLPSpanExporter(endpoint=url, headers=headers or {}), schedule_delay_millis=500)
            )
            _exporting_to.add(endpoint)
        return _provider


def flush(timeout_ms: int = 5000) -> None:
    if _provider is not None:
        _provider.force_flush(timeout_ms)


def tracer():
    return trace.get_tracer("agentic.agents")


def trace_id_of(span) -> str:
    ctx = span.get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""
