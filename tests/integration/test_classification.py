"""Medical specialty classification: MeSH-derived labels, the classifier, and the class in the index."""

from __future__ import annotations

import numpy as np

from assets.knowledge.state import CHUNKS, CHUNKS_TABLE, CLASSES_TABLE, read_table
from assets.knowledge.state import CLASSES as CLASSES_SCHEMA
from core.access import FULL_SCOPE
from core.corpus import document_key
from core.specialty import CLASSES, branches_of, label_document, macro_f1, train_softmax
from tests.integration.test_knowledge_pipeline import materialize, seed


def test_mesh_descriptors_map_to_branches():
    assert branches_of("Breast Neoplasms") == {"neoplasms"}
    assert branches_of("Colitis, Ulcerative") == {"digestive"}
    assert branches_of("Alzheimer Disease") == {"nervous_system"}
    assert branches_of("Heart Failure") == {"cardiovascular"}
    assert branches_of("Stroke") == {"nervous_system", "cardiovascular"}  # C10 and C14, as in MeSH
    assert branches_of("Humans") == set() and branches_of("Liver") == set()  # organisms and anatomy are not diseases
    assert label_document(["Humans", "Colitis, Ulcerative", "Inflammation"])[0] == "digestive"
    assert label_document(["Inflammation", "Pain"])[0] == "pathological_conditions"
    assert label_document(["Lung Neoplasms", "Heart Failure"])[0] is None  # two organ systems: not a training label
    assert label_document([])[0] is None


def test_softmax_classifier_and_macro_f1():
    rng = np.random.default_rng(0)
    centers = np.eye(8, dtype=np.float32)[:3] * 4
    x = np.vstack([c + rng.normal(0, 0.3, (40, 8)) for c in centers]).astype(np.float32)
    y = [c for c in CLASSES[:3] for _ in range(40)]
    model = train_softmax(x, y, CLASSES)
    pred, conf = model.predict(x)
    f1, per = macro_f1(y, pred)
    assert f1 == 1.0 and per["neoplasms"]["support"] == 40 and (conf > 0.5).all()
    f1, per = macro_f1(["a", "a", "b", "b"], ["a", "b", "b", "b"], ("a", "b", "c"))
    assert (
        per["a"] == {"precision": 1.0, "recall": 0.5, "f1": 0.6667, "support": 2}
        and abs(f1 - (0.6667 + 0.8) / 2) < 1e-3
    )


def test_classes_in_the_index_filters_and_reclassification(indexed_copy, pubmed_sample):
    """A copy of the indexed home with 70 more articles: the classifier retrains on the labelled ones and every
    document and indexed row has its class."""
    settings = indexed_copy.settings
    seed(indexed_copy.resources, {document_key(p): d for p, d in pubmed_sample[230:300]})
    meta, checks, res = materialize(settings)
    assert all(checks.values()), checks
    assert meta["specialty_classifier"]["trained"] and meta["specialty_classifier"]["labelled_documents"] >= 30
    classes = read_table(res["pipeline_state"], CLASSES_TABLE, CLASSES_SCHEMA)
    live = set(read_table(res["pipeline_state"], CHUNKS_TABLE, CHUNKS).column("doc_key").to_pylist())
    assert set(classes.column("doc_key").to_pylist()) == live  # every document has a class
    assert sum(meta["document_classes"][f"docs_{c}"] for c in CLASSES) == len(live)
    by_doc = dict(zip(classes.column("doc_key").to_pylist(), classes.column("specialty").to_pylist()))
    store, gen = res["vector_store"], meta["vector_index"]["generation"]
    rows = store.scan(gen, ["doc_key", "specialty", "section", "sections"]).to_pylist()
    assert all(r["specialty"] == by_doc[r["doc_key"]] for r in rows)
    assert all(r["sections"] == [s for s in r["section"].split("|") if s] for r in rows)

    retriever = res["retriever"]
    present = [c for c in CLASSES if meta["document_classes"][f"docs_{c}"]]
    for c in present[:2]:
        hits = retriever.search(
            "treatment outcomes in patients", k=10, mode="hybrid", filters={"specialty": c}, scope=FULL_SCOPE
        )
        assert hits and all(h.specialty == c for h in hits)
    hits = retriever.search(
        "patients were randomized", k=10, mode="hybrid", filters={"section": "METHODS"}, scope=FULL_SCOPE
    )
    assert hits and all("METHODS" in h.section.split("|") for h in hits)

    # A different classifier (one training step) relabels documents: rows are updated in place, nothing re-added.
    meta2, checks2, _ = materialize(settings, run_config={"ops": {"specialty_classifier": {"config": {"epochs": 1}}}})
    changed = meta2["document_classes"]["changed_since_last_run"]
    assert changed > 0
    assert meta2["vector_index"]["added"] == 0 and meta2["vector_index"]["reclassified_documents"] == changed
    new = dict(
        zip(
            *(
                read_table(res["pipeline_state"], CLASSES_TABLE, CLASSES_SCHEMA).column(n).to_pylist()
                for n in ("doc_key", "specialty")
            )
        )
    )
    rows = store.scan(gen, ["doc_key", "specialty"]).to_pylist()
    assert all(r["specialty"] == new[r["doc_key"]] for r in rows)
