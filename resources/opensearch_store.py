"""The OpenSearch vector store: the production twin of ``LanceDBVectorStore``, same interface.

One index per generation (``<prefix>__<generation>``) with a ``knn_vector`` field (HNSW on the
lucene or faiss engine, never nmslib), a BM25 ``text`` field and keyword/integer filter fields.
Readers go through an alias (``<prefix>``) that ``promote`` switches atomically in one
``_aliases`` request. Amazon OpenSearch is reached with SigV4 (``use_sigv4``) on the eks profile.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import PrivateAttr

from resources.vector_store import FILTER_FIELDS, LIST_FIELDS, SearchHit, VectorStoreResource, chunk_schema, complete_rows

OPENSEARCH_MAPPING_VERSION = "opensearch-chunks-v2"  # v2: sections (keyword list) and specialty
_SOURCE = ["chunk_id", "doc_key", "doc_id", "title", "text", "section", "year", "journal", "specialty"]


def index_body(dimension: int, engine: str = "lucene", m: int = 16, ef_construction: int = 128, shards: int = 1, replicas: int = 0) -> dict:
    if engine not in ("lucene", "faiss"):
        raise ValueError("engine must be lucene or faiss (nmslib is deprecated)")
    return {
        "settings": {"index": {"knn": True, "number_of_shards": shards, "number_of_replicas": replicas, "refresh_interval": "1s"}},
        "mappings": {
            "dynamic": "strict",
            "properties": {
                "chunk_id": {"type": "keyword"},
                "doc_key": {"type": "keyword"},
                "doc_id": {"type": "keyword"},
                "seq": {"type": "integer"},
                "title": {"type": "text"},
                "text": {"type": "text", "analyzer": "english"},
                "section": {"type": "keyword"},
                "year": {"type": "integer"},
                "journal": {"type": "keyword"},
                "mesh_terms": {"type": "keyword"},
                "sections": {"type": "keyword"},
                "specialty": {"type": "keyword"},
                "source_format": {"type": "keyword"},
                "n_tokens": {"type": "integer"},
                "vector": {
                    "type": "knn_vector",
                    "dimension": dimension,
                    "method": {"name": "hnsw", "engine": engine, "space_type": "cosinesimil", "parameters": {"m": m, "ef_construction": ef_construction}},
                },
            },
        },
    }


def build_filter(filters: dict[str, Any] | None) -> list[dict]:
    """The same filter language as LanceDB's ``build_where``, as OpenSearch ``bool.filter`` clauses."""
    clauses: list[dict] = []
    for name, value in (filters or {}).items():
        if value is None:
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

    _client: Any = PrivateAttr(default=None)

    def mapping_version(self) -> str:
        return f"{OPENSEARCH_MAPPING_VERSION}:{self.engine}"

    # ------------------------------------------------------------ plumbing
    def client(self):
        if self._client is None:
            from opensearchpy import OpenSearch, RequestsHttpConnection

            kwargs: dict[str, Any] = {"hosts": [h.strip() for h in self.hosts.split(",") if h.strip()], "timeout": self.timeout_s}
            if self.use_sigv4:
                import boto3
                from opensearchpy import AWSV4SignerAuth

                kwargs.update(http_auth=AWSV4SignerAuth(boto3.Session().get_credentials(), self.aws_region, "es"), connection_class=RequestsHttpConnection)
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
        return sorted(n[len(prefix):] for n in names)

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
        return indices[0][len(self.index_prefix) + 2:]

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
    def create_generation(self, generation: str, dimension: int, rows: pa.Table | None = None) -> None:
        c = self.client()
        name = self.table_name(generation)
        if c.indices.exists(index=name):
            c.indices.delete(index=name)
        c.indices.create(index=name, body=index_body(dimension, self.engine))
        if rows is not None and rows.num_rows:
            self.upsert(generation, rows)

    def drop_generation(self, generation: str) -> None:
        if generation == self.serving_generation():
            raise ValueError("refusing to drop the serving generation")
        self.client().indices.delete(index=self.table_name(generation), ignore_unavailable=True)

    def ids(self, generation: str) -> set[str]:
        out: set[str] = set()
        c = self.client()
        body: dict[str, Any] = {"size": 5000, "_source": False, "sort": [{"chunk_id": "asc"}], "query": {"match_all": {}}}
        while True:
            hits = c.search(index=self.table_name(generation), body=body)["hits"]["hits"]
            if not hits:
                return out
            out.update(h["_id"] for h in hits)
            body["search_after"] = hits[-1]["sort"]

    def upsert(self, generation: str, rows: pa.Table, batch: int = 500) -> int:
        """Bulk index with explicit ``_id`` = chunk id; one refresh at the end."""
        from opensearchpy.helpers import bulk

        if rows.num_rows == 0:
            return 0
        name = self.table_name(generation)
        rows = complete_rows(rows)
        fields = [f for f in chunk_schema(1).names if f in rows.column_names]

        def actions():
            for start in range(0, rows.num_rows, batch):
                part = rows.slice(start, batch).select(fields).to_pylist()
                for doc in part:
                    yield {"_op_type": "index", "_index": name, "_id": doc["chunk_id"], "_source": doc}

        ok, errors = bulk(self.client(), actions(), chunk_size=batch, refresh=False, raise_on_error=False, request_timeout=self.timeout_s)
        if errors:
            raise RuntimeError(f"{len(errors)} bulk errors, e.g. {errors[0]}")
        self.client().indices.refresh(index=name)
        return ok

    def set_specialty(self, generation: str, doc_keys_by_class: dict[str, list[str]], batch: int = 500) -> int:
        name = self.table_name(generation)
        n = 0
        for value, keys in doc_keys_by_class.items():
            for i in range(0, len(keys), batch):
                part = keys[i : i + batch]
                self.client().update_by_query(index=name, refresh=True, conflicts="proceed", body={
                    "query": {"terms": {"doc_key": part}},
                    "script": {"source": "ctx._source.specialty = params.v", "lang": "painless", "params": {"v": value}},
                })
                n += len(part)
        return n

    def delete(self, generation: str, chunk_ids: list[str]) -> int:
        from opensearchpy.helpers import bulk

        if not chunk_ids:
            return 0
        name = self.table_name(generation)
        bulk(self.client(), ({"_op_type": "delete", "_index": name, "_id": cid} for cid in chunk_ids), raise_on_error=False, refresh=False)
        self.client().indices.refresh(index=name)
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
        body: dict[str, Any] = {"size": 2000, "_source": cols, "sort": [{"chunk_id": "asc"}], "query": {"match_all": {}}}
        while True:
            hits = c.search(index=self.table_name(generation), body=body)["hits"]["hits"]
            if not hits:
                break
            rows.extend({k: h["_source"].get(k) for k in cols} for h in hits)
            body["search_after"] = hits[-1]["sort"]
        return pa.Table.from_pylist(rows, schema=pa.schema([schema.field(cname) for cname in cols]))

    def _dimension(self, generation: str) -> int:
        m = self.client().indices.get_mapping(index=self.table_name(generation))
        return int(next(iter(m.values()))["mappings"]["properties"]["vector"]["dimension"])

    @staticmethod
    def _hits(raw: list[dict], score_of) -> list[SearchHit]:
        out = []
        for i, h in enumerate(raw):
            s = h["_source"]
            out.append(SearchHit(chunk_id=s["chunk_id"], doc_key=s["doc_key"], doc_id=s["doc_id"], title=s["title"], text=s["text"],
                                 section=s["section"], year=s.get("year"), journal=s["journal"], score=float(score_of(h)), rank=i + 1,
                                 specialty=s.get("specialty") or ""))
        return out

    def search_dense(self, vector: np.ndarray, k: int = 10, filters: dict | None = None, generation: str | None = None, exact: bool = False) -> list[SearchHit]:
        index = self.table_name(self._resolve(generation))
        vec = [float(x) for x in np.asarray(vector, dtype=np.float32)]
        flt = build_filter(filters)
        if exact:
            # Exact k-NN: the k-NN plugin's scoring script over the (filtered) documents.
            body = {
                "size": k, "_source": _SOURCE,
                "query": {"script_score": {
                    "query": {"bool": {"filter": flt}} if flt else {"match_all": {}},
                    "script": {"source": "knn_score", "lang": "knn", "params": {"field": "vector", "query_value": vec, "space_type": "cosinesimil"}},
                }},
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

    def search_bm25(self, text: str, k: int = 10, filters: dict | None = None, generation: str | None = None) -> list[SearchHit]:
        index = self.table_name(self._resolve(generation))
        body = {"size": k, "_source": _SOURCE, "query": {"bool": {"must": [{"match": {"text": text}}], "filter": build_filter(filters)}}}
        raw = self.client().search(index=index, body=body)["hits"]["hits"]
        return self._hits(raw, lambda h: h["_score"])
