"""Change detection for the new-documents sensor, with a cursor small enough to keep in Dagster.

Two sources, one result (``ChangeBatch``):

* a listing (the local folder, or S3 without a queue): the cursor holds a watermark (the newest LastModified
  seen), the key->ETag map of objects inside an overlap window below it, and the object count. An object is new
  or modified when it sits in the window and its ETag differs from the one remembered, so objects that share a
  timestamp, or arrive late within the window, are never skipped, and a re-listed object is never reported
  twice. Deletions show as a smaller count than expected. Every tick costs a full listing.
* S3 event notifications delivered to SQS: the queue holds the state, so a tick costs only the messages it
  receives, whatever the size of the bucket. ``changes_from_s3_events`` turns message bodies into a batch (the
  ``s3:TestEvent`` and keys outside the prefix are dropped, keys are URL-decoded, the last event per key wins by
  its sequencer); the messages are deleted (``ChangeBatch.ack``) only once the run request is built.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import unquote_plus


class ListedObject(Protocol):
    key: str
    etag: str
    last_modified: float


@dataclass
class ChangeCursor:
    watermark: float = 0.0
    recent: dict[str, str] = field(default_factory=dict)
    count: int = 0
    overlap_s: float = 300.0

    @classmethod
    def from_json(cls, raw: str | None) -> "ChangeCursor":
        if not raw:
            return cls()
        data = json.loads(raw)
        if "watermark" not in data:  # another source's cursor (the store switched from SQS back to listing)
            return cls()
        return cls(data["watermark"], data["recent"], data["count"], data.get("overlap_s", 300.0))

    def to_json(self) -> str:
        return json.dumps(
            {"watermark": self.watermark, "recent": self.recent, "count": self.count, "overlap_s": self.overlap_s},
            sort_keys=True,
        )


@dataclass
class Changes:
    changed: list[tuple[str, str]]  # (key, etag) new or modified
    deleted: int

    @property
    def any(self) -> bool:
        return bool(self.changed) or self.deleted > 0

    def signature(self) -> dict:
        return {"changed": sorted(self.changed), "deleted": self.deleted}


def detect_changes(objects: Iterable[ListedObject], cursor: ChangeCursor) -> tuple[Changes, ChangeCursor]:
    """One pass over the listing (an iterator is fine); memory holds only the objects inside the overlap window."""
    window_start = cursor.watermark - cursor.overlap_s
    changed: list[tuple[str, str]] = []
    in_window: dict[str, tuple[str, float]] = {}
    old_still_listed = count = 0
    watermark = cursor.watermark
    for o in objects:
        count += 1
        watermark = max(watermark, o.last_modified)
        if o.last_modified < window_start:
            old_still_listed += 1  # below the window: seen by an earlier tick
            continue
        if cursor.recent.get(o.key) != o.etag:
            changed.append((o.key, o.etag))
        if o.key in cursor.recent:
            old_still_listed += 1
        in_window[o.key] = (o.etag, o.last_modified)
    # What was counted before and is not listed any more was deleted.
    deleted = max(0, cursor.count - old_still_listed)
    # the watermark only grows, so the new window lies inside the old one
    recent = {k: etag for k, (etag, lm) in in_window.items() if lm >= watermark - cursor.overlap_s}
    return Changes(changed, deleted), ChangeCursor(watermark, recent, count, cursor.overlap_s)


@dataclass
class ChangeBatch:
    """What changed since the last poll, from a listing or from S3 events.

    ``ack()`` deletes the queue messages behind the batch; call it once the run request is built. Until then the
    messages stay in the queue and come back after its visibility timeout, so a sensor that raises loses nothing.
    """

    changed: list[tuple[str, str]] = field(default_factory=list)  # (key, etag): new or modified
    deleted: list[str] = field(default_factory=list)  # deleted keys, where the source names them (events)
    deleted_unnamed: int = 0  # deletions a listing sees only as a smaller count
    versions: dict[str, str] = field(default_factory=dict)  # key -> event sequencer (or time): redeliveries hash alike
    receipts: list[str] = field(default_factory=list)  # SQS receipt handles, deleted by ack()
    source: str = "listing"  # listing | sqs
    seen: int = 0  # objects listed, or messages received
    acker: Callable[[list[str]], int] | None = field(default=None, repr=False, compare=False)

    @property
    def deleted_count(self) -> int:
        return len(self.deleted) + self.deleted_unnamed

    @property
    def any(self) -> bool:
        return bool(self.changed) or self.deleted_count > 0

    def signature(self) -> dict:
        """What the run key hashes. For a listing exactly the former ``Changes.signature()``; events add the deleted
        keys and each key's sequencer, so the same object re-created later is a new change set, and the same
        messages received again (not acked in time) are the same one."""
        sig: dict = {"changed": sorted(self.changed), "deleted": self.deleted_count}
        if self.deleted:
            sig["deleted_keys"] = sorted(self.deleted)
        if self.versions:
            sig["versions"] = sorted(self.versions.items())
        return sig

    def ack(self) -> int:
        """Deletes the messages behind this batch (nothing to do for a listing). Best effort: what fails to delete
        comes back after the visibility timeout, which costs one redundant run at worst (the job diffs the whole
        store). Returns how many messages are left unacknowledged."""
        if not self.receipts or self.acker is None:
            return 0
        left = self.acker(self.receipts)
        self.receipts = []
        return left


def listing_changes(objects: Iterable[ListedObject], raw_cursor: str | None) -> tuple[ChangeBatch, str]:
    changes, cursor = detect_changes(objects, ChangeCursor.from_json(raw_cursor))
    return ChangeBatch(
        changes.changed, deleted_unnamed=changes.deleted, source="listing", seen=cursor.count
    ), cursor.to_json()


def _sequence(seq: str) -> int:
    """S3 sequencers are hex strings of varying length; compared after left-padding with zeros, i.e. as numbers."""
    try:
        return int(seq, 16)
    except (TypeError, ValueError):
        return -1


def s3_event_records(body: str) -> list[dict]:
    """The S3 event records in one SQS message body: a direct S3 notification, or one relayed by SNS. A test event
    (``s3:TestEvent``, sent when the notification is configured) and anything unparsable yield nothing."""
    try:
        msg = json.loads(body)
    except (TypeError, ValueError):
        return []
    if isinstance(msg, dict) and msg.get("Type") == "Notification" and isinstance(msg.get("Message"), str):
        return s3_event_records(msg["Message"])  # S3 -> SNS -> SQS fan-out
    if not isinstance(msg, dict) or msg.get("Event") == "s3:TestEvent":
        return []
    return [r for r in msg.get("Records") or [] if isinstance(r, dict) and r.get("eventSource") == "aws:s3"]


def changes_from_s3_events(bodies: Iterable[str], bucket: str, prefix: str = "") -> ChangeBatch:
    """Folds S3 event notifications into one batch: per key the latest event (greatest sequencer; event time,
    then arrival order where there is none) decides whether the key changed (ObjectCreated:*, with its ETag) or
    is gone (ObjectRemoved:*). Other buckets, keys outside ``prefix`` and other event types are ignored."""
    latest: dict[str, tuple[tuple[int, str, int], str, str]] = {}  # key -> (order, kind, etag)
    seen = arrival = 0
    for body in bodies:
        seen += 1
        for record in s3_event_records(body):
            s3 = record.get("s3") or {}
            obj = s3.get("object") or {}
            if (s3.get("bucket") or {}).get("name", bucket) != bucket or "key" not in obj:
                continue
            key = unquote_plus(obj["key"])
            name = record.get("eventName", "")
            if not key.startswith(prefix):
                continue
            if name.startswith("ObjectCreated:"):
                kind = "changed"
            elif name.startswith("ObjectRemoved:"):
                kind = "deleted"
            else:
                continue
            arrival += 1
            order = (_sequence(obj.get("sequencer", "")), record.get("eventTime", ""), arrival)
            if key not in latest or order >= latest[key][0]:
                latest[key] = (order, kind, str(obj.get("eTag", "")).strip('"'))
    batch = ChangeBatch(source="sqs", seen=seen)
    for key, (order, kind, etag) in sorted(latest.items()):
        if kind == "changed":
            batch.changed.append((key, etag))
        else:
            batch.deleted.append(key)
        batch.versions[key] = f"{order[0]:x}" if order[0] >= 0 else order[1]
    return batch
