"""document_inventory: the listing of the document store, split into shards by a hash of the key.

The listing is streamed and spilled to the step's scratch disk per shard, so memory stays one page of the listing
plus one shard, however large the bucket. A shard whose listing did not change keeps its object, so nothing
downstream of it is dirty.
"""

import hashlib
import tempfile
import time
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from assets.knowledge.common import asset
from assets.knowledge.state import INVENTORY, INVENTORY_TABLE
from resources.document_store import DocumentStoreResource
from resources.state_store import PipelineStateStore, shard_of

SPILL_ROWS = 20_000  # rows buffered in memory before they are spilled to the step's scratch disk


def _listing_digest(table: pa.Table) -> str:
    h = hashlib.sha256()
    for k, e, s, a in zip(*(table.column(c).to_pylist() for c in ("key", "etag", "size", "access"))):
        h.update(f"{k}\x1f{e}\x1f{s}\x1f{a}\n".encode())
    return h.hexdigest()[:24]


@asset(
    kinds={"python", "s3"},
    description="Every object in the document store (key, size, ETag, access stamp), sharded by a hash of the key. Streams the listing; "
    "a shard whose listing is unchanged keeps its object, so nothing downstream of it runs.",
)
def document_inventory(
    context: dg.AssetExecutionContext, document_store: DocumentStoreResource, pipeline_state: PipelineStateStore
) -> dg.MaterializeResult:
    t0 = time.perf_counter()
    shards = pipeline_state.layout()
    previous = pipeline_state.manifest(INVENTORY_TABLE)
    with tempfile.TemporaryDirectory(prefix="inventory-") as scratch:
        buffers: dict[int, list[dict]] = {}
        spilled: dict[int, int] = {}
        buffered = listed = 0

        def spill() -> None:
            nonlocal buffered
            for s, rows in buffers.items():
                if rows:
                    pq.write_table(
                        pa.Table.from_pylist(rows, schema=INVENTORY), Path(scratch) / f"{s}-{spilled.get(s, 0)}.parquet"
                    )
                    spilled[s] = spilled.get(s, 0) + 1
            buffers.clear()
            buffered = 0

        for obj in document_store.iter_objects():
            buffers.setdefault(shard_of(obj.key, shards), []).append(
                {
                    "key": obj.key,
                    "size": obj.size,
                    "etag": obj.etag,
                    "last_modified": obj.last_modified,
                    "access": obj.access,
                }
            )
            buffered += 1
            listed += 1
            if buffered >= SPILL_ROWS:
                spill()
        totals = {"new": 0, "changed": 0, "deleted": 0}
        entries, total_bytes = {}, 0
        for s in range(shards):
            parts = [pq.read_table(Path(scratch) / f"{s}-{i}.parquet") for i in range(spilled.get(s, 0))]
            parts.append(pa.Table.from_pylist(buffers.get(s, []), schema=INVENTORY))
            table = pa.concat_tables(parts).sort_by("key")
            total_bytes += int(pa.compute.sum(table.column("size")).as_py() or 0)
            digest = _listing_digest(table)
            old = previous.get(pipeline_state.shard_name(s))
            if old and old["input"] == digest:
                continue
            before = pipeline_state.read_shard(INVENTORY_TABLE, s, INVENTORY, entry=old or {}, columns=["key", "etag"])
            old_etags = dict(zip(before.column("key").to_pylist(), before.column("etag").to_pylist()))
            keys = table.column("key").to_pylist()
            totals["new"] += sum(1 for k in keys if k not in old_etags)
            totals["changed"] += sum(
                1 for k, e in zip(keys, table.column("etag").to_pylist()) if k in old_etags and old_etags[k] != e
            )
            totals["deleted"] += len(set(old_etags) - set(keys))
            entries[s] = pipeline_state.write_shard(INVENTORY_TABLE, s, digest, table, {"objects": table.num_rows})
    committed = pipeline_state.commit(INVENTORY_TABLE, entries)
    return dg.MaterializeResult(
        metadata={
            "documents": listed,
            "total_bytes": total_bytes,
            **totals,
            "shards": shards,
            "changed_shards": len(entries),
            "largest_shard_documents": max((int(e.get("rows", 0)) for e in committed.values()), default=0),
            "state_store": pipeline_state.describe(),
            "seconds": round(time.perf_counter() - t0, 3),
        }
    )


@dg.asset_check(
    asset=document_inventory,
    description="Every shard holds at most the store's max_shard_documents (5,000 by default): a step holds one shard at a time, so "
    "this bounds its memory. Warns (the run goes on) when the corpus has outgrown the shard count the store was "
    "created with; the fix is a store created with AGENTIC_STATE_SHARDS ~ documents / 1,000.",
)
def shards_within_memory_bound(pipeline_state: PipelineStateStore) -> dg.AssetCheckResult:
    rows = [int(e.get("rows", 0)) for e in pipeline_state.manifest(INVENTORY_TABLE).values()]
    largest = max(rows, default=0)
    return dg.AssetCheckResult(
        passed=largest <= pipeline_state.max_shard_documents,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "shards": pipeline_state.layout(),
            "documents": sum(rows),
            "largest_shard_documents": largest,
            "bound": pipeline_state.max_shard_documents,
            "suggested_shards": max(pipeline_state.layout(), -(-sum(rows) // 1_000)),
        },
    )
