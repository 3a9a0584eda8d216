"""Deterministic identifiers: the same input always gives the same id."""

from __future__ import annotations

import hashlib
import re


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def chunk_id(doc_key: str, doc_content_hash: str, chunker_version: str, seq: int) -> str:
    """hash(document key, content hash, chunker version) plus the chunk's position."""
    h = hashlib.sha256()
    for part in (doc_key, doc_content_hash, chunker_version, str(seq)):
        h.update(part.encode("utf-8"))
        h.update(b"\x1f")
    return h.hexdigest()[:32]


def generation_id(model_id: str, dimension: int, mapping_version: str) -> str:
    """An index generation is defined by what makes old vectors unusable: model, dimension, mapping."""
    digest = hashlib.sha256(f"{model_id}|{dimension}|{mapping_version}".encode()).hexdigest()[:10]
    slug = re.sub(r"[^a-z0-9]+", "_", model_id.lower()).strip("_")[:40]
    return f"{slug}__{digest}"
