"""vector_index: the searchable index (vectors + BM25 text + filter fields), one generation per model/mapping.

Shard by shard, the step compares what the index generation holds for a shard (``indexed/<generation>``, written
after the store accepted it) with the shard's live chunks, vectors, classes and access, and applies only the delta:
new chunks in, deleted chunks out, re-labelled or re-permissioned documents updated in place (no re-embedding). A new
generation is bulk-loaded (OpenSearch: refresh off, no replicas until it is built). The lifecycle (serve at once, candidate, superseded) is
``core.generations``; old generations beyond ``keep_generations`` are dropped.
"""

import contextlib
import random
import time

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from assets.knowledge.access import document_access
from assets.knowledge.classification import document_classes
from assets.knowledge.common import asset
from assets.knowledge.embeddings import chunk_embeddings
from assets.knowledge.state import (
    ACCESS,
    ACCESS_TABLE,
    CHUNKS,
    CHUNKS_TABLE,
    CLASSES,
    CLASSES_TABLE,
    INDEXED,
    indexed_table,
    plan,
    read_candidate,
    save_candidate,
    save_generation_lineage,
    vectors_schema,
    vectors_table,
)
from core.access import NOBODY
from core.embedding import vectors_to_numpy
from core.generations import is_pending, on_build, rebuild_name, target_generation
from core.ids import generation_id
from core.knowledge import index_delta
from resources.embedder import EmbedderResource
from resources.state_store import PipelineStateStore
from resources.vector_store import VectorStoreResource

COMMIT_EVERY = 8  # shards: progress survives a crash of the step without a manifest write per shard


class IndexConfig(dg.Config):
    rebuild: bool = False  # build a new generation from scratch (a promotion candidate) instead of applying the delta
    keep_generations: int = 3  # older generations are dropped (never the serving one nor a pending candidate)
    check_sample: int = 512  # rows the index checks read back


def lineage(embedder: EmbedderResource, vector_store: VectorStoreResource) -> str:
    return generation_id(embedder.model_id, embedder.dimension, vector_store.mapping_version())


def maintained_generation(
    embedder: EmbedderResource, vector_store: VectorStoreResource, store: PipelineStateStore
) -> str:
    """The generation incremental runs maintain (and the index checks look at)."""
    return target_generation(
        lineage(embedder, vector_store),
        vector_store.serving_generation(),
        read_candidate(store),
        vector_store.has_generation,
    )


def live_rows(
    store: PipelineStateStore, shard: int, item: dict, vtable: str, dimension: int
) -> tuple[pa.Table, pa.Table]:
    """(chunks of the shard that have a vector, with vector, specialty and groups; their (chunk_id, doc_key,
    specialty, groups)). A chunk whose document has no access row is readable by admins only."""
    chunks = store.read_shard(CHUNKS_TABLE, shard, CHUNKS, entry=item["reads"][CHUNKS_TABLE])
    vecs = store.read_shard(
        vtable, shard, vectors_schema(dimension), entry=item["reads"][vtable], columns=["chunk_id", "vector"]
    )
    classes = store.read_shard(
        CLASSES_TABLE, shard, CLASSES, entry=item["reads"][CLASSES_TABLE], columns=["doc_key", "specialty"]
    )
    idx = pc.index_in(chunks.column("chunk_id"), value_set=vecs.column("chunk_id"))
    keep = pc.is_valid(idx)
    chunks, idx = chunks.filter(keep), idx.filter(keep)  # a quarantined chunk has no vector: it is not indexed
    chunks = chunks.append_column("vector", vecs.column("vector").take(idx))
    cidx = pc.index_in(chunks.column("doc_key"), value_set=classes.column("doc_key"))
    specialty = (
        pc.fill_null(classes.column("specialty").take(cidx), "")
        if classes.num_rows
        else pa.array([""] * chunks.num_rows, pa.string())
    )
    chunks = chunks.append_column("specialty", specialty)
    access = store.read_shard(
        ACCESS_TABLE, shard, ACCESS, entry=item["reads"][ACCESS_TABLE], columns=["doc_key", "groups"]
    )
    aidx = pc.index_in(chunks.column("doc_key"), value_set=access.column("doc_key"))
    groups = pa.array(
        [g if g else [NOBODY] for g in access.column("groups").take(aidx).to_pylist()]
        if access.num_rows
        else [[NOBODY]] * chunks.num_rows,
        pa.list_(pa.string()),
    )
    chunks = chunks.append_column("groups", groups)
    return chunks, pa.table(
        {
            "chunk_id": chunks.column("chunk_id"),
            "doc_key": chunks.column("doc_key"),
            "specialty": specialty,
            "groups": groups,
        },
        schema=INDEXED,
    )


def _apply_deltas(
    pipeline_state: PipelineStateStore,
    vector_store: VectorStoreResource,
    embedder: EmbedderResource,
    generation: str,
    created: bool,
) -> tuple[list[dict], dict[str, int]]:
    """Each dirty shard's difference between its live chunks and what ``generation`` holds, applied to the store and
    recorded (committed every ``COMMIT_EVERY`` shards); a new generation is bulk-loaded. (dirty shards, totals)"""
    vtable, itable = vectors_table(embedder.model_id), indexed_table(generation)
    reads = (CHUNKS_TABLE, vtable, CLASSES_TABLE, ACCESS_TABLE)
    items = plan(pipeline_state, itable, reads, "index-v2", prev=(itable,))
    totals = {"added": 0, "deleted": 0, "reclassified": 0, "permissions_changed": 0}
    pending: dict[int, dict] = {}
    bulk = vector_store.bulk_load(generation) if created else contextlib.nullcontext()
    with bulk:
        for n, item in enumerate(items, start=1):
            shard = item["shard"]
            rows, live = live_rows(pipeline_state, shard, item, vtable, embedder.dimension)
            before = pipeline_state.read_shard(itable, shard, INDEXED, entry=item["prev"].get(itable) or {})
            add, delete, relabel, regroup = index_delta(live, before)
            if add:
                vector_store.upsert(
                    generation, rows.filter(pc.is_in(rows.column("chunk_id"), value_set=pa.array(add, pa.string())))
                )
            if delete:
                vector_store.delete(generation, delete)
            relabelled = vector_store.set_specialty(generation, relabel) if relabel else 0
            regrouped = vector_store.set_groups(generation, regroup) if regroup else 0
            totals["added"] += len(add)
            totals["deleted"] += len(delete)
            totals["reclassified"] += relabelled
            totals["permissions_changed"] += regrouped
            pending[shard] = pipeline_state.write_shard(
                itable,
                shard,
                item["input"],
                live,
                {"added": len(add), "deleted": len(delete), "reclassified": relabelled, "regrouped": regrouped},
            )
            if n % COMMIT_EVERY == 0:
                pipeline_state.commit(itable, pending)
                pending = {}
    pipeline_state.commit(itable, pending)
    return items, totals


def _settle(context, config, vector_store, pipeline_state, generation: str, base: str, serving, candidate):
    """After a build: promote now or record a candidate (the evaluation gate promotes it), then prune old generations
    (never the one built, never a pending candidate). (the decision, the generations dropped)"""
    decision = on_build(generation, base, serving, candidate)
    if decision.promote_now:
        vector_store.promote(generation)
        context.log.info(f"serving generation switched {serving} -> {generation} ({decision.reason})")
    if decision.candidate:
        save_candidate(pipeline_state, decision.candidate)
        if is_pending(decision.candidate):
            context.log.info(
                f"generation {generation} is a promotion candidate; {serving} keeps serving until the evaluation gate passes"
            )
    pending_candidate = read_candidate(pipeline_state)
    protect = {generation} | ({pending_candidate.generation} if is_pending(pending_candidate) else set())
    dropped = vector_store.prune_generations(config.keep_generations, protect)
    for old in dropped:
        pipeline_state.drop_table(indexed_table(old))
    return decision, dropped


@asset(
    kinds={"lancedb", "opensearch"},
    deps=[chunk_embeddings, document_classes, document_access],
    description="The searchable index: vectors + text (BM25) + filter fields (specialty and section labels among them) in one "
    "generation per model/mapping. Applies only the delta of the dirty shards (new chunks in, deleted chunks out, re-labelled and re-permissioned "
    "documents in place); a new generation is bulk-loaded beside the serving one and, for a rebuild of the same lineage, "
    "becomes a promotion candidate that the evaluation gate switches to atomically (the first generation, or a new model's, "
    "serves at once). Generations beyond keep_generations are dropped.",
)
def vector_index(
    context: dg.AssetExecutionContext,
    config: IndexConfig,
    embedder: EmbedderResource,
    vector_store: VectorStoreResource,
    pipeline_state: PipelineStateStore,
) -> dg.MaterializeResult:
    t0 = time.perf_counter()
    base = lineage(embedder, vector_store)
    candidate, serving = read_candidate(pipeline_state), vector_store.serving_generation()
    generation = (
        rebuild_name(base)
        if config.rebuild
        else target_generation(base, serving, candidate, vector_store.has_generation)
    )
    vtable, itable = vectors_table(embedder.model_id), indexed_table(generation)
    created = not vector_store.has_generation(generation)
    if created:
        pipeline_state.drop_table(itable)  # whatever an earlier generation of this name held is gone with it
        vector_store.create_generation(generation, embedder.dimension, expected_rows=pipeline_state.table_rows(vtable))
        context.log.info(f"created index generation {generation}")
    items, totals = _apply_deltas(pipeline_state, vector_store, embedder, generation, created)
    changed = created or any(totals.values())
    index_info = vector_store.refresh_indexes(generation) if changed else {"ann": "unchanged"}

    decision, dropped = _settle(context, config, vector_store, pipeline_state, generation, base, serving, candidate)
    is_candidate = bool(serving) and vector_store.serving_generation() != generation
    built_from = save_generation_lineage(pipeline_state, generation, embedder.model_id)
    return dg.MaterializeResult(
        metadata={
            "generation": generation,
            "serving_generation": vector_store.serving_generation() or "",
            "candidate_generation": generation if is_candidate else "",
            "previous_serving_generation": serving or "",
            "promoted_this_run": decision.promote_now,
            "rows": vector_store.count(generation),
            "added": totals["added"],
            "deleted": totals["deleted"],
            "reclassified_documents": totals["reclassified"],
            "permission_changed_documents": totals["permissions_changed"],
            "dirty_shards": len(items),
            "dropped_generations": dg.MetadataValue.json(dropped),
            "table_version": vector_store.version(generation),
            "index": dg.MetadataValue.json(index_info),
            "built_from": dg.MetadataValue.json(built_from),
            "seconds": round(time.perf_counter() - t0, 3),
        }
    )


@dg.asset_check(
    asset=vector_index,
    blocking=True,
    description="The index holds exactly the live chunks: its row count equals what "
    "the state says it holds, and for a sample of shards the live chunk ids equal the indexed ones and are all found "
    "in the index (no missing, stale or duplicate ids).",
)
def index_matches_live_chunks(
    embedder: EmbedderResource, vector_store: VectorStoreResource, pipeline_state: PipelineStateStore
) -> dg.AssetCheckResult:
    generation = maintained_generation(embedder, vector_store, pipeline_state)
    itable, vtable = indexed_table(generation), vectors_table(embedder.model_id)
    expected = pipeline_state.table_rows(itable)
    rows = vector_store.count(generation)
    items = plan(pipeline_state, "__check__", (CHUNKS_TABLE, vtable, CLASSES_TABLE, ACCESS_TABLE), "check", force=True)
    sample = random.Random(0).sample(items, min(4, len(items)))
    mismatched, missing, checked = 0, 0, 0
    indexed_m = pipeline_state.manifest(itable)
    for item in sample:
        _, live = live_rows(pipeline_state, item["shard"], item, vtable, embedder.dimension)
        held = pipeline_state.read_shard(
            itable, item["shard"], INDEXED, entry=indexed_m.get(pipeline_state.shard_name(item["shard"])) or {}
        )
        ids = set(live.column("chunk_id").to_pylist())
        mismatched += len(ids ^ set(held.column("chunk_id").to_pylist()))
        found = vector_store.fetch(generation, sorted(ids), ["chunk_id"]).column("chunk_id").to_pylist() if ids else []
        missing += len(ids) - len(set(found))
        mismatched += len(found) - len(set(found))  # duplicates
        checked += len(ids)
    return dg.AssetCheckResult(
        passed=rows == expected and mismatched == 0 and missing == 0,
        metadata={
            "generation": generation,
            "index_rows": rows,
            "live_chunks": expected,
            "sampled_shards": len(sample),
            "sampled_chunks": checked,
            "missing": missing,
            "stale_or_duplicate": mismatched,
        },
    )


@dg.asset_check(
    asset=vector_index,
    blocking=True,
    description="A random sample of index vectors: the model's dimension, finite, non-zero, unit length.",
)
def index_vectors_valid(
    embedder: EmbedderResource, vector_store: VectorStoreResource, pipeline_state: PipelineStateStore
) -> dg.AssetCheckResult:
    generation = maintained_generation(embedder, vector_store, pipeline_state)
    table = (
        vector_store.sample(generation, 512, ["chunk_id", "vector"])
        if vector_store.has_generation(generation)
        else None
    )
    if table is None or table.num_rows == 0:
        return dg.AssetCheckResult(passed=True, metadata={"rows": 0})
    col = table.column("vector")
    dim = col.type.list_size
    v = vectors_to_numpy(col, dim)
    norms = np.linalg.norm(np.where(np.isfinite(v), v, 0), axis=1)
    nan_rows = int((~np.isfinite(v).all(axis=1)).sum())
    zero_rows = int((norms < 1e-6).sum())
    off_unit = int((np.abs(norms - 1) > 1e-2).sum())
    return dg.AssetCheckResult(
        passed=dim == embedder.dimension and nan_rows == 0 and zero_rows == 0 and off_unit == 0,
        metadata={
            "sampled_rows": table.num_rows,
            "dimension": dim,
            "model_dimension": embedder.dimension,
            "nan_rows": nan_rows,
            "zero_rows": zero_rows,
            "non_unit_rows": off_unit,
        },
    )
