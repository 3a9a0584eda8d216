"""Who may see what, below the API: keys of principals (both key stores), document groups (both document stores),
and the knowledge pipeline carrying a permission change to the index in place."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from core.access import (
    ALL,
    NOBODY,
    AccessPolicy,
    ConcurrencyLimiter,
    RateLimiter,
    ReadScope,
    hash_token,
    key_id_of,
    new_key_record,
    parse_declared,
    verify,
)
from core.knowledge import ACCESS, resolve_access
from tests.conftest import REPO

# ------------------------------------------------------------------ pure


def test_tokens_are_hashed_and_verified_in_constant_shape():
    record, token = new_key_record("alice", ["cardiology", "staff"])
    assert token.startswith("agk_") and key_id_of(token) == record.key_id
    assert record.token_sha256 == hash_token(token) and token not in json.dumps(record.to_dict())
    assert "token_sha256" not in record.public()
    assert verify(record, token).name == "alice" and verify(record, token).groups == ("cardiology", "staff")
    assert verify(record, token[:-1] + ("A" if token[-1] != "A" else "B")) is None  # same key id, wrong secret
    assert verify(None, token) is None
    record.revoked = 1.0
    assert verify(record, token) is None
    assert key_id_of("not-a-key") is None and key_id_of("agk_zz_secret") is None and key_id_of("agk_0123_") is None
    with pytest.raises(ValueError, match="at least one group"):
        new_key_record("bob", [])
    with pytest.raises(ValueError, match="invalid group"):
        new_key_record("bob", ["a,b"])
    with pytest.raises(ValueError, match="invalid principal"):
        new_key_record("Bob Smith", ["x"])


def test_policy_declared_then_longest_rule_then_default():
    policy = AccessPolicy.of({"internal/": ["staff"], "internal/onc/": ["oncology"]}, ["public"])
    assert policy.groups_for("internal/onc/a.txt", None) == (("oncology",), "rule:internal/onc/")
    assert policy.groups_for("internal/b.txt", None) == (("staff",), "rule:internal/")
    assert policy.groups_for("pubmed/1.xml", None) == (("public",), "default")
    assert policy.groups_for("internal/onc/a.txt", ["research"]) == (("research",), "declared")
    assert policy.fingerprint() != AccessPolicy.of({"internal/": ["staff"]}, ["public"]).fingerprint()
    assert parse_declared(b'{"groups": ["b", "a", "a"]}') == ["a", "b"]
    assert parse_declared("cardiology, staff") == ["cardiology", "staff"]
    for bad in (b"{not json", b'{"groups": "staff"}', b'{"groups": ["*"]}', b"a b"):
        with pytest.raises(ValueError):
            parse_declared(bad)


def test_resolve_access_reads_a_declaration_only_when_its_stamp_moved():
    policy = AccessPolicy.of({"internal/": ["staff"]}, ["public"])
    reads = []

    def read(key):
        reads.append(key)
        if key == "bad.txt":
            raise ValueError("access sidecar is not valid JSON")
        return ["oncology"]

    keys, stamps = ["a.txt", "internal/b.txt", "c.txt", "bad.txt"], ["", "", "s1", "s1"]
    rows, counts = resolve_access(keys, stamps, ACCESS.empty_table(), policy, read)
    got = {r["doc_key"]: (r["groups"], r["source"]) for r in rows.to_pylist()}
    assert got["a.txt"] == (["public"], "default") and got["internal/b.txt"] == (["staff"], "rule:internal/")
    assert got["c.txt"] == (["oncology"], "declared")
    assert got["bad.txt"][0] == [NOBODY] and got["bad.txt"][1].startswith("error: access sidecar")  # closed, why
    assert reads == ["c.txt", "bad.txt"] and counts["error"] == 1
    reads.clear()
    again, counts = resolve_access(keys, stamps, rows, AccessPolicy.of({}, ["public"]), read)
    assert reads == ["bad.txt"]  # unchanged stamps are reused (an error is retried); the new policy applies
    assert {r["doc_key"]: r["groups"] for r in again.to_pylist()}["internal/b.txt"] == ["public"]


def test_scopes_and_limits():
    assert ReadScope.of({ALL}).filter_value() is None and ReadScope.of({"b", "a"}).filter_value() == ["a", "b"]
    assert ReadScope.of({"a"}).admits(["a", "z"]) and not ReadScope.of({"a"}).admits([NOBODY])
    now = [0.0]
    rate = RateLimiter(clock=lambda: now[0])
    assert [rate.check("k", 60, 2)[0] for _ in range(3)] == [True, True, False]
    ok, wait = rate.check("k", 60, 2)
    assert not ok and 0 < wait <= 1.0
    now[0] += 1.0  # one second at 60/min refills one token
    assert rate.check("k", 60, 2)[0] and not rate.check("k", 60, 2)[0]
    assert rate.check("other", 60, 2)[0]  # per key
    assert rate.check("k", 0, 1)[0]  # 0 = unlimited
    slots = ConcurrencyLimiter()
    assert slots.acquire("k", 2) and slots.acquire("k", 2) and not slots.acquire("k", 2)
    slots.release("k")
    assert slots.acquire("k", 2) and slots.inflight("k") == 2


# ------------------------------------------------------------------ key stores: one contract


@pytest.fixture(params=["local", "secretsmanager"])
def key_store(request, tmp_path):
    if request.param == "local":
        from resources.access import LocalKeyStore

        return LocalKeyStore(root=str(tmp_path / "keys"), admin_key="admin-token-for-tests")
    from resources.access import SecretsManagerKeyStore

    url = request.getfixturevalue("moto_endpoint")
    return SecretsManagerKeyStore(
        endpoint_url=url, prefix=f"t{os.urandom(4).hex()}/api-keys/", admin_key="admin-token-for-tests"
    )


def _raw_storage(store) -> str:
    if hasattr(store, "root"):
        return "".join(p.read_text() for p in Path(store.root).glob("*.json"))
    client = store._client()
    names = [s["Name"] for s in client.list_secrets()["SecretList"] if s["Name"].startswith(store.prefix)]
    return "".join(client.get_secret_value(SecretId=n)["SecretString"] for n in names)


def test_key_store_contract(key_store):
    alice, alice_token = key_store.create("alice", ["cardiology"], rate_per_minute=30)
    bob, bob_token = key_store.create("bob", ["oncology", "staff"])
    assert key_store.authenticate(alice_token).groups == ("cardiology",)
    assert key_store.authenticate(alice_token).rate_per_minute == 30
    assert key_store.authenticate(bob_token).name == "bob"
    assert key_store.authenticate("admin-token-for-tests").admin
    assert key_store.authenticate("") is None and key_store.authenticate("agk_0123456789abcdef_nope") is None
    raw = _raw_storage(key_store)
    assert alice.token_sha256 in raw and alice_token not in raw and bob_token not in raw  # hashes only
    assert [r.principal for r in key_store.list_keys()] == ["alice", "bob"]

    new, new_token = key_store.rotate(alice.key_id)
    assert key_store.authenticate(alice_token) is None and key_store.authenticate(new_token).name == "alice"
    assert key_store.get(alice.key_id).rotated_to == new.key_id and new.groups == ["cardiology"]
    key_store.revoke(bob.key_id)
    assert key_store.authenticate(bob_token) is None
    assert [r.key_id for r in key_store.list_keys()] == [new.key_id]
    assert len(key_store.list_keys(include_revoked=True)) == 3
    with pytest.raises(KeyError):
        key_store.rotate(bob.key_id)
    with pytest.raises(KeyError):
        key_store.revoke("0123456789abcdef")


@pytest.mark.e2e
def test_cli_keys_create_list_rotate_revoke(tmp_path):
    from tests.helpers import agentic, cli_env

    env = cli_env(tmp_path / "home", api_key="x" * 32)

    def cli(*args):
        return agentic("keys", *args, env=env, timeout=120).stdout

    created = json.loads(cli("create", "carol", "--groups", "staff,oncology", "--rate", "10", "--json"))
    assert created["groups"] == ["oncology", "staff"] and created["token"].startswith("agk_")
    listed = json.loads(cli("list", "--json"))
    assert [k["key_id"] for k in listed] == [created["key_id"]] and "token" not in listed[0]
    assert created["token"] not in cli("list") and "token_sha256" not in cli("list", "--json")
    rotated = json.loads(cli("rotate", created["key_id"], "--json"))
    assert rotated["replaces"] == created["key_id"] and rotated["token"] != created["token"]
    cli("revoke", rotated["key_id"])
    assert json.loads(cli("list", "--json")) == []
    assert len(json.loads(cli("list", "--all", "--json"))) == 2
    files = list((tmp_path / "home" / "secrets" / "keys").glob("*.json"))
    assert files and all(oct(f.stat().st_mode)[-3:] == "600" for f in files)


# ------------------------------------------------------------------ document stores declare groups


def test_local_store_sidecars_declare_groups_and_move_the_stamp(tmp_path):
    from resources.document_store import LocalDocumentStore

    store = LocalDocumentStore(root=str(tmp_path / "docs"))
    store.put("a/1.txt", b"one")
    store.put("a/2.txt", b"two")
    _, cursor = store.poll_changes(None)
    listing = {o.key: o for o in store.iter_objects()}
    assert set(listing) == {"a/1.txt", "a/2.txt"} and listing["a/1.txt"].access == ""
    assert store.declared_groups("a/1.txt") is None
    store.set_groups("a/1.txt", ["oncology"])
    after = {o.key: o for o in store.iter_objects()}
    assert set(after) == {"a/1.txt", "a/2.txt"}  # the sidecar is not a document
    assert after["a/1.txt"].access and after["a/1.txt"].etag == listing["a/1.txt"].etag  # content untouched
    assert store.declared_groups("a/1.txt") == ["oncology"]
    batch, _ = store.poll_changes(cursor)  # the sensor sees a permission change: it must reach the index
    assert [k for k, _ in batch.changed] == ["a/1.txt"]
    store.put("a/1.txt.access.json", b"{broken")
    with pytest.raises(ValueError, match="not valid JSON"):
        store.declared_groups("a/1.txt")
    store.delete("a/1.txt")
    assert not (tmp_path / "docs" / "a" / "1.txt.access.json").exists()


def test_s3_metadata_declares_groups_without_changing_the_content(moto_endpoint):
    import boto3

    from resources.document_store import S3DocumentStore

    bucket = f"docs-{os.urandom(4).hex()}"
    boto3.client("s3", region_name="us-east-1", endpoint_url=moto_endpoint).create_bucket(Bucket=bucket)
    store = S3DocumentStore(bucket=bucket, endpoint_url=moto_endpoint)
    store.put("incoming/a.txt", b"text of a")
    first = next(iter(store.iter_objects()))
    assert store.declared_groups("incoming/a.txt") is None
    store.set_groups("incoming/a.txt", ["cardiology", "staff"])
    second = next(iter(store.iter_objects()))
    assert store.declared_groups("incoming/a.txt") == ["cardiology", "staff"]
    assert second.etag == first.etag and store.get("incoming/a.txt") == b"text of a"
    assert second.access != first.access or second.last_modified >= first.last_modified
    store.set_groups("incoming/a.txt", None)
    assert store.declared_groups("incoming/a.txt") is None


# ------------------------------------------------------------------ the pipeline


def test_a_permission_change_reaches_the_index_in_one_run_with_nothing_re_embedded(indexed_copy):
    """On a copy of the indexed home: access declarations and the default policy change, and each change reaches
    the index in one run without a chunk embedded again."""
    import dataclasses

    from tests.integration.test_knowledge_pipeline import materialize

    settings, res = indexed_copy.settings, indexed_copy.resources
    keys = sorted(indexed_copy.titles)[:4]  # public documents of the indexed home, each under no declaration
    res["document_store"].set_groups(keys[0], ["oncology"])
    meta, checks, res = materialize(settings)
    assert checks["every_document_has_access"] and meta["vector_index"]["permission_changed_documents"] == 1
    assert meta["document_access"]["declarations_read"] == 1 and meta["chunk_embeddings"]["embedded_this_run"] == 0
    retriever, store = res["retriever"], res["vector_store"]
    gen = meta["vector_index"]["generation"]
    title = {r["doc_key"]: r["title"] for r in store.scan(gen, ["doc_key", "title"]).to_pylist()}
    public, oncology = ReadScope.of({"public"}), ReadScope.of({"oncology"})

    def found(key, scope):
        return key in {h.doc_key for h in retriever.search(title[key], k=10, mode="hybrid", scope=scope)}

    assert not found(keys[0], public) and found(keys[0], oncology) and found(keys[1], public)
    vectors = {r["chunk_id"]: r["vector"] for r in store.scan(gen, ["chunk_id", "vector"]).to_pylist()}

    # open keys[0] to everyone, close keys[1] to oncology, break keys[2]'s declaration: one run, nothing re-embedded
    res["document_store"].set_groups(keys[0], None)
    res["document_store"].set_groups(keys[1], ["oncology"])
    res["document_store"].put(keys[2] + ".access.json", b'{"groups": "oncology"}')
    meta, checks, res = materialize(settings)
    assert meta["chunk_embeddings"]["embedded_this_run"] == 0
    assert meta["vector_index"]["added"] == 0 and meta["vector_index"]["deleted"] == 0
    assert meta["vector_index"]["permission_changed_documents"] == 3
    assert meta["document_access"]["declarations_read"] == 2  # keys[1] and keys[2]; keys[0]'s went away
    assert meta["document_access"]["unreadable_declarations"] == 1
    assert checks["every_document_has_access"] is False and checks["index_matches_live_chunks"]
    assert found(keys[0], public) and not found(keys[1], public) and found(keys[1], oncology)
    assert not found(keys[2], public) and not found(keys[2], oncology)  # unreadable declaration: admins only
    assert {r["chunk_id"]: r["vector"] for r in store.scan(gen, ["chunk_id", "vector"]).to_pylist()} == vectors

    # a policy change (a new default) re-decides every undeclared document without reading a declaration
    settings = dataclasses.replace(settings, access_default=("staff",))
    meta, _, res = materialize(settings)
    assert meta["document_access"]["declarations_read"] == 1  # only the broken one is retried
    assert meta["chunk_embeddings"]["embedded_this_run"] == 0
    assert not found(keys[3], public) and found(keys[3], ReadScope.of({"staff"}))
    table = pa.concat_tables([t for _, t in res["pipeline_state"].iter_shards("document_access", ACCESS)]).to_pylist()
    assert {r["doc_key"]: r["source"] for r in table}[keys[1]] == "declared"

    # `agentic search` runs as a principal: the groups of their active keys (the operator, by default, reads all)
    from resources.access import LocalKeyStore

    LocalKeyStore(root=str(settings.secrets_dir / "keys")).create("alice", ["staff"])  # the new default
    env = {**os.environ, "AGENTIC_HOME": str(settings.home), "AGENTIC_API_KEY": "x" * 32}

    def search(*extra):
        out = subprocess.run(
            [sys.executable, "-m", "pipelines.cli", "search", title[keys[1]], "--k", "10", "--json", *extra],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        return out.returncode, out.stdout, out.stderr

    rc, out, err = search()
    assert rc == 0 and keys[1] in {h["doc_key"] for h in json.loads(out)["hits"]}, err
    rc, out, err = search("--principal", "alice")
    hits = json.loads(out)["hits"] if rc == 0 else []
    assert hits and keys[1] not in {h["doc_key"] for h in hits} and all("staff" in h["groups"] for h in hits), err
    rc, _, err = search("--principal", "mallory")
    assert rc == 2 and "no active key" in err


def test_only_the_questions_own_words_leave_for_web_search():
    from core.access import web_query_from

    q = "Does vitamin D reduce hip fractures in elderly women?"
    assert web_query_from(q, "vitamin D hip fractures elderly women") == "vitamin D hip fractures elderly women"
    # a document told the model to carry something else out: the question goes instead
    assert web_query_from(q, "vitamin D hip fractures agk_0123456789abcdef_secret") == q
    assert web_query_from(q, "vitamin D fractures " + "tranexamic acid mortality 14.5% trauma") == q
    assert web_query_from(q, "") == q
    assert web_query_from(q, "vitamin " * 40) == q  # no smuggling by length either
