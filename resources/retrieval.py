"""Retrieval over the serving index: dense, BM25 and hybrid (reciprocal-rank fusion).

Agents and evaluation use this resource; it is the one place that decides how a query
becomes hits, for either vector store.
"""

from __future__ import annotations

from typing import Literal

import dagster as dg

from core.fusion import reciprocal_rank_fusion
from resources.embedder import EmbedderResource
from resources.vector_store import SearchHit, VectorStoreResource

Mode = Literal["dense", "bm25", "hybrid"]
MODES = ("dense", "bm25", "hybrid")


class RetrieverResource(dg.ConfigurableResource):
    vector_store: VectorStoreResource
    embedder: EmbedderResource
    rrf_k: int = 60
    candidates: int = 50  # per retriever, before fusion

    def search(
        self, query: str, k: int = 10, mode: Mode = "hybrid", filters: dict | None = None, generation: str | None = None
    ) -> list[SearchHit]:
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
