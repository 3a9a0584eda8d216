"""One contract, every vector store: LanceDB (embedded) and OpenSearch (a real local node with k-NN).

Same fixtures, same expected results. Vectors are real embeddings of real PubMed chunks.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pytest

from core import verdict
from core.access import FULL_SCOPE
from core.chunking import Chunker, reassemble, split_sentences
from core.corpus import chunk_row
from core.documents import parse_document
from core.index_schema import chunk_schema
from resources.lancedb_store import LanceDBVectorStore
from resources.retrieval import RetrieverResource
from tests.helpers import free_port

DIM = 384


@pytest.fixture(scope="module")
def rows(pubmed_sample, embedder_resource) -> pa.Table:
    chunker = Chunker(embedder_resource.count_tokens)
    out = []
    for pmid, data in pubmed_sample[200:230]:
        doc = parse_document(f"pubmed/{pmid}.xml", data)
        for c in chunker.chunk(doc.sections):
            extra = {"mesh_terms": doc.mesh_terms, "source_format": doc.source_format, "n_tokens": c.n_tokens}
            out.append({**chunk_row(pmid, doc, c), **extra})
    vecs = embedder_resource.runtime().embed([r["text"] for r in out])
    for r, v in zip(out, vecs):
        r["vector"] = v.tolist()
    return pa.Table.from_pylist(out, schema=chunk_schema(DIM))


@pytest.fixture(params=["lancedb", "opensearch"])
def store(request, tmp_path):
    if request.param == "lancedb":
        yield LanceDBVectorStore(uri=str(tmp_path / "lance"))
        return
    from resources.opensearch_store import OpenSearchVectorStore

    url = request.getfixturevalue("opensearch_url")
    s = OpenSearchVectorStore(hosts=url, index_prefix=f"t{uuid.uuid4().hex[:8]}")
    yield s
    s.client().indices.delete(index=f"{s.index_prefix}__*", ignore_unavailable=True)


def _vec(rows: pa.Table, i: int) -> np.ndarray:
    return np.asarray(rows.column("vector")[i].as_py(), dtype=np.float32)


def test_generation_lifecycle_and_versions(store, rows):
    assert store.serving_generation() is None
    store.create_generation("g1", DIM)
    assert store.has_generation("g1") and "g1" in store.generations()
    assert store.upsert("g1", rows) == rows.num_rows
    store.refresh_indexes("g1")
    assert store.count("g1") == rows.num_rows
    assert store.ids("g1") == set(rows.column("chunk_id").to_pylist())
    v = store.version("g1")
    store.refresh_indexes("g1")
    assert store.version("g1") == v  # no write, same version
    assert store.upsert("g1", rows.slice(0, 3)) == 3  # upsert by id: no duplicates
    assert store.count("g1") == rows.num_rows
    with pytest.raises(LookupError):
        store.search_bm25("anything", 3)  # nothing serving yet


def test_serving_generation_switches_atomically(store, rows):
    store.create_generation("g1", DIM)
    store.upsert("g1", rows.slice(0, 10))
    store.create_generation("g2", DIM)
    store.upsert("g2", rows)
    store.promote("g1")
    assert store.serving_generation() == "g1"
    assert store.count() == 10
    assert store.promote("g2")["previous"] == "g1"
    assert store.serving_generation() == "g2" and store.count() == rows.num_rows
    with pytest.raises(ValueError):
        store.drop_generation("g2")
    store.drop_generation("g1")
    assert store.generations() == ["g2"]
    with pytest.raises(ValueError):
        store.promote("missing")


@pytest.fixture
def served(store, rows):
    store.create_generation("g1", DIM)
    store.upsert("g1", rows)
    store.refresh_indexes("g1")
    store.promote("g1")
    return store


def test_dense_search(served, rows):
    for i in (0, 7, rows.num_rows - 1):
        hits = served.search_dense(_vec(rows, i), 5)
        assert hits[0].chunk_id == rows.column("chunk_id")[i].as_py()
        assert hits[0].seq == rows.column("seq")[i].as_py()  # its position in the document
        assert hits[0].score == pytest.approx(1.0, abs=1e-3)  # cosine of a vector with itself
        exact = served.search_dense(_vec(rows, i), 5, exact=True)
        assert [h.chunk_id for h in exact] == [h.chunk_id for h in hits]
        assert [h.score for h in exact] == pytest.approx([h.score for h in hits], abs=1e-3)


def test_bm25_search(served, rows):
    text = rows.column("text")[5].as_py()
    words = sorted({w.strip(".,;:()").lower() for w in text.split() if len(w) > 9}, key=len, reverse=True)[:3]
    hits = served.search_bm25(" ".join(words), 5)
    assert hits and hits[0].doc_key == rows.column("doc_key")[5].as_py()
    assert all(hits[i].score >= hits[i + 1].score for i in range(len(hits) - 1))
    assert served.search_bm25("zzzzqqqq", 5) == []


def test_filters(served, rows):
    years = sorted({y for y in rows.column("year").to_pylist() if y})
    y = years[len(years) // 2]
    q = _vec(rows, 0)
    for hits in (
        served.search_dense(q, 50, {"year": {"gte": y}}),
        served.search_bm25("patients", 50, {"year": {"gte": y}}),
    ):
        assert hits and all(h.year >= y for h in hits)
    key = rows.column("doc_key")[3].as_py()
    assert {h.doc_key for h in served.search_dense(q, 10, {"doc_key": key})} == {key}
    mesh_rows = [r for r in rows.to_pylist() if r["mesh_terms"]]
    term = mesh_rows[0]["mesh_terms"][0]
    expected = {r["chunk_id"] for r in rows.to_pylist() if term in r["mesh_terms"]}
    got = {h.chunk_id for h in served.search_dense(q, 100, {"mesh": term})}
    assert got == expected
    with pytest.raises(ValueError):
        served.search_dense(q, 5, {"nope": 1})


def test_delete(served, rows):
    gone = rows.column("chunk_id").to_pylist()[:4]
    assert served.delete("g1", gone) == 4
    served.refresh_indexes("g1")
    assert not set(gone) & served.ids("g1")
    assert served.count() == rows.num_rows - 4
    assert served.search_dense(_vec(rows, 0), 3)[0].chunk_id not in gone


def test_hybrid_through_the_retriever(served, rows, embedder_resource):
    retriever = RetrieverResource(vector_store=served, embedder=embedder_resource)
    title = rows.column("title")[0].as_py()
    hits = retriever.search(title, k=3, mode="hybrid", scope=FULL_SCOPE)
    assert rows.column("doc_key")[0].as_py() in {h.doc_key for h in hits}
    assert [h.rank for h in hits] == [1, 2, 3]
    # an open question reads its top document whole: every chunk of it, in order, the overlap once
    found = retriever.passages(title, k=3, whole=1, scope=FULL_SCOPE)
    top = found.passages[0].hit.doc_key
    doc_rows = sorted((r for r in rows.to_pylist() if r["doc_key"] == top), key=lambda r: r["seq"])
    assert found.passages[0].document == reassemble([(r["seq"], r["section"], r["text"]) for r in doc_rows])
    for r in doc_rows:
        assert all(sentence in found.passages[0].document for sentence in split_sentences(r["text"])[1:])
    assert all(p.document == "" for p in found.passages[1:])
    # what a yes/no verdict reads of each document: its conclusions, else its end (core.verdict.reading)
    for p in found.passages:
        chunks = [(r["seq"], r["section"], r["text"]) for r in rows.to_pylist() if r["doc_key"] == p.hit.doc_key]
        assert p.reading == verdict.reading(p.conclusion, reassemble(chunks)) and p.reading
    # a pinned document (a follow-up's conversation study) comes first and whole, whatever its rank; k still holds
    ranked = [p.hit.doc_key for p in retriever.passages(title, k=3, scope=FULL_SCOPE).passages]
    far = next(k for k in reversed(rows.column("doc_key").to_pylist()) if k not in ranked[:3])
    pinned = retriever.passages(title, k=3, whole=1, scope=FULL_SCOPE, pinned=[far, "no/such.xml"])
    assert [p.hit.doc_key for p in pinned.passages] == [far, *ranked[:2]]
    far_rows = sorted((r for r in rows.to_pylist() if r["doc_key"] == far), key=lambda r: r["seq"])
    assert pinned.passages[0].document == reassemble([(r["seq"], r["section"], r["text"]) for r in far_rows])
    assert pinned.passages[0].dense > 0 and pinned.passages[1].document == ""


def test_fetch_by_chunk_id(served, rows):
    ids = rows.column("chunk_id").to_pylist()
    want = [ids[5], ids[0], "no-such-chunk", ids[-1], ids[5], *ids[10:30]]
    got = served.fetch("g1", want, ["chunk_id", "doc_key", "vector"], batch=7)  # 4 batches
    assert got.column_names == ["chunk_id", "doc_key", "vector"]
    assert got.column("chunk_id").to_pylist() == list(dict.fromkeys(c for c in want if c != "no-such-chunk"))
    assert got.schema.field("vector").type == pa.list_(pa.float32(), DIM)
    by_id = {r["chunk_id"]: r for r in rows.to_pylist()}
    for r in got.to_pylist():
        assert r["doc_key"] == by_id[r["chunk_id"]]["doc_key"]
        np.testing.assert_allclose(r["vector"], by_id[r["chunk_id"]]["vector"], rtol=1e-6)
    only = served.fetch("g1", ids[:3], ["doc_key"])
    assert only.column_names == ["doc_key"] and only.column("doc_key").to_pylist() == [
        by_id[c]["doc_key"] for c in ids[:3]
    ]
    assert served.fetch("g1", ids[:2]).column_names == chunk_schema(DIM).names
    assert served.fetch("g1", [], ["chunk_id"]).num_rows == 0


def test_lancedb_keyed_lookups_use_a_scalar_index(tmp_path, rows):
    """fetch/delete/re-label by id are index lookups, not a scan of the whole generation per batch of ids; rows
    added after the index was built are still found."""
    store = LanceDBVectorStore(uri=str(tmp_path / "lance"))
    store.create_generation("g1", DIM)
    store.upsert("g1", rows.slice(0, rows.num_rows - 5))
    info = store.refresh_indexes("g1")
    assert "btree(chunk_id)" in info["built"] and "btree(doc_key)" in info["built"]
    tbl = store._open("g1")
    ids = rows.column("chunk_id").to_pylist()
    plan = tbl.search().where(f"chunk_id IN ('{ids[0]}', '{ids[1]}')").select(["chunk_id"]).explain_plan(True)
    assert "ScalarIndexQuery" in plan and "chunk_id_idx" in plan
    store.upsert("g1", rows.slice(rows.num_rows - 5))  # not yet in the index
    assert store.fetch("g1", [ids[0], ids[-1]], ["chunk_id"]).column("chunk_id").to_pylist() == [ids[0], ids[-1]]
    assert store.refresh_indexes("g1")["built"] == []  # built once; later changes are folded in incrementally


def test_sample(served, rows):
    all_ids = set(rows.column("chunk_id").to_pylist())
    a = served.sample("g1", 10, ["chunk_id", "vector"], seed=1)
    assert a.column_names == ["chunk_id", "vector"] and a.schema.field("vector").type == pa.list_(pa.float32(), DIM)
    ids = a.column("chunk_id").to_pylist()
    assert len(ids) == len(set(ids)) == 10 and set(ids) <= all_ids
    by_id = {r["chunk_id"]: r["vector"] for r in rows.select(["chunk_id", "vector"]).to_pylist()}
    for r in a.to_pylist():
        np.testing.assert_allclose(r["vector"], by_id[r["chunk_id"]], rtol=1e-6)
    assert set(served.sample("g1", 10, ["chunk_id"], seed=1).column("chunk_id").to_pylist()) == set(
        ids
    )  # same seed, same rows
    samples = {
        frozenset(served.sample("g1", 10, ["chunk_id"], seed=s).column("chunk_id").to_pylist()) for s in range(2, 6)
    }
    assert len(samples) > 1  # other seeds, other rows
    whole = served.sample("g1", rows.num_rows + 50, ["chunk_id"]).column("chunk_id").to_pylist()
    assert sorted(whole) == sorted(all_ids)  # n beyond the rows: every row once
    assert served.sample("g1", 0, ["chunk_id"]).num_rows == 0
    assert served.sample("g1", 3).column_names == chunk_schema(DIM).names


def test_prune_generations(store, rows):
    for g in ("g1", "g2", "g3", "g4"):
        store.create_generation(g, DIM)
        time.sleep(0.02)
    store.upsert("g1", rows.slice(0, 3))
    store.promote("g1")  # the oldest serves
    created = store.generation_created()
    assert sorted(created, key=created.get) == ["g1", "g2", "g3", "g4"]
    assert store.prune_generations(keep=1, protect={"g2"}) == ["g3"]
    assert store.generations() == ["g1", "g2", "g4"]
    assert store.prune_generations(keep=1, protect=set()) == ["g2"]
    assert store.prune_generations(keep=0, protect={"g4"}) == []
    assert store.prune_generations(keep=0, protect=set()) == ["g4"]
    assert store.generations() == ["g1"] and store.serving_generation() == "g1" and store.count() == 3
    assert store.prune_generations(keep=0, protect=set()) == []  # never the serving one
    with pytest.raises(ValueError):
        store.prune_generations(keep=-1, protect=set())


def _index_settings(store, generation: str) -> dict:
    return next(iter(store.client().indices.get_settings(index=store.table_name(generation)).values()))["settings"][
        "index"
    ]


def test_bulk_load_restores_settings_even_after_a_failure(store, rows):
    # The local node is a single node, so the replica count it restores is 0 (effective_replicas caps it); what the
    # test can tell apart is the refresh interval, turned off inside and restored after.
    opensearch = not isinstance(store, LanceDBVectorStore)

    def settings():
        idx = _index_settings(store, "g1")
        return idx["refresh_interval"], idx["number_of_replicas"]

    store.create_generation("g1", DIM)
    if opensearch:
        assert settings() == ("1s", "0")
    with store.bulk_load("g1"):
        assert store.upsert("g1", rows.slice(0, 10)) == 10
        if opensearch:
            assert settings() == ("-1", "0")
            with store.bulk_load("g1"):  # nested: the outer one restores
                pass
            assert settings() == ("-1", "0")
    assert store.count("g1") == 10  # refreshed on exit
    if opensearch:
        assert settings() == ("1s", "0")
    with pytest.raises(RuntimeError, match="load failed"):
        with store.bulk_load("g1"):
            store.upsert("g1", rows.slice(10, 10))
            if opensearch:
                assert settings() == ("-1", "0")
            raise RuntimeError("load failed")
    if opensearch:
        assert settings() == ("1s", "0")
    assert store.count("g1") == 20  # what was written before the failure is there, and visible


def test_shard_count_from_expected_rows():
    from core.opensearch_sizing import GB, estimate_row_bytes, shard_count

    row = estimate_row_bytes(DIM)
    assert row > DIM * 4 * 2 + 1000  # the vector (doc values + _source) and the text
    assert shard_count(0, DIM) == shard_count(1, DIM) == shard_count(100_000, DIM) == 1
    assert shard_count(10_000_000, DIM) == 4  # ~85 GB / 20 GB
    assert shard_count(10**10, DIM) == 32 and shard_count(10**10, DIM, max_shards=8) == 8  # capped
    assert shard_count(10**10, DIM, max_shards=0) == 1
    for n in (3_000_000, 40_000_000, 300_000_000):
        shards = shard_count(n, DIM, max_shards=10_000)
        assert 10 * GB <= n * row / shards <= 20 * GB or shards == 1  # every shard within the 10-30 GB band
    assert shard_count(10_000_000, 1536) > shard_count(10_000_000, DIM)  # bigger vectors, more shards


def test_expected_rows_sizes_the_generation(store, rows):
    from core.opensearch_sizing import shard_count

    store.create_generation("big", DIM, expected_rows=10_000_000)
    store.create_generation("small", DIM)
    if not isinstance(store, LanceDBVectorStore):
        big, small = _index_settings(store, "big"), _index_settings(store, "small")
        assert int(big["number_of_shards"]) == shard_count(10_000_000, DIM) > 1
        assert int(small["number_of_shards"]) == 1
        # replicas = min(configured 1, data nodes - 1): 0 on the single local node, which stays green
        nodes = int(store.client().cluster.health()["number_of_data_nodes"])
        assert big["number_of_replicas"] == small["number_of_replicas"] == str(min(1, nodes - 1))
        health = store.client().cluster.health(index=store.table_name("big"), wait_for_status="green")
        assert health["status"] == "green"
    assert store.upsert("big", rows) == rows.num_rows
    assert store.count("big") == rows.num_rows and store.ids("big") == set(rows.column("chunk_id").to_pylist())
    ids = rows.column("chunk_id").to_pylist()
    assert store.fetch("big", ids[::-1], ["chunk_id"]).column("chunk_id").to_pylist() == ids[::-1]  # across shards
    assert sorted(store.sample("big", 1000, ["chunk_id"]).column("chunk_id").to_pylist()) == sorted(ids)


# ---------------------------------------------------------------- 429s from a real node, through a loopback proxy


class RejectingProxy:
    """A loopback HTTP proxy in front of an OpenSearch node that rejects bulk writes like a saturated cluster.

    The first ``reject_requests`` ``_bulk`` requests are answered 429 whole; in the next ``reject_item_requests``
    every ``every``-th item (from the first) is not forwarded and is answered 429 in the bulk response, the rest
    pass through. Everything else passes through. At most ``max_threads`` requests are handled at once."""

    def __init__(self, upstream: str, max_threads: int = 8):
        self.upstream = urlsplit(upstream)
        self.lock = threading.Lock()
        self.slots = threading.BoundedSemaphore(max_threads)
        self.reset()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 60

            def log_message(self, *args):
                pass

            def handle_one(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                with proxy.slots:
                    status, ctype, data = proxy.answer(self.command, self.path, dict(self.headers), body)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = handle_one

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def reset(self, reject_requests: int = 0, reject_item_requests: int = 0, every: int = 5) -> None:
        with self.lock:
            self.reject_requests, self.reject_item_requests, self.every = reject_requests, reject_item_requests, every
            self.bulk_requests = self.rejected_requests = self.rejected_items = 0

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)

    def forward(self, method: str, path: str, headers: dict, body: bytes) -> tuple[int, str, bytes]:
        conn = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=60)
        try:
            keep = {
                k: v
                for k, v in headers.items()
                if k.lower() not in ("host", "connection", "content-length", "accept-encoding", "transfer-encoding")
            }
            conn.request(method, path, body=body or None, headers=keep)
            resp = conn.getresponse()
            return resp.status, resp.getheader("Content-Type", "application/json"), resp.read()
        finally:
            conn.close()

    def answer(self, method: str, path: str, headers: dict, body: bytes) -> tuple[int, str, bytes]:
        if method in ("POST", "PUT") and urlsplit(path).path.endswith("/_bulk"):
            with self.lock:
                self.bulk_requests += 1
                k = self.bulk_requests
                whole = k <= self.reject_requests
                items = not whole and k <= self.reject_requests + self.reject_item_requests
                self.rejected_requests += whole
            if whole:
                err = {
                    "error": {"type": "rejected_execution_exception", "reason": "rejected execution (test proxy)"},
                    "status": 429,
                }
                return 429, "application/json", json.dumps(err).encode()
            if items:
                return self.reject_some_items(path, headers, body)
        return self.forward(method, path, headers, body)

    def reject_some_items(self, path: str, headers: dict, body: bytes) -> tuple[int, str, bytes]:
        lines = [ln for ln in body.split(b"\n") if ln.strip()]
        items, i = [], 0
        while i < len(lines):
            action = json.loads(lines[i])
            has_source = next(iter(action)) != "delete"
            items.append((action, lines[i : i + 1 + has_source]))
            i += 1 + has_source
        rejected = [j % self.every == 0 for j in range(len(items))]
        kept = [ln for (_, item_lines), r in zip(items, rejected) if not r for ln in item_lines]
        upstream_items = []
        if kept:
            status, ctype, data = self.forward("POST", path, headers, b"\n".join(kept) + b"\n")
            assert status == 200, data[:500]
            upstream_items = json.loads(data)["items"]
        merged, it = [], iter(upstream_items)
        for (action, _), r in zip(items, rejected):
            if r:
                ((op, meta),) = action.items()
                merged.append(
                    {
                        op: {
                            "_index": meta.get("_index"),
                            "_id": meta.get("_id"),
                            "status": 429,
                            "error": {
                                "type": "rejected_execution_exception",
                                "reason": "rejected execution (test proxy)",
                            },
                        }
                    }
                )
            else:
                merged.append(next(it))
        with self.lock:
            self.rejected_items += sum(rejected)
        return 200, "application/json", json.dumps({"took": 1, "errors": True, "items": merged}).encode()


def _many(rows: pa.Table, n: int) -> pa.Table:
    """``n`` rows: the real rows repeated under new chunk ids."""
    t = pa.concat_tables([rows] * (-(-n // rows.num_rows))).slice(0, n)
    ids = [f"{c}-x{i}" for i, c in enumerate(t.column("chunk_id").to_pylist())]
    return t.set_column(0, "chunk_id", pa.array(ids, pa.string()))


def test_bulk_retries_429_from_a_real_node(opensearch_url, rows):
    from resources.opensearch_bulk import BulkRejected
    from resources.opensearch_store import OpenSearchVectorStore

    proxy = RejectingProxy(opensearch_url)
    prefix = f"t{uuid.uuid4().hex[:8]}"
    fast = dict(index_prefix=prefix, bulk_chunk_size=40, thread_count=2, initial_backoff_s=0.01, max_backoff_s=0.05)
    store = OpenSearchVectorStore(hosts=proxy.url, **fast)
    try:
        many = _many(rows, 300)
        ids = many.column("chunk_id").to_pylist()
        store.create_generation("g", DIM, expected_rows=many.num_rows)
        proxy.reset(reject_requests=2, reject_item_requests=3, every=7)
        with store.bulk_load("g"):
            assert store.upsert("g", many) == 300
        stats = store.last_bulk_stats()
        assert proxy.rejected_requests == stats["retried_requests"] == 2
        assert proxy.rejected_items == stats["retried_items"] > 0
        assert stats["retries"] >= 3 and stats["ok"] == 300
        assert store.count("g") == 300 and store.ids("g") == set(ids)  # exact count, no duplicates

        proxy.reset(reject_requests=1, reject_item_requests=2, every=3)
        assert store.delete("g", ids[:100]) == 100
        stats = store.last_bulk_stats()
        assert (
            proxy.rejected_requests == stats["retried_requests"] == 1
            and proxy.rejected_items == stats["retried_items"] > 0
        )
        assert store.count("g") == 200 and store.ids("g") == set(ids[100:])

        proxy.reset()  # other item errors are not retried: they raise with the first error
        bad = pa.Table.from_pylist(
            [{**many.slice(0, 1).to_pylist()[0], "chunk_id": "bad", "vector": [0.1, 0.2, 0.3]}], schema=chunk_schema(3)
        )
        with pytest.raises(RuntimeError, match="_id 'bad' \\(status 400\\)"):
            store.upsert("g", bad)
        assert proxy.bulk_requests == 1

        proxy.reset(reject_requests=10**6)  # a cluster that never recovers: give up after max_retries
        stubborn = OpenSearchVectorStore(hosts=proxy.url, **{**fast, "max_retries": 2})
        with pytest.raises(BulkRejected):
            stubborn.upsert("g", many.slice(0, 5))
        assert proxy.rejected_requests == 3
        assert store.count("g") == 200
    finally:
        store.client().indices.delete(index=f"{prefix}__*", ignore_unavailable=True)
        proxy.close()


@pytest.mark.contract
def test_same_results_on_every_store(rows, tmp_path, request):
    """Dense results agree exactly between LanceDB and OpenSearch (same vectors, same cosine)."""
    from resources.opensearch_store import OpenSearchVectorStore

    stores = [
        LanceDBVectorStore(uri=str(tmp_path / "l")),
        OpenSearchVectorStore(hosts=request.getfixturevalue("opensearch_url"), index_prefix=f"t{uuid.uuid4().hex[:8]}"),
    ]
    try:
        for s in stores:
            s.create_generation("g", DIM)
            s.upsert("g", rows)
            s.refresh_indexes("g")
            s.promote("g")
        for i in range(0, rows.num_rows, 9):
            a, b = (
                s.search_dense(_vec(rows, i) * 0.9 + _vec(rows, (i + 1) % rows.num_rows) * 0.1, 5, exact=True)
                for s in stores
            )
            assert [h.chunk_id for h in a] == [h.chunk_id for h in b]
            assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-3)
    finally:
        stores[1].client().indices.delete(index=f"{stores[1].index_prefix}__*", ignore_unavailable=True)


@pytest.mark.contract
def test_local_node_starts_fast_stops_cleanly_and_keeps_its_data(tmp_path, rows):
    """The launcher itself: startup under 60 s, SIGTERM shuts down cleanly, data survives a restart."""
    from infra.local.opensearch_node import OpenSearchNode, _healthy
    from resources.opensearch_store import OpenSearchVectorStore

    port = free_port()
    node = OpenSearchNode(tmp_path / "os", port, heap="512m").start(timeout_s=60)
    assert node.startup_seconds < 60
    store = OpenSearchVectorStore(hosts=node.url, index_prefix="persist")
    store.create_generation("g", DIM)
    store.upsert("g", rows.slice(0, 5))
    store.promote("g")
    node.stop()
    assert not _healthy(node.url) and not node.pid_path.exists()
    node2 = OpenSearchNode(tmp_path / "os", port, heap="512m").start(timeout_s=60)
    try:
        store = OpenSearchVectorStore(hosts=node2.url, index_prefix="persist")
        assert store.serving_generation() == "g" and store.count() == 5
    finally:
        node2.stop()


def _with_groups(rows: pa.Table, doc_groups: dict[str, list[str]]) -> pa.Table:
    from core.access import index_groups

    col = pa.array([index_groups(doc_groups[k]) for k in rows.column("doc_key").to_pylist()], pa.list_(pa.string()))
    return rows.set_column(rows.schema.get_field_index("groups"), "groups", col)


def test_a_read_scope_never_returns_a_document_outside_it(store, rows, embedder_resource):
    """Property-style: random document groups, random principals, every retrieval path of the retriever, crafted
    filters; a hit outside the principal's groups is never returned, and the filter runs before ranking (an
    exhaustive exact query returns every admitted chunk, so top-k is never filled by post-filtering)."""
    import random

    from core.access import ReadScope
    from resources.vector_store import ACCESS_FILTER

    rng = random.Random(16)
    pool = ["cardiology", "oncology", "staff", "public", "research"]
    keys = rows.column("doc_key").to_pylist()
    docs = sorted(set(keys))
    doc_groups = {d: rng.sample(pool, rng.randint(0, 2)) for d in docs}  # none: only the admin scope reads it
    store.create_generation("g1", DIM, _with_groups(rows, doc_groups))
    store.refresh_indexes("g1")
    store.promote("g1")
    retriever = RetrieverResource(vector_store=store, embedder=embedder_resource)
    titles = {k: t for k, t in zip(keys, rows.column("title").to_pylist())}
    queries = [titles[d] for d in rng.sample(docs, 5)] + ["patients treatment outcomes", "randomized trial mortality"]
    cases = leaks = 0
    for trial in range(8):
        groups = set(rng.sample(pool, rng.randint(1, 3)))
        scope = ReadScope.of(groups, f"p{trial}")
        admitted = {d for d, g in doc_groups.items() if groups & set(g)}
        outside = sorted(set(docs) - admitted)
        for q in queries:
            got: list = []
            for mode in ("dense", "bm25", "hybrid"):
                got += retriever.search(q, k=50, mode=mode, scope=scope)
            found = retriever.passages(q, k=5, whole=1, scope=scope)
            got += [p.hit for p in found.passages]
            # a follow-up cannot pin a document its caller may not read
            got += [p.hit for p in retriever.passages(q, k=5, scope=scope, pinned=outside[:3]).passages]
            if outside:  # a caller naming restricted documents gets nothing from them
                got += retriever.search(q, k=10, mode="hybrid", filters={"doc_key": outside}, scope=scope)
            cases += 6
            leaks += sum(1 for h in got if h.doc_key not in admitted or not groups & set(h.groups))
            assert all(p.document == "" or p.hit.doc_key in admitted for p in found.passages)
        exhaustive = store.search_dense(_vec(rows, 0), rows.num_rows, {ACCESS_FILTER: sorted(groups)}, exact=True)
        assert len(exhaustive) == sum(1 for k in keys if k in admitted)
    assert leaks == 0, f"{leaks} hits outside the scope in {cases} cases"
    everything = retriever.search(queries[0], k=rows.num_rows, mode="bm25", scope=FULL_SCOPE)
    assert {h.doc_key for h in everything} - {d for d, g in doc_groups.items() if g}  # admins read the closed ones
    # the scope's own filter field cannot be named or imitated by a caller
    scope = ReadScope.of({"public"})
    with pytest.raises(ValueError, match="unknown filter field"):
        retriever.search("x", filters={ACCESS_FILTER: pool}, scope=scope)
    with pytest.raises(ValueError, match="unknown filter field"):
        retriever.search("x", filters={"groups": pool}, scope=scope)
    with pytest.raises(TypeError):
        retriever.search("x")  # no scope, no retrieval


def test_a_permission_change_updates_rows_in_place(served, rows):
    from core.access import ReadScope
    from resources.vector_store import ACCESS_FILTER

    key = rows.column("doc_key")[0].as_py()
    ids = [c for c, k in zip(rows.column("chunk_id").to_pylist(), rows.column("doc_key").to_pylist()) if k == key]
    before = served.fetch("g1", ids, ["chunk_id", "vector"]).to_pylist()
    assert served.set_groups("g1", {("oncology", "staff"): [key]}) == 1
    served.refresh_indexes("g1")
    only = {ACCESS_FILTER: ReadScope.of({"staff"}).filter_value()}
    assert {h.doc_key for h in served.search_dense(_vec(rows, 0), 50, only, exact=True)} == {key}
    assert {h.doc_key for h in served.search_bm25("patients", 50, only)} <= {key}
    assert served.search_dense(_vec(rows, 0), 5, {ACCESS_FILTER: ["cardiology"]}, exact=True) == []
    hit = served.search_dense(_vec(rows, 0), 1, only, exact=True)[0]
    assert hit.groups == ["oncology", "staff"]
    after = served.fetch("g1", ids, ["chunk_id", "vector"]).to_pylist()
    assert sorted(before, key=lambda r: r["chunk_id"]) == sorted(after, key=lambda r: r["chunk_id"])  # same vectors
    assert served.count() == rows.num_rows
