"""Pod per step, for real, on the eks data path: the knowledge and evaluation jobs with the eks profile's resources,
every step in its own process with its own empty scratch home (tests/pod_per_step.py), state and documents on S3
(moto), the data path submitted as Ray jobs to a `ray start` head's Jobs API with a token (RayJobsApiRunner, what
eks uses), vectors in a real OpenSearch node.

On a pipeline that keeps state on local disk this fails at the first run: the chunking step finds no parsed
documents, and the index step, seeing no live chunks, deletes what the index holds.
"""

from __future__ import annotations

import os
import shutil
import uuid

import dagster as dg
import numpy as np
import pytest

from core.corpus import document_key
from core.embedding import vectors_to_numpy
from pipelines.profiles import build_resources
from resources.document_store import S3DocumentStore
from resources.opensearch_store import OpenSearchVectorStore
from tests import pod_per_step
from tests.e2e.conftest import CORPUS


def _execute(fn, instance, run_config=None):
    result = dg.execute_job(dg.reconstructable(fn), instance=instance, run_config=run_config, raise_on_error=False)
    meta = {}
    for e in result.get_asset_materialization_events():
        m = e.event_specific_data.materialization
        meta[m.asset_key.to_user_string()] = {k: getattr(v, "value", v) for k, v in m.metadata.items()}
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert result.success, checks
    return meta, checks


@pytest.mark.e2e
def test_jobs_with_a_process_and_an_empty_disk_per_step(
    monkeypatch,
    tmp_path,
    moto_endpoint,
    opensearch_url,
    ray_head,
    base_settings,
    settings_factory,
    pubmed_sample,
    cli_home,
):
    bucket, prefix = f"pods-{uuid.uuid4().hex[:8]}", f"pod{uuid.uuid4().hex[:8]}"
    # under the keys `agentic run` gives them locally (pubmed/...), the eks profile's document prefix set to match
    docs = S3DocumentStore(bucket=bucket, prefix="pubmed/", endpoint_url=moto_endpoint)
    docs._client().create_bucket(Bucket=bucket)
    sample = {document_key(p): d for p, d in pubmed_sample[:CORPUS]}
    for key, data in sample.items():
        docs.put(key, data)
    for k, v in {  # the eks profile's settings, as the platform renders them for a step pod, at the local twins
        "AGENTIC_DOCUMENT_BUCKET": bucket,
        "AGENTIC_DOCUMENT_PREFIX": "pubmed/",
        "AWS_ENDPOINT_URL_S3": moto_endpoint,
        "AWS_REGION": "us-east-1",
        "AGENTIC_OPENSEARCH_ENDPOINT": opensearch_url,
        "AGENTIC_OPENSEARCH_INDEX": prefix,
        "AGENTIC_RAY_ADDRESS": ray_head["gcs"],
        "AGENTIC_RAY_JOBS_ADDRESS": ray_head["dashboard"],
        "AGENTIC_CACHE": str(base_settings.cache),
        "AGENTIC_GATEWAY_KEY": "unused-retrieval-only",
        "POD_TEST_SCRATCH": str(tmp_path / "pods"),
    }.items():
        monkeypatch.setenv(k, v)
    from pipelines.profiles import build_resources as _build
    from pipelines.settings import load_settings
    from resources.ray_jobs import RayJobsApiRunner

    assert isinstance(_build(load_settings({**os.environ, "AGENTIC_PROFILE": "eks"}))["ray_jobs"], RayJobsApiRunner)
    (tmp_path / "dagster").mkdir()
    (tmp_path / "pods").mkdir()
    instance = dg.DagsterInstance.local_temp(str(tmp_path / "dagster"))
    store = OpenSearchVectorStore(hosts=opensearch_url, index_prefix=prefix)
    try:
        meta, checks = _execute(pod_per_step.knowledge_job_def, instance)
        assert checks and all(checks.values()), checks
        # the data path ran as Ray jobs through the head's Jobs API (with the token), not in the step processes
        from ray.job_submission import JobSubmissionClient

        jobs = [j for j in JobSubmissionClient(ray_head["dashboard"]).list_jobs() if j.metadata.get("target")]
        stages = {j.metadata["target"].rsplit(":", 1)[1] for j in jobs if j.status.value == "SUCCEEDED"}
        assert {"parse_stage", "chunk_stage"} <= stages and any("embed" in s for s in stages), stages
        gen = meta["vector_index"]["generation"]
        assert (
            meta["chunk_embeddings"]["embedded_this_run"] == meta["document_chunks"]["chunks"] == store.count(gen) > 40
        )

        # The same documents on the local profile (one process, a folder, LanceDB) built the same index: the shared
        # CLI home's first `agentic run` indexed the sample's first 40 articles too, under the same keys.
        local = build_resources(settings_factory(cli_home.home))
        assert {o.key for o in local["document_store"].list_objects()} == {
            document_key(p) for p, _ in pubmed_sample[:CORPUS]
        }
        lgen = local["vector_store"].serving_generation()
        mine = store.scan(gen, ["chunk_id", "doc_key", "text", "specialty", "vector"]).sort_by("chunk_id")
        theirs = (
            local["vector_store"].scan(lgen, ["chunk_id", "doc_key", "text", "specialty", "vector"]).sort_by("chunk_id")
        )
        assert mine.select(["chunk_id", "doc_key", "text", "specialty"]).equals(
            theirs.select(["chunk_id", "doc_key", "text", "specialty"])
        )
        np.testing.assert_allclose(
            vectors_to_numpy(mine.column("vector"), 384), vectors_to_numpy(theirs.column("vector"), 384), atol=1e-5
        )

        # Evaluation in its own processes too: it reads the golden set's sources from S3 state.
        emeta, echecks = _execute(
            pod_per_step.evaluation_job_def, instance, {"ops": {"rag_eval_run": {"config": {"answers": 0}}}}
        )
        assert emeta["eval_questions"]["questions"] >= 5 and emeta["rag_eval_run"]["hybrid_hit_at_k"] >= 0.8, emeta[
            "rag_eval_run"
        ]

        # No change: nothing parsed, chunked or embedded; the index is not touched.
        version = store.version(gen)
        meta, checks = _execute(pod_per_step.knowledge_job_def, instance)
        assert all(checks.values()), checks
        assert meta["chunk_embeddings"]["embedded_this_run"] == 0 and meta["parsed_documents"]["parsed_this_run"] == 0
        assert (meta["vector_index"]["added"], meta["vector_index"]["deleted"]) == (0, 0) and store.version(
            gen
        ) == version

        # One document changed, one deleted: both propagate, and only the changed one is embedded.
        changed, deleted = sorted(sample)[0], sorted(sample)[1]
        new_pmid, new_doc = pubmed_sample[200]
        docs.put(changed, new_doc)
        docs.delete(deleted)
        meta, checks = _execute(pod_per_step.knowledge_job_def, instance)
        assert all(checks.values()), checks
        rows = store.scan(gen, ["doc_key", "doc_id"]).to_pylist()
        assert {r["doc_id"] for r in rows if r["doc_key"] == changed} == {new_pmid}
        assert not any(r["doc_key"] == deleted for r in rows)
        assert 0 < meta["chunk_embeddings"]["embedded_this_run"] == meta["vector_index"]["added"]
        assert meta["document_inventory"]["deleted"] == 1 and meta["document_inventory"]["changed"] == 1
    finally:
        store.client().indices.delete(index=f"{prefix}__*", ignore_unavailable=True)
        shutil.rmtree(tmp_path / "pods", ignore_errors=True)
