"""Change detection over an object listing, with a cursor small enough to keep in Dagster.

The cursor holds a watermark (the newest LastModified seen), the key->ETag map of objects inside an
overlap window below it, and the object count. An object is new or modified when it sits in the window
and its ETag differs from the one remembered, so objects that share a timestamp, or arrive late within
the window, are never skipped, and a re-listed object is never reported twice. Deletions show as a
smaller count than expected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Protocol


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
        return cls(data["watermark"], data["recent"], data["count"], data.get("overlap_s", 300.0))

    def to_json(self) -> str:
        return json.dumps({"watermark": self.watermark, "recent": self.recent, "count": self.count, "overlap_s": self.overlap_s}, sort_keys=True)


@dataclass
class Changes:
    changed: list[tuple[str, str]]  # (key, etag) new or modified
    deleted: int

    @property
    def any(self) -> bool:
        return bool(self.changed) or self.deleted > 0

    def signature(self) -> dict:
        return {"changed": sorted(self.changed), "deleted": self.deleted}


def detect_changes(objects: list[ListedObject], cursor: ChangeCursor) -> tuple[Changes, ChangeCursor]:
    window_start = cursor.watermark - cursor.overlap_s
    changed = [(o.key, o.etag) for o in objects if o.last_modified >= window_start and cursor.recent.get(o.key) != o.etag]
    # Objects below the window were all seen by earlier ticks; what is not here any more was deleted.
    old_still_listed = sum(1 for o in objects if o.last_modified >= window_start and o.key in cursor.recent) + sum(
        1 for o in objects if o.last_modified < window_start
    )
    deleted = max(0, cursor.count - old_still_listed)
    watermark = max([cursor.watermark, *(o.last_modified for o in objects)])
    recent = {o.key: o.etag for o in objects if o.last_modified >= watermark - cursor.overlap_s}
    return Changes(changed, deleted), ChangeCursor(watermark, recent, len(objects), cursor.overlap_s)
