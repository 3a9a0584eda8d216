"""The trace store, read back: the spans of one answer, and answers' spans page by page for cost reports.

Two implementations of one interface: ``PhoenixTraceStore`` (local: Arize Phoenix's REST API) and
``LangfuseTraceStore`` (eks: Langfuse's public API, which the exporter's OTLP spans land in). Both return ``Span``
records with the same fields; attributes are a flat dict of dotted OpenTelemetry keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

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
        """Spans called ``name`` (e.g. ``agentic.answer``), newest first, fetched ``page_size`` at a time."""
        raise NotImplementedError

    def trace_url(self, trace_id: str) -> str:
        """Where a person opens the trace in the store's UI."""
        raise NotImplementedError


class PhoenixTraceStore(TraceStoreResource):
    url: str  # e.g. http://127.0.0.1:6006
    project: str = "agentic-rag"
    timeout_s: float = 30.0

    def _get(self, params: list[tuple[str, str]]) -> dict:
        r = httpx.get(f"{self.url}/v1/projects/{self.project}/spans", params=params, timeout=self.timeout_s)
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
        return f"{self.url}/redirects/traces/{trace_id}"
