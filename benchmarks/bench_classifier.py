"""Specialty classifier quality at corpus scale: macro-F1 on held-out documents, per class.

    python benchmarks/bench_classifier.py [--home ~/.cache/agentic/bench-scale]

Uses the state a knowledge run left in ``--home`` (documents with MeSH terms, chunks, cached
vectors; bench_scale.py leaves the whole corpus there) and the same functions the
``specialty_classifier`` asset calls. Also reports a baseline: the majority class.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import bench_settings, save  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", default=str(Path.home() / ".cache" / "agentic" / "bench-scale"))
    args = ap.parse_args()

    from assets.knowledge.state import (
        DOCUMENTS,
        DOCUMENTS_TABLE,
        read_table,
        vectors_schema,
        vectors_table,
    )
    from core.embedding import vectors_to_numpy
    from core.knowledge import document_vectors
    from core.specialty import CLASSES, holdout, label_document, macro_f1, train_softmax
    from pipelines.profiles import build_resources

    res = build_resources(bench_settings(Path(args.home)))
    state, embedder = res["pipeline_state"], res["embedder"]
    t0 = time.perf_counter()
    # the whole corpus in memory on purpose: this measures the classifier on every labelled document
    vecs = read_table(
        state, vectors_table(embedder.model_id), vectors_schema(embedder.dimension), columns=["doc_key", "vector"]
    )
    keys, x = document_vectors(
        vecs.column("doc_key").to_pylist(), vectors_to_numpy(vecs.column("vector"), embedder.dimension)
    )
    docs = read_table(state, DOCUMENTS_TABLE, DOCUMENTS, columns=["key", "mesh_terms"])
    mesh = dict(zip(docs.column("key").to_pylist(), docs.column("mesh_terms").to_pylist()))
    labels = [label_document(mesh.get(k) or [])[0] for k in keys]
    with_mesh = sum(1 for k in keys if mesh.get(k))
    train = [i for i, (k, y) in enumerate(zip(keys, labels)) if y and not holdout(k)]
    test = [i for i, (k, y) in enumerate(zip(keys, labels)) if y and holdout(k)]
    t1 = time.perf_counter()
    model = train_softmax(x[train], [labels[i] for i in train])
    train_s = time.perf_counter() - t1
    pred, _ = model.predict(x[test])
    y_test = [labels[i] for i in test]
    f1, per = macro_f1(y_test, pred)
    majority = Counter(labels[i] for i in train).most_common(1)[0][0]
    base_f1, _ = macro_f1(y_test, [majority] * len(y_test))
    out = {
        "documents": len(keys),
        "documents_with_mesh": with_mesh,
        "labelled": len(train) + len(test),
        "train": len(train),
        "test": len(test),
        "labels": dict(Counter(labels[i] for i in train + test)),
        "macro_f1": round(f1, 4),
        "majority_baseline_macro_f1": round(base_f1, 4),
        "accuracy": round(sum(p == t for p, t in zip(pred, y_test)) / max(1, len(y_test)), 4),
        "per_class": per,
        "train_seconds": round(train_s, 2),
        "total_seconds": round(time.perf_counter() - t0, 2),
        "classes": list(CLASSES),
    }
    print(out)
    save("specialty_classifier", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
