"""Run worker for test_kube_cluster: launches a knowledge-pipeline run on the eks profile with dagster-k8s's executor
against the local control plane (AGENTIC_KUBECONFIG). The executor creates one Kubernetes Job per step; kwok runs no
containers, so no step reports back and the test stops this process once it has seen the Jobs."""

from __future__ import annotations

import dagster as dg

# none of these is upstream of another, so each is a root step and launches at once (a step downstream of one
# would wait for it, and kwok never runs it)
SELECTED = ("document_inventory", "chunk_embeddings", "rag_eval_run")


def knowledge_and_evaluation() -> dg.JobDefinition:
    from pipelines.definitions import build_definitions

    job = dg.define_asset_job("k8s_step_jobs", selection=dg.AssetSelection.assets(*SELECTED))
    defs = dg.Definitions.merge(build_definitions(), dg.Definitions(jobs=[job]))
    return defs.resolve_job_def("k8s_step_jobs")


if __name__ == "__main__":
    with dg.DagsterInstance.get() as instance:
        dg.execute_job(dg.reconstructable(knowledge_and_evaluation), instance=instance, raise_on_error=False)
