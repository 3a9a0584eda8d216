"""The knowledge stage's state: its tables, their schemas, and typed readers that other stages use.

Every table lives in the pipeline state store (a folder on ``local``, S3 on ``eks``), sharded by a hash of the
document key. A step works out which shards are *dirty* (their output is missing or was built from other input
objects, see ``plan``), has them computed, and commits the new entries in one manifest write.

Tables: ``inventory`` (listing), ``documents`` + ``parse_quarantine`` (parsing), ``chunks`` (chunking),
``vectors_<model>`` + ``chunk_quarantine_<model>`` (embedding), ``document_classes`` (classification),
``document_access`` (who may read each document) and ``indexed/<generation>`` (what each index generation holds).
The generation lifecycle record is ``index/candidate``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from core.generations import LINEAGE_PREFIX, Candidate
from core.knowledge import (  # noqa: F401  (the schemas are part of this module's interface)
    ACCESS,
    CHUNK_QUARANTINE,
    CHUNKS,
    CLASSES,
    DOCUMENTS,
    INDEXED,
    INVENTORY,
    QUARANTINE,
    vectors_schema,
)
from resources.state_store import PipelineStateStore, digest_of

INVENTORY_TABLE = "inventory"
DOCUMENTS_TABLE = "documents"
PARSE_QUARANTINE_TABLE = "parse_quarantine"
CHUNKS_TABLE = "chunks"
CLASSES_TABLE = "document_classes"
ACCESS_TABLE = "document_access"
CANDIDATE_RECORD = "index/candidate"
CLASSIFIER_MODEL = "models/specialty_classifier.npz"
CLASSIFIER_RECORD = "models/specialty_classifier"


def _slug(model_id: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", model_id.lower()).strip("_")


def vectors_table(model_id: str) -> str:
    return f"vectors_{_slug(model_id)}"


def chunk_quarantine_table(model_id: str) -> str:
    return f"chunk_quarantine_{_slug(model_id)}"


def indexed_table(generation: str) -> str:
    return f"indexed/{generation}"


def plan(
    store: PipelineStateStore,
    output: str,
    reads: tuple[str, ...],
    version: str,
    prev: tuple[str, ...] = (),
    extra: str = "",
    force: bool = False,
) -> list[dict]:
    """Work items for the dirty shards of ``output``: shards whose committed entry was not built from the current
    objects of ``reads`` (and ``version``/``extra``). Each item carries the shard, its input digest, the entries it
    reads and the previous entries of ``prev`` (for row-level reuse)."""
    shards = store.layout()
    read_manifests = {t: store.manifest(t) for t in reads}
    prev_manifests = {t: store.manifest(t) for t in prev}
    current = store.manifest(output)
    items = []
    for s in range(shards):
        name = store.shard_name(s)
        entries = {t: m.get(name) for t, m in read_manifests.items()}
        if any(e is None for e in entries.values()):
            continue
        digest = digest_of(version, extra, {t: e["object"] for t, e in entries.items()})
        if not force and current.get(name, {}).get("input") == digest:
            continue
        items.append(
            {"shard": s, "input": digest, "reads": entries, "prev": {t: m.get(name) for t, m in prev_manifests.items()}}
        )
    return items


def sum_stats(entries: dict[str, dict], *fields: str) -> dict[str, int]:
    return {f: int(sum(float(e.get("stats", {}).get(f, 0) or 0) for e in entries.values())) for f in fields}


# ------------------------------------------------------------ readers other stages use


def iter_documents(store: PipelineStateStore, columns: list[str] | None = None) -> Iterator[pa.Table]:
    """Parsed documents, one shard at a time."""
    for _, table in store.iter_shards(DOCUMENTS_TABLE, DOCUMENTS, columns=columns):
        yield table


def iter_live_documents(store: PipelineStateStore) -> Iterator[pa.Table]:
    """Parsed documents that have chunks (what the index holds), one shard at a time."""
    chunks = store.manifest(CHUNKS_TABLE)
    for shard, docs in store.iter_shards(DOCUMENTS_TABLE, DOCUMENTS):
        entry = chunks.get(store.shard_name(shard))
        if not entry or not docs.num_rows:
            continue
        live = store.read_shard(CHUNKS_TABLE, shard, CHUNKS, entry=entry, columns=["doc_key"]).column("doc_key")
        yield docs.filter(pc.is_in(docs.column("key"), value_set=pc.unique(live)))


def iter_chunks(store: PipelineStateStore, columns: list[str] | None = None) -> Iterator[pa.Table]:
    for _, table in store.iter_shards(CHUNKS_TABLE, CHUNKS, columns=columns):
        yield table


def iter_access(store: PipelineStateStore) -> Iterator[pa.Table]:
    """Who may read each document (doc_key, access, declared, groups, source), one shard at a time."""
    for _, table in store.iter_shards(ACCESS_TABLE, ACCESS):
        yield table


def read_table(store: PipelineStateStore, name: str, schema: pa.Schema, columns: list[str] | None = None) -> pa.Table:
    """A whole sharded table in memory: for tests and small corpora only (pipeline steps iterate shards)."""
    parts = [t for _, t in store.iter_shards(name, schema, columns=columns)]
    target = pa.schema([schema.field(c) for c in columns]) if columns else schema
    return pa.concat_tables(parts) if parts else target.empty_table()


def read_candidate(store: PipelineStateStore) -> Candidate | None:
    """The index generation waiting for (or last decided by) the evaluation gate."""
    raw = store.read_json(CANDIDATE_RECORD)
    return Candidate(**raw) if raw else None


def save_candidate(store: PipelineStateStore, candidate: Candidate) -> None:
    store.write_json(CANDIDATE_RECORD, candidate.as_dict())


def save_generation_lineage(store: PipelineStateStore, generation: str, embedding_model: str) -> dict:
    """Record what a generation was built from: the embedding model and the chunker version of its chunks."""
    chunker = ""
    for table in iter_chunks(store, columns=["chunker_version"]):
        if table.num_rows:
            chunker = table.column("chunker_version")[0].as_py() or ""
            break
    record = {"generation": generation, "embedding_model": embedding_model, "chunker_version": chunker}
    store.write_json(LINEAGE_PREFIX + generation, record)
    return record


def read_generation_lineage(store: PipelineStateStore, generation: str) -> dict | None:
    return store.read_json(LINEAGE_PREFIX + generation)
