"""The index's fields, declared once: the LanceDB table schema, the fields a search reads back into a hit, the filter
language's fields, and the OpenSearch mapping (the vector-store resource's and the domain's index template) are all
derived from ``FIELDS``, so the two stores and the platform cannot disagree on a field.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # "keyword", "text" (full text), "english" (full text, English analyzer), "int", "keywords" (a list)
    hit: bool = True  # read back into a SearchHit (LanceDB's select, OpenSearch's _source)
    filter: str = ""  # how callers may filter on it: "string", "int", "list" (any of the values); "" = not at all


FIELDS = (
    Field("chunk_id", "keyword"),
    Field("doc_key", "keyword", filter="string"),
    Field("doc_id", "keyword", filter="string"),
    Field("seq", "int"),
    Field("title", "text"),
    Field("text", "english"),
    Field("section", "keyword", filter="list"),  # filtered through ``sections``
    Field("year", "int", filter="int"),
    Field("journal", "keyword", filter="string"),
    Field("mesh_terms", "keywords", hit=False),
    Field("sections", "keywords", hit=False),
    Field("specialty", "keyword", filter="string"),
    Field("groups", "keywords"),  # who may read the chunk's document: the read scope's filter, never a caller's
    Field("source_format", "keyword", hit=False, filter="string"),
    Field("n_tokens", "int", hit=False),
    Field("doc_type", "keyword", filter="string"),
    Field("page", "int", filter="int"),  # first and last page of a paged source the chunk's text is on
    Field("page_end", "int"),
)
_ARROW = {"keyword": pa.string(), "text": pa.string(), "english": pa.string(), "int": pa.int32()}
_ARROW["keywords"] = pa.list_(pa.string())
_OPENSEARCH = {"keyword": {"type": "keyword"}, "text": {"type": "text"}, "int": {"type": "integer"}}
_OPENSEARCH.update({"english": {"type": "text", "analyzer": "english"}, "keywords": {"type": "keyword"}})

HIT_FIELDS = [f.name for f in FIELDS if f.hit]
FILTER_FIELDS = {f.name: f.filter for f in FIELDS if f.filter}
# list-valued filters: a filter value matches when any of the row's values is among them (filter name -> field)
LIST_FIELDS = {"section": "sections", "mesh": "mesh_terms"}


def chunk_schema(dimension: int) -> pa.Schema:
    """The LanceDB table of one index generation."""
    return pa.schema([(f.name, _ARROW[f.kind]) for f in FIELDS] + [("vector", pa.list_(pa.float32(), dimension))])


def index_body(
    dimension: int, engine: str = "lucene", m: int = 16, ef_construction: int = 128, shards: int = 1, replicas: int = 0
) -> dict:
    """The OpenSearch index of one generation: k-NN settings and a strict mapping of ``FIELDS`` plus the vector."""
    if engine not in ("lucene", "faiss"):
        raise ValueError("engine must be lucene or faiss (nmslib is deprecated)")
    properties = {f.name: dict(_OPENSEARCH[f.kind]) for f in FIELDS}
    properties["vector"] = {
        "type": "knn_vector",
        "dimension": dimension,
        "method": {
            "name": "hnsw",
            "engine": engine,
            "space_type": "cosinesimil",
            "parameters": {"m": m, "ef_construction": ef_construction},
        },
    }
    return {
        "settings": {
            "index": {"knn": True, "number_of_shards": shards, "number_of_replicas": replicas, "refresh_interval": "1s"}
        },
        "mappings": {"dynamic": "strict", "properties": properties},
    }
