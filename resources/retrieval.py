"""Retrieval over the serving index: dense, BM25 and hybrid (reciprocal-rank fusion).

Agents and evaluation use this resource; it is the one place that decides how a query
becomes hits, for either vector store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import dagster as dg

from core import verdict
from core.access import ReadScope
from core.chunking import reassemble
from core.evaluation import is_conclusion_label
from core.fusion import reciprocal_rank_fusion
from core.relevance import RelevanceEvidence, relevance_evidence
from resources.embedder import EmbedderResource
from resources.vector_store import ACCESS_FILTER, SearchHit, VectorStoreResource

Mode = Literal["dense", "bm25", "hybrid"]
MODES = ("dense", "bm25", "hybrid")


@dataclass
class Passage:
    """One document's evidence for a question: its best hit, and its conclusions when the index has them."""

    hit: SearchHit
    conclusion: str = ""
    chunk_ids: list[str] = field(default_factory=list)
    document: str = ""  # the whole document, reassembled from its chunks (only for the first ``whole`` passages)
    dense: float = 0.0  # the document's best dense cosine similarity to the query (0 when only BM25 found it)
    # what a yes/no verdict reads: its conclusions, else the end of the document (``core.verdict.reading``)
    reading: str = ""


@dataclass
class Retrieval:
    passages: list[Passage]
    evidence: RelevanceEvidence | None  # None when nothing was found


def scoped_filters(filters: dict | None, scope: ReadScope) -> dict:
    """The caller's filters plus the read scope's. A caller cannot name the scope's field, so its filters can only
    narrow what the scope admits (every filter is ANDed in the store query)."""
    if not isinstance(scope, ReadScope):
        raise TypeError("retrieval needs a ReadScope (core.access): whose documents may it return?")
    if filters and ACCESS_FILTER in filters:
        raise ValueError(f"unknown filter field {ACCESS_FILTER!r}")
    value = scope.filter_value()
    return dict(filters or {}) if value is None else {**(filters or {}), ACCESS_FILTER: value}


class RetrieverResource(dg.ConfigurableResource):
    vector_store: VectorStoreResource
    embedder: EmbedderResource
    rrf_k: int = 60
    candidates: int = 50  # per retriever, before fusion

    def search(
        self,
        query: str,
        k: int = 10,
        mode: Mode = "hybrid",
        filters: dict | None = None,
        generation: str | None = None,
        *,
        scope: ReadScope,
    ) -> list[SearchHit]:
        """Hits the ``scope`` may read: its filter is part of the store query, so ranking never sees anything else."""
        filters = scoped_filters(filters, scope)
        query = (query or "").strip()
        if not query:
            raise ValueError("empty query")
        if k <= 0:
            raise ValueError("k must be positive")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        store = self.vector_store
        if mode == "bm25":
            return store.search_bm25(query, k, filters, generation)
        vector = self.embedder.runtime().embed_query(query)
        if mode == "dense":
            return store.search_dense(vector, k, filters, generation)
        n = max(self.candidates, k)
        dense = store.search_dense(vector, n, filters, generation)
        sparse = store.search_bm25(query, n, filters, generation)
        return self._fuse(dense, sparse, k)

    def _fuse(self, dense: list[SearchHit], sparse: list[SearchHit], k: int) -> list[SearchHit]:
        by_id: dict[str, SearchHit] = {}
        for h in dense:
            h.scores["dense"] = h.score
            by_id[h.chunk_id] = h
        for h in sparse:
            if h.chunk_id in by_id:
                by_id[h.chunk_id].scores["bm25"] = h.score
            else:
                h.scores["bm25"] = h.score
                by_id[h.chunk_id] = h
        fused = reciprocal_rank_fusion([[h.chunk_id for h in dense], [h.chunk_id for h in sparse]], k=self.rrf_k)
        out = []
        for rank, (cid, score) in enumerate(fused[:k], start=1):
            hit = by_id[cid]
            hit.score, hit.rank = score, rank
            out.append(hit)
        return out

    def _pinned(self, vector, pinned: list[str] | None, filters: dict, generation: str | None) -> dict[str, SearchHit]:
        """Each pinned document's best chunk for the query, in the pinned order (those the filters admit)."""
        if not pinned:
            return {}
        keys = list(dict.fromkeys(pinned))
        found: dict[str, SearchHit] = {}
        for h in self.vector_store.search_dense(
            vector, min(20 * len(keys), 100), {**filters, "doc_key": keys}, generation
        ):
            found.setdefault(h.doc_key, h)
        return {key: found[key] for key in keys if key in found}

    def passages(
        self,
        query: str,
        k: int = 5,
        filters: dict | None = None,
        generation: str | None = None,
        whole: int = 0,
        *,
        scope: ReadScope,
        pinned: list[str] | None = None,
    ) -> Retrieval:
        """Hybrid retrieval for answering: ``k`` distinct documents, each with its conclusions section when the index
        has one (one more filtered dense query over those documents), and the evidence that scores relevance.

        ``whole``: the first ``whole`` documents also come whole (``Passage.document``), reassembled from the chunks
        that the same filtered query returns: a detail question ("How large was that study?") is answered in
        METHODS, which neither the conclusions nor the best-matching chunk may hold. ``pinned``: document keys that
        come first whatever their rank (a follow-up's conversation study), when the scope may read them. Every store
        query carries the ``scope``'s filter (the conclusions, pinned and whole-document queries too)."""
        filters = scoped_filters(filters, scope)
        query = (query or "").strip()
        if not query:
            raise ValueError("empty query")
        store = self.vector_store
        vector = self.embedder.runtime().embed_query(query)
        n = max(self.candidates, 4 * k)
        dense = store.search_dense(vector, n, filters, generation)
        sparse = store.search_bm25(query, n, filters, generation)
        dense_docs = [(h.doc_key, float(h.score)) for h in dense]
        bm25_docs = [h.doc_key for h in sparse]
        fused = self._fuse(dense, sparse, n)
        best = self._pinned(vector, pinned, filters, generation)
        for h in fused:
            if h.doc_key not in best:
                best[h.doc_key] = h
            if len(best) >= k:
                break
        if not best:
            return Retrieval([], None)
        cosine: dict[str, float] = {}
        for key, score in dense_docs:
            cosine.setdefault(key, score)  # best first
        for key in pinned or []:
            if key in best:
                cosine.setdefault(key, float(best[key].score))  # a pinned document outside the candidates
        passages = {
            key: Passage(hit, chunk_ids=[hit.chunk_id], dense=cosine.get(key, 0.0)) for key, hit in best.items()
        }
        # Conclusions are the evidence a clinician reads first: fetch each chosen document's conclusion chunk.
        scoped = dict(filters or {}, doc_key=list(best))
        wanted = set(list(best)[:whole])
        # every chosen document's chunks (at most 100): the first ``whole`` come whole, the rest give their ending
        pieces: dict[str, list[tuple[int, str, str]]] = {key: [] for key in best}
        for h in store.search_dense(vector, min(10 * len(best), 100), scoped, generation):
            if h.doc_key in pieces:
                seq = h.seq if h.seq is not None else len(pieces[h.doc_key])
                pieces[h.doc_key].append((seq, h.section or "", h.text or ""))
            p = passages.get(h.doc_key)
            if p is None or p.conclusion or not any(is_conclusion_label(s) for s in (h.section or "").split("|")):
                continue
            p.conclusion = h.text or ""
            p.chunk_ids.append(h.chunk_id)
        for key, chunks in pieces.items():
            p, text = passages[key], reassemble(chunks)
            p.document = text if key in wanted else ""
            p.reading = verdict.reading(p.conclusion, text or p.hit.text or "")
        texts = [f"{p.hit.title} {p.hit.text}" for p in list(passages.values())[:3]]
        evidence = relevance_evidence(query, dense_docs, bm25_docs, texts)
        return Retrieval(list(passages.values()), evidence)
