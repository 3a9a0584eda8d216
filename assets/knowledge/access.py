"""document_access: who may read each document, decided before anything is indexed.

A document declares its groups on itself (a ``<key>.access.json`` sidecar in the local store, ``x-amz-meta-groups``
on S3); without a declaration the access policy's longest matching path rule, then its default, decide. A shard is
recomputed when its listing (which carries each object's access stamp) or the policy changed, and a declaration is
read only for documents whose stamp moved. ``vector_index`` applies changes to the rows in place: no re-embedding.
"""

import time

import dagster as dg
import pyarrow.compute as pc

from assets.knowledge.common import asset
from assets.knowledge.inventory import document_inventory
from assets.knowledge.state import ACCESS, ACCESS_TABLE, INVENTORY, INVENTORY_TABLE, plan
from core.knowledge import resolve_access
from resources.access import DocumentAccessResource
from resources.document_store import DocumentStoreResource
from resources.state_store import PipelineStateStore


@asset(
    kinds={"python", "s3"},
    deps=[document_inventory],
    description="Who may read each document: its declared groups (sidecar / S3 metadata), else the access policy's "
    "path rule, else its default. Reads a declaration only when the object's access stamp moved; a malformed one leaves "
    "the document readable by admins only, with the reason. The index applies changes in place, with no re-embedding.",
)
def document_access(
    context: dg.AssetExecutionContext,
    document_store: DocumentStoreResource,
    access_policy: DocumentAccessResource,
    pipeline_state: PipelineStateStore,
) -> dg.MaterializeResult:
    t0 = time.perf_counter()
    policy = access_policy.policy()
    items = plan(
        pipeline_state, ACCESS_TABLE, (INVENTORY_TABLE,), "access-v1", prev=(ACCESS_TABLE,), extra=policy.fingerprint()
    )
    totals = {"read": 0, "reused": 0, "declared": 0, "rule": 0, "default": 0, "error": 0}
    entries, errors = {}, []
    for item in items:
        shard = item["shard"]
        inv = pipeline_state.read_shard(
            INVENTORY_TABLE, shard, INVENTORY, entry=item["reads"][INVENTORY_TABLE], columns=["key", "access"]
        )
        before = pipeline_state.read_shard(ACCESS_TABLE, shard, ACCESS, entry=item["prev"].get(ACCESS_TABLE) or {})
        rows, counts = resolve_access(
            inv.column("key").to_pylist(),
            inv.column("access").to_pylist(),
            before,
            policy,
            document_store.declared_groups,
        )
        for k, v in counts.items():
            totals[k] += v
        if counts["error"] and len(errors) < 20:
            bad = rows.filter(pc.starts_with(rows.column("source"), "error:"))
            errors += [
                {"key": k, "reason": r} for k, r in zip(*(bad.column(c).to_pylist() for c in ("doc_key", "source")))
            ]
        entries[shard] = pipeline_state.write_shard(ACCESS_TABLE, shard, item["input"], rows, counts)
    pipeline_state.commit(ACCESS_TABLE, entries)
    if totals["error"]:
        context.log.warning(f"{totals['error']} document(s) have an unreadable access declaration: admins only")
    return dg.MaterializeResult(
        metadata={
            "dirty_shards": len(items),
            "declarations_read": totals["read"],
            "reused": totals["reused"],
            "by_declaration": totals["declared"],
            "by_rule": totals["rule"],
            "by_default": totals["default"],
            "unreadable_declarations": totals["error"],
            "unreadable_preview": dg.MetadataValue.json(errors[:20]),
            "policy": dg.MetadataValue.json({"rules": access_policy.rules, "default": access_policy.default_groups}),
            "seconds": round(time.perf_counter() - t0, 3),
        }
    )


@dg.asset_check(
    asset=document_access,
    description="Every listed document has an access row, and none has an unreadable declaration (those are readable "
    "by admins only until fixed). Warns: the run goes on, the affected documents stay closed.",
)
def every_document_has_access(pipeline_state: PipelineStateStore) -> dg.AssetCheckResult:
    listed = pipeline_state.table_rows(INVENTORY_TABLE)
    rows, errors = 0, 0
    for _, table in pipeline_state.iter_shards(ACCESS_TABLE, ACCESS, columns=["source"]):
        rows += table.num_rows
        errors += int(pc.sum(pc.starts_with(table.column("source"), "error:")).as_py() or 0)
    return dg.AssetCheckResult(
        passed=rows == listed and errors == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"listed": listed, "with_access": rows, "unreadable_declarations": errors},
    )
