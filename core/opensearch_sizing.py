"""How many primary shards an OpenSearch index of chunk rows needs: its estimated size over a target shard size
(``resources.opensearch_store`` applies it when a generation is created)."""

from __future__ import annotations

import math

GB = 1024**3
TEXT_BYTES_PER_ROW = 3_000  # a ~200-word-piece chunk (~1 KB) with its title, inverted-index postings and filter fields
SOURCE_BYTES_PER_FLOAT = 10  # a float in _source JSON (~18 characters) after the stored fields' LZ4 compression


def estimate_row_bytes(dimension: int, text_bytes: int = TEXT_BYTES_PER_ROW, m: int = 16) -> int:
    """On-disk bytes of one chunk row: knn_vector doc values (4 B/float) + HNSW links (~2*m 4-byte ids on the base
    layer) + the vector in ``_source`` + text and filter fields."""
    return dimension * (4 + SOURCE_BYTES_PER_FLOAT) + 2 * m * 4 + text_bytes


def shard_count(
    expected_rows: int,
    dimension: int,
    target_shard_gb: float = 20.0,
    max_shards: int = 32,
    text_bytes: int = TEXT_BYTES_PER_ROW,
    m: int = 16,
) -> int:
    """Primary shards for ``expected_rows``: estimated size / ``target_shard_gb`` rounded up, in [1, max_shards]."""
    if expected_rows <= 0:
        return 1
    size = expected_rows * estimate_row_bytes(dimension, text_bytes, m)
    return max(1, min(max(1, max_shards), math.ceil(size / (target_shard_gb * GB))))
