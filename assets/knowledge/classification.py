"""specialty_classifier and document_classes: a medical specialty for every document, from its embedding.

The classifier trains on a bounded sample of labelled documents (their MeSH-derived label, core/specialty.py) read
shard by shard, and retrains only when its config or the embedding model changed, or the labelled set grew or shrank
by more than ``retrain_change``: a run that changed 1% of the corpus does not retrain and reclassify everything.
"""

import hashlib
import time
from collections import Counter

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from assets.knowledge.common import asset
from assets.knowledge.embeddings import chunk_embeddings
from assets.knowledge.parsing import parsed_documents
from assets.knowledge.state import (
    CLASSES,
    CLASSES_TABLE,
    CLASSIFIER_MODEL,
    CLASSIFIER_RECORD,
    DOCUMENTS,
    DOCUMENTS_TABLE,
    plan,
    vectors_schema,
    vectors_table,
)
from assets.metadata import md_table
from core.embedding import vectors_to_numpy
from core.knowledge import document_vectors
from core.specialty import BRANCHES, SoftmaxClassifier, holdout, label_document, macro_f1, train_softmax
from core.specialty import CLASSES as SPECIALTIES
from infra.platform.config import k8s_step
from resources.embedder import EmbedderResource
from resources.state_store import PipelineStateStore

MIN_TEST_DOCS = 30  # below this many held-out labelled documents a macro-F1 says nothing


class ClassifierConfig(dg.Config):
    holdout_fraction: float = 0.2
    l2: float = 1e-3
    epochs: int = 400
    max_train_documents: int = 10_000  # a bounded sample: memory does not grow with the corpus
    retrain_change: float = 0.1  # retrain when the labelled set changed by more than this share


def _shard_doc_vectors(
    store: PipelineStateStore, table: str, shard: int, entry: dict | None, dimension: int, keys: set[str] | None = None
):
    vecs = store.read_shard(table, shard, vectors_schema(dimension), entry=entry or {}, columns=["doc_key", "vector"])
    if keys is not None and vecs.num_rows:
        vecs = vecs.filter(pc.is_in(vecs.column("doc_key"), value_set=pa.array(sorted(keys), pa.string())))
    return document_vectors(vecs.column("doc_key").to_pylist(), vectors_to_numpy(vecs.column("vector"), dimension))


def _labelled_total(store: PipelineStateStore) -> int:
    return sum(int(e.get("stats", {}).get("labelled", 0)) for e in store.manifest(DOCUMENTS_TABLE).values())


def _training_sample(
    pipeline_state: PipelineStateStore, embedder: EmbedderResource, config: ClassifierConfig
) -> tuple[np.ndarray, list[str], list[str]]:
    """(document vectors, their keys, their MeSH-derived labels) of up to ``max_train_documents`` labelled documents,
    read shard by shard."""
    vec_m = pipeline_state.manifest(vectors_table(embedder.model_id))
    # The sample fills one preallocated array: memory is the sample plus one shard, whatever the corpus.
    x = np.zeros((config.max_train_documents, embedder.dimension), np.float32)
    keys, labels = [], []
    for shard, docs in pipeline_state.iter_shards(DOCUMENTS_TABLE, DOCUMENTS, columns=["key", "mesh_terms"]):
        lab = {
            k: y
            for k, m in zip(docs.column("key").to_pylist(), docs.column("mesh_terms").to_pylist())
            if (y := label_document(m or [])[0])
        }
        del docs
        if not lab:
            continue
        entry = vec_m.get(pipeline_state.shard_name(shard))
        k, v = _shard_doc_vectors(
            pipeline_state, vectors_table(embedder.model_id), shard, entry, embedder.dimension, set(lab)
        )
        take = min(len(k), config.max_train_documents - len(keys))
        x[len(keys) : len(keys) + take] = v[:take]
        keys += k[:take]
        labels += [lab[d] for d in k[:take]]
        if len(keys) >= config.max_train_documents:
            break
    x = x[: len(keys)]
    return x, keys, labels


@asset(
    op_tags=k8s_step("1", "2Gi", "3Gi"),  # a bounded training sample, whatever the corpus
    kinds={"python", "numpy"},
    deps=[chunk_embeddings, parsed_documents],
    description="Medical specialty classifier (neoplasms, digestive, nervous system, cardiovascular, general pathological "
    "conditions = MeSH branches C04/C06/C10/C14/C23). Labels from the documents' MeSH descriptors (core/specialty.py says how), "
    "softmax regression on document embeddings of a bounded sample, macro-F1 on a held-out split (hash of the key). "
    "Retrains only when its config, the embedding model or the labelled set changed enough.",
)
def specialty_classifier(
    context: dg.AssetExecutionContext,
    config: ClassifierConfig,
    embedder: EmbedderResource,
    pipeline_state: PipelineStateStore,
) -> dg.MaterializeResult:
    t0 = time.perf_counter()
    signature = {"embedder": embedder.model_id, "config": config.model_dump(exclude={"retrain_change"})}
    labelled_now = _labelled_total(pipeline_state)
    record = pipeline_state.read_json(CLASSIFIER_RECORD) or {}
    drift = abs(labelled_now - record.get("labelled_total", 0)) / max(1, record.get("labelled_total", 0))
    if record.get("signature") == signature and drift <= config.retrain_change:
        return dg.MaterializeResult(
            metadata={
                "retrained": False,
                "trained": record["trained"],
                "labelled_documents": record["labelled"],
                "model_digest": record.get("model_digest", ""),
                "labelled_change": round(drift, 4),
                **({"macro_f1": record["macro_f1"]} if record.get("trained") else {}),
                "seconds": round(time.perf_counter() - t0, 3),
            }
        )
    x, keys, labels = _training_sample(pipeline_state, embedder, config)
    train = [i for i, k in enumerate(keys) if not holdout(k, config.holdout_fraction)]
    test = [i for i, k in enumerate(keys) if holdout(k, config.holdout_fraction)]
    counts = Counter(labels)
    trained = len({labels[i] for i in train}) >= 2
    metrics: dict = {
        "trained": trained,
        "labelled": len(keys),
        "train": len(train),
        "test": len(test),
        "labels": dict(counts),
        "signature": signature,
        "labelled_total": labelled_now,
        "trained_at": time.time(),
    }
    if trained:
        model = train_softmax(x[train], [labels[i] for i in train], SPECIALTIES, l2=config.l2, epochs=config.epochs)
        pred, _ = model.predict(x[test]) if test else ([], None)
        f1, per_class = macro_f1([labels[i] for i in test], pred, SPECIALTIES)
        raw = model.to_bytes()
        pipeline_state.put_bytes(CLASSIFIER_MODEL, raw)
        metrics.update(
            {
                "macro_f1": round(f1, 4),
                "per_class": per_class,
                "model_digest": hashlib.sha256(raw).hexdigest()[:16],
            }
        )
    else:
        pipeline_state.delete_keys([CLASSIFIER_MODEL])
        metrics["model_digest"] = f"mesh-only-{labelled_now}"
        context.log.warning(
            f"only {len(train)} labelled training documents in {len({labels[i] for i in train})} classes: no classifier"
        )
    pipeline_state.write_json(CLASSIFIER_RECORD, metrics)
    rows = [
        {
            "class": c,
            "MeSH branch": BRANCHES[c],
            "labelled": counts.get(c, 0),
            **({k: metrics["per_class"][c][k] for k in ("precision", "recall", "f1", "support")} if trained else {}),
        }
        for c in SPECIALTIES
    ]
    md: dict = {
        "retrained": True,
        "trained": trained,
        "labelled_documents": len(keys),
        "train_documents": len(train),
        "test_documents": len(test),
        "model_digest": metrics["model_digest"],
        "per_class": md_table(rows, list(rows[0].keys())),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if trained:
        md["macro_f1"] = metrics["macro_f1"]
    return dg.MaterializeResult(metadata=md)


@dg.asset_check(
    asset=specialty_classifier,
    description=f"Macro-F1 on the held-out labelled documents >= 0.6 (evaluated from "
    f"{MIN_TEST_DOCS} held-out documents on; below that the sample says nothing and the check says so).",
)
def specialty_macro_f1(pipeline_state: PipelineStateStore) -> dg.AssetCheckResult:
    metrics = pipeline_state.read_json(CLASSIFIER_RECORD) or {}
    if not metrics.get("trained") or metrics.get("test", 0) < MIN_TEST_DOCS:
        return dg.AssetCheckResult(
            passed=True,
            metadata={
                "evaluated": False,
                "test_documents": metrics.get("test", 0),
                "reason": f"fewer than {MIN_TEST_DOCS} held-out labelled documents",
            },
        )
    return dg.AssetCheckResult(
        passed=metrics["macro_f1"] >= 0.6,
        metadata={
            "evaluated": True,
            "macro_f1": metrics["macro_f1"],
            "threshold": 0.6,
            "test_documents": metrics["test"],
        },
    )


@asset(
    kinds={"python"},
    deps=[specialty_classifier],
    description="The specialty of every document: the classifier's prediction and confidence (its MeSH-derived label beside "
    "it where there is one), shard by shard: only shards whose documents or vectors changed, or all after a retrain. "
    "Stored with the chunks in the index, so search can filter by it.",
)
def document_classes(
    context: dg.AssetExecutionContext, embedder: EmbedderResource, pipeline_state: PipelineStateStore
) -> dg.MaterializeResult:
    t0 = time.perf_counter()
    vtable = vectors_table(embedder.model_id)
    record = pipeline_state.read_json(CLASSIFIER_RECORD) or {}
    raw = pipeline_state.get_bytes(CLASSIFIER_MODEL) if record.get("trained") else None
    model = SoftmaxClassifier.from_bytes(raw) if raw else None
    items = plan(
        pipeline_state,
        CLASSES_TABLE,
        (DOCUMENTS_TABLE, vtable),
        "classes-v1",
        extra=record.get("model_digest", ""),
        prev=(CLASSES_TABLE,),
    )
    entries, changed = {}, 0
    for item in items:
        shard = item["shard"]
        docs = pipeline_state.read_shard(
            DOCUMENTS_TABLE, shard, DOCUMENTS, entry=item["reads"][DOCUMENTS_TABLE], columns=["key", "mesh_terms"]
        )
        mesh = dict(zip(docs.column("key").to_pylist(), docs.column("mesh_terms").to_pylist()))
        keys, x = _shard_doc_vectors(pipeline_state, vtable, shard, item["reads"][vtable], embedder.dimension)
        mesh_labels = [label_document(mesh.get(k) or [])[0] or "" for k in keys]
        if model is not None and keys:
            pred, conf = model.predict(x)
            source = ["classifier"] * len(keys)
        else:  # no classifier (too few labels): the MeSH label where there is one, else unclassified
            pred, conf = mesh_labels, np.array([1.0 if m else 0.0 for m in mesh_labels])
            source = ["mesh" if m else "none" for m in mesh_labels]
        before = pipeline_state.read_shard(
            CLASSES_TABLE, shard, CLASSES, entry=item["prev"].get(CLASSES_TABLE) or {}, columns=["doc_key", "specialty"]
        )
        old = dict(zip(before.column("doc_key").to_pylist(), before.column("specialty").to_pylist()))
        changed += sum(1 for k, p in zip(keys, pred) if k in old and old[k] != p)
        table = pa.table(
            {
                "doc_key": keys,
                "specialty": list(pred),
                "confidence": np.asarray(conf, np.float32),
                "mesh_label": mesh_labels,
                "source": source,
            },
            schema=CLASSES,
        )
        per = Counter(pred)
        agree = [p == m for p, m in zip(pred, mesh_labels) if m]
        entries[shard] = pipeline_state.write_shard(
            CLASSES_TABLE,
            shard,
            item["input"],
            table,
            {**{f"docs_{c}": per.get(c, 0) for c in (*SPECIALTIES, "")}, "agree": sum(agree), "with_mesh": len(agree)},
        )
    pipeline_state.commit(CLASSES_TABLE, entries)
    manifest = pipeline_state.manifest(CLASSES_TABLE)
    totals = {c: sum(int(e["stats"].get(f"docs_{c}", 0)) for e in manifest.values()) for c in (*SPECIALTIES, "")}
    agree = sum(int(e["stats"].get("agree", 0)) for e in manifest.values())
    with_mesh = sum(int(e["stats"].get("with_mesh", 0)) for e in manifest.values())
    md = {
        "documents": sum(totals.values()),
        "changed_since_last_run": changed,
        "dirty_shards": len(items),
        "documents_per_class": md_table(
            [{"class": c, "documents": n} for c, n in totals.items()], ["class", "documents"]
        ),
        "agreement_with_mesh_labels": round(agree / with_mesh, 4) if with_mesh else 0.0,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    md.update({f"docs_{c}": totals[c] for c in SPECIALTIES})  # one number per class: the UI plots these across runs
    return dg.MaterializeResult(metadata=md)
