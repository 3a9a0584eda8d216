"""The audit trail: one record per API request, append-only, in the pipeline state store (a folder locally, S3 on eks).

Records are buffered and written as one new JSON-lines object per flush (every ``flush_every`` records or
``flush_s`` seconds, and at shutdown): ``audit/date-YYYY-MM-DD/<ns>-<writer>-<n>.jsonl``. An object is never
rewritten, so two API replicas never contend, and retention (the ``audit_trail`` asset) drops whole days. A record
holds a SHA-256 of the question, never its text, nor any key (``core.access.AuditRecord``).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from collections.abc import Iterator

from core.access import AuditRecord
from core.feedback import utc_date
from resources.state_store import PipelineStateStore

PREFIX = "audit"


def _day_prefix(date: str) -> str:
    return f"{PREFIX}/date-{date}/"


class AuditTrail:
    def __init__(
        self, store: PipelineStateStore, flush_every: int = 100, flush_s: float = 2.0, background: bool = True
    ):
        self.store, self.flush_every, self.flush_s = store, flush_every, flush_s
        self._buffer: list[dict] = []
        self._lock = threading.Lock()
        self._writer = uuid.uuid4().hex[:8]
        self._n = 0
        self._stop = threading.Event()
        self._thread = None
        if background:
            self._thread = threading.Thread(target=self._loop, name="audit-flush", daemon=True)
            self._thread.start()

    def record(self, rec: AuditRecord) -> None:
        with self._lock:
            self._buffer.append(rec.to_dict())
            full = len(self._buffer) >= self.flush_every
        if full:
            self.flush()

    def flush(self) -> int:
        """Write what is buffered (one object per day it spans); returns the records written."""
        with self._lock:
            batch, self._buffer = self._buffer, []
            self._n += 1
            n = self._n
        if not batch:
            return 0
        by_day: dict[str, list[dict]] = {}
        for r in batch:
            by_day.setdefault(utc_date(float(r["time"])), []).append(r)
        for day, rows in by_day.items():
            key = f"{_day_prefix(day)}{time.time_ns()}-{self._writer}-{n}.jsonl"
            self.store.put_bytes(key, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode())
        return len(batch)

    def _loop(self) -> None:
        while not self._stop.wait(self.flush_s):
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - a store hiccup must not kill the flusher; the records stay buffered
                pass

    def close(self) -> None:
        self._stop.set()
        self.flush()

    # -- reading ----------------------------------------------------------------------------------
    def days(self) -> list[str]:
        """Every day that has records (from the keys alone)."""
        out = set()
        for key in self.store.list_keys(PREFIX + "/"):
            part = key[len(PREFIX) + 1 :].split("/", 1)[0]
            if part.startswith("date-"):
                out.add(part[5:])
        return sorted(out)

    def query(
        self,
        since: float | None = None,
        until: float | None = None,
        principal: str | None = None,
        doc_id: str | None = None,
        path: str | None = None,
        status: int | None = None,
    ) -> Iterator[dict]:
        """Records in time order within each object, day by day; memory is one object at a time."""
        first = utc_date(since) if since is not None else None
        last = utc_date(until) if until is not None else None
        for day in self.days():
            if (first and day < first) or (last and day > last):
                continue
            for key in sorted(self.store.list_keys(_day_prefix(day))):
                raw = self.store.get_bytes(key)
                for line in (raw or b"").decode().splitlines():
                    r = json.loads(line)
                    if since is not None and r["time"] < since or until is not None and r["time"] > until:
                        continue
                    if principal is not None and r["principal"] != principal:
                        continue
                    if doc_id is not None and doc_id not in r.get("doc_ids", []):
                        continue
                    if path is not None and r["path"] != path or status is not None and r["status"] != status:
                        continue
                    yield r

    def drop_days_before(self, date: str) -> tuple[list[str], int]:
        """Retention: delete every day before ``date`` (YYYY-MM-DD); returns (days dropped, objects deleted)."""
        dt.date.fromisoformat(date)
        dropped, objects = [], 0
        for day in self.days():
            if day < date:
                objects += self.store.delete_keys(list(self.store.list_keys(_day_prefix(day))))
                dropped.append(day)
        return dropped, objects
