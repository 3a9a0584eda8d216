"""The jobs as the eks profile runs them, for tests: every step in its own process with its own empty scratch home.

``dg.reconstructable`` points each step process at these functions: every process builds the eks profile's
resources afresh, with a new empty ``AGENTIC_HOME`` of its own (under ``POD_TEST_SCRATCH``, which the test removes),
so nothing a step writes to its local disk can reach another step. State and documents live in S3 (a moto server),
vectors in OpenSearch, and the data path runs as Ray jobs on a `ray start` head (as on the KubeRay cluster).
Configured through the eks profile's own variables, and ``POD_TEST_SCRATCH``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import dagster as dg

# Each step still gets a process of its own (forked from a server that imported these once, as a pod starts from an
# image with them installed) and its own empty home: what it builds and writes is its alone.
PRELOAD = [
    "dagster",
    "ray",
    "pyarrow",
    "lancedb",
    "onnxruntime",
    "assets.knowledge",
    "assets.evaluation",
    "pipelines.profiles",
]


def pod_definitions() -> dg.Definitions:
    """The eks profile's resources, built as a step pod builds them (``AGENTIC_PROFILE=eks``, the platform's env),
    pointed at local twins: S3 on a moto server (``AWS_ENDPOINT_URL_S3``), the Ray Jobs API of a real `ray start`
    head with a token (``RayJobsApiRunner``), OpenSearch on the local node (SigV4-signed; the node ignores it).
    Swapped, because they cannot run here: the embedding model (the image's snowflake-arctic-embed-s is not on this
    machine: the local profile's MiniLM, so the index can equal the local one), Tesseract (the cached one, not the
    image's system package) and the gateway's vision route (no gateway in this test; the corpus has no images)."""
    from assets.evaluation import evaluation_assets, evaluation_checks, evaluation_job
    from assets.knowledge import knowledge_assets, knowledge_checks, knowledge_job
    from pipelines.profiles import build_resources
    from pipelines.settings import load_settings
    from resources.embedder import EmbedderResource
    from resources.ocr import CachedTesseractOcr, cached_tesseract_root
    from resources.retrieval import RetrieverResource
    from resources.vision import NoVision

    env = dict(os.environ)
    # this process's own empty disk, in a folder the test removes (a forked step ends without running atexit)
    home = Path(tempfile.mkdtemp(prefix="pod-step-", dir=env["POD_TEST_SCRATCH"]))
    settings = load_settings({**env, "AGENTIC_PROFILE": "eks", "AGENTIC_HOME": str(home)})
    res = build_resources(settings)
    local = load_settings({"AGENTIC_HOME": str(home), "AGENTIC_CACHE": env["AGENTIC_CACHE"]})
    res["embedder"] = EmbedderResource(tokenizer_path=str(local.model_dir / "tokenizer.json"))
    res["retriever"] = RetrieverResource(vector_store=res["vector_store"], embedder=res["embedder"])
    res["ocr"] = CachedTesseractOcr(root=str(cached_tesseract_root(local.cache)))
    res["vision"] = NoVision()
    return dg.Definitions(
        assets=[*knowledge_assets, *evaluation_assets],
        asset_checks=[*knowledge_checks, *evaluation_checks],
        jobs=[knowledge_job, evaluation_job],
        resources=res,
        executor=dg.multiprocess_executor.configured(
            {"max_concurrent": 2, "start_method": {"forkserver": {"preload_modules": PRELOAD}}}
        ),
    )


def knowledge_job_def() -> dg.JobDefinition:
    return pod_definitions().resolve_job_def("knowledge_job")


def evaluation_job_def() -> dg.JobDefinition:
    return pod_definitions().resolve_job_def("evaluation_job")
