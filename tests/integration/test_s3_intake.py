"""S3 intake against a real moto server: the S3 document store and the new-documents sensor."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import ClassVar

import dagster as dg
import pytest

from assets.knowledge import knowledge_assets, knowledge_checks, new_documents_sensor
from core.corpus import ARTICLE_TABLE, document_key, load_sample
from core.sensing import ChangeBatch, ChangeCursor, changes_from_s3_events, detect_changes
from pipelines.profiles import build_resources
from resources.document_store import S3DocumentStore


# moto accepts any credentials; these throwaway values only satisfy botocore's signer.
@pytest.fixture(scope="module")
def s3_endpoint(moto_endpoint):
    """The session's moto server (its buckets and queues are named per test)."""
    return moto_endpoint


def make_bucket(endpoint: str, name: str) -> S3DocumentStore:
    store = S3DocumentStore(bucket=name, endpoint_url=endpoint)
    store._client().create_bucket(Bucket=name)
    return store


def test_s3_store_behaves_like_a_bucket(s3_endpoint):
    store = make_bucket(s3_endpoint, "store-contract")
    store.put("a/1.txt", b"one")
    first = {o.key: o for o in store.list_objects()}["a/1.txt"]
    assert store.get("a/1.txt") == b"one" and store.exists("a/1.txt") and first.size == 3
    store.put("a/1.txt", b"two!")
    assert {o.key: o for o in store.list_objects()}["a/1.txt"].etag != first.etag  # modified -> new ETag
    for i in range(1005):  # more than one list page
        store.put(f"bulk/{i:04d}.txt", b"x")
    assert len(store.list_objects("bulk/")) == 1005
    store.delete("a/1.txt")
    assert not store.exists("a/1.txt")
    with pytest.raises(FileNotFoundError):
        store.get("a/1.txt")
    with pytest.raises(ValueError):
        store.put("../escape", b"x")


@dataclass
class Obj:
    key: str
    etag: str
    last_modified: float


def test_change_detection_cursor():
    cur = ChangeCursor(overlap_s=10)
    objs = [Obj("a", "1", 100.0), Obj("b", "1", 100.0)]
    changes, cur = detect_changes(objs, cur)
    assert sorted(changes.changed) == [("a", "1"), ("b", "1")] and changes.deleted == 0
    # same listing again: nothing
    changes, cur = detect_changes(objs, cur)
    assert not changes.any
    # an object with the same timestamp as the watermark, seen late, is not skipped
    objs.append(Obj("c", "1", 100.0))
    changes, cur = detect_changes(objs, cur)
    assert changes.changed == [("c", "1")]
    # a modification (new ETag) is seen; a deletion is counted
    objs = [Obj("a", "2", 105.0), Obj("c", "1", 100.0)]
    changes, cur = detect_changes(objs, cur)
    assert changes.changed == [("a", "2")] and changes.deleted == 1
    # Objects stamped before the overlap window are not reported (the window bounds how late a listing may
    # show an object); the next run still indexes them, because the job diffs the whole store.
    objs = [*objs, *(Obj(f"old{i}", "1", 1.0) for i in range(3)), Obj("new", "1", 500.0)]
    changes, cur = detect_changes(objs, cur)
    assert changes.changed == [("new", "1")] and changes.deleted == 0
    assert set(cur.recent) == {"new"} and cur.count == len(objs)  # the cursor stays small


def test_sensor_over_500_objects_processes_each_once(s3_endpoint, settings_factory, tmp_path, base_settings):
    store = make_bucket(s3_endpoint, "incoming")
    settings = settings_factory(tmp_path / "home")
    resources = {**build_resources(settings), "document_store": store}
    corpus = load_sample(base_settings.pubmed_dir / ARTICLE_TABLE, 560)
    docs = {document_key(p): d for p, d in corpus[:500]}
    keys = list(docs)
    instance = dg.DagsterInstance.ephemeral()
    cursor, run_keys, parsed_total, versions = None, [], 0, 0

    def tick():
        nonlocal cursor, parsed_total
        ctx = dg.build_sensor_context(cursor=cursor, instance=instance, resources={"document_store": store})
        result = new_documents_sensor(ctx)
        cursor = result.cursor
        if not result.run_requests:
            return None
        assert len(result.run_requests) == 1  # one run handles the whole batch
        run_keys.append(result.run_requests[0].run_key)
        out = dg.materialize(
            [*knowledge_assets, *knowledge_checks],
            resources=resources,
            instance=instance,
            tags={"dagster/run_key": run_keys[-1]},
        )
        assert out.success and all(c.passed for c in out.get_asset_check_evaluations())
        parsed_total += out.asset_materializations_for_node("parsed_documents")[0].metadata["parsed_this_run"].value
        return result.run_requests[0]

    def upload(ks, content=None):
        nonlocal versions
        for k in ks:
            store.put(k, content(k) if content else docs[k])
            versions += 1

    upload(keys[:200])
    assert tick() is not None
    assert tick() is None  # nothing new: no run
    upload(keys[200:350])
    upload(keys[:20], content=lambda k: corpus[500 + keys.index(k)][1])  # 20 modified in place
    assert tick() is not None
    before_reseen = cursor
    upload(keys[350:500])
    for k in keys[50:80]:
        store.delete(k)
    request = tick()
    assert request is not None and request.tags["agentic/deleted"] == "30"
    # the same listing evaluated again from the earlier cursor yields the same run key (Dagster dedupes it)
    again = new_documents_sensor(
        dg.build_sensor_context(cursor=before_reseen, instance=instance, resources={"document_store": store})
    )
    assert again.run_requests[0].run_key == run_keys[-1]
    assert tick() is None

    assert len(set(run_keys)) == len(run_keys) == 3
    assert parsed_total == versions == 520  # every object version parsed exactly once
    gen = resources["vector_store"].serving_generation()
    indexed = {r["doc_key"] for r in resources["vector_store"].scan(gen, ["doc_key"]).to_pylist()}
    assert indexed == {o.key for o in store.list_objects()}
    assert len(indexed) == 470


# ------------------------------------------------------------------ S3 event notifications through SQS


class RecordingStore(S3DocumentStore):
    """The S3 store, remembering every batch the sensor polled (what each tick reported)."""

    batches: ClassVar[list[ChangeBatch]] = []

    def poll_changes(self, cursor, max_messages=1000):
        batch, new_cursor = super().poll_changes(cursor, max_messages)
        RecordingStore.batches.append(batch)
        return batch, new_cursor


def queue_store(endpoint: str, bucket: str, prefix: str = "incoming/", cls=S3DocumentStore, **kw) -> S3DocumentStore:
    """A bucket wired to its own queue by ``ensure_notifications``; short polls, as tests want."""
    make_bucket(endpoint, bucket)
    plain = S3DocumentStore(bucket=bucket, prefix=prefix, endpoint_url=endpoint, queue_wait_s=0, **kw)
    return cls(
        bucket=bucket,
        prefix=prefix,
        endpoint_url=endpoint,
        queue_wait_s=0,
        queue_url=plain.ensure_notifications(),
        **kw,
    )


def queued(store: S3DocumentStore) -> int:
    attrs = store._sqs().get_queue_attributes(
        QueueUrl=store.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def s3_event(
    bucket: str, key: str, name: str = "ObjectCreated:Put", etag: str = "e", sequencer: str | None = None
) -> str:
    obj = {"key": key, "eTag": etag, **({"sequencer": sequencer} if sequencer else {})}
    return json.dumps(
        {
            "Records": [
                {
                    "eventSource": "aws:s3",
                    "eventName": name,
                    "eventTime": "2026-01-01T00:00:00.000Z",
                    "s3": {"bucket": {"name": bucket}, "object": obj},
                }
            ]
        }
    )


def test_s3_events_fold_into_one_batch():
    test_event = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b"})
    bodies = [
        test_event,
        "not json",
        s3_event("b", "in/a+b%C3%A9.txt", etag="1", sequencer="0A"),  # URL-encoded: "in/a bé.txt"
        s3_event("b", "in/x.txt", "ObjectRemoved:Delete", sequencer="00B1"),  # arrives first, happened last
        s3_event("b", "in/x.txt", etag="2", sequencer="A0"),
        s3_event("b", "in/y.txt", etag="3", sequencer="01"),
        json.dumps(
            {"Type": "Notification", "Message": s3_event("b", "in/y.txt", etag="4", sequencer="0002")}
        ),  # via SNS, later
        s3_event("b", "out/z.txt"),
        s3_event("other", "in/q.txt"),
        s3_event("b", "in/t.txt", "ObjectTagging:Put"),
    ]
    batch = changes_from_s3_events(bodies, "b", "in/")
    assert (
        batch.changed == [("in/a bé.txt", "1"), ("in/y.txt", "4")]
        and batch.deleted == ["in/x.txt"]
        and batch.seen == len(bodies)
    )
    assert batch.deleted_count == 1 and batch.versions["in/x.txt"] == "b1"
    assert not changes_from_s3_events([test_event], "b", "in/").any
    # the same messages received again hash alike; a later event on the same key does not
    assert changes_from_s3_events(bodies, "b", "in/").signature() == batch.signature()
    assert (
        changes_from_s3_events([*bodies, s3_event("b", "in/y.txt", etag="4", sequencer="03")], "b", "in/").signature()
        != batch.signature()
    )


def test_sqs_sensor_reports_each_change_once(s3_endpoint):
    RecordingStore.batches.clear()
    store = queue_store(s3_endpoint, "events", cls=RecordingStore)
    s3 = store._client()
    config = s3.get_bucket_notification_configuration(Bucket="events")["QueueConfigurations"]
    assert [
        (q["Id"], sorted(q["Events"]), [(r["Name"].lower(), r["Value"]) for r in q["Filter"]["Key"]["FilterRules"]])
        for q in config
    ] == [("agentic-documents", ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"], [("prefix", "incoming/")])]
    policy = json.loads(
        store._sqs().get_queue_attributes(QueueUrl=store.queue_url, AttributeNames=["Policy"])["Attributes"]["Policy"]
    )
    assert policy["Statement"][0]["Condition"]["ArnEquals"]["aws:SourceArn"] == "arn:aws:s3:::events"
    assert store.ensure_notifications() == store.queue_url  # idempotent (S3 sends one more TestEvent)
    assert len(s3.get_bucket_notification_configuration(Bucket="events")["QueueConfigurations"]) == 1
    cursor, run_keys, reported = None, [], []

    def tick():
        nonlocal cursor
        result = new_documents_sensor(dg.build_sensor_context(cursor=cursor, resources={"document_store": store}))
        cursor = result.cursor
        batch = RecordingStore.batches[-1]
        this = {**{("changed", k): e for k, e in batch.changed}, **{("deleted", k): "" for k in batch.deleted}}
        reported.extend((kind, k, e) for (kind, k), e in this.items())
        run_keys.extend(r.run_key for r in result.run_requests)
        assert len(result.run_requests) == (1 if this else 0)
        assert queued(store) == 0  # every message received this tick was deleted once the request was built
        assert len(cursor) < 32  # the queue holds the state
        return this or None

    assert tick() is None  # two TestEvents, nothing else
    keys = [f"incoming/batch one/doc {i:02d}é.txt" for i in range(30)]  # S3 URL-encodes keys in events
    for k in keys:
        store.put(k, k.encode())
    s3.put_object(Bucket="events", Key="elsewhere/x.txt", Body=b"x")  # outside the notification's prefix
    # a queue shared with other prefixes and buckets: their events are dropped
    store._sqs().send_message(QueueUrl=store.queue_url, MessageBody=s3_event("events", "elsewhere/y.txt"))
    store._sqs().send_message(QueueUrl=store.queue_url, MessageBody=s3_event("another-bucket", "incoming/z.txt"))
    etags = {o.key: o.etag for o in store.list_objects()}
    assert tick() == {("changed", k): etags[k] for k in keys}
    assert tick() is None
    for k in keys[:10]:
        store.put(k, b"modified " + k.encode())
    store.put(keys[0], b"modified twice")  # the last event per key wins
    for k in keys[10:15]:
        store.delete(k)
    new = [f"incoming/new-{i}.txt" for i in range(5)]
    for k in new:
        store.put(k, b"new")
    store.put("incoming/ephemeral.txt", b"gone before the tick")
    store.delete("incoming/ephemeral.txt")
    etags = {o.key: o.etag for o in store.list_objects()}
    assert tick() == {
        **{("changed", k): etags[k] for k in keys[:10] + new},
        **{("deleted", k): "" for k in [*keys[10:15], "incoming/ephemeral.txt"]},
    }
    assert tick() is None
    assert len(run_keys) == len(set(run_keys)) == 2
    # every upload, modification and deletion reported exactly once
    assert len(reported) == len({(kind, k, e) for kind, k, e in reported}) == 30 + 10 + 5 + 6


def test_sqs_unacked_messages_come_back(s3_endpoint):
    store = queue_store(s3_endpoint, "redelivery", queue_visibility_s=2)
    store.poll_changes(None)[0].ack()  # the TestEvent
    keys = [f"incoming/{i}.txt" for i in range(12)]
    for k in keys:
        store.put(k, b"x")
    # at most max_messages per tick; what is not received stays for the next one
    first, _ = store.poll_changes(None, max_messages=5)
    rest, _ = store.poll_changes(None)
    assert first.seen == 5 and rest.seen == 7 and {k for k, _ in first.changed + rest.changed} == set(keys)
    # neither batch was acked, as when a tick dies between receiving and building its run request
    assert not store.poll_changes(None)[0].any  # in flight: invisible until the timeout
    time.sleep(2.2)
    result = new_documents_sensor(dg.build_sensor_context(cursor=None, resources={"document_store": store}))
    assert result.run_requests[0].tags["agentic/changed"] == "12"  # nothing was lost
    time.sleep(2.2)
    assert store.poll_changes(None)[0].seen == 0 and queued(store) == 0  # acked: gone for good


def _bulk_put(store: S3DocumentStore, keys: list[str]) -> None:
    """PutObject calls from a thread pool (tiny bodies)."""
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3", region_name=store.region_name, endpoint_url=store.endpoint_url, config=Config(max_pool_connections=8)
    )
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=store.bucket, Key=k, Body=b"."), keys))


def test_sensor_over_20000_objects_on_moto(moto_server, capsys):
    """The sensor over 20,000 objects on moto: seconds per tick and cursor size stay flat as objects grow (SQS);
    a listing tick grows with the bucket (reported, not asserted)."""
    # moto in this process: the backlog is seeded straight into its backend (the moto_endpoint subprocess takes ~300
    # PutObject/s here, 20,000 would take a minute)
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    endpoint, backend = moto_server, s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    queue = queue_store(endpoint, "scale")
    listing = S3DocumentStore(bucket="scale", prefix="incoming/", endpoint_url=endpoint)
    sqs_cursor = list_cursor = None
    rows, total, unlisted = [], 0, 0

    def sensor(store, cursor):
        t0 = time.perf_counter()
        result = new_documents_sensor(dg.build_sensor_context(cursor=cursor, resources={"document_store": store}))
        return result, time.perf_counter() - t0

    for size in (5_000, 10_000, 20_000):
        # the backlog, seeded without events (as if earlier ticks had consumed them)
        for i in range(total, size):
            backend.put_object("scale", f"incoming/bulk/{i:06d}.txt", b".", disable_notification=True)
        unlisted, total = unlisted + size - total, size
        sqs_times = []
        for r in range(2):  # a tick that sees 100 new objects (PutObject over HTTP: real events), best of two
            _bulk_put(queue, [f"incoming/new/{size}-{r}-{j:03d}.txt" for j in range(100)])
            total, unlisted = total + 100, unlisted + 100
            result, seconds = sensor(queue, sqs_cursor)
            assert result.run_requests and result.run_requests[0].tags["agentic/changed"] == "100"
            sqs_cursor = result.cursor
            sqs_times.append(seconds)
        result, list_seconds = sensor(listing, list_cursor)  # one listing tick over the same bucket
        assert result.run_requests[0].tags["agentic/changed"] == str(unlisted)
        list_cursor, unlisted = result.cursor, 0
        rows.append((total, min(sqs_times), len(sqs_cursor), list_seconds, len(list_cursor)))
    with capsys.disabled():
        print("\nobjects  sqs tick s  sqs cursor B  listing tick s  listing cursor B")
        for row in rows:
            print("{:>7}  {:>10.3f}  {:>12}  {:>14.3f}  {:>16}".format(*row))
    (_, sqs5, cur5, _, _), (_, sqs20, cur20, _, _) = rows[0], rows[-1]
    assert sqs20 <= 2 * sqs5 + 0.05  # flat: a tick costs its messages, not the bucket
    assert cur20 == cur5
