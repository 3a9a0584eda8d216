"""The LanceDB vector store (local profile): one embedded table per index generation; the serving pointer is a small
JSON file switched with ``os.replace``."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import PrivateAttr

from core.index_schema import FILTER_FIELDS, HIT_FIELDS, LIST_FIELDS, chunk_schema  # the fields, declared once
from resources.vector_store import ACCESS_FILTER, SearchHit, VectorStoreResource, complete_rows

# v2: sections (list) and specialty columns; v3: groups (who may read); v4: doc_type and pages (page, page_end)
MAPPING_VERSION = "lancedb-chunks-v4"


def _sql_literal(value: Any, kind: str) -> str:
    if kind == "int":
        return str(int(value))
    return "'" + str(value).replace("'", "''") + "'"


def delete_chunk_ids(table, chunk_ids: list[str], batch: int = 1000) -> None:
    """Delete rows of a LanceDB table by chunk id, in batches of quoted IN lists."""
    for i in range(0, len(chunk_ids), batch):
        part = chunk_ids[i : i + batch]
        table.delete("chunk_id IN (" + ", ".join(_sql_literal(c, "string") for c in part) + ")")


def build_where(filters: dict[str, Any] | None) -> str | None:
    """Filters -> SQL: ``{"year": {"gte": 2000}, "journal": "Lancet", "doc_id": ["1", "2"], "mesh": "Humans"}``."""
    if not filters:
        return None
    clauses = []
    for name, value in filters.items():
        if value is None:
            continue
        if name == ACCESS_FILTER:
            groups = list(value)
            arr = ", ".join(_sql_literal(g, "string") for g in groups)
            clauses.append(f"array_has_any(groups, [{arr}])" if groups else "false")
            continue
        if name in LIST_FIELDS:
            terms = value if isinstance(value, list | tuple) else [value]
            arr = ", ".join(_sql_literal(t, "string") for t in terms)
            clauses.append(f"array_has_any({LIST_FIELDS[name]}, [{arr}])")
            continue
        if name not in FILTER_FIELDS:
            raise ValueError(f"unknown filter field {name!r}; allowed: {sorted(FILTER_FIELDS) + ['mesh']}")
        kind = FILTER_FIELDS[name]
        if isinstance(value, dict):
            ops = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
            for op, v in value.items():
                if op not in ops:
                    raise ValueError(f"unknown range operator {op!r} for {name}")
                clauses.append(f"{name} {ops[op]} {_sql_literal(v, kind)}")
        elif isinstance(value, list | tuple | set):
            if not value:
                clauses.append("false")
            else:
                clauses.append(f"{name} IN ({', '.join(_sql_literal(v, kind) for v in value)})")
        else:
            clauses.append(f"{name} = {_sql_literal(value, kind)}")
    return " AND ".join(clauses) if clauses else None


def ordered_by_ids(table: pa.Table, chunk_ids: list[str], columns: list[str]) -> pa.Table:
    """Rows of ``table`` (which has ``chunk_id``) in the order of ``chunk_ids`` (missing ids skipped), only ``columns``."""
    pos = {cid: i for i, cid in enumerate(table.column("chunk_id").to_pylist())}
    take = [pos[c] for c in chunk_ids if c in pos]
    return table.take(pa.array(take, pa.int64())).select(columns)


class LanceDBVectorStore(VectorStoreResource):
    uri: str
    table_prefix: str = "chunks"
    ann_min_rows: int = 50_000  # below this, exact (flat) search is fast enough and exact
    ann_index_type: str = "IVF_HNSW_SQ"
    ann_partitions: int = 0  # 0 = sqrt(rows)
    nprobes: int = 32  # IVF partitions probed (of ~sqrt(rows)/2)
    refine_factor: int = (
        5  # re-rank 5*k candidates with full vectors (benchmarks/results/scale.json: recall and latency at 100k rows)
    )
    optimize_unindexed_fraction: float = 0.05  # fold new rows into the indexes once they pass this share of the table

    def mapping_version(self) -> str:
        return MAPPING_VERSION

    read_consistency_s: float = 1.0  # how stale a cached table handle may be when another process writes

    _conn: Any = PrivateAttr(default=None)
    _tables: dict = PrivateAttr(default_factory=dict)

    # ------------------------------------------------------------ plumbing
    def _db(self):
        """One connection per resource instance: opening it costs ~75 ms, a query ~7 ms."""
        if self._conn is None:
            import lancedb

            Path(self.uri).mkdir(parents=True, exist_ok=True)
            self._conn = lancedb.connect(self.uri, read_consistency_interval=timedelta(seconds=self.read_consistency_s))
        return self._conn

    def _prefix(self) -> str:
        return self.table_prefix

    def generations(self) -> list[str]:
        db = self._db()
        names = db.list_tables()
        names = getattr(names, "tables", names)
        prefix = f"{self.table_prefix}__"
        return sorted(n[len(prefix) :] for n in names if n.startswith(prefix))

    def _open(self, generation: str):
        name = self.table_name(generation)
        tbl = self._tables.get(name)
        if tbl is None:
            tbl = self._tables[name] = self._db().open_table(name)
        return tbl

    def has_generation(self, generation: str) -> bool:
        return generation in self.generations()

    # ------------------------------------------------------------ serving pointer
    @property
    def _pointer(self) -> Path:
        return Path(self.uri) / "_serving.json"

    def serving_generation(self) -> str | None:
        try:
            return json.loads(self._pointer.read_text())["generation"]
        except FileNotFoundError:
            return None

    def promote(self, generation: str) -> dict[str, Any]:
        """Atomically switch readers to ``generation``."""
        if not self.has_generation(generation):
            raise ValueError(f"generation {generation} does not exist")
        previous = self.serving_generation()
        record = {"generation": generation, "previous": previous, "promoted_at": time.time()}
        tmp = self._pointer.with_name(f"._serving.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, self._pointer)
        return record

    # ------------------------------------------------------------ writes
    @property
    def _created_dir(self) -> Path:
        return Path(self.uri) / "_generations"

    def create_generation(
        self, generation: str, dimension: int, rows: pa.Table | None = None, expected_rows: int = 0
    ) -> None:
        """``expected_rows`` changes nothing here (one table; ``refresh_indexes`` sizes the ANN index from the rows)."""
        schema = chunk_schema(dimension)
        data = complete_rows(rows).select(schema.names).cast(schema) if rows is not None else schema.empty_table()
        name = self.table_name(generation)
        self._tables[name] = self._db().create_table(name, data=data, schema=schema, mode="overwrite")
        # The creation time, recorded beside the table (a table directory's mtime moves with its writes).
        self._created_dir.mkdir(parents=True, exist_ok=True)
        record = self._created_dir / f"{generation}.json"
        tmp = record.with_name(f".{generation}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"created_at": time.time(), "dimension": dimension, "expected_rows": expected_rows}))
        os.replace(tmp, record)

    def drop_generation(self, generation: str) -> None:
        if generation == self.serving_generation():
            raise ValueError("refusing to drop the serving generation")
        self._tables.pop(self.table_name(generation), None)
        self._db().drop_table(self.table_name(generation))
        (self._created_dir / f"{generation}.json").unlink(missing_ok=True)

    def generation_created(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for gen in self.generations():
            try:
                out[gen] = float(json.loads((self._created_dir / f"{gen}.json").read_text())["created_at"])
                continue
            except (FileNotFoundError, KeyError, ValueError):
                pass
            # A generation made before creation times were recorded: its oldest surviving version, else its directory.
            try:
                out[gen] = min(v["timestamp"].timestamp() for v in self._open(gen).list_versions())
            except Exception:  # noqa: BLE001 - any failure: fall back to the directory's mtime
                out[gen] = (Path(self.uri) / f"{self.table_name(gen)}.lance").stat().st_mtime
        return out

    @contextlib.contextmanager
    def bulk_load(self, generation: str) -> Iterator[None]:
        """No-op: LanceDB has no refresh or replicas to turn off; every write is a new version at once."""
        self._open(generation)  # fail early (like OpenSearch) when the generation does not exist
        yield

    def ids(self, generation: str) -> set[str]:
        tbl = self._open(generation)
        n = tbl.count_rows()
        if n == 0:
            return set()
        return set(tbl.search().select(["chunk_id"]).limit(n).to_arrow().column("chunk_id").to_pylist())

    def upsert(self, generation: str, rows: pa.Table) -> int:
        if rows.num_rows == 0:
            return 0
        tbl = self._open(generation)
        rows = complete_rows(rows).select(tbl.schema.names).cast(tbl.schema)
        tbl.merge_insert("chunk_id").when_matched_update_all().when_not_matched_insert_all().execute(rows)
        return rows.num_rows

    def delete(self, generation: str, chunk_ids: list[str]) -> int:
        if not chunk_ids:
            return 0
        delete_chunk_ids(self._open(generation), chunk_ids)
        return len(chunk_ids)

    def _update_documents(self, generation: str, name: str, value: Any, doc_keys: list[str]) -> None:
        self._open(generation).update(
            where=f"doc_key IN ({', '.join(_sql_literal(k, 'string') for k in doc_keys)})", values={name: value}
        )

    def refresh_indexes(self, generation: str) -> dict[str, Any]:
        """Bring the BM25 (FTS) index and, from ``ann_min_rows`` on, the ANN index up to date.

        Indexes are built once; after that a change is folded in incrementally by ``optimize()``
        (rows not yet indexed are still searched, exhaustively, until then).
        """
        from lancedb.index import FTS, BTree

        tbl = self._open(generation)
        n = tbl.count_rows()
        info: dict[str, Any] = {"rows": n}
        indexed_cols = {tuple(ix.columns) for ix in tbl.list_indices()}
        t0 = time.perf_counter()
        want_ann = n >= self.ann_min_rows
        built: list[str] = []
        if ("text",) not in indexed_cols:
            tbl.create_index("text", config=FTS(with_position=False), replace=True)
            built.append("fts")
        for key in ("chunk_id", "doc_key"):
            if (key,) not in indexed_cols:
                # Keyed lookups (fetch, delete, re-label by document) instead of a scan of the whole table per batch.
                tbl.create_index(key, config=BTree(), replace=True)
                built.append(f"btree({key})")
        if want_ann and ("vector",) not in indexed_cols:
            parts = self.ann_partitions or max(1, int(np.sqrt(n) / 2))
            tbl.create_index(
                metric="cosine",
                vector_column_name="vector",
                index_type=self.ann_index_type,
                num_partitions=parts,
                replace=True,
            )
            built.append(f"{self.ann_index_type}({parts} partitions)")
        if len(built) < 3 + want_ann:
            # An index that already existed. Rows not yet indexed are still found (searched exhaustively),
            # so small changes skip the costly optimize; it runs once they pass a share of the table.
            stats = [tbl.index_stats(ix.name) for ix in tbl.list_indices()]
            unindexed = max((st.num_unindexed_rows for st in stats if st is not None), default=0)
            info["unindexed_rows"] = unindexed
            if unindexed > self.optimize_unindexed_fraction * n:
                tbl.optimize()
                info["optimized"] = True
        info["built"] = built
        info["vector_search"] = self.ann_index_type if want_ann else f"exact (rows < {self.ann_min_rows})"
        info["seconds"] = round(time.perf_counter() - t0, 3)
        return info

    # ------------------------------------------------------------ reads
    def count(self, generation: str | None = None) -> int:
        gen = generation or self.serving_generation()
        return self._open(gen).count_rows() if gen else 0

    def scan(self, generation: str, columns: list[str] | None = None) -> pa.Table:
        tbl = self._open(generation)
        n = tbl.count_rows()
        q = tbl.search()
        if columns:
            q = q.select(columns)
        return q.limit(max(n, 1)).to_arrow()

    def fetch(
        self, generation: str, chunk_ids: list[str], columns: list[str] | None = None, batch: int = 1000
    ) -> pa.Table:
        tbl = self._open(generation)
        cols = columns or tbl.schema.names
        read = cols if "chunk_id" in cols else [*cols, "chunk_id"]
        wanted = list(dict.fromkeys(chunk_ids))
        parts = []
        for i in range(0, len(wanted), batch):
            part = wanted[i : i + batch]
            where = "chunk_id IN (" + ", ".join(_sql_literal(c, "string") for c in part) + ")"
            parts.append(tbl.search().where(where).select(read).limit(None).to_arrow())
        if not parts:
            return tbl.schema.empty_table().select(cols)
        got = pa.concat_tables(parts)
        return ordered_by_ids(got, wanted, cols)

    def sample(self, generation: str, n: int, columns: list[str] | None = None, seed: int = 0) -> pa.Table:
        """Random row offsets (no replacement), read with ``take_offsets``: only the sampled rows are read."""
        tbl = self._open(generation)
        cols = columns or tbl.schema.names
        total = tbl.count_rows()
        k = max(0, min(int(n), total))
        if k == 0:
            return tbl.schema.empty_table().select(cols)
        offsets = np.sort(np.random.default_rng(seed).choice(total, size=k, replace=False))
        out = tbl.take_offsets([int(o) for o in offsets]).select(cols).to_arrow()
        return out.select(cols)

    def version(self, generation: str) -> int:
        return self._open(generation).version

    @staticmethod
    def _hits(rows: list[dict[str, Any]], score_of) -> list[SearchHit]:
        return [SearchHit.from_row(r, float(score_of(r)), i + 1) for i, r in enumerate(rows)]

    _COLUMNS = HIT_FIELDS

    def _search_dense(
        self, generation: str, vector: np.ndarray, k: int, filters: dict | None, exact: bool
    ) -> list[SearchHit]:
        tbl = self._open(generation)
        q = (
            tbl.search(np.asarray(vector, dtype=np.float32), vector_column_name="vector")
            .metric("cosine")
            .select([*self._COLUMNS, "_distance"])
            .limit(k)
        )
        where = build_where(filters)
        if where:
            q = q.where(where, prefilter=True)
        if exact:
            q = q.bypass_vector_index()
        else:
            q = q.nprobes(self.nprobes)
            if self.refine_factor:
                q = q.refine_factor(self.refine_factor)
        return self._hits(q.to_list(), lambda r: 1.0 - r["_distance"])

    def _search_bm25(self, generation: str, text: str, k: int, filters: dict | None) -> list[SearchHit]:
        tbl = self._open(generation)
        q = tbl.search(text, query_type="fts", fts_columns="text").select([*self._COLUMNS, "_score"]).limit(k)
        where = build_where(filters)
        if where:
            q = q.where(where, prefilter=True)
        return self._hits(q.to_list(), lambda r: r["_score"])
