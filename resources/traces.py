"""The trace store, read back: the spans of one answer, and answers' spans page by page for cost reports.

Two implementations of one interface: ``PhoenixTraceStore`` (local: Arize Phoenix's REST API) and
``LangfuseTraceStore`` (eks: Langfuse's public API, which the exporter's OTLP spans land in). Both return ``Span``
records with the same fields; attributes are a flat dict of dotted OpenTelemetry keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import httpx


@dataclass(frozen=True)
class Span:
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    start: datetime
    end: datetime
    status: str  # OK | ERROR | UNSET
    attributes: dict = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class TraceStoreResource(dg.ConfigurableResource):
    """Read spans back from where the services export them."""

    def spans(self, trace_id: str) -> list[Span]:
        """Every span of one trace, oldest first."""
        raise NotImplementedError

    def iter_spans(self, name: str, since: datetime | None = None, page_size: int = 200) -> Iterator[Span]:
        """Spans called ``name`` (e.g. ``agentic.answer``) that started at or after ``since``, fetched ``page_size`` at
        a time, each once, in the store's order (Phoenix: newest ingested first; Langfuse: newest start first)."""
        raise NotImplementedError

    def trace_url(self, trace_id: str) -> str:
        """Where a person opens the trace in the store's UI."""
        raise NotImplementedError


class PhoenixTraceStore(TraceStoreResource):
    url: str = ""  # e.g. http://127.0.0.1:6006
    # this home's Phoenix writes its port here when it starts (infra.local.phoenix.PhoenixServer); read at call time,
    # because the definitions load before `agentic up` starts it, and a restart picks a new port
    port_file: str = ""
    project: str = "agentic-rag"
    timeout_s: float = 30.0

    @property
    def base_url(self) -> str:
        if self.url:
            return self.url.rstrip("/")
        if self.port_file:
            port = Path(self.port_file)
            if port.exists():
                return f"http://127.0.0.1:{port.read_text().strip()}"
        raise RuntimeError(
            f"no Phoenix to read traces from: no url, and no port file at {self.port_file!r} "
            "(`agentic up` starts this home's Phoenix)"
        )

    def _get(self, params: list[tuple[str, str]]) -> dict:
        r = httpx.get(f"{self.base_url}/v1/projects/{self.project}/spans", params=params, timeout=self.timeout_s)
        if r.status_code == 404:  # no span has reached the project yet
            return {"data": [], "next_cursor": None}
        r.raise_for_status()
        return r.json()

    @staticmethod
    def _span(row: dict) -> Span:
        return Span(
            trace_id=row["context"]["trace_id"],
            span_id=row["context"]["span_id"],
            parent_id=row.get("parent_id") or None,
            name=row["name"],
            start=_ts(row["start_time"]),
            end=_ts(row["end_time"]),
            status=row.get("status_code") or "UNSET",
            attributes=dict(row.get("attributes") or {}),
        )

    def _pages(self, params: list[tuple[str, str]], page_size: int) -> Iterator[Span]:
        cursor = None
        while True:
            page = self._get([*params, ("limit", str(page_size)), *([("cursor", cursor)] if cursor else [])])
            yield from (self._span(row) for row in page.get("data", []))
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def spans(self, trace_id: str) -> list[Span]:
        return sorted(self._pages([("trace_id", trace_id)], 1000), key=lambda s: s.start)

    def iter_spans(self, name: str, since: datetime | None = None, page_size: int = 200) -> Iterator[Span]:
        params = [("name", name)]
        if since is not None:
            params.append(("start_time", since.isoformat()))
        return self._pages(params, page_size)

    def trace_url(self, trace_id: str) -> str:
        return f"{self.base_url}/redirects/traces/{trace_id}"


# Langfuse turns OpenTelemetry's GenAI attributes into first-class fields at ingest; these put them back.
GENAI_MODEL = "gen_ai.request.model"
GENAI_INPUT = "gen_ai.usage.input_tokens"
GENAI_OUTPUT = "gen_ai.usage.output_tokens"


class LangfuseTraceStore(TraceStoreResource):
    """Langfuse's public API (``/api/public/observations``, HTTP basic auth with the project's key pair).

    An OpenTelemetry span is one observation: ``id`` is the span id, ``traceId`` the trace id, ``parentObservationId``
    the parent span id; the span's own attributes are kept under ``metadata.attributes``, and the GenAI ones are also
    mapped to ``model`` and ``usageDetails`` (``usage`` on older servers). Langfuse keeps a level, not the OTel status:
    ERROR maps back to ERROR, anything else to UNSET (it cannot tell OK from UNSET).
    """

    host: str  # e.g. https://cloud.langfuse.com
    public_key: str
    secret_key: str
    timeout_s: float = 30.0
    max_page_size: int = 100  # the API's page limit

    def _get(self, params: list[tuple[str, str]]) -> dict:
        r = httpx.get(
            f"{self.host.rstrip('/')}/api/public/observations",
            params=params,
            auth=(self.public_key, self.secret_key),
            timeout=self.timeout_s,
        )
        r.raise_for_status()
        return r.json()

    @staticmethod
    def _span(row: dict) -> Span:
        meta = row.get("metadata") or {}
        attrs = dict(meta.get("attributes") or {}) if isinstance(meta, dict) else {}
        # usageDetails is empty on a plain span; the legacy ``usage`` is zeros there, so it counts only on generations
        if "usageDetails" in row:
            usage = row.get("usageDetails") or {}
        else:
            usage = (row.get("usage") or {}) if row.get("type") == "GENERATION" else {}
        if row.get("model"):
            attrs.setdefault(GENAI_MODEL, row["model"])
        for key, field_name in ((GENAI_INPUT, "input"), (GENAI_OUTPUT, "output")):
            if usage.get(field_name) is not None:
                attrs[key] = int(usage[field_name])
        start = _ts(row["startTime"])
        return Span(
            trace_id=row["traceId"],
            span_id=row["id"],
            parent_id=row.get("parentObservationId") or None,
            name=row.get("name") or "",
            start=start,
            end=_ts(row["endTime"]) if row.get("endTime") else start,
            status="ERROR" if row.get("level") == "ERROR" else "UNSET",
            attributes=attrs,
        )

    def _pages(self, params: list[tuple[str, str]], page_size: int) -> Iterator[Span]:
        limit = max(1, min(page_size, self.max_page_size))
        page = 1
        while True:
            body = self._get([*params, ("page", str(page)), ("limit", str(limit))])
            yield from (self._span(row) for row in body.get("data", []))
            meta = body.get("meta") or {}
            if not body.get("data") or page >= int(meta.get("totalPages") or 0):
                return
            page += 1

    def spans(self, trace_id: str) -> list[Span]:
        return sorted(self._pages([("traceId", trace_id)], self.max_page_size), key=lambda s: s.start)

    def iter_spans(self, name: str, since: datetime | None = None, page_size: int = 200) -> Iterator[Span]:
        # Pages are numbered, not cursored: a fixed upper bound keeps spans that arrive meanwhile from shifting
        # later pages (which would repeat spans already read).
        params = [("name", name), ("toStartTime", _iso(datetime.now(timezone.utc)))]
        if since is not None:
            params.append(("fromStartTime", _iso(since)))
        return self._pages(params, page_size)

    def trace_url(self, trace_id: str) -> str:
        return f"{self.host.rstrip('/')}/trace/{trace_id}"


def _iso(t: datetime) -> str:
    t = t if t.tzinfo else t.replace(tzinfo=timezone.utc)
    return t.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
