"""The knowledge stage's sensor: new documents in the store (an S3 bucket on eks, the local folder on local) start the pipeline.

The knowledge job is incremental (it diffs the whole store against what it already indexed), so one
run handles every object that changed since the last one: the sensor's job is to notice change
cheaply and request exactly one run per distinct change set.
"""

from __future__ import annotations

import hashlib
import json

import dagster as dg

from assets.knowledge.jobs import knowledge_job
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
