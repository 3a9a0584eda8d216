"""document_chunks: token-aware, section-aware chunks with overlap, computed on Ray shard by shard."""

import time

import dagster as dg

from assets.knowledge.common import asset, run_stage
from assets.knowledge.parsing import parsed_documents
from assets.knowledge.state import CHUNKS, CHUNKS_TABLE, DOCUMENTS_TABLE, plan, sum_stats
from assets.metadata import md_table
from core.chunking import Chunker
from resources.embedder import EmbedderResource
from resources.ray_jobs import RayJobRunner
from resources.state_store import PipelineStateStore


class ChunkingConfig(dg.Config):
    max_tokens: int = 200
    overlap_tokens: int = 40


@asset(
    kinds={"ray", "python"},
    deps=[parsed_documents],
    description="Token-aware, section-aware chunks with overlap, counted in the embedding model's word pieces, as Ray tasks over "
    "the dirty shards. Chunk ids are hash(document key, content hash, chunker version, position), so unchanged documents keep "
    "their ids (and their vectors).",
)
def document_chunks(
    context: dg.AssetExecutionContext,
    config: ChunkingConfig,
    embedder: EmbedderResource,
    pipeline_state: PipelineStateStore,
    ray_jobs: RayJobRunner,
) -> dg.MaterializeResult:
    t0 = time.perf_counter()
    version = Chunker(
        lambda t: [0] * len(t), max_tokens=config.max_tokens, overlap_tokens=config.overlap_tokens
    ).version
    items = plan(pipeline_state, CHUNKS_TABLE, (DOCUMENTS_TABLE,), version, prev=(CHUNKS_TABLE,))
    chunker = {
        "tokenizer_path": embedder.tokenizer_path,
        "max_tokens": embedder.max_tokens,
        "chunk_tokens": config.max_tokens,
        "overlap": config.overlap_tokens,
    }
    entries, info = run_stage(
        context,
        ray_jobs,
        pipeline_state,
        "resources.data_path:chunk_stage",
        {"items": items, "chunker": chunker},
        (CHUNKS_TABLE,),
        label="chunking",
        item_unit="chunks",
    )
    stats = sum_stats(info["computed"][CHUNKS_TABLE], "rechunked")
    manifest = pipeline_state.manifest(CHUNKS_TABLE)
    chunks = sum(int(e["rows"]) for e in manifest.values())
    docs = sum(int(e["stats"].get("documents", 0)) for e in manifest.values())
    tokens = sum(int(e["stats"].get("tokens_sum", 0)) for e in manifest.values())
    preview = next((t for _, t in pipeline_state.iter_shards(CHUNKS_TABLE, CHUNKS) if t.num_rows), None)
    return dg.MaterializeResult(
        metadata={
            "chunks": chunks,
            "documents": docs,
            "rechunked_documents": stats["rechunked"],
            "chunker_version": version,
            "tokens_mean": round(tokens / max(1, chunks), 1),
            "tokens_max": max((int(e["stats"].get("tokens_max", 0)) for e in manifest.values()), default=0),
            "chunks_per_document": round(chunks / max(1, docs), 2),
            "dirty_shards": len(items),
            "resumed_shards": info.get("resumed", 0),
            "preview": md_table(
                preview.slice(0, 5).to_pylist() if preview is not None else [],
                ["doc_id", "seq", "section", "n_tokens", "text"],
                limit=5,
            ),
            "ray_seconds": info["seconds"],
            "seconds": round(time.perf_counter() - t0, 3),
            **info["progress"],  # shards done, chunks this run, wall seconds, chunks_per_second
        }
    )
