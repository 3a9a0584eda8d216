"""The OpenSearch vector store: the production twin of ``resources.lancedb_store.LanceDBVectorStore``, same interface.

One index per generation (``<prefix>__<generation>``) with a ``knn_vector`` field (HNSW on the
lucene or faiss engine, never nmslib), a BM25 ``text`` field and keyword/integer filter fields.
Readers go through an alias (``<prefix>``) that ``promote`` switches atomically in one
``_aliases`` request. Amazon OpenSearch is reached with SigV4 (``use_sigv4``) on the eks profile.

At production size:

* **Shards.** ``create_generation(..., expected_rows=N)`` picks the primary shard count with
  ``shard_count``: the estimated index size (``estimate_row_bytes`` per row: the vector twice, as
  ``knn_vector`` doc values at 4 B/float plus the HNSW links and again in ``_source`` as JSON, plus the
  text, its inverted index and the filter fields) over ``target_shard_gb`` (20 GB: inside the usual
  10-30 GB per shard), at least 1, at most ``max_shards``. The shard count cannot change later without a
  reindex, which is what a new generation is.
* **Replicas.** ``replicas`` (default 1) is the configured count; the applied count is capped at
  (data nodes - 1), since a replica is never placed on its primary's node, so a single local node stays
  green with the default and a production cluster gets its replica.
* **Bulk builds.** ``bulk_load(generation)`` sets ``refresh_interval: -1`` and ``number_of_replicas: 0``
  while a generation is filled and restores ``refresh_interval`` and the replicas on exit (in a
  ``finally``: also when the load fails), then refreshes.
* **Writes.** ``upsert`` and ``delete`` send bulk requests of ``bulk_chunk_size`` actions (at most
  ``bulk_max_bytes``) on ``thread_count`` threads; a request answered 429 (rejected execution: the write
  queue is full) is resent, and items answered 429 inside a bulk response are resent alone, with
  exponential backoff (``initial_backoff_s`` doubling to ``max_backoff_s``, jittered) up to ``max_retries``
  times; any other item error raises with the first error (``resources.opensearch_bulk``). ``last_bulk_stats()``
  counts the retries.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import PrivateAttr

from core.index_schema import FILTER_FIELDS, HIT_FIELDS, LIST_FIELDS, chunk_schema, index_body
from core.opensearch_sizing import shard_count
from resources.opensearch_bulk import BulkLimits, send_bulk
from resources.vector_store import ACCESS_FILTER, SearchHit, VectorStoreResource, complete_rows

# v2: sections (keyword list) and specialty; v3: groups; v4: doc_type and pages
OPENSEARCH_MAPPING_VERSION = "opensearch-chunks-v4"
_SOURCE = HIT_FIELDS
log = logging.getLogger(__name__)


def build_filter(filters: dict[str, Any] | None) -> list[dict]:
    """The same filter language as LanceDB's ``build_where``, as OpenSearch ``bool.filter`` clauses."""
    clauses: list[dict] = []
    for name, value in (filters or {}).items():
        if value is None:
            continue
        if name == ACCESS_FILTER:  # the read scope: a filter clause, so it applies before ranking (k-NN included)
            groups = [str(g) for g in value]
            clauses.append({"terms": {"groups": groups}} if groups else {"match_none": {}})
            continue
        if name in LIST_FIELDS:
            terms = list(value) if isinstance(value, list | tuple) else [value]
            clauses.append({"terms": {LIST_FIELDS[name]: [str(t) for t in terms]}})
            continue
        if name not in FILTER_FIELDS:
            raise ValueError(f"unknown filter field {name!r}; allowed: {sorted(FILTER_FIELDS) + ['mesh']}")
        conv = int if FILTER_FIELDS[name] == "int" else str
        if isinstance(value, dict):
            ops = {"gt", "gte", "lt", "lte"}
            bad = set(value) - ops
            if bad:
                raise ValueError(f"unknown range operator {sorted(bad)} for {name}")
            clauses.append({"range": {name: {op: conv(v) for op, v in value.items()}}})
        elif isinstance(value, list | tuple | set):
            clauses.append({"terms": {name: [conv(v) for v in value]}})
        else:
            clauses.append({"term": {name: conv(value)}})
    return clauses


class OpenSearchVectorStore(VectorStoreResource):
    hosts: str = "http://127.0.0.1:9200"  # comma-separated
    index_prefix: str = "chunks"
    engine: str = "lucene"
    username: str = ""
    password: str = ""
    use_sigv4: bool = False
    aws_region: str = "us-east-1"
    verify_certs: bool = True
    timeout_s: int = 60
    ef_search: int = 100
    # sizing (see the module docstring)
    target_shard_gb: float = 20.0
    max_shards: int = 32
    replicas: int = 1  # applied as min(replicas, data nodes - 1): a single local node stays green
    refresh_interval: str = "1s"
    # bulk writes
    thread_count: int = 2
    bulk_chunk_size: int = 500
    bulk_max_bytes: int = 8 * 1024 * 1024  # under the 10 MiB request limit of the smallest Amazon OpenSearch instances
    max_retries: int = 8
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0

    _client: Any = PrivateAttr(default=None)
    _bulk_depth: dict = PrivateAttr(default_factory=dict)
    _bulk_stats: dict = PrivateAttr(default_factory=dict)

    def mapping_version(self) -> str:
        return f"{OPENSEARCH_MAPPING_VERSION}:{self.engine}"

    # ------------------------------------------------------------ plumbing
    def client(self):
        if self._client is None:
            from opensearchpy import OpenSearch, RequestsHttpConnection

            kwargs: dict[str, Any] = {
                "hosts": [h.strip() for h in self.hosts.split(",") if h.strip()],
                "timeout": self.timeout_s,
            }
            if self.use_sigv4:
                import boto3
                from opensearchpy import AWSV4SignerAuth

                kwargs.update(
                    http_auth=AWSV4SignerAuth(boto3.Session().get_credentials(), self.aws_region, "es"),
                    connection_class=RequestsHttpConnection,
                )
            elif self.username:
                kwargs.update(http_auth=(self.username, self.password))
            if any(h.strip().startswith("https://") for h in self.hosts.split(",")):
                kwargs.update(use_ssl=True, verify_certs=self.verify_certs)
            self._client = OpenSearch(**kwargs)
        return self._client

    def _prefix(self) -> str:
        return self.index_prefix

    def generations(self) -> list[str]:
        prefix = f"{self.index_prefix}__"
        names = self.client().indices.get(index=f"{prefix}*", expand_wildcards="open", ignore_unavailable=True)
        return sorted(n[len(prefix) :] for n in names)

    def has_generation(self, generation: str) -> bool:
        return bool(self.client().indices.exists(index=self.table_name(generation)))

    # ------------------------------------------------------------ serving alias
    def serving_generation(self) -> str | None:
        c = self.client()
        if not c.indices.exists_alias(name=self.index_prefix):
            return None
        indices = list(c.indices.get_alias(name=self.index_prefix))
        if len(indices) != 1:
            raise RuntimeError(f"alias {self.index_prefix} points at {indices}; expected exactly one index")
        return indices[0][len(self.index_prefix) + 2 :]

    def promote(self, generation: str) -> dict[str, Any]:
        """Switch the read alias to ``generation`` in one atomic ``_aliases`` request."""
        if not self.has_generation(generation):
            raise ValueError(f"generation {generation} does not exist")
        previous = self.serving_generation()
        actions: list[dict] = []
        if previous:
            actions.append({"remove": {"index": self.table_name(previous), "alias": self.index_prefix}})
        actions.append({"add": {"index": self.table_name(generation), "alias": self.index_prefix}})
        self.client().indices.update_aliases(body={"actions": actions})
        return {"generation": generation, "previous": previous}

    # ------------------------------------------------------------ writes
    def effective_replicas(self) -> int:
        """The configured ``replicas``, capped at (data nodes - 1): a replica never shares its primary's node."""
        nodes = int(self.client().cluster.health()["number_of_data_nodes"])
        return max(0, min(self.replicas, nodes - 1))

    def create_generation(
        self, generation: str, dimension: int, rows: pa.Table | None = None, expected_rows: int = 0
    ) -> None:
        """A new index; ``shard_count(expected_rows or len(rows), dimension)`` primary shards, ``effective_replicas()``."""
        c = self.client()
        name = self.table_name(generation)
        if c.indices.exists(index=name):
            c.indices.delete(index=name)
        n = expected_rows or (rows.num_rows if rows is not None else 0)
        shards = shard_count(n, dimension, self.target_shard_gb, self.max_shards)
        body = index_body(dimension, self.engine, shards=shards, replicas=self.effective_replicas())
        body["settings"]["index"]["refresh_interval"] = self.refresh_interval
        c.indices.create(index=name, body=body)
        if rows is not None and rows.num_rows:
            with self.bulk_load(generation):
                self.upsert(generation, rows)

    def drop_generation(self, generation: str) -> None:
        if generation == self.serving_generation():
            raise ValueError("refusing to drop the serving generation")
        self.client().indices.delete(index=self.table_name(generation), ignore_unavailable=True)

    def generation_created(self) -> dict[str, float]:
        """From each index's ``index.creation_date`` (ms)."""
        prefix = f"{self.index_prefix}__"
        got = self.client().indices.get_settings(
            index=f"{prefix}*", name="index.creation_date", expand_wildcards="open", ignore_unavailable=True
        )
        return {n[len(prefix) :]: int(v["settings"]["index"]["creation_date"]) / 1000.0 for n, v in got.items()}

    @contextlib.contextmanager
    def bulk_load(self, generation: str) -> Iterator[None]:
        """Refresh off and no replicas while ``generation`` is filled; on exit (``finally``) ``refresh_interval`` and
        ``effective_replicas()`` are restored and the index refreshed. Nested uses act once (the outermost)."""
        name = self.table_name(generation)
        c = self.client()
        depth = self._bulk_depth.get(name, 0)
        if depth == 0:
            c.indices.put_settings(index=name, body={"index": {"refresh_interval": "-1", "number_of_replicas": 0}})
        self._bulk_depth[name] = depth + 1
        try:
            yield
        finally:
            self._bulk_depth[name] -= 1
            if self._bulk_depth[name] == 0:
                del self._bulk_depth[name]
                c.indices.put_settings(
                    index=name,
                    body={
                        "index": {
                            "refresh_interval": self.refresh_interval,
                            "number_of_replicas": self.effective_replicas(),
                        }
                    },
                )
                c.indices.refresh(index=name)

    def ids(self, generation: str) -> set[str]:
        out: set[str] = set()
        c = self.client()
        body: dict[str, Any] = {
            "size": 5000,
            "_source": False,
            "sort": [{"chunk_id": "asc"}],
            "query": {"match_all": {}},
        }
        while True:
            hits = c.search(index=self.table_name(generation), body=body)["hits"]["hits"]
            if not hits:
                return out
            out.update(h["_id"] for h in hits)
            body["search_after"] = hits[-1]["sort"]

    # ------------------------------------------------------------ bulk writes
    def last_bulk_stats(self) -> dict[str, int]:
        """Counters of the last ``upsert``/``delete``: requests, ok, retried_requests (whole requests answered 429),
        retried_items (items answered 429), retries (= the two), max_attempt."""
        return dict(self._bulk_stats)

    def _bulk(
        self, name: str, actions: Iterable[tuple[dict, dict | None]], ok_status: tuple[int, ...] = ()
    ) -> dict[str, int]:
        limits = BulkLimits(
            self.thread_count,
            self.bulk_chunk_size,
            self.bulk_max_bytes,
            self.timeout_s,
            self.max_retries,
            self.initial_backoff_s,
            self.max_backoff_s,
        )
        self._bulk_stats = {}
        return send_bulk(self.client(), name, actions, limits, ok_status, self._bulk_stats)

    def _refresh_unless_bulk(self, name: str) -> None:
        if not self._bulk_depth.get(name):
            self.client().indices.refresh(index=name)

    def upsert(self, generation: str, rows: pa.Table, batch: int = 500) -> int:
        """Bulk index with explicit ``_id`` = chunk id (an upsert: no duplicates), in parallel with 429 retries; one
        refresh at the end (none inside ``bulk_load``: its exit refreshes). Returns the rows written."""
        if rows.num_rows == 0:
            return 0
        name = self.table_name(generation)
        rows = complete_rows(rows)
        fields = [f for f in chunk_schema(1).names if f in rows.column_names]

        def actions():
            for start in range(0, rows.num_rows, batch):
                for doc in rows.slice(start, batch).select(fields).to_pylist():
                    yield {"index": {"_index": name, "_id": doc["chunk_id"]}}, doc

        stats = self._bulk(name, actions())
        self._refresh_unless_bulk(name)
        return stats["ok"]

    def _update_documents(self, generation: str, name: str, value: Any, doc_keys: list[str]) -> None:
        self.client().update_by_query(
            index=self.table_name(generation),
            refresh=True,
            conflicts="proceed",
            body={
                "query": {"terms": {"doc_key": doc_keys}},
                "script": {"source": f"ctx._source.{name} = params.v", "lang": "painless", "params": {"v": value}},
            },
        )

    def delete(self, generation: str, chunk_ids: list[str]) -> int:
        """Bulk delete by id (parallel, 429 retries like ``upsert``); an id not there (404) is not an error."""
        if not chunk_ids:
            return 0
        name = self.table_name(generation)
        self._bulk(name, (({"delete": {"_index": name, "_id": cid}}, None) for cid in chunk_ids), ok_status=(404,))
        self._refresh_unless_bulk(name)
        return len(chunk_ids)

    def refresh_indexes(self, generation: str) -> dict[str, Any]:
        name = self.table_name(generation)
        self.client().indices.refresh(index=name)
        return {"rows": self.count(generation), "engine": self.engine, "vector_search": f"hnsw/{self.engine}"}

    # ------------------------------------------------------------ reads
    def count(self, generation: str | None = None) -> int:
        gen = generation or self.serving_generation()
        return int(self.client().count(index=self.table_name(gen))["count"]) if gen else 0

    def version(self, generation: str) -> int:
        """Writes applied so far (index + delete operations): unchanged when nothing was written."""
        stats = self.client().indices.stats(index=self.table_name(generation), metric="indexing")
        idx = stats["_all"]["primaries"]["indexing"]
        return int(idx["index_total"] + idx["delete_total"])

    def scan(self, generation: str, columns: list[str] | None = None) -> pa.Table:
        schema = chunk_schema(self._dimension(generation))
        cols = columns or schema.names
        rows: list[dict] = []
        c = self.client()
        body: dict[str, Any] = {
            "size": 2000,
            "_source": cols,
            "sort": [{"chunk_id": "asc"}],
            "query": {"match_all": {}},
        }
        while True:
            hits = c.search(index=self.table_name(generation), body=body)["hits"]["hits"]
            if not hits:
                break
            rows.extend({k: h["_source"].get(k) for k in cols} for h in hits)
            body["search_after"] = hits[-1]["sort"]
        return pa.Table.from_pylist(rows, schema=pa.schema([schema.field(cname) for cname in cols]))

    def fetch(
        self, generation: str, chunk_ids: list[str], columns: list[str] | None = None, batch: int = 1000
    ) -> pa.Table:
        """``mget`` by ``_id`` (= chunk id), ``batch`` ids a request (realtime: sees writes not yet refreshed)."""
        schema = chunk_schema(self._dimension(generation))
        cols = columns or schema.names
        out_schema = pa.schema([schema.field(cname) for cname in cols])
        wanted = list(dict.fromkeys(chunk_ids))
        found: list[dict] = []
        c = self.client()
        for i in range(0, len(wanted), batch):
            docs = c.mget(
                index=self.table_name(generation),
                body={"ids": wanted[i : i + batch]},
                params={"_source_includes": ",".join(cols)},
            )["docs"]
            found.extend({k: d["_source"].get(k) for k in cols} for d in docs if d.get("found"))
        return pa.Table.from_pylist(found, schema=out_schema)

    def sample(self, generation: str, n: int, columns: list[str] | None = None, seed: int = 0) -> pa.Table:
        """``function_score`` with a seeded ``random_score`` on ``chunk_id`` (same seed, same rows, whatever the shard
        layout): the top ``n`` scores, paged with ``search_after``; only the sampled documents are fetched."""
        schema = chunk_schema(self._dimension(generation))
        cols = columns or schema.names
        out_schema = pa.schema([schema.field(cname) for cname in cols])
        rows: list[dict] = []
        c = self.client()
        page = 2000
        body: dict[str, Any] = {
            "_source": cols,
            "track_total_hits": False,
            "sort": [{"_score": "desc"}, {"chunk_id": "asc"}],
            "query": {
                "function_score": {
                    "query": {"match_all": {}},
                    "random_score": {"seed": int(seed), "field": "chunk_id"},
                    "boost_mode": "replace",
                }
            },
        }
        while len(rows) < n:
            body["size"] = min(page, n - len(rows))
            hits = c.search(index=self.table_name(generation), body=body)["hits"]["hits"]
            if not hits:
                break
            rows.extend({k: h["_source"].get(k) for k in cols} for h in hits)
            body["search_after"] = hits[-1]["sort"]
        return pa.Table.from_pylist(rows, schema=out_schema)

    def _dimension(self, generation: str) -> int:
        m = self.client().indices.get_mapping(index=self.table_name(generation))
        return int(next(iter(m.values()))["mappings"]["properties"]["vector"]["dimension"])

    @staticmethod
    def _hits(raw: list[dict], score_of) -> list[SearchHit]:
        return [SearchHit.from_row(h["_source"], float(score_of(h)), i + 1) for i, h in enumerate(raw)]

    def _search_dense(
        self, generation: str, vector: np.ndarray, k: int, filters: dict | None, exact: bool
    ) -> list[SearchHit]:
        index = self.table_name(generation)
        vec = [float(x) for x in np.asarray(vector, dtype=np.float32)]
        flt = build_filter(filters)
        if exact:
            # Exact k-NN: the k-NN plugin's scoring script over the (filtered) documents.
            body = {
                "size": k,
                "_source": _SOURCE,
                "query": {
                    "script_score": {
                        "query": {"bool": {"filter": flt}} if flt else {"match_all": {}},
                        "script": {
                            "source": "knn_score",
                            "lang": "knn",
                            "params": {"field": "vector", "query_value": vec, "space_type": "cosinesimil"},
                        },
                    }
                },
            }
            raw = self.client().search(index=index, body=body)["hits"]["hits"]
            return self._hits(raw, lambda h: 2.0 * h["_score"] - 1.0)  # knn_score cosinesimil = (1 + cos) / 2
        # Lucene HNSW explores k candidates per segment: ask for ef_search of them and keep the top k.
        knn: dict[str, Any] = {"vector": vec, "k": max(k, self.ef_search)}
        if flt:
            knn["filter"] = {"bool": {"filter": flt}}  # efficient filtering (lucene / faiss engines)
        body = {"size": k, "_source": _SOURCE, "query": {"knn": {"vector": knn}}}
        params = {"search_type": "query_then_fetch"}
        raw = self.client().search(index=index, body=body, params=params)["hits"]["hits"]
        return self._hits(raw, lambda h: 2.0 * h["_score"] - 1.0)  # lucene cosinesimil score = (1 + cos) / 2

    def _search_bm25(self, generation: str, text: str, k: int, filters: dict | None) -> list[SearchHit]:
        index = self.table_name(generation)
        body = {
            "size": k,
            "_source": _SOURCE,
            "query": {"bool": {"must": [{"match": {"text": text}}], "filter": build_filter(filters)}},
        }
        raw = self.client().search(index=index, body=body)["hits"]["hits"]
        return self._hits(raw, lambda h: h["_score"])
