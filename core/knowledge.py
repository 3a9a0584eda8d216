"""The knowledge pipeline's logic for one shard at a time, as plain functions over Arrow tables.

Each function takes the shard's input and the shard's previous output and returns the new output, reusing every
row whose inputs did not change (a document whose ETag or content hash is the same, a chunk whose id already has a
vector). Nothing here talks to Dagster, Ray or a store; ``resources/data_path.py`` runs these on Ray workers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.chunking import Chunker
from core.documents import PARSER_VERSION, OcrOptions, ParsedDocument, Quarantine, Section, parse_document
from core.ids import chunk_id, content_hash

INVENTORY = pa.schema(
    [
        ("key", pa.string()),
        ("size", pa.int64()),
        ("etag", pa.string()),
        ("last_modified", pa.float64()),
        ("access", pa.string()),  # the store's access stamp: moves when the object's declared groups may have
    ]
)
# Who may read each document (``document_access``): its declared groups (null: none declared), the groups in
# force and where they came from (declared, rule:<prefix>, default, or error: <reason>, which no one but admins read).
ACCESS = pa.schema(
    [
        ("doc_key", pa.string()),
        ("access", pa.string()),
        ("declared", pa.list_(pa.string())),
        ("groups", pa.list_(pa.string())),
        ("source", pa.string()),
    ]
)
DOCUMENTS = pa.schema(
    [
        ("key", pa.string()),
        ("etag", pa.string()),
        ("size", pa.int64()),
        ("content_hash", pa.string()),
        ("parser_version", pa.string()),
        ("source_format", pa.string()),
        ("doc_id", pa.string()),
        ("title", pa.string()),
        ("sections", pa.string()),
        ("journal", pa.string()),
        ("year", pa.int32()),
        ("mesh_terms", pa.list_(pa.string())),
        ("mesh_ids", pa.list_(pa.string())),
        ("text_chars", pa.int64()),
        ("doc_type", pa.string()),  # core.doctypes: article, clinical_note, form, table_report
        ("pages", pa.int32()),  # pages of a paged source (0 otherwise)
        ("ocr_pages", pa.int32()),
        ("ocr_confidence", pa.float32()),
        ("tables", pa.int32()),
        ("vision_pages", pa.int32()),  # pages OCR could not read, transcribed by the vision model (eks)
        ("figures", pa.int32()),  # embedded figures the vision model described
    ]
)
QUARANTINE = pa.schema(
    [
        ("key", pa.string()),
        ("etag", pa.string()),
        ("content_hash", pa.string()),
        ("size", pa.int64()),
        ("reason", pa.string()),
        ("parser_version", pa.string()),
        ("quarantined_at", pa.float64()),
    ]
)
CHUNKS = pa.schema(
    [
        ("chunk_id", pa.string()),
        ("doc_key", pa.string()),
        ("content_hash", pa.string()),
        ("chunker_version", pa.string()),
        ("doc_id", pa.string()),
        ("seq", pa.int32()),
        ("title", pa.string()),
        ("text", pa.string()),
        ("section", pa.string()),
        ("year", pa.int32()),
        ("journal", pa.string()),
        ("mesh_terms", pa.list_(pa.string())),
        ("source_format", pa.string()),
        ("n_tokens", pa.int32()),
        ("doc_type", pa.string()),
        ("page", pa.int32()),  # first and last page of the chunk's text (paged sources; null otherwise)
        ("page_end", pa.int32()),
    ]
)
CHUNK_QUARANTINE = pa.schema(
    [("chunk_id", pa.string()), ("doc_key", pa.string()), ("reason", pa.string()), ("at", pa.float64())]
)
CLASSES = pa.schema(
    [
        ("doc_key", pa.string()),
        ("specialty", pa.string()),
        ("confidence", pa.float32()),
        ("mesh_label", pa.string()),
        ("source", pa.string()),
    ]
)
INDEXED = pa.schema(
    [
        ("chunk_id", pa.string()),
        ("doc_key", pa.string()),
        ("specialty", pa.string()),
        ("groups", pa.list_(pa.string())),
    ]
)


def vectors_schema(dimension: int) -> pa.Schema:
    return pa.schema(
        [("chunk_id", pa.string()), ("doc_key", pa.string()), ("vector", pa.list_(pa.float32(), dimension))]
    )


def _quarantine_row(item: dict, reason: str, digest: str = "") -> dict:
    return {
        "key": item["key"],
        "etag": item["etag"],
        "content_hash": digest,
        "size": item["size"],
        "reason": reason,
        "parser_version": PARSER_VERSION,
        "quarantined_at": time.time(),
    }


def parser_version(ocr_version: str = "") -> str:
    """The version a parsed row records: the parsers', plus the OCR engine's for a document read by OCR (a new
    engine or threshold re-reads scans, and only them)."""
    return f"{PARSER_VERSION}+ocr:{ocr_version}" if ocr_version else PARSER_VERSION


def doc_row(doc: ParsedDocument, item: dict, digest: str) -> dict:
    return {
        "key": doc.key,
        "etag": item["etag"],
        "size": item["size"],
        "content_hash": digest,
        "parser_version": parser_version(doc.ocr_version),
        "source_format": doc.source_format,
        "doc_id": doc.doc_id,
        "title": doc.title,
        # [label, text] as before; [label, text, page, kind] for paged sources and tables
        "sections": json.dumps(
            [
                [s.label, s.text] if s.page is None and s.kind == "text" else [s.label, s.text, s.page, s.kind]
                for s in doc.sections
            ]
        ),
        "journal": doc.journal,
        "year": doc.year,
        "mesh_terms": doc.mesh_terms,
        "mesh_ids": doc.mesh_ids,
        "text_chars": len(doc.text),
        "doc_type": doc.doc_type,
        "pages": doc.pages,
        "ocr_pages": doc.ocr_pages,
        "ocr_confidence": doc.ocr_confidence,
        "tables": sum(1 for s in doc.sections if s.kind == "table"),
        "vision_pages": doc.vision_pages,
        "figures": doc.figures,
    }


def _unchanged(row: dict | None, item: dict, versions: tuple[str, ...] = (PARSER_VERSION,)) -> bool:
    """The object is the one this row was made from (same ETag and size) by this parser version (and OCR engine)."""
    return (
        bool(row) and row["etag"] == item["etag"] and row["size"] == item["size"] and row["parser_version"] in versions
    )


def parse_shard(
    inventory: pa.Table,
    prev_docs: pa.Table,
    prev_quarantine: pa.Table,
    fetch: Callable[[str], bytes],
    max_bytes: int,
    ocr: OcrOptions | None = None,
) -> tuple[pa.Table, pa.Table, dict]:
    """Parsed documents and quarantine of one shard. A document is read only when its ETag or size changed, and
    parsed only when its content hash or the parser version changed; anything that fails is quarantined with a reason.
    Scans are read by ``ocr``; one quarantined for OCR (no engine, unreadable) is tried again when the engine changes."""
    ocr_version = ocr.version if ocr is not None else "none"
    versions = (PARSER_VERSION, parser_version(ocr_version))
    docs_by_key = {r["key"]: r for r in prev_docs.to_pylist()}
    q_by_key = {r["key"]: r for r in prev_quarantine.to_pylist()}
    docs, quarantine = [], []
    stats = {"documents": 0, "quarantined": 0, "read": 0, "parsed": 0, "new": 0, "changed": 0, "labelled": 0}
    for item in inventory.to_pylist():
        key = item["key"]
        old, oldq = docs_by_key.get(key), q_by_key.get(key)
        if _unchanged(old, item, versions):
            docs.append(old)
            continue
        if _unchanged(oldq, item, versions):
            quarantine.append(oldq)
            continue
        stats["new" if not (old or oldq) else "changed"] += 1
        digest = ""
        try:
            if item["size"] > max_bytes:  # do not even read it
                raise Quarantine(f"oversized: {item['size']} bytes > limit {max_bytes}")
            data = fetch(key)
            stats["read"] += 1
            digest = content_hash(data)
            if old and old["content_hash"] == digest and old["parser_version"] in versions:
                docs.append(dict(old, etag=item["etag"], size=item["size"]))  # touched, not changed
                continue
            stats["parsed"] += 1
            doc = parse_document(key, data, max_bytes, ocr)
            stats["ocr_pages"] = stats.get("ocr_pages", 0) + doc.ocr_pages
            docs.append(doc_row(doc, item, digest))
        except Quarantine as q:
            row = _quarantine_row(item, q.reason, digest)
            if q.ocr:
                row["parser_version"] = parser_version(ocr_version)
            quarantine.append(row)
        except FileNotFoundError:  # deleted between the listing and now: the next listing drops it
            continue
        except Exception as exc:  # a parser bug must not stop the run: quarantine it with the error
            quarantine.append(_quarantine_row(item, f"parser error: {type(exc).__name__}: {exc}", digest))
    from core.specialty import label_document

    stats["documents"], stats["quarantined"] = len(docs), len(quarantine)
    stats["labelled"] = sum(1 for d in docs if label_document(d["mesh_terms"] or [])[0])
    stats["deleted"] = len((set(docs_by_key) | set(q_by_key)) - set(inventory.column("key").to_pylist()))
    return pa.Table.from_pylist(docs, schema=DOCUMENTS), pa.Table.from_pylist(quarantine, schema=QUARANTINE), stats


def chunk_shard(docs: pa.Table, prev_chunks: pa.Table, chunker: Chunker) -> tuple[pa.Table, dict]:
    """Chunks of one shard: a document keeps its chunks (and ids) while its content hash and the chunker version stay."""
    version = chunker.version
    prev_by_doc: dict[tuple, list[dict]] = {}
    for r in prev_chunks.to_pylist():
        prev_by_doc.setdefault((r["doc_key"], r["content_hash"], r["chunker_version"]), []).append(r)
    rows, rechunked = [], 0
    for d in docs.to_pylist():
        # what the chunks were made from: the parsed document (parser version) by this chunker; a new parser that
        # reads the same bytes differently gives new chunks and chunk ids, so no vector of the old text is reused
        made_by = f"{version}|{d['parser_version']}"
        cached = prev_by_doc.get((d["key"], d["content_hash"], made_by))
        if cached:
            rows.extend(cached)
            continue
        rechunked += 1
        sections = [Section(*s) for s in json.loads(d["sections"])]
        for c in chunker.chunk(sections):
            rows.append(
                {
                    "chunk_id": chunk_id(d["key"], d["content_hash"], made_by, c.seq),
                    "doc_key": d["key"],
                    "content_hash": d["content_hash"],
                    "chunker_version": made_by,
                    "doc_id": d["doc_id"],
                    "seq": c.seq,
                    "title": d["title"],
                    "text": c.text,
                    "section": c.section,
                    "year": d["year"],
                    "journal": d["journal"],
                    "mesh_terms": d["mesh_terms"],
                    "source_format": d["source_format"],
                    "n_tokens": c.n_tokens,
                    "doc_type": d.get("doc_type") or "",
                    "page": c.page,
                    "page_end": c.page_end,
                }
            )
    tokens = [r["n_tokens"] for r in rows]
    return pa.Table.from_pylist(rows, schema=CHUNKS), {
        "chunks": len(rows),
        "documents": docs.num_rows,
        "rechunked": rechunked,
        "tokens_max": max(tokens, default=0),
        "tokens_sum": int(sum(tokens)),
    }


def vectors_to_reuse(chunks: pa.Table, prev_vectors: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(vectors kept from the previous shard for live chunks, chunks that still need a vector)."""
    ids = chunks.column("chunk_id")
    if prev_vectors.num_rows:
        kept = prev_vectors.filter(pc.is_in(prev_vectors.column("chunk_id"), value_set=ids))
        todo = chunks.filter(pc.invert(pc.is_in(ids, value_set=kept.column("chunk_id"))))
    else:
        kept, todo = prev_vectors, chunks
    return kept, todo


def invalid_vectors(vectors: np.ndarray, dimension: int) -> list[str | None]:
    """Per row: why the vector must not be indexed (NaN/inf, zero, wrong dimension), or None when it is fine."""
    if vectors.ndim != 2 or vectors.shape[1] != dimension:
        return [f"vector of dimension {vectors.shape[-1] if vectors.ndim else 0}, model dimension {dimension}"] * len(
            vectors
        )
    finite = np.isfinite(vectors).all(axis=1)
    norms = np.linalg.norm(np.where(np.isfinite(vectors), vectors, 0), axis=1)
    return [
        None if f and n >= 1e-6 else ("non-finite vector (NaN/inf)" if not f else "zero vector")
        for f, n in zip(finite, norms)
    ]


def index_delta(
    live: pa.Table, indexed: pa.Table
) -> tuple[list[str], list[str], dict[str, list[str]], dict[tuple[str, ...], list[str]]]:
    """What one shard's index rows need: (chunk ids to add, chunk ids to delete, doc keys to re-label by new specialty,
    doc keys to re-permission by new groups). ``live`` and ``indexed`` have (chunk_id, doc_key, specialty, groups)."""
    live_ids, old_ids = set(live.column("chunk_id").to_pylist()), set(indexed.column("chunk_id").to_pylist())
    add, delete = sorted(live_ids - old_ids), sorted(old_ids - live_ids)
    old_class = dict(zip(indexed.column("doc_key").to_pylist(), indexed.column("specialty").to_pylist()))
    added_docs = set(
        live.filter(pc.is_in(live.column("chunk_id"), value_set=pa.array(add, pa.string())))
        .column("doc_key")
        .to_pylist()
    )
    relabel: dict[str, list[str]] = {}
    for key, spec in sorted(set(zip(live.column("doc_key").to_pylist(), live.column("specialty").to_pylist()))):
        if key not in added_docs and key in old_class and old_class[key] != spec:
            relabel.setdefault(spec, []).append(key)
    old_groups = {
        k: tuple(g or ()) for k, g in zip(indexed.column("doc_key").to_pylist(), indexed.column("groups").to_pylist())
    }
    regroup: dict[tuple[str, ...], list[str]] = {}
    live_groups = {
        k: tuple(g or ()) for k, g in zip(live.column("doc_key").to_pylist(), live.column("groups").to_pylist())
    }
    for key, groups in sorted(live_groups.items()):
        if key not in added_docs and key in old_groups and old_groups[key] != groups:
            regroup.setdefault(groups, []).append(key)
    return add, delete, relabel, regroup


def resolve_access(
    keys: list[str],
    stamps: list[str],
    previous: pa.Table,
    policy,
    read_declared,
) -> tuple[pa.Table, dict[str, int]]:
    """One shard's ``ACCESS`` rows. A document's declaration is read (``read_declared(key)``, one sidecar read or
    HEAD) only when its access stamp moved since ``previous``; the policy (``core.access.AccessPolicy``) is applied to
    every row, so a changed rule re-decides without reading anything. A declaration that cannot be read or parsed
    gives the document no groups (only admins read it) and says why in ``source``: it is never published under a
    guess. Returns (rows, counts: read, reused, declared, rule, default, error)."""
    from core.access import index_groups

    prev = {
        k: (a, d, s)
        for k, a, d, s in zip(
            previous.column("doc_key").to_pylist(),
            previous.column("access").to_pylist(),
            previous.column("declared").to_pylist(),
            previous.column("source").to_pylist(),
        )
    }
    counts = {"read": 0, "reused": 0, "declared": 0, "rule": 0, "default": 0, "error": 0}
    rows = []
    for key, stamp in zip(keys, stamps):
        stamp = stamp or ""
        old = prev.get(key)
        error = ""
        if old is not None and old[0] == stamp and not (old[2] or "").startswith("error:"):  # errors are retried
            declared = old[1]
            counts["reused"] += 1
        elif not stamp:
            declared = None
        else:
            counts["read"] += 1
            try:
                declared = read_declared(key)
            except (ValueError, OSError) as exc:
                declared, error = None, f"error: {exc}"[:300]
        if error:
            groups, source = [], error
        else:
            found, source = policy.groups_for(key, declared)
            groups = list(found)
        counts[source.split(":")[0]] += 1
        rows.append(
            {"doc_key": key, "access": stamp, "declared": declared, "groups": index_groups(groups), "source": source}
        )
    return pa.Table.from_pylist(rows, schema=ACCESS), counts


def document_vectors(chunk_doc_keys: list[str], vectors: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Document embedding = the normalized mean of its chunk vectors."""
    if not chunk_doc_keys:
        return [], np.zeros((0, vectors.shape[1] if vectors.ndim == 2 else 0), np.float32)
    order = sorted(set(chunk_doc_keys))
    pos = {k: i for i, k in enumerate(order)}
    sums = np.zeros((len(order), vectors.shape[1]), np.float64)
    np.add.at(sums, np.array([pos[k] for k in chunk_doc_keys]), vectors)
    sums /= np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    return order, sums.astype(np.float32)
