"""Who may read what: principals and their API keys, read scopes, document groups, request limits, audit records.

Pure logic; the key stores, the pipeline step that resolves document groups and the API use it.

- A **principal** is a named caller with groups. Its API keys are ``agk_<key id>_<secret>``; only a SHA-256 of the
  whole token is stored (the secret is 256 random bits, so a slow hash adds nothing), and the key id makes a lookup
  one read.
- A document's **groups** say who may read it: declared on the document (a sidecar or S3 metadata), else the
  longest matching path rule, else the policy's default. A principal reads a document when they share a group; the
  group ``*`` (the admin principal's) reads everything.
- A **read scope** is what a retrieval is allowed to see; the retriever turns it into a filter inside the store
  query, so ranking never sees a document outside it.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

ALL = "*"  # the admin principal's group: reads every document
KEY_PREFIX = "agk"
ADMIN_PRINCIPAL = "admin"
LEGACY_KEY_ID = "legacy"  # the deployment's single AGENTIC_API_KEY, kept working as the admin principal
# The group of a document no one may read (a malformed declaration, an empty list): not a valid group name, so no
# principal can hold it, and a stored list is never empty (LanceDB cannot update a list column to []).
NOBODY = "!nobody"
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_KEY_ID = re.compile(r"[0-9a-f]{16}")


def valid_name(name: str, what: str = "name") -> str:
    """Principal and group names: lower-case letters, digits, ``.``, ``_``, ``-`` (no commas, no wildcards)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"invalid {what} {name!r}: use 1-63 of a-z 0-9 . _ - starting with a letter or digit")
    return name


def valid_groups(groups: Iterable[str], allow_all: bool = False) -> tuple[str, ...]:
    out = []
    for g in groups:
        g = g.strip()
        if g == ALL and allow_all:
            out.append(g)
            continue
        out.append(valid_name(g, "group"))
    return tuple(sorted(set(out)))


# ------------------------------------------------------------------ scopes


@dataclass(frozen=True)
class ReadScope:
    """The documents a retrieval may see: those sharing a group with ``groups`` (``*``: all of them)."""

    groups: frozenset[str]
    principal: str = ""

    @classmethod
    def of(cls, groups: Iterable[str], principal: str = "") -> ReadScope:
        return cls(frozenset(groups), principal)

    @property
    def everything(self) -> bool:
        return ALL in self.groups

    def filter_value(self) -> list[str] | None:
        """The store filter: None reads everything; a list admits rows whose groups meet it (empty: none)."""
        return None if self.everything else sorted(self.groups)

    def admits(self, document_groups: Iterable[str]) -> bool:
        return self.everything or bool(self.groups.intersection(document_groups))


FULL_SCOPE = ReadScope(frozenset({ALL}), ADMIN_PRINCIPAL)  # operators, pipeline checks and tests that read it all


@dataclass(frozen=True)
class Principal:
    name: str
    groups: tuple[str, ...]
    key_id: str = ""
    rate_per_minute: int = 0  # 0: the deployment's default
    concurrency: int = 0  # 0: the deployment's default

    @property
    def admin(self) -> bool:
        return ALL in self.groups

    def scope(self) -> ReadScope:
        return ReadScope(frozenset(self.groups), self.name)


# ------------------------------------------------------------------ keys


def new_token() -> tuple[str, str]:
    """(key id, token). The token is shown once; only ``hash_token(token)`` is kept."""
    key_id = secrets.token_hex(8)
    return key_id, f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def key_id_of(token: str) -> str | None:
    """The key id a token names, or None for anything that is not one of ours (the legacy key among them)."""
    parts = token.split("_", 2)
    if len(parts) == 3 and parts[0] == KEY_PREFIX and _KEY_ID.fullmatch(parts[1]) and parts[2]:
        return parts[1]
    return None


@dataclass
class KeyRecord:
    """One API key as stored: never the token, only its hash."""

    key_id: str
    principal: str
    groups: list[str]
    token_sha256: str
    created: float
    revoked: float | None = None
    rotated_to: str = ""  # the key that replaced this one
    rate_per_minute: int = 0
    concurrency: int = 0
    description: str = ""

    @property
    def active(self) -> bool:
        return self.revoked is None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> KeyRecord:
        return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})

    def public(self) -> dict:
        """What `agentic keys list` shows: everything but the hash."""
        out = self.to_dict()
        out.pop("token_sha256")
        return out

    def principal_of(self) -> Principal:
        return Principal(self.principal, tuple(self.groups), self.key_id, self.rate_per_minute, self.concurrency)


def new_key_record(
    principal: str,
    groups: Iterable[str],
    rate_per_minute: int = 0,
    concurrency: int = 0,
    description: str = "",
    now: float | None = None,
) -> tuple[KeyRecord, str]:
    principal = valid_name(principal, "principal")
    groups = valid_groups(groups, allow_all=True)
    if not groups:
        raise ValueError("a key needs at least one group (a principal without groups reads nothing)")
    if rate_per_minute < 0 or concurrency < 0:
        raise ValueError("limits must be >= 0 (0: the deployment default)")
    key_id, token = new_token()
    record = KeyRecord(
        key_id,
        principal,
        list(groups),
        hash_token(token),
        time.time() if now is None else now,
        rate_per_minute=rate_per_minute,
        concurrency=concurrency,
        description=description[:200],
    )
    return record, token


def verify(record: KeyRecord | None, token: str) -> Principal | None:
    """The principal a token authenticates as, or None (unknown, wrong secret, revoked). Constant-time compare."""
    if record is None or not record.active:
        return None
    if not secrets.compare_digest(hash_token(token), record.token_sha256):
        return None
    return record.principal_of()


# ------------------------------------------------------------------ document groups


@dataclass(frozen=True)
class AccessPolicy:
    """How a document's groups are decided when it declares none: the longest matching key-prefix rule, else
    ``default``. ``rules`` are (prefix, groups) pairs."""

    rules: tuple[tuple[str, tuple[str, ...]], ...] = ()
    default: tuple[str, ...] = ("public",)

    @classmethod
    def of(cls, rules: dict[str, list[str]] | None, default: Iterable[str]) -> AccessPolicy:
        parsed = tuple(sorted((prefix, valid_groups(groups)) for prefix, groups in (rules or {}).items()))
        return cls(parsed, valid_groups(default))

    def groups_for(self, key: str, declared: list[str] | None) -> tuple[tuple[str, ...], str]:
        """(groups, where they came from: ``declared``, ``rule:<prefix>`` or ``default``)."""
        if declared is not None:
            return valid_groups(declared), "declared"
        best = max((p for p, _ in self.rules if key.startswith(p)), key=len, default=None)
        if best is not None:
            return dict(self.rules)[best], f"rule:{best}"
        return self.default, "default"

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps([self.rules, self.default]).encode()).hexdigest()[:16]


def index_groups(groups: Iterable[str]) -> list[str]:
    """A document's groups as the index stores them: sorted, never empty (``NOBODY`` for none)."""
    return sorted(set(groups)) or [NOBODY]


def by_index_groups(doc_keys_by_groups: dict) -> dict[tuple[str, ...], list[str]]:
    """Documents grouped by their groups as the index stores them (``index_groups``), for an in-place update."""
    out: dict[tuple[str, ...], list[str]] = {}
    for groups, keys in doc_keys_by_groups.items():
        out.setdefault(tuple(index_groups(groups)), []).extend(keys)
    return out


def parse_declared(raw: bytes | str) -> list[str]:
    """A document's declared groups: a sidecar's JSON (``{"groups": ["cardiology", "staff"]}``) or S3 metadata's
    comma-separated list. Raises ValueError with the reason for anything else (the document is then quarantined
    from the index rather than published under a guess)."""
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    text = text.strip()
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"access sidecar is not valid JSON: {exc.msg}") from exc
        groups = obj.get("groups") if isinstance(obj, dict) else None
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise ValueError('access sidecar must be {"groups": ["<group>", ...]}')
    else:
        groups = [g for g in text.split(",") if g.strip()]
    return list(valid_groups(groups))


# ------------------------------------------------------------------ limits


class RateLimiter:
    """Token buckets per key: ``rate_per_minute`` sustained, bursts up to ``burst``. ``check`` returns (allowed,
    seconds until a request would be). Memory: one small entry per key seen; idle buckets are forgotten."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, idle_s: float = 600.0):
        self._clock, self._idle_s = clock, idle_s
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill)
        self._lock = threading.Lock()

    def check(self, key: str, rate_per_minute: int, burst: int) -> tuple[bool, float]:
        if rate_per_minute <= 0:
            return True, 0.0
        burst = max(1, burst)
        per_s = rate_per_minute / 60.0
        with self._lock:
            now = self._clock()
            tokens, last = self._buckets.get(key, (float(burst), now))
            tokens = min(float(burst), tokens + (now - last) * per_s)
            if len(self._buckets) > 10_000:  # bounded: forget buckets idle long enough to be full again
                self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < self._idle_s}
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return True, 0.0
            self._buckets[key] = (tokens, now)
            return False, (1.0 - tokens) / per_s


class ConcurrencyLimiter:
    """In-flight requests per key; ``acquire`` is non-blocking (a request over the limit gets a 429, not a queue)."""

    def __init__(self):
        self._inflight: dict[str, int] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str, limit: int) -> bool:
        with self._lock:
            n = self._inflight.get(key, 0)
            if limit > 0 and n >= limit:
                return False
            self._inflight[key] = n + 1
            return True

    def release(self, key: str) -> None:
        with self._lock:
            n = self._inflight.get(key, 0) - 1
            if n <= 0:
                self._inflight.pop(key, None)
            else:
                self._inflight[key] = n

    def inflight(self, key: str) -> int:
        return self._inflight.get(key, 0)

    def total(self) -> int:
        """Requests in flight over every key: the queue the API's autoscaler reads (``agentic_requests_in_flight``)."""
        with self._lock:
            return sum(self._inflight.values())


# ------------------------------------------------------------------ audit


@dataclass
class AuditRecord:
    """One request, as the audit trail keeps it: who, when, what (a hash of the question, never its text), which
    documents came back, by which route, and how it ended."""

    time: float
    principal: str
    key_id: str
    path: str
    status: int
    question_sha256: str = ""
    route: str = ""
    doc_ids: list[str] = field(default_factory=list)
    answer_id: str = ""
    ms: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def question_hash(question: str) -> str:
    return hashlib.sha256(question.strip().encode()).hexdigest() if question else ""


# ------------------------------------------------------------------ untrusted text


_WORD = re.compile(r"[a-z0-9]+")


def web_query_from(question: str, proposed: str) -> str:
    """The query that may leave for web search. The orchestrating model proposes it after reading documents, and a
    document can tell it to put other sources' text (or anything it holds) into it: that would carry what the caller
    may read to a third party. So a proposal passes only when its words are the question's (order, case and short
    words aside); anything else searches the question itself."""
    asked = set(_WORD.findall(question.lower()))
    words = [w for w in _WORD.findall(proposed.lower()) if len(w) > 3]
    if proposed.strip() and len(proposed) <= 2 * len(question) + 40 and all(w in asked for w in words):
        return proposed.strip()
    return question.strip()
