"""Sensors: new documents in the store (an S3 bucket on eks, the local folder on local) start the pipeline.

The knowledge job is incremental (it diffs the whole store against what it already indexed), so one
run handles every object that changed since the last one: the sensor's job is to notice change
cheaply and request exactly one run per distinct change set.
"""

from __future__ import annotations

import hashlib
import json

import dagster as dg

from pipelines.jobs import evaluation_job, knowledge_job
from resources.document_store import DocumentStoreResource


@dg.sensor(
    job=knowledge_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Polls the document store for changes: S3 event notifications from SQS when the store has a queue "
    "(a tick reads only the new events, whatever the bucket's size), otherwise a listing with a watermark cursor and "
    "an overlap window. New, modified (ETag) or deleted objects request one knowledge_job run; the run key is a hash "
    "of the change set, so a re-seen change is not processed twice. Queue messages are deleted only once the run "
    "request is built.",
)
def new_documents_sensor(context: dg.SensorEvaluationContext, document_store: DocumentStoreResource) -> dg.SensorResult:
    batch, cursor = document_store.poll_changes(context.cursor)
    seen = f"{batch.seen} objects" if batch.source == "listing" else f"{batch.seen} messages"
    if not batch.any:
        batch.ack()  # test events, other prefixes: nothing to run, nothing to keep
        return dg.SensorResult(skip_reason=f"no change among {seen}", cursor=cursor)
    digest = hashlib.sha256(json.dumps(batch.signature(), sort_keys=True).encode()).hexdigest()[:24]
    context.log.info(f"{len(batch.changed)} new/modified, {batch.deleted_count} deleted ({seen})")
    result = dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"docs-{digest}",
                tags={
                    "agentic/trigger": "new_documents_sensor",
                    "agentic/changed": str(len(batch.changed)),
                    "agentic/deleted": str(batch.deleted_count),
                },
            )
        ],
        cursor=cursor,
    )
    # Only now are the messages deleted: had anything above raised, they would come back after the visibility timeout.
    if left := batch.ack():
        context.log.warning(f"{left} messages not deleted; they come back and request a (redundant) run")
    return result


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
