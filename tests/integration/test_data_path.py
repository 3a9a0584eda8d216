"""The knowledge data path on Ray: bad rows are quarantined and the rest goes on; a killed run resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pyarrow as pa

from assets.knowledge.state import (
    CHUNK_QUARANTINE,
    CHUNKS,
    CHUNKS_TABLE,
    chunk_quarantine_table,
    plan,
    vectors_schema,
    vectors_table,
)
from core.corpus import document_key
from core.knowledge import invalid_vectors
from resources.ray_cluster import RayResource
from resources.ray_jobs import LocalRayJobRunner
from resources.state_store import LocalStateStore
from tests.integration.test_knowledge_pipeline import REPO_ROOT, materialize, seed


def _chunk(i: int, text: str) -> dict:
    return {
        "chunk_id": f"c{i}",
        "doc_key": f"doc/{i}",
        "content_hash": "h",
        "chunker_version": "v",
        "doc_id": str(i),
        "seq": 0,
        "title": f"title {i}",
        "text": text,
        "section": "",
        "year": 2020,
        "journal": "j",
        "mesh_terms": [],
        "source_format": "text",
        "n_tokens": 5,
    }


def _embed_committed_chunks(store, embedder_resource, ray_address) -> tuple[str, str, dict]:
    """Run the embed stage over the store's committed chunks with one actor (so small shards share one call)."""
    vtable, qtable = vectors_table(embedder_resource.model_id), chunk_quarantine_table(embedder_resource.model_id)
    payload = {
        "items": plan(store, vtable, (CHUNKS_TABLE,), "test", prev=(vtable,)),
        "embedder": embedder_resource.spec(),
        "actors": 1,
        "vectors_table": vtable,
        "quarantine_table": qtable,
        "store": store.spec(),
    }
    runner = LocalRayJobRunner(ray_cluster=RayResource(address=ray_address))
    return vtable, qtable, runner.run("resources.data_path:embed_stage", payload)


def test_invalid_vectors_are_named():
    v = np.eye(3, 4, dtype=np.float32)
    v[1, 0] = np.nan
    v[2] = 0
    assert invalid_vectors(v, 4) == [None, "non-finite vector (NaN/inf)", "zero vector"]
    assert invalid_vectors(v, 8)[0].startswith("vector of dimension 4")


def test_a_poison_chunk_is_quarantined_and_the_rest_of_its_shard_is_embedded(tmp_path, embedder_resource, ray_address):
    store = LocalStateStore(root=str(tmp_path / "state"), shards=2)
    store.layout()
    rows = [
        _chunk(0, "Aspirin reduced the risk of stroke in adults."),
        _chunk(1, "   \n "),
        _chunk(2, "Statins lowered LDL cholesterol."),
    ]
    store.commit(CHUNKS_TABLE, {0: store.write_shard(CHUNKS_TABLE, 0, "x", pa.Table.from_pylist(rows, schema=CHUNKS))})
    vtable, qtable, result = _embed_committed_chunks(store, embedder_resource, ray_address)
    vectors = store.read_shard(vtable, 0, vectors_schema(384), entry=result["entries"][vtable]["0"])
    quarantine = store.read_shard(qtable, 0, CHUNK_QUARANTINE, entry=result["entries"][qtable]["0"]).to_pylist()
    assert sorted(vectors.column("chunk_id").to_pylist()) == ["c0", "c2"]
    assert [(q["chunk_id"], q["doc_key"]) for q in quarantine] == [("c1", "doc/1")] and "empty text" in quarantine[0][
        "reason"
    ]
    norms = np.linalg.norm(np.stack(vectors.column("vector").to_numpy(zero_copy_only=False)), axis=1)
    assert np.allclose(norms, 1, atol=1e-3)


def test_shards_embedded_together_each_get_their_own_vectors(tmp_path, embedder_resource, ray_address):
    """Small shards share one length-sorted embedding call: every shard must still get exactly its own chunks'
    vectors (the same as embedding them alone) and its own quarantined rows."""
    store = LocalStateStore(root=str(tmp_path / "state"), shards=4)
    store.layout()
    texts = {
        0: ["Aspirin reduced the risk of stroke in adults.", "Warfarin needs monitoring of the INR."],
        1: ["Statins lowered LDL cholesterol.", " ", "Metformin is first-line therapy for type 2 diabetes."],
        3: ["Beta blockers after myocardial infarction reduce mortality " * 6],
    }
    entries, i = {}, 0
    for shard, shard_texts in texts.items():
        rows = []
        for t in shard_texts:
            rows.append(_chunk(i, t))
            i += 1
        entries[shard] = store.write_shard(CHUNKS_TABLE, shard, f"in{shard}", pa.Table.from_pylist(rows, schema=CHUNKS))
    store.commit(CHUNKS_TABLE, entries)
    vtable, qtable, result = _embed_committed_chunks(store, embedder_resource, ray_address)
    assert result["shards"] == 3
    alone = embedder_resource.build(threads=1)
    all_texts = [t for ts in texts.values() for t in ts if t.strip()]
    reference = alone.embed(all_texts)  # int8 dynamic quantization: vectors depend slightly on the batch they were in
    for shard, shard_texts in texts.items():
        got = store.read_shard(vtable, shard, vectors_schema(384), entry=result["entries"][vtable][str(shard)])
        chunks = store.read_shard(CHUNKS_TABLE, shard, CHUNKS)
        by_id = dict(zip(chunks.column("chunk_id").to_pylist(), chunks.column("text").to_pylist()))
        ids = got.column("chunk_id").to_pylist()
        assert set(ids) == {c for c, t in by_id.items() if t.strip()}  # exactly its own embeddable chunks
        vectors = np.stack(got.column("vector").to_numpy(zero_copy_only=False))
        best = (vectors @ reference.T).argmax(axis=1)  # each vector is nearest to its own text, of all shards' texts
        assert [all_texts[b] for b in best] == [by_id[c] for c in ids], f"shard {shard} got another shard's vectors"
        assert ((vectors @ reference.T).max(axis=1) > 0.99).all()
        quarantined = store.read_shard(qtable, shard, CHUNK_QUARANTINE, entry=result["entries"][qtable][str(shard)])
        assert quarantined.column("chunk_id").to_pylist() == [c for c, t in by_id.items() if not t.strip()]


def _assert_exact_index(res, meta) -> None:
    """The run's index generation holds each live chunk once: no duplicate, none missing."""
    gen = meta["vector_index"]["generation"]
    ids = res["vector_store"].scan(gen, ["chunk_id"]).column("chunk_id").to_pylist()
    assert len(ids) == len(set(ids)) == meta["document_chunks"]["chunks"]


EMBED_START = 'Started execution of step "chunk_embeddings"'
KILLED_RUN = textwrap.dedent("""
    import json
    import sys
    import dagster as dg
    from assets.knowledge import knowledge_assets
    from pipelines.profiles import build_resources
    from pipelines.settings import Settings
    from pathlib import Path
    rules = tuple((prefix, tuple(groups)) for prefix, groups in json.loads(sys.argv[4]))
    settings = Settings(profile="local", home=Path(sys.argv[1]), cache=Path(sys.argv[2]), corpus_limit=0,
                        ray_address=sys.argv[3], access_rules=rules)
    dg.materialize(knowledge_assets, resources=build_resources(settings), instance=dg.DagsterInstance.ephemeral())
""")


def test_a_run_killed_while_embedding_resumes_and_the_index_is_exact(indexed_copy, pubmed_sample, ray_address):
    """150 new articles arrive in a copy of the indexed home; the run that embeds them is killed mid-embedding."""
    settings, res = indexed_copy.settings, indexed_copy.resources
    seed(res, {document_key(p): d for p, d in pubmed_sample[150:300]})  # none of them in the indexed home
    state = res["pipeline_state"]
    vtable = vectors_table(res["embedder"].model_id)
    committed, chunks_before = state.manifest(vtable), state.table_rows(CHUNKS_TABLE)
    before = set(state.list_keys(f"sharded/{vtable}/"))
    rules = json.dumps([[prefix, list(groups)] for prefix, groups in settings.access_rules])
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, str(settings.home), str(settings.cache), ray_address, rules],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    written = []
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            written = [
                k
                for k in set(state.list_keys(f"sharded/{vtable}/")) - before
                if k.endswith(".json") and "_manifest" not in k
            ]
            if written:
                break
            time.sleep(0.05)
        assert written and proc.poll() is None, (
            "the embedding stage never started (or the run ended before it could be killed)"
        )
        os.killpg(
            proc.pid, signal.SIGKILL
        )  # the step process dies mid-batch; the Ray cluster lives on, as KubeRay's would
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert state.manifest(vtable) == committed  # nothing was committed: the killed step never finished

    meta, checks, _ = materialize(settings)
    assert checks and all(checks.values()), checks
    emb = meta["chunk_embeddings"]
    assert emb["resumed_shards"] >= 1  # the shards the killed attempt had finished are not embedded again
    new_chunks = meta["document_chunks"]["chunks"] - chunks_before
    assert 0 < emb["embedded_this_run"] < new_chunks and meta["document_chunks"]["chunks"] == emb["live_chunks"]
    assert meta["parsed_documents"]["parsed_this_run"] == 0 and meta["document_chunks"]["rechunked_documents"] == 0
    _assert_exact_index(res, meta)


def test_the_ray_head_killed_mid_embedding_the_retry_resumes_and_the_index_is_exact(
    indexed_copy, pubmed_sample, ray_token, tmp_path
):
    """The run embeds on a Ray head of its own, which is killed (SIGKILL: GCS, raylet, agents; the workers die with
    their raylet) a few seconds into the embedding: nothing is committed, the run ends with an error within seconds
    instead of hanging, and the retry, on another cluster (as KubeRay starts a new head), embeds what the dead run had
    not written and ends with an exact index."""
    from infra.local.processes import pids_naming
    from tests.helpers import ray_head_process

    settings, res = indexed_copy.settings, indexed_copy.resources
    seed(res, {document_key(p): d for p, d in pubmed_sample[150:300]})  # none of them in the indexed home
    state = res["pipeline_state"]
    vtable = vectors_table(res["embedder"].model_id)
    committed, chunks_before = state.manifest(vtable), state.table_rows(CHUNKS_TABLE)
    rules = json.dumps([[prefix, list(groups)] for prefix, groups in settings.access_rules])
    log_path = tmp_path / "run.log"
    with ray_head_process(ray_token.read_text().strip(), dashboard=False) as head, open(log_path, "wb") as log:
        head_pids = pids_naming(head["root"] + "/")
        assert head_pids
        # the driver gives up on a lost GCS after 10 s, not Ray's default minute
        env = {**os.environ, "RAY_gcs_rpc_server_reconnect_timeout_s": "10"}
        proc = subprocess.Popen(
            [sys.executable, "-c", KILLED_RUN, str(settings.home), str(settings.cache), head["gcs"], rules],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.time() + 300
            while time.time() < deadline and proc.poll() is None and EMBED_START not in log_path.read_text():
                time.sleep(0.05)
            assert proc.poll() is None and EMBED_START in log_path.read_text(), log_path.read_text()[-3000:]
            time.sleep(3)  # into the embedding (it takes ~10 s here), past the Ray Data pipeline's start
            assert "execution finished" not in log_path.read_text(), "the embedding ended before the head was killed"
            for pid in head_pids:
                os.kill(pid, signal.SIGKILL)
            t0 = time.time()
            ended = proc.wait(120)  # bounded: a driver that hung on the dead head fails here
            assert ended != 0, log_path.read_text()[-5000:]
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    print(f"the run whose head was killed ended {time.time() - t0:.1f} s after the kill, exit {ended}")
    assert state.manifest(vtable) == committed  # nothing was committed by the run whose head died

    meta, checks, _ = materialize(settings)  # the retry, on the session's Ray cluster
    assert checks and all(checks.values()), checks
    emb = meta["chunk_embeddings"]
    new_chunks = meta["document_chunks"]["chunks"] - chunks_before
    assert 0 < emb["embedded_this_run"] <= new_chunks and meta["document_chunks"]["chunks"] == emb["live_chunks"]
    _assert_exact_index(res, meta)
    # measured: the killed run had written no shard (small shards share one length-sorted call, written when it
    # ends), so the retry embedded all 327 new chunks; shards written before a kill are resumed (the test above)
    print(f"retry: {emb['embedded_this_run']} chunks embedded, {emb['resumed_shards']} shards resumed")
