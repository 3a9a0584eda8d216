"""The scale sweep's constants and /proc memory readers."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

STEPS = [
    "document_inventory",
    "parsed_documents",
    "document_chunks",
    "chunk_embeddings",
    "specialty_classifier",
    "document_classes",
    "vector_index",
]
SHORT = {
    "document_inventory": "inventory",
    "parsed_documents": "parse",
    "document_chunks": "chunk",
    "chunk_embeddings": "embed",
    "specialty_classifier": "classifier",
    "document_classes": "classes",
    "vector_index": "index",
}
RAY_STEPS = {"parsed_documents", "document_chunks", "chunk_embeddings"}
SCENARIOS = ("scratch", "nochange", "change1")
REAL_DOCS = 33_272
HASHED_MODEL_ID = "hashed-wordpiece-384"
HASHED_LABEL = "hashed embedder (timings of the embed step are not the real model's)"
MARK = "SCALE_SWEEP_RESULT "
RESULTS = ROOT / "benchmarks" / "results"
DONE_KEYS = (
    "documents",
    "new",
    "changed",
    "deleted",
    "changed_shards",
    "parsed_this_run",
    "read_this_run",
    "quarantined",
    "chunks",
    "rechunked_documents",
    "embedded_this_run",
    "reused_from_cache",
    "pruned_from_cache",
    "live_chunks",
    "dirty_shards",
    "retrained",
    "labelled_documents",
    "macro_f1",
    "classified_documents",
    "changed_class",
    "rows",
    "added",
    "reclassified_documents",
    "chunks_per_second",
    "ray_seconds",
    "actor_embed_seconds",
    "ray_actors_max",
)


def mb(kb: float) -> float:
    return round(kb / 1024, 1)


def rss_kb(pid: int | str = "self", field: str = "VmRSS") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
