"""The pipeline state store: one contract, two implementations (a local folder; S3 on a real moto server)."""

from __future__ import annotations

import os
import uuid
from collections import Counter

import pyarrow as pa
import pytest

from resources.state_store import LocalStateStore, S3StateStore, shard_of, state_store_from_spec


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStateStore(root=str(tmp_path / "state"), shards=8)
    endpoint = request.getfixturevalue("moto_endpoint")
    bucket = f"state-{uuid.uuid4().hex[:10]}"
    s = S3StateStore(bucket=bucket, prefix="pipeline/", endpoint_url=endpoint, shards=8)
    s._client().create_bucket(Bucket=bucket)
    return s


def table(n: int, tag: str = "a") -> pa.Table:
    return pa.table({"key": [f"doc/{i}" for i in range(n)], "tag": [tag] * n})


def test_bytes_json_and_small_tables(store):
    assert store.get_bytes("nothing/here.bin") is None
    store.put_bytes("models/m.bin", b"\x00\x01")
    assert store.get_bytes("models/m.bin") == b"\x00\x01"
    store.write_json("records/r", {"a": 1})
    assert store.read_json("records/r") == {"a": 1} and store.read_json("records/missing", {"d": 0}) == {"d": 0}
    store.write("small", table(3))
    assert store.read("small").equals(table(3))
    assert sorted(store.list_keys("records/")) == ["records/r.json"]
    assert store.delete_keys(["models/m.bin"]) == 1 and store.get_bytes("models/m.bin") is None
    for bad in ("../escape", "/abs", "a/../b", ""):
        with pytest.raises(ValueError):
            store.put_bytes(bad, b"x")


def test_sharded_tables_are_invisible_until_committed_and_replace_atomically(store):
    assert store.layout() == 8
    first = store.write_shard("docs", 3, "in1", table(4), {"rows": 4})
    assert store.manifest("docs") == {} and store.read_shard("docs", 3).num_rows == 0  # not committed yet
    assert store.find_shard("docs", 3, "in1") == first and store.find_shard("docs", 3, "other") is None
    store.commit("docs", {3: first})
    assert store.read_shard("docs", 3).equals(table(4)) and store.table_rows("docs") == 4
    second = store.write_shard("docs", 3, "in2", table(2, "b"))
    assert store.read_shard("docs", 3).num_rows == 4  # readers still see the committed shard
    store.commit("docs", {3: second, 5: store.write_shard("docs", 5, "in1", table(1))})
    assert store.read_shard("docs", 3).equals(table(2, "b")) and store.table_rows("docs") == 3
    assert store.get_bytes(first["object"]) is None  # the replaced object is gone
    assert [s for s, _ in store.iter_shards("docs")] == [3, 5]
    reopened = state_store_from_spec(store.spec())
    assert reopened.read_shard("docs", 5).num_rows == 1
    assert store.drop_table("docs") >= 2 and store.manifest("docs") == {}


def test_shard_count_is_fixed_for_a_store(store):
    store.layout()
    other = state_store_from_spec({**store.spec(), "shards": 16})
    with pytest.raises(ValueError, match="created with 8 shards"):
        other.layout()


def test_shard_of_is_stable_and_spreads_keys():
    keys = [f"pubmed/{i}.xml" for i in range(4000)]
    assert [shard_of(k, 32) for k in keys[:50]] == [shard_of(k, 32) for k in keys[:50]]
    counts = Counter(shard_of(k, 32) for k in keys)
    assert len(counts) == 32 and max(counts.values()) < 2 * 4000 / 32


def test_a_shard_written_before_a_column_was_added_reads_with_it_as_nulls(store):
    """An upgrade adds columns (documents got doc_type and pages): shards written before read with them as nulls,
    whole or by columns, instead of failing the cast."""
    store.commit("docs", {1: store.write_shard("docs", 1, "in1", table(3))})
    newer = pa.schema([("key", pa.string()), ("tag", pa.string()), ("pages", pa.int32())])
    got = store.read_shard("docs", 1, newer)
    assert got.schema == newer and got.column("pages").null_count == 3 and got.column("key").to_pylist()[0] == "doc/0"
    assert store.read_shard("docs", 1, newer, columns=["key", "pages"]).column_names == ["key", "pages"]


FULL_DISK_WRITER = """
import os, resource, signal, sys
import pyarrow as pa
from resources.state_store import LocalStateStore, StateStoreWriteError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing the process
resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
store = LocalStateStore(root=sys.argv[1], shards=8)
try:
    store.write("big", pa.table({"key": [os.urandom(16).hex() for _ in range(20000)]}))  # ~650 KB, incompressible
except StateStoreWriteError as exc:
    print(exc)
    sys.exit(3)
"""


@pytest.mark.contract
def test_a_full_disk_is_a_clear_error_and_nothing_half_written_is_read(tmp_path):
    """The OS refuses the write midway: a real EFBIG from a file size limit (RLIMIT_FSIZE) in a process of its own,
    standing in for ENOSPC, which needs a small filesystem mounted as root. The error names the key and the cause,
    no partial file is left, readers keep the previous version, and once there is room the same write succeeds."""
    import subprocess
    import sys

    from tests.integration.test_knowledge_pipeline import REPO_ROOT

    store = LocalStateStore(root=str(tmp_path / "state"), shards=8)
    store.write("big", table(3, "before"))
    proc = subprocess.run(
        [sys.executable, "-c", FULL_DISK_WRITER, store.root], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "could not write tables/big.parquet" in proc.stdout and "File too large" in proc.stdout, proc.stdout
    assert "disk is full" in proc.stdout and "Nothing was replaced" in proc.stdout
    assert not [p for p in (tmp_path / "state").rglob("*") if p.name.endswith(".tmp")]  # no partial file left
    assert store.read("big").equals(table(3, "before"))  # the previous version, whole
    bigger = pa.table({"key": [os.urandom(16).hex() for _ in range(20000)]})
    store.write("big", bigger)
    assert store.read("big").equals(bigger)
