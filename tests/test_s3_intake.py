"""S3 intake against a real moto server: the S3 document store and the new-documents sensor."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from assets.knowledge import knowledge_assets, knowledge_checks
from core.corpus import ARTICLE_TABLE, document_key, load_sample
from core.sensing import ChangeCursor, detect_changes
from pipelines.profiles import build_resources
from pipelines.sensors import new_documents_sensor
from resources.document_store import S3DocumentStore
from tests.helpers import free_port

# moto accepts any credentials; these throwaway values only satisfy botocore's signer.
TEST_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3_endpoint():
    saved = {k: os.environ.get(k) for k in TEST_CREDENTIALS}
    os.environ.update(TEST_CREDENTIALS)
    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            break
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


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
        out = dg.materialize([*knowledge_assets, *knowledge_checks], resources=resources, instance=instance, tags={"dagster/run_key": run_keys[-1]})
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
    again = new_documents_sensor(dg.build_sensor_context(cursor=before_reseen, instance=instance, resources={"document_store": store}))
    assert again.run_requests[0].run_key == run_keys[-1]
    assert tick() is None

    assert len(set(run_keys)) == len(run_keys) == 3
    assert parsed_total == versions == 520  # every object version parsed exactly once
    gen = resources["vector_store"].serving_generation()
    indexed = {r["doc_key"] for r in resources["vector_store"].scan(gen, ["doc_key"]).to_pylist()}
    assert indexed == {o.key for o in store.list_objects()}
    assert len(indexed) == 470
