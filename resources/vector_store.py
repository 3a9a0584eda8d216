"""The vector store's interface, shared by its two implementations: LanceDB embedded (local profile,
``resources.lancedb_store``) and OpenSearch (production, ``resources.opensearch_store``); a search hit; the derived
columns every row gets.

An index *generation* is one table per (model, dimension, mapping). Writes go to a
generation; readers follow the *serving* pointer, which is switched atomically, so a search never sees a
half-built generation.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import numpy as np
import pyarrow as pa

from core.access import NOBODY, by_index_groups

# The read scope's filter: set only by the retriever (RetrieverResource), never taken from a caller's filters. A row
# matches when one of its ``groups`` is among the value's; an empty value matches nothing.
ACCESS_FILTER = "__read_groups__"


def complete_rows(rows: pa.Table) -> pa.Table:
    """Derived index columns: ``sections`` from the chunk's "|"-joined section labels; ``specialty`` "" if absent;
    ``groups`` nobody's if absent (a row that does not say who may read it is read only by the admin scope)."""
    if "sections" not in rows.column_names:
        sections = [[p for p in (s or "").split("|") if p] for s in rows.column("section").to_pylist()]
        rows = rows.append_column("sections", pa.array(sections, pa.list_(pa.string())))
    if "specialty" not in rows.column_names:
        rows = rows.append_column("specialty", pa.array([""] * rows.num_rows, pa.string()))
    for name, kind in (("doc_type", pa.string()), ("page", pa.int32()), ("page_end", pa.int32())):
        if name not in rows.column_names:  # rows from before documents had types and pages
            rows = rows.append_column(name, pa.nulls(rows.num_rows, kind))
    if "groups" not in rows.column_names:
        rows = rows.append_column("groups", pa.array([[NOBODY]] * rows.num_rows, pa.list_(pa.string())))
    elif rows.column("groups").null_count:
        i = rows.schema.get_field_index("groups")
        filled = [g if g else [NOBODY] for g in rows.column("groups").to_pylist()]
        rows = rows.set_column(i, "groups", pa.array(filled, pa.list_(pa.string())))
    return rows


@dataclass
class SearchHit:
    chunk_id: str
    doc_key: str
    doc_id: str
    title: str
    text: str
    section: str
    year: int | None
    journal: str
    score: float
    rank: int = 0
    scores: dict[str, float] = field(default_factory=dict)
    specialty: str = ""
    seq: int | None = None  # the chunk's position in its document
    groups: list[str] = field(default_factory=list)  # who may read the chunk's document
    page: int | None = None  # first and last page of a paged source (PDF, scan) the chunk's text is on
    page_end: int | None = None
    doc_type: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_row(cls, r: dict[str, Any], score: float, rank: int) -> SearchHit:
        """A hit from a stored row (the HIT_FIELDS of either store)."""
        return cls(
            chunk_id=r["chunk_id"],
            doc_key=r["doc_key"],
            doc_id=r["doc_id"],
            title=r["title"],
            text=r["text"],
            section=r["section"],
            year=r.get("year"),
            journal=r["journal"],
            score=score,
            rank=rank,
            specialty=r.get("specialty") or "",
            seq=r.get("seq"),
            groups=list(r.get("groups") or []),
            page=r.get("page"),
            page_end=r.get("page_end"),
            doc_type=r.get("doc_type") or "",
        )


class VectorStoreResource(dg.ConfigurableResource):
    """The interface every vector store implements (LanceDB locally, OpenSearch in production).

    Generations: ``generations``, ``has_generation``, ``create_generation`` (sized by ``expected_rows``),
    ``drop_generation``, ``generation_created``, ``prune_generations``.
    Serving: ``serving_generation``, ``promote`` (atomic). Writes: ``upsert`` (by chunk id),
    ``delete``, ``bulk_load`` (a context for building a generation), ``refresh_indexes``.
    Reads: ``ids``, ``count``, ``scan`` (everything), ``fetch`` (by chunk id), ``sample`` (random rows),
    ``version``, ``search_dense`` (ANN, or exact), ``search_bm25``. ``tests/test_vector_store_contract.py``
    runs one suite against every implementation.
    """

    def mapping_version(self) -> str:
        """Part of the generation id: a mapping/schema change means a new generation."""
        raise NotImplementedError

    def _prefix(self) -> str:
        raise NotImplementedError

    def table_name(self, generation: str) -> str:
        """The table (LanceDB) or index (OpenSearch) that holds ``generation``."""
        if not re.fullmatch(r"[a-z0-9_]+", generation):
            raise ValueError(f"invalid generation id {generation!r}")
        return f"{self._prefix()}__{generation}"

    def _resolve(self, generation: str | None) -> str:
        gen = generation or self.serving_generation()
        if gen is None:
            raise LookupError(
                "no index generation is serving yet; materialize the knowledge assets first (`agentic run`)"
            )
        return gen

    def generations(self) -> list[str]:
        raise NotImplementedError

    def has_generation(self, generation: str) -> bool:
        raise NotImplementedError

    def serving_generation(self) -> str | None:
        raise NotImplementedError

    def promote(self, generation: str) -> dict[str, Any]:
        raise NotImplementedError

    def create_generation(
        self, generation: str, dimension: int, rows: pa.Table | None = None, expected_rows: int = 0
    ) -> None:
        """A new (empty, or filled with ``rows``) generation; ``expected_rows`` (0 = unknown: ``rows``' size) sizes it
        where the store has a layout to choose (OpenSearch: the primary shard count)."""
        raise NotImplementedError

    def drop_generation(self, generation: str) -> None:
        raise NotImplementedError

    def generation_created(self) -> dict[str, float]:
        """Creation time (epoch seconds) of every generation."""
        raise NotImplementedError

    def prune_generations(self, keep: int, protect: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """Drop the oldest generations beyond the ``keep`` newest (by creation time), never the serving one nor any in
        ``protect`` (those stay, whatever their age, and count among the ``keep`` only if they are among the newest).
        Returns the dropped generations, oldest first."""
        if keep < 0:
            raise ValueError("keep must be >= 0")
        created = self.generation_created()
        newest_first = sorted(created, key=lambda g: (created[g], g), reverse=True)
        spared = set(protect) | {self.serving_generation()}
        dropped = [g for g in reversed(newest_first[keep:]) if g not in spared]
        for g in dropped:
            self.drop_generation(g)
        return dropped

    def bulk_load(self, generation: str) -> contextlib.AbstractContextManager[None]:
        """A context for loading a generation in bulk (``with store.bulk_load(gen): store.upsert(gen, ...)``).

        OpenSearch turns refresh and replicas off while inside and restores them on exit (also when the load
        fails), then refreshes; rows written inside may not be visible to searches/counts until exit. LanceDB: no-op.
        """
        raise NotImplementedError

    def ids(self, generation: str) -> set[str]:
        raise NotImplementedError

    def upsert(self, generation: str, rows: pa.Table) -> int:
        raise NotImplementedError

    def delete(self, generation: str, chunk_ids: list[str]) -> int:
        raise NotImplementedError

    def set_specialty(self, generation: str, doc_keys_by_class: dict[str, list[str]]) -> int:
        """Set the ``specialty`` of every row of the given documents (in place: vectors and ids unchanged)."""
        return self._set_field(generation, "specialty", doc_keys_by_class)

    def set_groups(self, generation: str, doc_keys_by_groups: dict[tuple[str, ...], list[str]]) -> int:
        """Set the ``groups`` of every row of the given documents (in place: vectors and ids unchanged)."""
        return self._set_field(generation, "groups", by_index_groups(doc_keys_by_groups))

    def _set_field(self, generation: str, name: str, doc_keys_by_value: dict, batch: int = 500) -> int:
        """Set field ``name`` to each value on every row of the documents listed under it, ``batch`` documents per
        update; returns the number of documents."""
        n = 0
        for value, keys in doc_keys_by_value.items():
            for i in range(0, len(keys), batch):
                part = keys[i : i + batch]
                self._update_documents(generation, name, list(value) if isinstance(value, tuple) else value, part)
                n += len(part)
        return n

    def _update_documents(self, generation: str, name: str, value: Any, doc_keys: list[str]) -> None:
        """Set field ``name`` to ``value`` on every row of these documents, in place (one update)."""
        raise NotImplementedError

    def refresh_indexes(self, generation: str) -> dict[str, Any]:
        raise NotImplementedError

    def count(self, generation: str | None = None) -> int:
        raise NotImplementedError

    def scan(self, generation: str, columns: list[str] | None = None) -> pa.Table:
        raise NotImplementedError

    def fetch(
        self, generation: str, chunk_ids: list[str], columns: list[str] | None = None, batch: int = 1000
    ) -> pa.Table:
        """The rows with these chunk ids (keyed lookups, ``batch`` ids per request), in the order asked; ids not in
        the generation are skipped (so ``num_rows`` <= the number of distinct ids)."""
        raise NotImplementedError

    def sample(self, generation: str, n: int, columns: list[str] | None = None, seed: int = 0) -> pa.Table:
        """Up to ``n`` distinct rows drawn at random (the same ``seed`` on the same data gives the same rows), without
        reading the whole generation."""
        raise NotImplementedError

    def version(self, generation: str) -> int:
        raise NotImplementedError

    def search_dense(
        self,
        vector: np.ndarray,
        k: int = 10,
        filters: dict | None = None,
        generation: str | None = None,
        exact: bool = False,
    ) -> list[SearchHit]:
        """The ``k`` nearest rows by cosine (approximate, or ``exact``) that match ``filters``, in ``generation`` or
        the serving one."""
        return self._search_dense(self._resolve(generation), vector, k, filters, exact)

    def search_bm25(
        self, text: str, k: int = 10, filters: dict | None = None, generation: str | None = None
    ) -> list[SearchHit]:
        """The ``k`` best BM25 matches of ``text`` that match ``filters``, in ``generation`` or the serving one."""
        return self._search_bm25(self._resolve(generation), text, k, filters)

    def _search_dense(
        self, generation: str, vector: np.ndarray, k: int, filters: dict | None, exact: bool
    ) -> list[SearchHit]:
        raise NotImplementedError

    def _search_bm25(self, generation: str, text: str, k: int, filters: dict | None) -> list[SearchHit]:
        raise NotImplementedError
