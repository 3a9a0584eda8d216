"""The knowledge pipeline: stored documents -> parsed -> chunked -> embedded on Ray -> indexed.

Every step is incremental. Each asset diffs against the state the previous run left
(keyed by document key + content hash, chunker version, chunk id + model), does only
the new work, and writes its table atomically. A second run with no change embeds
nothing and leaves the index untouched.
"""


import json
import time
from collections import Counter

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.chunking import Chunker
from core.embedding import vectors_to_numpy
from core.documents import DEFAULT_MAX_BYTES, PARSER_VERSION, ParsedDocument, Quarantine, Section, parse_document
from core.ids import chunk_id, content_hash, generation_id
from infra.platform.config import k8s_step
from resources.document_store import DocumentStoreResource
from resources.embedder import EmbedderResource
from resources.ray_cluster import RayResource, embed_on_ray
from resources.state_store import PipelineStateStore
from resources.vector_store import VectorStoreResource

GROUP = "knowledge"
OWNERS = ["team:ml-platform"]

INVENTORY = pa.schema([("key", pa.string()), ("size", pa.int64()), ("etag", pa.string()), ("content_hash", pa.string()), ("last_modified", pa.float64())])
DOCUMENTS = pa.schema(
    [
        ("key", pa.string()), ("content_hash", pa.string()), ("parser_version", pa.string()), ("source_format", pa.string()),
        ("doc_id", pa.string()), ("title", pa.string()), ("sections", pa.string()), ("journal", pa.string()),
        ("year", pa.int32()), ("mesh_terms", pa.list_(pa.string())), ("mesh_ids", pa.list_(pa.string())), ("text_chars", pa.int64()),
    ]
)
QUARANTINE = pa.schema([("key", pa.string()), ("content_hash", pa.string()), ("size", pa.int64()), ("reason", pa.string()), ("parser_version", pa.string()), ("quarantined_at", pa.float64())])
CHUNKS = pa.schema(
    [
        ("chunk_id", pa.string()), ("doc_key", pa.string()), ("content_hash", pa.string()), ("chunker_version", pa.string()),
        ("doc_id", pa.string()), ("seq", pa.int32()), ("title", pa.string()), ("text", pa.string()), ("section", pa.string()),
        ("year", pa.int32()), ("journal", pa.string()), ("mesh_terms", pa.list_(pa.string())), ("source_format", pa.string()),
        ("n_tokens", pa.int32()),
    ]
)


def _md_table(rows: list[dict], columns: list[str], limit: int = 10) -> dg.MetadataValue:
    if not rows:
        return dg.MetadataValue.md("_none_")
    def cell(v):
        s = f"{v:.3f}" if isinstance(v, float) else str(v if v is not None else "").replace("|", "\\|").replace("\n", " ")
        return s if len(s) <= 120 else s[:117] + "..."
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows[:limit]]
    if len(rows) > limit:
        lines.append(f"\n_{len(rows) - limit} more_")
    return dg.MetadataValue.md("\n".join(lines))


def _quarantine_table(rows: list[dict], limit: int = 100) -> dg.MetadataValue:
    """The quarantine as a real table in the Dagster UI (key, reason, size)."""
    schema = dg.TableSchema(columns=[dg.TableColumn("key", "string"), dg.TableColumn("reason", "string"), dg.TableColumn("size", "int")])
    records = [dg.TableRecord({"key": r["key"], "reason": r["reason"], "size": int(r["size"])}) for r in rows[:limit]]
    return dg.MetadataValue.table(records=records, schema=schema)


def _keyed(table: pa.Table, *cols: str) -> dict:
    if table.num_rows == 0:
        return {}
    rows = table.to_pylist()
    return {tuple(r[c] for c in cols) if len(cols) > 1 else r[cols[0]]: r for r in rows}


# ------------------------------------------------------------------ inventory


@dg.asset(
    group_name=GROUP,
    kinds={"python", "s3"},
    owners=OWNERS,
    description="Every object in the document store: key, size, ETag and sha256 content hash. "
    "Hashes are reused for objects whose ETag did not change.",
)
def document_inventory(context: dg.AssetExecutionContext, document_store: DocumentStoreResource, pipeline_state: PipelineStateStore) -> dg.MaterializeResult:
    t0 = time.perf_counter()
    previous = _keyed(pipeline_state.read("inventory", INVENTORY), "key")
    objects = document_store.list_objects()
    rows, hashed = [], 0
    for i, obj in enumerate(objects):
        prev = previous.get(obj.key)
        if prev and prev["etag"] == obj.etag and prev["size"] == obj.size:
            digest = prev["content_hash"]
        else:
            try:
                digest = content_hash(document_store.get(obj.key))
            except FileNotFoundError:  # deleted between list and get
                continue
            hashed += 1
        rows.append({"key": obj.key, "size": obj.size, "etag": obj.etag, "content_hash": digest, "last_modified": obj.last_modified})
        if (i + 1) % 5000 == 0:
            context.log.info(f"inventory: {i + 1}/{len(objects)} objects")
    table = pa.Table.from_pylist(rows, schema=INVENTORY)
    pipeline_state.write("inventory", table)
    keys = {r["key"] for r in rows}
    new = sum(1 for r in rows if r["key"] not in previous)
    changed = sum(1 for r in rows if r["key"] in previous and previous[r["key"]]["content_hash"] != r["content_hash"])
    deleted = len(set(previous) - keys)
    prefixes = Counter(r["key"].split("/", 1)[0] if "/" in r["key"] else "(root)" for r in rows)
    return dg.MaterializeResult(
        metadata={
            "documents": len(rows),
            "total_bytes": int(sum(r["size"] for r in rows)),
            "new": new,
            "changed": changed,
            "deleted": deleted,
            "hashed_this_run": hashed,
            "by_prefix": dg.MetadataValue.json(dict(prefixes)),
            "seconds": round(time.perf_counter() - t0, 3),
        }
    )


# ------------------------------------------------------------------ parsing


class ParseConfig(dg.Config):
    max_bytes: int = DEFAULT_MAX_BYTES


def _doc_row(doc: ParsedDocument, digest: str) -> dict:
    return {
        "key": doc.key, "content_hash": digest, "parser_version": PARSER_VERSION, "source_format": doc.source_format,
        "doc_id": doc.doc_id, "title": doc.title, "sections": json.dumps([[s.label, s.text] for s in doc.sections]),
        "journal": doc.journal, "year": doc.year, "mesh_terms": doc.mesh_terms, "mesh_ids": doc.mesh_ids, "text_chars": len(doc.text),
    }


@dg.asset(
    group_name=GROUP,
    kinds={"python"},
    owners=OWNERS,
    deps=[document_inventory],
    description="Text and metadata of every document, one parser per format (PubMed XML, JATS, text, Markdown, "
    "HTML, PDF, JSON, CSV) chosen from the content. A document that fails is quarantined with its key and reason; "
    "the run goes on. Only new or changed documents are parsed.",
)
def parsed_documents(
    context: dg.AssetExecutionContext, config: ParseConfig, document_store: DocumentStoreResource, pipeline_state: PipelineStateStore
) -> dg.MaterializeResult:
    t0 = time.perf_counter()
    inventory = pipeline_state.read("inventory", INVENTORY).to_pylist()
    prev_docs = _keyed(pipeline_state.read("documents", DOCUMENTS), "key")
    prev_q = _keyed(pipeline_state.read("quarantine", QUARANTINE), "key")
    docs, quarantine, parsed_now = [], [], 0
    for i, item in enumerate(inventory):
        key, digest = item["key"], item["content_hash"]
        old = prev_docs.get(key)
        if old and old["content_hash"] == digest and old["parser_version"] == PARSER_VERSION:
            docs.append(old)
            continue
        oldq = prev_q.get(key)
        if oldq and oldq["content_hash"] == digest and oldq["parser_version"] == PARSER_VERSION:
            quarantine.append(oldq)
            continue
        parsed_now += 1
        try:
            if item["size"] > config.max_bytes:  # do not even read it
                raise Quarantine(f"oversized: {item['size']} bytes > limit {config.max_bytes}")
            data = document_store.get(key)
            if content_hash(data) != digest:
                raise Quarantine("content changed while the run was reading it; it will be picked up next run")
            docs.append(_doc_row(parse_document(key, data, config.max_bytes), digest))
        except Quarantine as q:
            quarantine.append({"key": key, "content_hash": digest, "size": item["size"], "reason": q.reason, "parser_version": PARSER_VERSION, "quarantined_at": time.time()})
        except FileNotFoundError:
            continue
        except Exception as exc:  # a parser bug must not stop the run: quarantine it with the error
            quarantine.append({"key": key, "content_hash": digest, "size": item["size"], "reason": f"parser error: {type(exc).__name__}: {exc}", "parser_version": PARSER_VERSION, "quarantined_at": time.time()})
        if parsed_now % 2000 == 0:
            context.log.info(f"parsing: {i + 1}/{len(inventory)} documents seen, {parsed_now} parsed")
    pipeline_state.write("documents", pa.Table.from_pylist(docs, schema=DOCUMENTS))
    pipeline_state.write("quarantine", pa.Table.from_pylist(quarantine, schema=QUARANTINE))
    if quarantine:
        context.log.warning(f"{len(quarantine)} document(s) quarantined, e.g. {quarantine[0]['key']}: {quarantine[0]['reason']}")
    elapsed = time.perf_counter() - t0
    formats = Counter(d["source_format"] for d in docs)
    return dg.MaterializeResult(
        metadata={
            "documents": len(docs),
            "quarantined": len(quarantine),
            "parsed_this_run": parsed_now,
            "formats": dg.MetadataValue.json(dict(formats)),
            "quarantine": _quarantine_table(quarantine),
            "preview": _md_table(docs, ["doc_id", "title", "journal", "year", "source_format"], limit=5),
            "seconds": round(elapsed, 3),
        }
    )


@dg.asset_check(asset=parsed_documents, description="Nothing is lost: every inventoried document is either parsed or quarantined with a reason.")
def every_document_accounted_for(pipeline_state: PipelineStateStore) -> dg.AssetCheckResult:
    inv = set(pipeline_state.read("inventory", INVENTORY).column("key").to_pylist())
    docs = set(pipeline_state.read("documents", DOCUMENTS).column("key").to_pylist())
    q = pipeline_state.read("quarantine", QUARANTINE).to_pylist()
    missing = sorted(inv - docs - {r["key"] for r in q})
    no_reason = [r["key"] for r in q if not r["reason"]]
    return dg.AssetCheckResult(
        passed=not missing and not no_reason,
        metadata={
            "inventoried": len(inv),
            "parsed": len(docs),
            "quarantined": len(q),
            "missing": dg.MetadataValue.json(missing[:50]),
            "quarantine_list": _quarantine_table(q),
        },
    )


# ------------------------------------------------------------------ chunking


class ChunkingConfig(dg.Config):
    max_tokens: int = 200
    overlap_tokens: int = 40


@dg.asset(
    group_name=GROUP,
    kinds={"python"},
    owners=OWNERS,
    deps=[parsed_documents],
    description="Token-aware, section-aware chunks with overlap, counted in the embedding model's word pieces. "
    "Chunk ids are hash(document key, content hash, chunker version, position), so unchanged documents keep their ids.",
)
def document_chunks(
    context: dg.AssetExecutionContext, config: ChunkingConfig, embedder: EmbedderResource, pipeline_state: PipelineStateStore
) -> dg.MaterializeResult:
    t0 = time.perf_counter()
    chunker = Chunker(embedder.count_tokens, max_tokens=config.max_tokens, overlap_tokens=config.overlap_tokens)
    version = chunker.version
    docs = pipeline_state.read("documents", DOCUMENTS).to_pylist()
    prev = pipeline_state.read("chunks", CHUNKS)
    prev_by_doc: dict[tuple, list[dict]] = {}
    for r in prev.to_pylist():
        prev_by_doc.setdefault((r["doc_key"], r["content_hash"], r["chunker_version"]), []).append(r)
    rows, rechunked = [], 0
    for i, d in enumerate(docs):
        cached = prev_by_doc.get((d["key"], d["content_hash"], version))
        if cached:
            rows.extend(cached)
            continue
        rechunked += 1
        sections = [Section(label, text) for label, text in json.loads(d["sections"])]
        for c in chunker.chunk(sections):
            rows.append({
                "chunk_id": chunk_id(d["key"], d["content_hash"], version, c.seq), "doc_key": d["key"], "content_hash": d["content_hash"],
                "chunker_version": version, "doc_id": d["doc_id"], "seq": c.seq, "title": d["title"], "text": c.text, "section": c.section,
                "year": d["year"], "journal": d["journal"], "mesh_terms": d["mesh_terms"], "source_format": d["source_format"], "n_tokens": c.n_tokens,
            })
        if rechunked % 2000 == 0:
            context.log.info(f"chunking: {i + 1}/{len(docs)} documents")
    table = pa.Table.from_pylist(rows, schema=CHUNKS)
    pipeline_state.write("chunks", table)
    tokens = np.array([r["n_tokens"] for r in rows]) if rows else np.zeros(1)
    return dg.MaterializeResult(
        metadata={
            "chunks": len(rows),
            "documents": len(docs),
            "rechunked_documents": rechunked,
            "chunker_version": version,
            "tokens_p50": int(np.percentile(tokens, 50)),
            "tokens_max": int(tokens.max()),
            "chunks_per_document": round(len(rows) / max(1, len(docs)), 2),
            "preview": _md_table(rows, ["doc_id", "seq", "section", "n_tokens", "text"], limit=5),
            "seconds": round(time.perf_counter() - t0, 3),
        }
    )


# ------------------------------------------------------------------ embeddings


class EmbeddingConfig(dg.Config):
    actors: int = 0  # 0 = one per Ray CPU
    batch_size: int = 64


@dg.asset(
    group_name=GROUP,
    op_tags=k8s_step("500m", "1Gi", "2Gi"),  # eks: the step pod's size (embedding itself runs on the Ray cluster)
    kinds={"ray", "onnx"},
    owners=OWNERS,
    deps=[document_chunks],
    description="Vectors for every live chunk, computed by a Ray Data job (map_batches over an actor pool that "
    "holds the embedding model). Only chunks whose id+model are not yet in the embedding cache are embedded.",
)
def chunk_embeddings(
    context: dg.AssetExecutionContext, config: EmbeddingConfig, embedder: EmbedderResource, ray_cluster: RayResource, pipeline_state: PipelineStateStore
) -> dg.MaterializeResult:
    t0 = time.perf_counter()
    chunks = pipeline_state.read("chunks", CHUNKS)
    live = set(chunks.column("chunk_id").to_pylist())
    cached = set(pipeline_state.cached_vectors(embedder.model_id, embedder.dimension, ["chunk_id"]).column("chunk_id").to_pylist())
    todo_mask = pc.invert(pc.is_in(chunks.column("chunk_id"), value_set=pa.array(sorted(cached), pa.string())))
    todo = chunks.filter(todo_mask).select(["chunk_id", "text", "n_tokens"])
    context.log.info(f"{todo.num_rows} of {chunks.num_rows} chunks need embedding with {embedder.model_id}")
    embed_seconds, done = 0.0, 0
    if todo.num_rows:
        t1 = time.perf_counter()
        last_log, pending = t1, []

        def flush() -> None:
            # Persist as we go: the cache is keyed, so a failed run resumes where it stopped.
            if pending:
                pipeline_state.add_vectors(embedder.model_id, embedder.dimension, pa.concat_tables(pending))
                pending.clear()

        for batch in embed_on_ray(ray_cluster, todo, embedder.spec(), actors=config.actors, batch_size=config.batch_size):
            vectors = vectors_to_numpy(batch.column("vector"), embedder.dimension)
            bad = ~np.isfinite(vectors).all(axis=1) | (np.linalg.norm(vectors, axis=1) < 1e-6)
            if bad.any():
                ids = [batch.column("chunk_id")[i].as_py() for i in np.flatnonzero(bad)[:5]]
                raise RuntimeError(f"embedder returned {int(bad.sum())} zero/NaN vectors (e.g. chunks {ids}); they were not stored")
            pending.append(batch)
            done += batch.num_rows
            if sum(t.num_rows for t in pending) >= 5000:
                flush()
            if time.perf_counter() - last_log > 30:
                last_log = time.perf_counter()
                context.log.info(f"embedding: {done}/{todo.num_rows} chunks ({done / (last_log - t1):.1f}/s)")
        flush()
        embed_seconds = time.perf_counter() - t1
        if done != todo.num_rows:
            raise RuntimeError(f"embedder returned {done} vectors for {todo.num_rows} chunks")
    pruned = pipeline_state.prune_vectors(embedder.model_id, embedder.dimension, live)
    elapsed = time.perf_counter() - t0
    return dg.MaterializeResult(
        metadata={
            "model": embedder.model_id,
            "dimension": embedder.dimension,
            "live_chunks": len(live),
            "embedded_this_run": todo.num_rows,
            "reused_from_cache": len(live) - todo.num_rows,
            "pruned_from_cache": pruned,
            "embed_seconds": round(embed_seconds, 3),
            "chunks_per_second": round(todo.num_rows / embed_seconds, 1) if embed_seconds else 0.0,
            "ray_cpus": ray_cluster.cluster_cpus() if todo.num_rows else 0,
            "seconds": round(elapsed, 3),
        }
    )


# ------------------------------------------------------------------ classification

CLASSES_TABLE = pa.schema([("doc_key", pa.string()), ("specialty", pa.string()), ("confidence", pa.float32()),
                           ("mesh_label", pa.string()), ("source", pa.string())])
INDEX_CLASSES = pa.schema([("generation", pa.string()), ("doc_key", pa.string()), ("specialty", pa.string())])
MIN_TEST_DOCS = 30  # below this many held-out labelled documents a macro-F1 says nothing


def _document_vectors(pipeline_state: PipelineStateStore, embedder: EmbedderResource) -> tuple[list[str], np.ndarray]:
    """Document embedding = normalized mean of its chunk vectors (all live documents with chunks)."""
    chunks = pipeline_state.read("chunks", CHUNKS).select(["chunk_id", "doc_key"])
    vecs = pipeline_state.cached_vectors(embedder.model_id, embedder.dimension)
    if chunks.num_rows == 0 or vecs.num_rows == 0:
        return [], np.zeros((0, embedder.dimension), np.float32)
    idx = pc.index_in(chunks.column("chunk_id"), value_set=vecs.column("chunk_id"))
    keep = pc.is_valid(idx)
    chunks, idx = chunks.filter(keep), idx.filter(keep)
    v = vectors_to_numpy(vecs.column("vector").take(idx), embedder.dimension)
    keys = chunks.column("doc_key").to_pylist()
    order = sorted(set(keys))
    pos = {k: i for i, k in enumerate(order)}
    sums = np.zeros((len(order), embedder.dimension), np.float64)
    np.add.at(sums, np.array([pos[k] for k in keys]), v)
    sums /= np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    return order, sums.astype(np.float32)


def _classifier_paths(pipeline_state: PipelineStateStore):
    from pathlib import Path

    root = Path(pipeline_state.root)
    return root / "specialty_classifier.npz", root / "specialty_classifier.json"


class ClassifierConfig(dg.Config):
    holdout_fraction: float = 0.2
    l2: float = 1e-3
    epochs: int = 400


@dg.asset(
    group_name=GROUP,
    op_tags=k8s_step("2", "8Gi", "12Gi"),  # eks: trains in the step pod on all document vectors, so a larger pod
    kinds={"python", "numpy"},
    owners=OWNERS,
    deps=[chunk_embeddings, parsed_documents],
    description="Medical specialty classifier (neoplasms, digestive, nervous system, cardiovascular, general pathological "
    "conditions = MeSH branches C04/C06/C10/C14/C23). Labels from the documents' MeSH descriptors (core/specialty.py says how), "
    "softmax regression on document embeddings, macro-F1 on a held-out split (hash of the document key).",
)
def specialty_classifier(context: dg.AssetExecutionContext, config: ClassifierConfig, embedder: EmbedderResource,
                         pipeline_state: PipelineStateStore) -> dg.MaterializeResult:
    from core.specialty import BRANCHES, CLASSES, holdout, label_document, macro_f1, train_softmax

    t0 = time.perf_counter()
    docs = pipeline_state.read("documents", DOCUMENTS)
    mesh = dict(zip(docs.column("key").to_pylist(), docs.column("mesh_terms").to_pylist()))
    keys, x = _document_vectors(pipeline_state, embedder)
    labels = [label_document(mesh.get(k) or [])[0] for k in keys]
    train = [i for i, (k, y) in enumerate(zip(keys, labels)) if y and not holdout(k, config.holdout_fraction)]
    test = [i for i, (k, y) in enumerate(zip(keys, labels)) if y and holdout(k, config.holdout_fraction)]
    counts = Counter(labels[i] for i in train + test)
    model_path, metrics_path = _classifier_paths(pipeline_state)
    trained = len({labels[i] for i in train}) >= 2
    metrics: dict = {"trained": trained, "labelled": len(train) + len(test), "train": len(train), "test": len(test),
                     "documents": len(keys), "labels": dict(counts)}
    if trained:
        model = train_softmax(x[train], [labels[i] for i in train], CLASSES, l2=config.l2, epochs=config.epochs)
        pred, _ = model.predict(x[test]) if test else ([], None)
        f1, per_class = macro_f1([labels[i] for i in test], pred, CLASSES)
        metrics.update({"macro_f1": round(f1, 4), "per_class": per_class})
        np.savez(model_path, **model.to_npz())
    else:
        model_path.unlink(missing_ok=True)
        context.log.warning(f"only {len(train)} labelled training documents in {len({labels[i] for i in train})} classes: no classifier")
    metrics_path.write_text(json.dumps(metrics))
    rows = [{"class": c, "MeSH branch": BRANCHES[c], "labelled": counts.get(c, 0),
             **({k: metrics["per_class"][c][k] for k in ("precision", "recall", "f1", "support")} if trained else {})} for c in CLASSES]
    md: dict = {
        "trained": trained,
        "documents": len(keys),
        "labelled_documents": metrics["labelled"],
        "train_documents": len(train),
        "test_documents": len(test),
        "per_class": _md_table(rows, list(rows[0].keys())),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if trained:
        md["macro_f1"] = metrics["macro_f1"]
    return dg.MaterializeResult(metadata=md)


@dg.asset_check(asset=specialty_classifier, description=f"Macro-F1 on the held-out labelled documents >= 0.6 "
                f"(evaluated from {MIN_TEST_DOCS} held-out documents on; below that the sample says nothing and the check says so).")
def specialty_macro_f1(pipeline_state: PipelineStateStore) -> dg.AssetCheckResult:
    _, metrics_path = _classifier_paths(pipeline_state)
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    if not metrics.get("trained") or metrics.get("test", 0) < MIN_TEST_DOCS:
        return dg.AssetCheckResult(passed=True, metadata={"evaluated": False, "test_documents": metrics.get("test", 0),
                                                          "reason": f"fewer than {MIN_TEST_DOCS} held-out labelled documents"})
    return dg.AssetCheckResult(passed=metrics["macro_f1"] >= 0.6, metadata={"evaluated": True, "macro_f1": metrics["macro_f1"],
                                                                           "threshold": 0.6, "test_documents": metrics["test"]})


@dg.asset(
    group_name=GROUP,
    kinds={"python"},
    owners=OWNERS,
    deps=[specialty_classifier],
    description="The specialty of every document: the classifier's prediction and confidence (its MeSH-derived label beside "
    "it where there is one). Stored with the chunks in the index, so search can filter by it.",
)
def document_classes(context: dg.AssetExecutionContext, embedder: EmbedderResource, pipeline_state: PipelineStateStore) -> dg.MaterializeResult:
    from core.specialty import CLASSES, SoftmaxClassifier, label_document

    t0 = time.perf_counter()
    keys, x = _document_vectors(pipeline_state, embedder)
    docs = pipeline_state.read("documents", DOCUMENTS)
    mesh = dict(zip(docs.column("key").to_pylist(), docs.column("mesh_terms").to_pylist()))
    mesh_labels = [label_document(mesh.get(k) or [])[0] or "" for k in keys]
    model_path, _ = _classifier_paths(pipeline_state)
    if model_path.exists() and keys:
        model = SoftmaxClassifier.from_npz(np.load(model_path))
        pred, conf = model.predict(x)
        source = ["classifier"] * len(keys)
    else:  # no classifier (too few labels): the MeSH label where there is one, else unclassified
        pred, conf = mesh_labels, np.array([1.0 if m else 0.0 for m in mesh_labels])
        source = ["mesh" if m else "none" for m in mesh_labels]
    previous = pipeline_state.read("document_classes", CLASSES_TABLE)
    before = dict(zip(previous.column("doc_key").to_pylist(), previous.column("specialty").to_pylist()))
    table = pa.table({"doc_key": keys, "specialty": list(pred), "confidence": np.asarray(conf, np.float32), "mesh_label": mesh_labels,
                      "source": source}, schema=CLASSES_TABLE)
    pipeline_state.write("document_classes", table)
    per_class = Counter(pred)
    agree = [p == m for p, m in zip(pred, mesh_labels) if m]
    md = {
        "documents": len(keys),
        "changed_since_last_run": sum(1 for k, p in zip(keys, pred) if before.get(k) != p),
        "documents_per_class": _md_table([{"class": c, "documents": per_class.get(c, 0)} for c in (*CLASSES, "")], ["class", "documents"]),
        "agreement_with_mesh_labels": round(sum(agree) / len(agree), 4) if agree else 0.0,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    # one number per class: the UI plots these across materializations
    md.update({f"docs_{c}": per_class.get(c, 0) for c in CLASSES})
    return dg.MaterializeResult(metadata=md)


# ------------------------------------------------------------------ index


class IndexConfig(dg.Config):
    rebuild: bool = False  # build a new generation from scratch instead of applying the delta


@dg.asset(
    group_name=GROUP,
    kinds={"lancedb", "opensearch"},
    owners=OWNERS,
    deps=[chunk_embeddings, document_classes],
    description="The searchable index: vectors + text (BM25) + filter fields (specialty and section labels among them) in one generation per model/mapping. "
    "Applies only the delta (new chunks in, deleted chunks out); a new generation is built beside the serving one "
    "and, for a rebuild of the same model/mapping, becomes a promotion candidate that the evaluation gate switches to atomically "
    "(the first generation, or a new model's, serves at once).",
)
def vector_index(
    context: dg.AssetExecutionContext, config: IndexConfig, embedder: EmbedderResource, vector_store: VectorStoreResource, pipeline_state: PipelineStateStore
) -> dg.MaterializeResult:
    t0 = time.perf_counter()
    if config.rebuild:
        # A full rebuild: a fresh generation of the same lineage, filled from scratch beside the serving one.
        generation = f"{_generation(embedder, vector_store)}_r{time.strftime('%Y%m%d%H%M%S', time.gmtime())}"
    else:
        generation = _target_generation(embedder, vector_store, pipeline_state)
    created = not vector_store.has_generation(generation)
    if created:
        vector_store.create_generation(generation, embedder.dimension)
        context.log.info(f"created index generation {generation}")
    chunks = pipeline_state.read("chunks", CHUNKS)
    live = set(chunks.column("chunk_id").to_pylist())
    doc_classes = pipeline_state.read("document_classes", CLASSES_TABLE)
    classes = dict(zip(doc_classes.column("doc_key").to_pylist(), doc_classes.column("specialty").to_pylist()))
    existing = vector_store.ids(generation)
    to_add = sorted(live - existing)
    to_delete = sorted(existing - live)
    if to_add:
        add_ids = pa.array(to_add, pa.string())
        rows = chunks.filter(pc.is_in(chunks.column("chunk_id"), value_set=add_ids))
        vecs = pipeline_state.cached_vectors(embedder.model_id, embedder.dimension)
        vecs = vecs.filter(pc.is_in(vecs.column("chunk_id"), value_set=add_ids))
        idx = pc.index_in(rows.column("chunk_id"), value_set=vecs.column("chunk_id"))
        if idx.null_count:
            raise RuntimeError(f"{idx.null_count} chunks have no vector; materialize chunk_embeddings first")
        rows = rows.append_column("vector", vecs.column("vector").take(idx))
        rows = rows.append_column("specialty", pa.array([classes.get(k, "") for k in rows.column("doc_key").to_pylist()], pa.string()))
        vector_store.upsert(generation, rows)
    vector_store.delete(generation, to_delete)
    # Documents whose class changed (a retrained classifier) are updated in place: no re-embedding, no re-adding.
    snapshot = pipeline_state.read("index_classes", INDEX_CLASSES)
    indexed = {} if created else {k: c for g, k, c in zip(*(snapshot.column(n).to_pylist() for n in ("generation", "doc_key", "specialty")))
                                  if g == generation}
    added_docs = set(rows.column("doc_key").to_pylist()) if to_add else set()
    live_docs = set(chunks.column("doc_key").to_pylist())
    changed: dict[str, list[str]] = {}
    for key in sorted(live_docs - added_docs):
        if indexed.get(key, "") != classes.get(key, ""):
            changed.setdefault(classes.get(key, ""), []).append(key)
    reclassified = vector_store.set_specialty(generation, changed) if changed else 0
    pipeline_state.write("index_classes", pa.table({"generation": [generation] * len(live_docs), "doc_key": sorted(live_docs),
                                                   "specialty": [classes.get(k, "") for k in sorted(live_docs)]}, schema=INDEX_CLASSES))
    index_info = vector_store.refresh_indexes(generation) if (to_add or to_delete or created or reclassified) else {"rows": len(existing), "ann": "unchanged"}
    previous = vector_store.serving_generation()
    # Nothing serving yet, or a new model/mapping lineage: switch at once (queries are embedded with the configured
    # model, so the serving generation must follow it). A new generation of the *same* lineage (a rebuild) is a
    # candidate that only the evaluation gate promotes.
    promoted = previous is None or (previous != generation and not _of_lineage(previous, _generation(embedder, vector_store)))
    if promoted:
        vector_store.promote(generation)
        context.log.info(f"serving generation switched {previous} -> {generation}")
        pending = read_candidate(pipeline_state)
        if pending and pending["status"] == "pending" and pending["generation"] != generation:
            write_candidate(pipeline_state, pending["generation"], "superseded", f"a new model/mapping generation {generation} serves")
    elif previous != generation:
        # A new generation beside the serving one (rebuild, new model or mapping) is a candidate: the evaluation
        # gate (`eval_history` -> `serving_index`) promotes it, or rejects it and the serving one stays.
        write_candidate(pipeline_state, generation, "pending", f"built beside serving generation {previous}")
        context.log.info(f"generation {generation} is a promotion candidate; {previous} keeps serving until the evaluation gate passes")
    return dg.MaterializeResult(
        metadata={
            "generation": generation,
            "serving_generation": vector_store.serving_generation() or "",
            "candidate_generation": generation if (previous and previous != generation and not promoted) else "",
            "previous_serving_generation": previous or "",
            "promoted_this_run": promoted,
            "rows": vector_store.count(generation),
            "added": len(to_add),
            "deleted": len(to_delete),
            "reclassified_documents": reclassified,
            "table_version": vector_store.version(generation),
            "index": dg.MetadataValue.json(index_info),
            "seconds": round(time.perf_counter() - t0, 3),
        }
    )


def _generation(embedder: EmbedderResource, vector_store: VectorStoreResource) -> str:
    return generation_id(embedder.model_id, embedder.dimension, vector_store.mapping_version())


def _of_lineage(generation: str | None, base: str) -> bool:
    return bool(generation) and (generation == base or generation.startswith(f"{base}_r"))


def _target_generation(embedder: EmbedderResource, vector_store: VectorStoreResource, pipeline_state: PipelineStateStore | None = None) -> str:
    """The generation incremental runs maintain: a pending promotion candidate of this model/mapping lineage (the one
    about to serve), else the serving one if it is of this lineage (it may be a rebuild), else the lineage's base."""
    base = _generation(embedder, vector_store)
    candidate = read_candidate(pipeline_state) if pipeline_state is not None else None
    if candidate and candidate["status"] == "pending" and _of_lineage(candidate["generation"], base) and vector_store.has_generation(candidate["generation"]):
        return candidate["generation"]
    serving = vector_store.serving_generation()
    return serving if _of_lineage(serving, base) else base


CANDIDATE = pa.schema([("generation", pa.string()), ("status", pa.string()), ("reason", pa.string()), ("updated_at", pa.float64())])


def read_candidate(pipeline_state: PipelineStateStore) -> dict | None:
    """The index generation waiting for (or last decided by) the evaluation gate: generation, status
    (pending | promoted | rejected), reason."""
    rows = pipeline_state.read("index_candidate", CANDIDATE).to_pylist()
    return rows[-1] if rows else None


def write_candidate(pipeline_state: PipelineStateStore, generation: str, status: str, reason: str) -> None:
    pipeline_state.write("index_candidate", pa.Table.from_pylist(
        [{"generation": generation, "status": status, "reason": reason, "updated_at": time.time()}], schema=CANDIDATE))


def _index_vectors(vector_store: VectorStoreResource, embedder: EmbedderResource, pipeline_state: PipelineStateStore) -> tuple[str, pa.Table]:
    generation = _target_generation(embedder, vector_store, pipeline_state)
    return generation, vector_store.scan(generation, ["chunk_id", "vector"])


@dg.asset_check(asset=vector_index, blocking=True, description="Index rows equal the live chunks, with no duplicate ids.")
def index_matches_live_chunks(embedder: EmbedderResource, vector_store: VectorStoreResource, pipeline_state: PipelineStateStore) -> dg.AssetCheckResult:
    generation = _target_generation(embedder, vector_store, pipeline_state)
    ids = vector_store.scan(generation, ["chunk_id"]).column("chunk_id").to_pylist()
    live = set(pipeline_state.read("chunks", CHUNKS).column("chunk_id").to_pylist())
    dupes = [k for k, n in Counter(ids).items() if n > 1]
    missing, extra = live - set(ids), set(ids) - live
    return dg.AssetCheckResult(
        passed=not dupes and not missing and not extra,
        metadata={"index_rows": len(ids), "live_chunks": len(live), "duplicate_ids": len(dupes), "missing": len(missing), "stale": len(extra)},
    )


@dg.asset_check(asset=vector_index, blocking=True, description="Every vector has the model's dimension, is finite and non-zero (unit length).")
def index_vectors_valid(embedder: EmbedderResource, vector_store: VectorStoreResource, pipeline_state: PipelineStateStore) -> dg.AssetCheckResult:
    _, table = _index_vectors(vector_store, embedder, pipeline_state)
    col = table.column("vector")
    dim = col.type.list_size if table.num_rows else embedder.dimension
    if table.num_rows == 0:
        return dg.AssetCheckResult(passed=True, metadata={"rows": 0})
    v = vectors_to_numpy(col, dim)
    norms = np.linalg.norm(v, axis=1)
    nan_rows = int((~np.isfinite(v).all(axis=1)).sum())
    zero_rows = int((norms < 1e-6).sum())
    off_unit = int((np.abs(norms - 1) > 1e-2).sum())
    return dg.AssetCheckResult(
        passed=dim == embedder.dimension and nan_rows == 0 and zero_rows == 0 and off_unit == 0,
        metadata={"dimension": dim, "model_dimension": embedder.dimension, "nan_rows": nan_rows, "zero_rows": zero_rows, "non_unit_rows": off_unit},
    )


knowledge_assets = [document_inventory, parsed_documents, document_chunks, chunk_embeddings, specialty_classifier, document_classes, vector_index]
knowledge_checks = [every_document_accounted_for, specialty_macro_f1, index_matches_live_chunks, index_vectors_valid]
