"""Ray: a local Ray cluster on the local profile, the KubeRay cluster (Ray Client/GCS address) on EKS."""

from __future__ import annotations

import os
import warnings

import dagster as dg

# Ray reads these at import/init time; they are part of how this platform runs Ray, not user settings.
RAY_ENV_DEFAULTS = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_DEDUP_LOGS": "1",
    "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
}


def apply_ray_env_defaults() -> None:
    """Set RAY_ENV_DEFAULTS where the environment does not say otherwise (before Ray is imported)."""
    for k, v in RAY_ENV_DEFAULTS.items():
        os.environ.setdefault(k, v)


class RayResource(dg.ConfigurableResource):
    """Connects to ``address`` when given (a running head, ``ray start`` or KubeRay), else starts a local cluster."""

    address: str = ""
    num_cpus: int = 0  # local cluster only; 0 = all cores
    object_store_mb: int = 1024  # local cluster only
    namespace: str = "agentic"

    def ensure(self) -> None:
        apply_ray_env_defaults()
        # Ray starts its processes with fork+exec; lancedb's at-fork warning is about forks that keep running
        # Python, which Ray does not do.
        warnings.filterwarnings("ignore", message="lancedb fork support is experimental")
        import ray

        if ray.is_initialized():
            return
        if self.address:
            ray.init(address=self.address, namespace=self.namespace, log_to_driver=False)
        else:
            ray.init(
                num_cpus=self.num_cpus or os.cpu_count(),
                object_store_memory=self.object_store_mb * 1024 * 1024,
                include_dashboard=False,
                namespace=self.namespace,
                log_to_driver=False,
            )

    def cluster_cpus(self) -> int:
        import ray

        self.ensure()
        return int(ray.cluster_resources().get("CPU", 1))


class EmbedBatch:
    """Ray Data actor: loads the embedding model once, embeds one Arrow batch per call."""

    def __init__(self, spec: dict):
        from core.embedding import OnnxEmbedder

        self.embedder = OnnxEmbedder(**spec)

    def __call__(self, batch):
        import pyarrow as pa

        texts = batch.column("text").to_pylist()
        vectors = self.embedder.embed(texts)
        dim = vectors.shape[1]
        flat = pa.array(vectors.reshape(-1), type=pa.float32())
        return pa.table({"chunk_id": batch.column("chunk_id"), "vector": pa.FixedSizeListArray.from_arrays(flat, dim)})


def embed_on_ray(ray_resource: RayResource, rows, embedder_spec: dict, actors: int = 0, batch_size: int = 64, block_rows: int = 256):
    """Ray Data job: ``rows`` (Arrow: chunk_id, text[, n_tokens]) -> Arrow tables (chunk_id, vector), streamed.

    Rows are sorted by length so each batch pads little; an actor pool holds the model.
    ``actors`` = 0 means one actor per cluster CPU, each with one ONNX thread. Results are
    yielded as actors finish blocks, so the caller can persist progress as it goes.
    """
    import ray

    ray_resource.ensure()
    if rows.num_rows == 0:
        return
    cpus = ray_resource.cluster_cpus()
    actors = actors or cpus
    threads = max(1, cpus // actors)
    if "n_tokens" in rows.column_names:
        rows = rows.sort_by("n_tokens")
    rows = rows.select(["chunk_id", "text"])
    actors = min(actors, rows.num_rows)
    block_rows = max(1, min(block_rows, -(-rows.num_rows // actors)))  # at least one block per actor
    blocks = [rows.slice(i, block_rows) for i in range(0, rows.num_rows, block_rows)]
    ds = ray.data.from_arrow(blocks)
    ds = ds.map_batches(
        EmbedBatch,
        fn_constructor_kwargs={"spec": {**embedder_spec, "threads": threads}},
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=1,
    )
    yield from ds.iter_batches(batch_size=None, batch_format="pyarrow")
