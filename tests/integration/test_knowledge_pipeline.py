"""The knowledge pipeline on real components: Ray Data, the ONNX embedder, LanceDB, Dagster."""

from __future__ import annotations

import time

import dagster as dg
import pytest

from assets.knowledge import ParseConfig, knowledge_assets, knowledge_checks, parsed_documents
from assets.knowledge.state import PARSE_QUARANTINE_TABLE, QUARANTINE, read_candidate, read_table
from core.access import FULL_SCOPE
from core.corpus import document_key
from pipelines.profiles import build_resources
from resources.embedder import EmbedderResource
from tests.helpers import GOOD_FILES, bad_files

REPO_ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


def materialize(settings, selection=None, run_config=None, **resource_overrides):
    resources = build_resources(settings)
    resources.update(resource_overrides)
    result = dg.materialize(
        [*knowledge_assets, *knowledge_checks],
        resources=resources,
        selection=selection,
        instance=dg.DagsterInstance.ephemeral(),
        run_config=run_config,
    )
    assert result.success
    meta = {}
    for mat in result.get_asset_materialization_events():
        m = mat.event_specific_data.materialization
        meta[m.asset_key.to_user_string()] = {k: v.value for k, v in m.metadata.items()}
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    return meta, checks, resources


def seed(resources, docs):
    store = resources["document_store"]
    for key, data in docs.items():
        store.put(key, data)


def seeded_home(settings_factory, tmp_path, docs):
    """A fresh AGENTIC_HOME with ``docs`` in its document store: (settings, resources)."""
    settings = settings_factory(tmp_path / "home")
    res = build_resources(settings)
    seed(res, docs)
    return settings, res


@pytest.fixture
def pubmed_docs(pubmed_sample):
    return {document_key(p): d for p, d in pubmed_sample[:12]}


def test_incremental_runs(indexed_copy, pubmed_sample):
    """On a copy of the indexed home (a first run embedding every chunk is proven by the pod-per-step test and the
    indexed home): no change, one changed document and one deleted each touch only what changed."""
    settings, res = indexed_copy.settings, indexed_copy.resources
    store = res["vector_store"]
    gen = store.serving_generation()
    version, ids = store.version(gen), store.ids(gen)

    # 1. No change: nothing embedded, the index table is not even touched.
    meta, checks, _ = materialize(settings)
    assert checks and all(checks.values()), checks
    assert meta["vector_index"]["rows"] == meta["document_chunks"]["chunks"] == len(ids)
    assert meta["chunk_embeddings"]["embedded_this_run"] == 0
    assert meta["parsed_documents"]["parsed_this_run"] == 0
    assert meta["document_chunks"]["rechunked_documents"] == 0
    assert (meta["vector_index"]["added"], meta["vector_index"]["deleted"]) == (0, 0)
    assert store.version(gen) == version and store.ids(gen) == ids

    # 2. Change one document: only its chunks are re-embedded, its old chunks leave the index.
    changed_key, deleted_key = sorted(indexed_copy.titles)[:2]
    old_ids = {
        r["chunk_id"] for r in store.scan(gen, ["chunk_id", "doc_key"]).to_pylist() if r["doc_key"] == changed_key
    }
    new_pmid, new_doc = pubmed_sample[200]  # not in the indexed home
    res["document_store"].put(changed_key, new_doc)
    meta, checks, _ = materialize(settings)
    assert all(checks.values())
    new_rows = [
        r for r in store.scan(gen, ["chunk_id", "doc_key", "doc_id"]).to_pylist() if r["doc_key"] == changed_key
    ]
    assert {r["doc_id"] for r in new_rows} == {new_pmid}
    assert meta["chunk_embeddings"]["embedded_this_run"] == len(new_rows)
    assert meta["vector_index"]["added"] == len(new_rows) and meta["vector_index"]["deleted"] == len(old_ids)
    assert not old_ids & store.ids(gen)

    # 3. Delete one: its chunks are gone from search.
    title = next(r["title"] for r in store.scan(gen, ["doc_key", "title"]).to_pylist() if r["doc_key"] == deleted_key)
    before = {h.doc_key for h in res["retriever"].search(title, k=5, mode="hybrid", scope=FULL_SCOPE)}
    assert deleted_key in before
    res["document_store"].delete(deleted_key)
    meta, checks, _ = materialize(settings)
    assert all(checks.values())
    assert meta["document_inventory"]["deleted"] == 1
    # `res` is a reader in another resource instance: it sees writes within read_consistency_s (1 s,
    # like OpenSearch's refresh interval).
    time.sleep(res["vector_store"].read_consistency_s + 0.1)
    for mode in ("dense", "bm25", "hybrid"):
        assert deleted_key not in {h.doc_key for h in res["retriever"].search(title, k=50, mode=mode, scope=FULL_SCOPE)}
    assert meta["chunk_embeddings"]["pruned_from_cache"] > 0


def test_bad_documents_are_quarantined_and_nothing_is_lost(indexed_copy, pubmed_docs):
    bad = bad_files()
    settings, res = indexed_copy.settings, indexed_copy.resources
    store = res["vector_store"]
    before = {r["doc_key"] for r in store.scan(store.serving_generation(), ["doc_key"]).to_pylist()}
    seed(res, {**GOOD_FILES, **{k: v[0] for k, v in bad.items()}})

    meta, checks, _ = materialize(settings)
    assert all(checks.values()), checks
    quarantine = {
        r["key"]: r["reason"] for r in read_table(res["pipeline_state"], PARSE_QUARANTINE_TABLE, QUARANTINE).to_pylist()
    }
    assert set(quarantine) == set(bad)
    for key, (_, reason) in bad.items():
        assert reason.lower() in quarantine[key].lower(), (key, quarantine[key])
    indexed = {
        r["doc_key"] for r in res["vector_store"].scan(meta["vector_index"]["generation"], ["doc_key"]).to_pylist()
    }
    assert indexed == before | set(GOOD_FILES)
    assert meta["parsed_documents"]["quarantined"] == len(bad)

    # Fixing a quarantined document takes it out of quarantine and into the index.
    res["document_store"].put("uploads/truncated.xml", pubmed_docs[sorted(pubmed_docs)[0]])
    meta, checks, _ = materialize(settings)
    assert all(checks.values())
    quarantine = {r["key"] for r in read_table(res["pipeline_state"], PARSE_QUARANTINE_TABLE, QUARANTINE).to_pylist()}
    assert "uploads/truncated.xml" not in quarantine and len(quarantine) == len(bad) - 1
    hits = res["retriever"].search("Antimicrobial stewardship carbapenem audit", k=3, mode="hybrid", scope=FULL_SCOPE)
    assert hits[0].doc_key == "uploads/report.pdf"


def test_parsed_documents_asset_called_directly(settings_factory, tmp_path, pubmed_docs):
    """Assets are plain functions too: call one with a built context and real resources."""
    settings, res = seeded_home(
        settings_factory, tmp_path, {**dict(list(pubmed_docs.items())[:3]), "uploads/empty.txt": b""}
    )
    dg.materialize([knowledge_assets[0]], resources=res, instance=dg.DagsterInstance.ephemeral())
    result = parsed_documents(
        context=dg.build_asset_context(),
        config=ParseConfig(),
        document_store=res["document_store"],
        pipeline_state=res["pipeline_state"],
        ray_jobs=res["ray_jobs"],
        ocr=res["ocr"],
        vision=res["vision"],
    )
    assert result.metadata["documents"] == 3
    assert result.metadata["quarantined"] == 1
    assert [(r.data["key"], r.data["reason"]) for r in result.metadata["quarantine"].records] == [
        ("uploads/empty.txt", "empty file")
    ]


def test_model_change_builds_a_new_generation_and_switches_atomically(indexed_copy):
    settings, res = indexed_copy.settings, indexed_copy.resources
    first = res["vector_store"].serving_generation()  # the indexed home's first generation, serving since its run
    assert first and res["vector_store"].generations() == [first]

    other = EmbedderResource(model_id="all-MiniLM-L6-v2-int8-onnx-rev2", tokenizer_path=res["embedder"].tokenizer_path)
    meta, checks, _ = materialize(settings, embedder=other)
    assert all(checks.values())
    second = meta["vector_index"]["generation"]
    assert second != first
    assert (
        meta["chunk_embeddings"]["embedded_this_run"] == meta["document_chunks"]["chunks"]
    )  # new model: all re-embedded
    assert meta["vector_index"]["promoted_this_run"] and meta["vector_index"]["previous_serving_generation"] == first
    store = res["vector_store"]
    assert store.serving_generation() == second
    assert set(store.generations()) == {first, second}  # the old generation stays for rollback
    assert store.count(first) == store.count(second)


def test_pipeline_on_opensearch(indexed_copy, opensearch_url):
    """The same assets, unchanged, index into a real OpenSearch node with k-NN: a home moved from LanceDB to
    OpenSearch gets its index built from the vectors it already has (nothing parsed or embedded again)."""
    import uuid

    from resources.opensearch_store import OpenSearchVectorStore
    from resources.retrieval import RetrieverResource

    settings, res = indexed_copy.settings, indexed_copy.resources
    store = OpenSearchVectorStore(hosts=opensearch_url, index_prefix=f"kp{uuid.uuid4().hex[:8]}")
    retriever = RetrieverResource(vector_store=store, embedder=res["embedder"])
    try:
        meta, checks, _ = materialize(settings, vector_store=store, retriever=retriever)
        assert checks and all(checks.values()), checks
        gen = meta["vector_index"]["generation"]
        chunks = meta["document_chunks"]["chunks"]
        assert store.serving_generation() == gen and store.count() == chunks == meta["vector_index"]["added"]
        assert meta["chunk_embeddings"]["embedded_this_run"] == 0 and meta["parsed_documents"]["parsed_this_run"] == 0
        version = store.version(gen)
        meta, checks, _ = materialize(settings, vector_store=store, retriever=retriever)
        assert meta["chunk_embeddings"]["embedded_this_run"] == 0 and store.version(gen) == version
        key = sorted(indexed_copy.titles)[2]
        assert key in {
            h.doc_key for h in retriever.search(indexed_copy.titles[key], k=3, mode="hybrid", scope=FULL_SCOPE)
        }
    finally:
        store.client().indices.delete(index=f"{store.index_prefix}__*", ignore_unavailable=True)


def test_full_rebuild_makes_a_candidate_generation_that_later_runs_maintain(indexed_copy, pubmed_sample):
    settings, res = indexed_copy.settings, indexed_copy.resources
    base = res["vector_store"].serving_generation()  # a first generation serves at once (test_model_change_...)
    meta, checks, _ = materialize(settings, run_config={"ops": {"vector_index": {"config": {"rebuild": True}}}})
    assert all(checks.values())
    rebuilt = meta["vector_index"]["generation"]
    assert rebuilt.startswith(f"{base}_r") and meta["vector_index"]["added"] == meta["document_chunks"]["chunks"]
    assert meta["chunk_embeddings"]["embedded_this_run"] == 0  # vectors come from the cache
    store = res["vector_store"]
    # a rebuilt generation is a promotion candidate: the old one keeps serving until the evaluation gate passes
    assert store.serving_generation() == base and set(store.generations()) == {base, rebuilt}
    assert meta["vector_index"]["candidate_generation"] == rebuilt and not meta["vector_index"]["promoted_this_run"]
    assert read_candidate(res["pipeline_state"]).status == "pending"
    # later incremental runs maintain the pending candidate (the generation about to serve)
    pmid, data = pubmed_sample[201]  # not in the indexed home
    res["document_store"].put(document_key(pmid), data)
    meta, checks, _ = materialize(settings)
    assert all(checks.values())
    assert meta["vector_index"]["generation"] == rebuilt and meta["vector_index"]["added"] > 0
    assert store.serving_generation() == base


def test_inventory_warns_when_shards_outgrow_their_memory_bound(settings_factory, tmp_path, pubmed_docs):
    """A store created with too few shards for its corpus: the inventory check warns and suggests a shard count."""
    from resources.state_store import LocalStateStore

    settings, res = seeded_home(settings_factory, tmp_path, pubmed_docs)  # 12 documents
    small = LocalStateStore(root=str(tmp_path / "small-state"), shards=2, max_shard_documents=4)
    meta, checks, _ = materialize(settings, selection=["document_inventory"], pipeline_state=small)
    assert checks["shards_within_memory_bound"] is False  # 12 documents over 2 shards: one holds more than 4
    assert meta["document_inventory"]["largest_shard_documents"] > 4
    roomy = LocalStateStore(root=str(tmp_path / "roomy-state"), shards=2, max_shard_documents=12)
    _, checks, _ = materialize(settings, selection=["document_inventory"], pipeline_state=roomy)
    assert checks["shards_within_memory_bound"] is True
