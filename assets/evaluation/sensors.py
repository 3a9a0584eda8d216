"""The evaluation stage's sensor: an evaluation run after each knowledge run that changed the index."""

from __future__ import annotations

import dagster as dg

from assets.evaluation.jobs import evaluation_job
from assets.knowledge.jobs import knowledge_job


def _reembedded(instance: dg.DagsterInstance, run_id: str) -> dict | None:
    """What the finished knowledge run changed, read from that run's own materializations: re-embedded chunks or
    a new candidate generation. None when the run left the index as it was."""
    wanted = {"chunk_embeddings": ("embedded_this_run",), "vector_index": ("candidate_generation", "added", "deleted")}
    out = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        mat = entry.asset_materialization
        key = mat.asset_key.to_user_string() if mat else ""
        for field in wanted.get(key, ()):
            value = mat.metadata.get(field)
            value = getattr(value, "value", value)
            if value:
                out[f"{key}.{field}"] = value
    return out or None


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[knowledge_job],
    request_job=evaluation_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After each knowledge run that re-embedded chunks or built a candidate generation, an evaluation run "
    "(which also gates the candidate's promotion). Runs that changed nothing request nothing.",
)
def evaluate_after_reembedding(context: dg.RunStatusSensorContext):
    changed = _reembedded(context.instance, context.dagster_run.run_id)
    if not changed:
        return dg.SkipReason(f"run {context.dagster_run.run_id} changed no embeddings and built no candidate")
    # retrieval metrics over the whole golden set: what a re-embedding changes, and the gate for a new generation;
    # no LLM needed, so it runs whether or not the serving stack is up (the weekly run adds the judged sample)
    return dg.RunRequest(
        run_key=f"eval-after-{context.dagster_run.run_id}",
        run_config={"ops": {"rag_eval_run": {"config": {"answers": 0}}}},
        tags={"agentic/trigger": "reembedding", "agentic/after_run": context.dagster_run.run_id},
    )
