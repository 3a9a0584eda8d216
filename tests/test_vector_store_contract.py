"""One contract, every vector store: LanceDB (embedded) and OpenSearch (a real local node with k-NN).

Same fixtures, same expected results. Vectors are real embeddings of real PubMed chunks.
"""

from __future__ import annotations

import uuid

import numpy as np
import pyarrow as pa
import pytest

from core.chunking import Chunker
from core.documents import parse_document
from resources.retrieval import RetrieverResource
from resources.vector_store import LanceDBVectorStore, chunk_schema
from tests.helpers import free_port

DIM = 384


@pytest.fixture(scope="module")
def rows(pubmed_sample, embedder_resource) -> pa.Table:
    chunker = Chunker(embedder_resource.count_tokens)
    out = []
    for pmid, data in pubmed_sample[200:230]:
        doc = parse_document(f"pubmed/{pmid}.xml", data)
        for c in chunker.chunk(doc.sections):
            out.append({"chunk_id": f"{pmid}-{c.seq}", "doc_key": f"pubmed/{pmid}.xml", "doc_id": pmid, "seq": c.seq, "title": doc.title,
                        "text": c.text, "section": c.section, "year": doc.year, "journal": doc.journal, "mesh_terms": doc.mesh_terms,
                        "source_format": doc.source_format, "n_tokens": c.n_tokens})
    vecs = embedder_resource.runtime().embed([r["text"] for r in out])
    for r, v in zip(out, vecs):
        r["vector"] = v.tolist()
    return pa.Table.from_pylist(out, schema=chunk_schema(DIM))


@pytest.fixture(params=["lancedb", "opensearch"])
def store(request, tmp_path):
    if request.param == "lancedb":
        yield LanceDBVectorStore(uri=str(tmp_path / "lance"))
        return
    from resources.opensearch_store import OpenSearchVectorStore

    url = request.getfixturevalue("opensearch_url")
    s = OpenSearchVectorStore(hosts=url, index_prefix=f"t{uuid.uuid4().hex[:8]}")
    yield s
    s.client().indices.delete(index=f"{s.index_prefix}__*", ignore_unavailable=True)


def _vec(rows: pa.Table, i: int) -> np.ndarray:
    return np.asarray(rows.column("vector")[i].as_py(), dtype=np.float32)


def test_generation_lifecycle_and_versions(store, rows):
    assert store.serving_generation() is None
    store.create_generation("g1", DIM)
    assert store.has_generation("g1") and "g1" in store.generations()
    assert store.upsert("g1", rows) == rows.num_rows
    store.refresh_indexes("g1")
    assert store.count("g1") == rows.num_rows
    assert store.ids("g1") == set(rows.column("chunk_id").to_pylist())
    v = store.version("g1")
    store.refresh_indexes("g1")
    assert store.version("g1") == v  # no write, same version
    assert store.upsert("g1", rows.slice(0, 3)) == 3  # upsert by id: no duplicates
    assert store.count("g1") == rows.num_rows
    with pytest.raises(LookupError):
        store.search_bm25("anything", 3)  # nothing serving yet


def test_serving_generation_switches_atomically(store, rows):
    store.create_generation("g1", DIM)
    store.upsert("g1", rows.slice(0, 10))
    store.create_generation("g2", DIM)
    store.upsert("g2", rows)
    store.promote("g1")
    assert store.serving_generation() == "g1"
    assert store.count() == 10
    assert store.promote("g2")["previous"] == "g1"
    assert store.serving_generation() == "g2" and store.count() == rows.num_rows
    with pytest.raises(ValueError):
        store.drop_generation("g2")
    store.drop_generation("g1")
    assert store.generations() == ["g2"]
    with pytest.raises(ValueError):
        store.promote("missing")


@pytest.fixture
def served(store, rows):
    store.create_generation("g1", DIM)
    store.upsert("g1", rows)
    store.refresh_indexes("g1")
    store.promote("g1")
    return store


def test_dense_search(served, rows):
    for i in (0, 7, rows.num_rows - 1):
        hits = served.search_dense(_vec(rows, i), 5)
        assert hits[0].chunk_id == rows.column("chunk_id")[i].as_py()
        assert hits[0].score == pytest.approx(1.0, abs=1e-3)  # cosine of a vector with itself
        exact = served.search_dense(_vec(rows, i), 5, exact=True)
        assert [h.chunk_id for h in exact] == [h.chunk_id for h in hits]
        assert [h.score for h in exact] == pytest.approx([h.score for h in hits], abs=1e-3)


def test_bm25_search(served, rows):
    text = rows.column("text")[5].as_py()
    words = sorted({w.strip(".,;:()").lower() for w in text.split() if len(w) > 9}, key=len, reverse=True)[:3]
    hits = served.search_bm25(" ".join(words), 5)
    assert hits and hits[0].doc_key == rows.column("doc_key")[5].as_py()
    assert all(hits[i].score >= hits[i + 1].score for i in range(len(hits) - 1))
    assert served.search_bm25("zzzzqqqq", 5) == []


def test_filters(served, rows):
    years = sorted({y for y in rows.column("year").to_pylist() if y})
    y = years[len(years) // 2]
    q = _vec(rows, 0)
    for hits in (served.search_dense(q, 50, {"year": {"gte": y}}), served.search_bm25("patients", 50, {"year": {"gte": y}})):
        assert hits and all(h.year >= y for h in hits)
    key = rows.column("doc_key")[3].as_py()
    assert {h.doc_key for h in served.search_dense(q, 10, {"doc_key": key})} == {key}
    mesh_rows = [r for r in rows.to_pylist() if r["mesh_terms"]]
    term = mesh_rows[0]["mesh_terms"][0]
    expected = {r["chunk_id"] for r in rows.to_pylist() if term in r["mesh_terms"]}
    got = {h.chunk_id for h in served.search_dense(q, 100, {"mesh": term})}
    assert got == expected
    with pytest.raises(ValueError):
        served.search_dense(q, 5, {"nope": 1})


def test_delete(served, rows):
    gone = rows.column("chunk_id").to_pylist()[:4]
    assert served.delete("g1", gone) == 4
    served.refresh_indexes("g1")
    assert not set(gone) & served.ids("g1")
    assert served.count() == rows.num_rows - 4
    assert served.search_dense(_vec(rows, 0), 3)[0].chunk_id not in gone


def test_hybrid_through_the_retriever(served, rows, embedder_resource):
    retriever = RetrieverResource(vector_store=served, embedder=embedder_resource)
    title = rows.column("title")[0].as_py()
    hits = retriever.search(title, k=3, mode="hybrid")
    assert rows.column("doc_key")[0].as_py() in {h.doc_key for h in hits}
    assert [h.rank for h in hits] == [1, 2, 3]


def test_same_results_on_every_store(rows, tmp_path, request):
    """Dense results agree exactly between LanceDB and OpenSearch (same vectors, same cosine)."""
    from resources.opensearch_store import OpenSearchVectorStore

    stores = [LanceDBVectorStore(uri=str(tmp_path / "l")), OpenSearchVectorStore(hosts=request.getfixturevalue("opensearch_url"), index_prefix=f"t{uuid.uuid4().hex[:8]}")]
    try:
        for s in stores:
            s.create_generation("g", DIM)
            s.upsert("g", rows)
            s.refresh_indexes("g")
            s.promote("g")
        for i in range(0, rows.num_rows, 9):
            a, b = (s.search_dense(_vec(rows, i) * 0.9 + _vec(rows, (i + 1) % rows.num_rows) * 0.1, 5, exact=True) for s in stores)
            assert [h.chunk_id for h in a] == [h.chunk_id for h in b]
            assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-3)
    finally:
        stores[1].client().indices.delete(index=f"{stores[1].index_prefix}__*", ignore_unavailable=True)


def test_local_node_starts_fast_stops_cleanly_and_keeps_its_data(tmp_path, rows):
    """The launcher itself: startup under 60 s, SIGTERM shuts down cleanly, data survives a restart."""
    from infra.local.opensearch_node import OpenSearchNode, _healthy
    from resources.opensearch_store import OpenSearchVectorStore

    port = free_port()
    node = OpenSearchNode(tmp_path / "os", port, heap="512m").start(timeout_s=60)
    assert node.startup_seconds < 60
    store = OpenSearchVectorStore(hosts=node.url, index_prefix="persist")
    store.create_generation("g", DIM)
    store.upsert("g", rows.slice(0, 5))
    store.promote("g")
    node.stop()
    assert not _healthy(node.url) and not node.pid_path.exists()
    node2 = OpenSearchNode(tmp_path / "os", port, heap="512m").start(timeout_s=60)
    try:
        store = OpenSearchVectorStore(hosts=node2.url, index_prefix="persist")
        assert store.serving_generation() == "g" and store.count() == 5
    finally:
        node2.stop()
