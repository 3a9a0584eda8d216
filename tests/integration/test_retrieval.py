"""Retrieval (dense, BM25, hybrid RRF) over a real index of PubMed abstracts."""

from __future__ import annotations

import pytest

from core.access import FULL_SCOPE
from resources.lancedb_store import build_where


@pytest.fixture(scope="module")
def index(indexed_home):
    """The indexed home's resources and the titles of its 150 plain abstracts."""
    return indexed_home.resources, indexed_home.titles


@pytest.mark.parametrize("mode", ["dense", "hybrid", "bm25"])
def test_title_finds_its_abstract(index, mode):
    res, titles = index
    keys = sorted(titles)[:40]
    top3 = sum(
        1
        for key in keys
        if key in {h.doc_key for h in res["retriever"].search(titles[key], k=3, mode=mode, scope=FULL_SCOPE)}
    )
    assert top3 / len(keys) >= 0.9, f"{mode}: {top3}/{len(keys)} titles found their article in the top 3"


def test_hits_are_ranked_and_explained(index):
    res, titles = index
    key = sorted(titles)[0]
    hits = res["retriever"].search(titles[key], k=10, mode="hybrid", scope=FULL_SCOPE)
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    assert all(hits[i].score >= hits[i + 1].score for i in range(len(hits) - 1))
    assert any("dense" in h.scores and "bm25" in h.scores for h in hits)
    assert hits == res["retriever"].search(titles[key], k=10, mode="hybrid", scope=FULL_SCOPE)  # deterministic


def test_filters(index):
    res, titles = index
    retriever = res["retriever"]
    key = sorted(titles)[3]
    hit = retriever.search(titles[key], k=1, mode="dense", scope=FULL_SCOPE)[0]
    year = hit.year
    for mode in ("dense", "bm25", "hybrid"):
        hits = retriever.search(
            "patients treatment outcome",
            k=20,
            mode=mode,
            filters={"year": {"gte": year, "lte": year}},
            scope=FULL_SCOPE,
        )
        assert hits and all(h.year == year for h in hits), mode
        only = retriever.search(
            "patients treatment outcome", k=5, mode=mode, filters={"doc_key": key}, scope=FULL_SCOPE
        )
        assert only and {h.doc_key for h in only} == {key}, mode


def test_bad_queries_get_clear_errors(index):
    retriever = index[0]["retriever"]
    with pytest.raises(ValueError, match="empty query"):
        retriever.search("   ", scope=FULL_SCOPE)
    with pytest.raises(ValueError, match="mode"):
        retriever.search("x", mode="fuzzy", scope=FULL_SCOPE)
    with pytest.raises(ValueError, match="unknown filter"):
        retriever.search("x", filters={"author; DROP TABLE": "x"}, scope=FULL_SCOPE)


def test_filter_values_are_quoted():
    assert build_where({"journal": "O'Brien's"}) == "journal = 'O''Brien''s'"
    assert build_where({"year": {"gte": "1999"}, "doc_id": ["1", "2"]}) == "year >= 1999 AND doc_id IN ('1', '2')"
    with pytest.raises(ValueError):
        build_where({"year": "1999 OR 1=1"})


def test_mesh_filter(index):
    retriever = index[0]["retriever"]
    hits = retriever.search("clinical study", k=10, mode="hybrid", filters={"mesh": "Humans"}, scope=FULL_SCOPE)
    assert hits
    store = index[0]["vector_store"]
    rows = {
        r["chunk_id"]: r["mesh_terms"]
        for r in store.scan(store.serving_generation(), ["chunk_id", "mesh_terms"]).to_pylist()
    }
    assert all("Humans" in rows[h.chunk_id] for h in hits)
