"""Pipeline state between assets: Arrow tables written atomically as Parquet.

Assets exchange large tables (inventory, parsed documents, chunks) through this store
rather than pickled IO-manager outputs, so each step can diff against the previous run.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq


class PipelineStateStore(dg.ConfigurableResource):
    root: str

    def _path(self, name: str) -> Path:
        if not name.replace("_", "").isalnum():
            raise ValueError(f"invalid table name {name!r}")
        return Path(self.root) / f"{name}.parquet"

    def read(self, name: str, schema: pa.Schema | None = None) -> pa.Table | None:
        path = self._path(name)
        if not path.exists():
            return schema.empty_table() if schema is not None else None
        return pq.read_table(path)

    def write(self, name: str, table: pa.Table) -> None:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)

    # ------------------------------------------------------------ embedding cache
    # Vectors keyed by (chunk_id, model): only chunks whose id+model are new get embedded.
    def _cache_table(self, model_id: str, dimension: int):
        import re

        import lancedb

        db = lancedb.connect(str(Path(self.root) / "embedding_cache"))
        name = re.sub(r"[^a-z0-9]+", "_", model_id.lower()).strip("_")
        existing = db.list_tables()
        existing = getattr(existing, "tables", existing)
        if name not in existing:
            schema = pa.schema([("chunk_id", pa.string()), ("vector", pa.list_(pa.float32(), dimension))])
            return db.create_table(name, schema=schema)
        return db.open_table(name)

    def cached_vectors(self, model_id: str, dimension: int, columns: list[str] | None = None) -> pa.Table:
        tbl = self._cache_table(model_id, dimension)
        n = tbl.count_rows()
        q = tbl.search()
        if columns:
            q = q.select(columns)
        return q.limit(max(n, 1)).to_arrow() if n else tbl.schema.empty_table()

    def add_vectors(self, model_id: str, dimension: int, rows: pa.Table) -> None:
        if rows.num_rows:
            tbl = self._cache_table(model_id, dimension)
            tbl.merge_insert("chunk_id").when_not_matched_insert_all().execute(rows.cast(tbl.schema))

    def prune_vectors(self, model_id: str, dimension: int, keep: set[str]) -> int:
        from resources.vector_store import delete_chunk_ids

        tbl = self._cache_table(model_id, dimension)
        ids = set(self.cached_vectors(model_id, dimension, ["chunk_id"]).column("chunk_id").to_pylist())
        drop = sorted(ids - keep)
        delete_chunk_ids(tbl, drop)
        if len(drop) > 0.1 * max(1, len(ids)):
            tbl.optimize()  # compact once deletions are a sizeable share
        return len(drop)
