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
from pipelines.jobs import knowledge_job
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
