"""chunk_embeddings: vectors for every live chunk, computed by Ray Data on an autoscaling actor pool."""

import time

import dagster as dg

from assets.knowledge.chunking import document_chunks
from assets.knowledge.common import asset, run_stage
from assets.knowledge.state import (
    CHUNK_QUARANTINE,
    CHUNKS_TABLE,
    chunk_quarantine_table,
    plan,
    sum_stats,
    vectors_table,
)
from assets.metadata import quarantine_table
from infra.platform.config import k8s_step
from resources.embedder import EmbedderResource
from resources.ray_jobs import RayJobRunner
from resources.state_store import PipelineStateStore


class EmbeddingConfig(dg.Config):
    actors: int = 0  # upper bound of the autoscaling actor pool; 0 = Ray CPUs / threads_per_actor
    threads_per_actor: int = 2  # ONNX intra-op threads (and Ray CPUs) per actor


@asset(
    op_tags=k8s_step("500m", "1Gi", "2Gi"),  # eks: the step pod only submits the Ray job and commits metadata
    kinds={"ray", "onnx"},
    deps=[document_chunks],
    description="Vectors for every live chunk: a Ray Data job (map_batches over an autoscaling actor pool that holds the "
    "embedding model) over the dirty shards, reading chunks from the state store and writing vectors back to it. Chunks "
    "that already have a vector for this model are reused; a chunk that cannot be embedded, or gets a NaN/zero vector, is "
    "quarantined with its reason and the rest of its shard goes on.",
)
def chunk_embeddings(
    context: dg.AssetExecutionContext,
    config: EmbeddingConfig,
    embedder: EmbedderResource,
    pipeline_state: PipelineStateStore,
    ray_jobs: RayJobRunner,
) -> dg.MaterializeResult:
    t0 = time.perf_counter()
    vtable, qtable = vectors_table(embedder.model_id), chunk_quarantine_table(embedder.model_id)
    items = plan(pipeline_state, vtable, (CHUNKS_TABLE,), f"{embedder.model_id}:{embedder.dimension}", prev=(vtable,))
    payload = {
        "items": items,
        "embedder": embedder.spec(),
        "actors": config.actors,
        "threads_per_actor": config.threads_per_actor,
        "vectors_table": vtable,
        "quarantine_table": qtable,
    }
    entries, info = run_stage(
        context,
        ray_jobs,
        pipeline_state,
        "resources.data_path:embed_stage",
        payload,
        (vtable, qtable),
        label="embedding",
        item_unit="chunks",
    )
    stats = sum_stats(info["computed"][vtable], "embedded", "reused", "quarantined", "removed")
    embed_seconds = sum(float(e["stats"].get("seconds", 0)) for e in info["computed"][vtable].values())
    quarantined_rows = []
    for _, t in pipeline_state.iter_shards(qtable, CHUNK_QUARANTINE):
        quarantined_rows.extend(t.to_pylist()[: 100 - len(quarantined_rows)])
    if stats["quarantined"]:
        context.log.warning(
            f"{stats['quarantined']} chunk(s) quarantined, e.g. {quarantined_rows[0]['chunk_id']}: {quarantined_rows[0]['reason']}"
        )
    live = pipeline_state.table_rows(vtable)
    return dg.MaterializeResult(
        metadata={
            "model": embedder.model_id,
            "dimension": embedder.dimension,
            "live_chunks": live,
            "embedded_this_run": stats["embedded"],
            "reused_from_cache": live - stats["embedded"],
            "pruned_from_cache": stats["removed"],
            "quarantined_chunks": pipeline_state.table_rows(qtable),
            "quarantine": quarantine_table(quarantined_rows, key="chunk_id"),
            "dirty_shards": len(items),
            "resumed_shards": info.get("resumed", 0),
            "ray_actors_max": info.get("actors", 0),
            "ray_seconds": info["seconds"],
            "actor_embed_seconds": round(embed_seconds, 3),
            "seconds": round(time.perf_counter() - t0, 3),
            **info["progress"],  # shards done, chunks embedded this run, wall seconds, chunks_per_second
        }
    )
