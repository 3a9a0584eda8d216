"""Sensors: new documents in the store (an S3 bucket on eks, the local folder on local) start the pipeline.

The knowledge job is incremental (it diffs the whole store against what it already indexed), so one
run handles every object that changed since the last one: the sensor's job is to notice change
cheaply and request exactly one run per distinct change set.
"""

from __future__ import annotations

import hashlib
import json

import dagster as dg

from core.sensing import ChangeCursor, detect_changes
from pipelines.jobs import evaluation_job, knowledge_job
from resources.document_store import DocumentStoreResource


@dg.sensor(
    job=knowledge_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Lists the document store; new, modified (ETag) or deleted objects request one knowledge_job run. "
    "The cursor keeps a watermark with an overlap window, so objects sharing a timestamp are not skipped; "
    "the run key is a hash of the changed keys and ETags, so a re-seen object is not processed twice.",
)
def new_documents_sensor(context: dg.SensorEvaluationContext, document_store: DocumentStoreResource) -> dg.SensorResult:
    cursor = ChangeCursor.from_json(context.cursor)
    objects = document_store.list_objects()
    changes, new_cursor = detect_changes(objects, cursor)
    if not changes.any:
        return dg.SensorResult(skip_reason=f"no change among {len(objects)} objects", cursor=new_cursor.to_json())
    digest = hashlib.sha256(json.dumps(changes.signature(), sort_keys=True).encode()).hexdigest()[:24]
    context.log.info(f"{len(changes.changed)} new/modified, {changes.deleted} deleted of {len(objects)} objects")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"docs-{digest}",
                tags={"agentic/trigger": "new_documents_sensor", "agentic/changed": str(len(changes.changed)), "agentic/deleted": str(changes.deleted)},
            )
        ],
        cursor=new_cursor.to_json(),
    )


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
    return dg.RunRequest(run_key=f"eval-after-{context.dagster_run.run_id}", run_config={"ops": {"rag_eval_run": {"config": {"answers": 0}}}},
                         tags={"agentic/trigger": "reembedding", "agentic/after_run": context.dagster_run.run_id})
