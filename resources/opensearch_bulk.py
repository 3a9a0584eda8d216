"""OpenSearch bulk writes with bounded memory and backoff: (action, source) pairs sent as bulk requests of at most
``chunk_size`` actions and ``max_bytes`` on ``thread_count`` threads, at most 2 x thread_count requests in flight. A
request answered 429 (the write queue is full) is resent; items answered 429 inside a response are resent alone;
both with exponential backoff, jittered, up to ``max_retries`` times. Any other item error raises (the first one)."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

log = logging.getLogger(__name__)
Item = tuple[str, str | None]  # the serialized action line and source line (None for a delete)


class BulkRejected(RuntimeError):
    """Bulk writes still rejected with 429 after every retry."""


@dataclass(frozen=True)
class BulkLimits:
    thread_count: int = 2
    chunk_size: int = 500
    max_bytes: int = 8 * 1024 * 1024
    timeout_s: int = 60
    max_retries: int = 8
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0

    def backoff(self, attempt: int) -> float:
        return min(self.max_backoff_s, self.initial_backoff_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)


def batches(actions: Iterable[tuple[dict, dict | None]], dumps, limits: BulkLimits) -> Iterator[list[Item]]:
    """Serialized items in requests of at most ``chunk_size`` items and ``max_bytes``."""
    part: list[Item] = []
    size = 0
    for action, source in actions:
        item = (dumps(action), dumps(source) if source is not None else None)
        n = len(item[0]) + (len(item[1]) if item[1] is not None else 0) + 2
        if part and (len(part) >= limits.chunk_size or size + n > limits.max_bytes):
            yield part
            part, size = [], 0
        part.append(item)
        size += n
    if part:
        yield part


class _Sender:
    """Sends one request's items until none is left to retry; counts into shared stats."""

    def __init__(self, client, name: str, limits: BulkLimits, ok_status: tuple[int, ...]):
        self.client, self.name, self.limits, self.ok_status = client, name, limits, ok_status
        self.stats = {"requests": 0, "ok": 0, "retried_requests": 0, "retried_items": 0, "retries": 0, "max_attempt": 0}
        self.lock = threading.Lock()

    def _count(self, **add: int) -> None:
        with self.lock:
            for k, v in add.items():
                self.stats[k] += v

    def _give_up_after(self, attempt: int, what: str, cause: Exception | None = None) -> None:
        if attempt >= self.limits.max_retries:
            raise BulkRejected(f"{what} into {self.name} still rejected (429) after {attempt} retries") from cause
        log.warning("%s into %s rejected (429), retry %d of %d", what, self.name, attempt + 1, self.limits.max_retries)

    def _failed_items(self, items: list[Item], resp: dict) -> list[Item]:
        """The items answered 429 (to resend); raises on any other error."""
        retry, ok = [], 0
        for item, result in zip(items, resp["items"]):
            ((op, info),) = result.items()
            status = int(info.get("status", 500))
            if 200 <= status < 300 or status in self.ok_status:
                ok += 1
            elif status == 429:
                retry.append(item)
            else:
                raise RuntimeError(
                    f"bulk {op} into {self.name} failed for _id {info.get('_id')!r} (status {status}): "
                    f"{info.get('error')}"
                )
        self._count(ok=ok)
        return retry

    def send(self, items: list[Item]) -> None:
        from opensearchpy.exceptions import TransportError

        attempt = 0
        while items:
            if attempt:
                time.sleep(self.limits.backoff(attempt))
            body = "".join(a + "\n" + (f"{d}\n" if d is not None else "") for a, d in items)
            with self.lock:
                self.stats["requests"] += 1
                self.stats["max_attempt"] = max(self.stats["max_attempt"], attempt)
            try:
                resp = self.client.bulk(body=body, request_timeout=self.limits.timeout_s)
            except TransportError as e:
                if e.status_code != 429:
                    raise
                self._give_up_after(attempt, "bulk request", e)
                self._count(retried_requests=1, retries=1)
                attempt += 1
                continue
            retry = self._failed_items(items, resp)
            if retry:
                self._give_up_after(attempt, f"{len(retry)} bulk items")
                self._count(retried_items=len(retry), retries=1)
                attempt += 1
            items = retry


def send_bulk(
    client,
    name: str,
    actions: Iterable[tuple[dict, dict | None]],
    limits: BulkLimits,
    ok_status: tuple[int, ...] = (),
    stats: dict | None = None,
) -> dict[str, int]:
    """Send ``actions`` into index ``name``; the counters: requests, ok, retried_requests, retried_items, retries,
    max_attempt, kept in ``stats`` as they change when it is given (so they are there when a send fails too)."""
    sender = _Sender(client, name, limits, ok_status)
    if stats is not None:
        stats.clear()
        stats.update(sender.stats)
        sender.stats = stats
    in_flight = 2 * max(1, limits.thread_count)
    pending: set[Future] = set()
    with ThreadPoolExecutor(max_workers=max(1, limits.thread_count), thread_name_prefix="os-bulk") as pool:
        try:
            for part in batches(actions, client.transport.serializer.dumps, limits):
                pending.add(pool.submit(sender.send, part))
                if len(pending) >= in_flight:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in done:
                        f.result()
            done, pending = wait(pending)
            for f in done:
                f.result()
        except BaseException:
            for f in pending:
                f.cancel()
            raise
    stats = sender.stats
    if stats["retries"]:
        log.info(
            "bulk into %s: %d requests, %d retries (%d whole requests, %d items answered 429)",
            name,
            stats["requests"],
            stats["retries"],
            stats["retried_requests"],
            stats["retried_items"],
        )
    return stats
