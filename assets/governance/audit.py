"""audit_trail and api_keys_inventory: the API's audit records kept for their retention, and the keys in force.

The records themselves are written by the API (``agents.audit``: one append-only object per flush, by UTC day);
this asset applies the retention (whole days dropped), and summarizes the last week: requests per day, by status and
by principal, denials (401/429), and the documents most returned. Memory is one audit object at a time plus one
counter per principal and per document seen in the window (bounded by ``top_documents`` when shown).
"""

import datetime as dt
import time
from collections import Counter

import dagster as dg

from agents.audit import AuditTrail
from assets.metadata import md_table
from assets.stage import stage_asset
from resources.access import KeyStoreResource
from resources.state_store import PipelineStateStore

GROUP = "governance"
OWNERS = ["team:ml-platform"]
asset = stage_asset(GROUP, OWNERS)


class AuditConfig(dg.Config):
    retention_days: int = 90  # AGENTIC_AUDIT_RETENTION_DAYS: days older than this are dropped whole
    summary_days: int = 7


@asset(
    kinds={"python", "s3"},
    description="The API's audit trail (one record per request: principal, time, question hash, documents returned, "
    "route, status), kept for retention_days: older days are dropped whole. Summarizes the last days: requests, "
    "denials and the most returned documents, by principal.",
)
def audit_trail(config: AuditConfig, pipeline_state: PipelineStateStore) -> dg.MaterializeResult:
    t0 = time.perf_counter()
    trail = AuditTrail(pipeline_state, background=False)
    today = dt.datetime.now(dt.UTC).date()
    cutoff = (today - dt.timedelta(days=config.retention_days)).isoformat()
    dropped, objects = trail.drop_days_before(cutoff)
    since = time.time() - config.summary_days * 86400
    per_day: Counter = Counter()
    statuses: Counter = Counter()
    principals: Counter = Counter()
    denied: Counter = Counter()
    documents: Counter = Counter()
    n = 0
    for r in trail.query(since=since):
        n += 1
        day = dt.datetime.fromtimestamp(r["time"], dt.UTC).date().isoformat()
        per_day[day] += 1
        statuses[str(r["status"])] += 1
        principals[r["principal"] or "(unauthenticated)"] += 1
        if r["status"] in (401, 403, 429):
            denied[r["principal"] or "(unauthenticated)"] += 1
        documents.update(r.get("doc_ids", []))
    days = trail.days()
    return dg.MaterializeResult(
        metadata={
            "requests_in_window": n,
            "window_days": config.summary_days,
            "days_kept": len(days),
            "oldest_day": days[0] if days else "",
            "days_dropped": dg.MetadataValue.json(dropped),
            "objects_dropped": objects,
            "denied_requests": sum(denied.values()),
            "requests_per_day": md_table(
                [{"day": d, "requests": c} for d, c in sorted(per_day.items())], ["day", "requests"], limit=31
            ),
            "by_status": dg.MetadataValue.json(dict(statuses)),
            "by_principal": md_table(
                [{"principal": p, "requests": c, "denied": denied.get(p, 0)} for p, c in principals.most_common(50)],
                ["principal", "requests", "denied"],
                limit=50,
            ),
            "most_returned_documents": dg.MetadataValue.json(documents.most_common(20)),
            "seconds": round(time.perf_counter() - t0, 3),
        }
    )


@asset(
    kinds={"python"},
    description="The API keys in force (never their tokens): per principal, active and revoked keys, groups, and the "
    "age of the oldest active key.",
)
def api_keys_inventory(api_keys: KeyStoreResource) -> dg.MaterializeResult:
    records = api_keys.list_keys(include_revoked=True)
    now = time.time()
    active = [r for r in records if r.active]
    rows = [
        {
            "principal": r.principal,
            "key": r.key_id,
            "groups": ",".join(r.groups),
            "age_days": round((now - r.created) / 86400, 1),
            "rate_per_minute": r.rate_per_minute or "default",
        }
        for r in active
    ]
    return dg.MaterializeResult(
        metadata={
            "store": api_keys.describe(),
            "active_keys": len(active),
            "revoked_keys": len(records) - len(active),
            "principals": len({r.principal for r in active}),
            "oldest_active_key_days": round(max(((now - r.created) / 86400 for r in active), default=0.0), 1),
            "keys": md_table(rows, ["principal", "key", "groups", "age_days", "rate_per_minute"], limit=100),
        }
    )


@dg.asset_check(
    asset=api_keys_inventory,
    description="Every active key is younger than 90 days (rotate with `agentic keys rotate`). Warns.",
)
def keys_rotated_recently(api_keys: KeyStoreResource) -> dg.AssetCheckResult:
    now = time.time()
    stale = [r.key_id for r in api_keys.list_keys() if now - r.created > 90 * 86400]
    return dg.AssetCheckResult(
        passed=not stale,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"stale_keys": dg.MetadataValue.json(stale[:50]), "stale_count": len(stale)},
    )
