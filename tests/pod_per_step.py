"""The jobs as the eks profile runs them, for tests: every step in its own process with its own empty scratch home.

``dg.reconstructable`` points each step process at these functions: every process builds its resources afresh,
with a new empty ``AGENTIC_HOME`` of its own (under ``POD_TEST_SCRATCH``, which the test removes), so nothing a
step writes to its local disk can reach another step. State and documents live in S3 (a moto server), vectors in OpenSearch;
Ray is the session's cluster (as the KubeRay cluster is on EKS). Configured through ``POD_TEST_*`` variables.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import dagster as dg

from pipelines.settings import Settings

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
    from assets.evaluation import evaluation_assets, evaluation_checks
    from assets.knowledge import knowledge_assets, knowledge_checks
    from pipelines.jobs import evaluation_job, knowledge_job
    from pipelines.profiles import build_resources
    from resources.document_store import S3DocumentStore
    from resources.opensearch_store import OpenSearchVectorStore
    from resources.retrieval import RetrieverResource
    from resources.state_store import S3StateStore

    env = os.environ
    # this process's own empty disk, in a folder the test removes (a forked step ends without running atexit)
    home = Path(tempfile.mkdtemp(prefix="pod-step-", dir=env["POD_TEST_SCRATCH"]))
    settings = Settings(
        profile="local",
        home=home,
        cache=Path(env["AGENTIC_CACHE"]),
        corpus_limit=0,
        ray_address=env["AGENTIC_RAY_ADDRESS"],
    )
    res = build_resources(settings)
    endpoint, bucket = env["POD_TEST_S3_ENDPOINT"], env["POD_TEST_BUCKET"]
    res["document_store"] = S3DocumentStore(bucket=bucket, prefix="pubmed/", endpoint_url=endpoint)
    res["pipeline_state"] = S3StateStore(bucket=bucket, prefix="state/", endpoint_url=endpoint, shards=8)
    store = OpenSearchVectorStore(hosts=env["POD_TEST_OPENSEARCH"], index_prefix=env["POD_TEST_INDEX_PREFIX"])
    res["vector_store"] = store
    res["retriever"] = RetrieverResource(vector_store=store, embedder=res["embedder"])
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
