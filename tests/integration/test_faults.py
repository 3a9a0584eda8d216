"""Faults on the local stack, each bounded in time, traffic on loopback only, each showing that nothing is lost:
the OpenSearch node stopped while the index step loads a new generation. (The Ray head killed mid-embedding is in
test_data_path, the LLM server killed during a burst of questions in test_serving_agents.)"""

from __future__ import annotations

import threading
import uuid

import dagster as dg

from assets.knowledge import knowledge_assets, knowledge_checks
from infra.local.opensearch_node import OpenSearchNode
from pipelines.profiles import build_resources
from resources.opensearch_store import OpenSearchVectorStore
from resources.retrieval import RetrieverResource
from tests.helpers import free_port

REBUILD = {"ops": {"vector_index": {"config": {"rebuild": True}}}}
INDEX = ["vector_index"]


def _materialize(resources, run_config=None) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*knowledge_assets, *knowledge_checks],
        resources=resources,
        selection=INDEX,
        instance=dg.DagsterInstance.ephemeral(),
        run_config=run_config,
        raise_on_error=False,
    )


class _HeldStore(OpenSearchVectorStore):
    """The real store, whose first batch written while ``HOLD`` is set waits for ``RESUME``: the test stops the node
    in that wait, so the stop lands mid-index every time. Stopped as soon as the new generation appeared, a graceful
    shutdown once outlasted the whole load and the rebuild succeeded (`make test`, 6 Dec, with the other lane busy)."""

    def upsert(self, generation: str, rows, batch: int = 500) -> int:
        if HOLD.is_set() and not RESUME.is_set():
            HELD.set()
            RESUME.wait(120)
        return super().upsert(generation, rows, batch)


HOLD, HELD, RESUME = threading.Event(), threading.Event(), threading.Event()


def test_opensearch_stopped_mid_index_fails_clearly_serves_the_old_generation_and_the_next_run_completes(
    indexed_copy, tmp_path
):
    """A copy of the indexed home, indexed into an OpenSearch node of the test's own; then a rebuild (a new generation
    bulk-loaded beside the serving one) during which the node is stopped: the step fails with an error that names the
    node, the serving generation is the old one with all its rows, and once the node is back the next rebuild ends
    with an index that holds exactly the live chunks."""
    node = OpenSearchNode(tmp_path / "os", free_port(), heap="512m").start(timeout_s=90)
    try:
        store = _HeldStore(hosts=node.url, index_prefix=f"f{uuid.uuid4().hex[:8]}")
        res = build_resources(indexed_copy.settings)
        res["vector_store"] = store
        res["retriever"] = RetrieverResource(vector_store=store, embedder=res["embedder"])
        first = _materialize(res)
        assert first.success
        serving = store.serving_generation()
        rows = store.count(serving)
        assert serving and rows > 100

        box = {}
        run = threading.Thread(target=lambda: box.setdefault("r", _materialize(res, REBUILD)))
        HOLD.set()
        run.start()
        assert HELD.wait(120) and run.is_alive(), "the rebuild never reached its first batch"
        assert len(store.generations()) == 2  # the new generation exists; its rows are about to be loaded
        node.stop()
        RESUME.set()
        run.join(180)
        assert not run.is_alive() and not box["r"].success
        failure = next(e for e in box["r"].all_events if e.event_type_value == "STEP_FAILURE")
        message = failure.event_specific_data.error.to_string()
        assert "ConnectionError" in message or "Connection refused" in message, message[-2000:]
    finally:
        node.stop()

    node = OpenSearchNode(tmp_path / "os", node.port, heap="512m").start(timeout_s=90)
    try:
        assert store.serving_generation() == serving and store.count(serving) == rows  # nothing half-built serves
        again = _materialize(res, REBUILD)
        assert again.success
        checks = {c.check_name: c.passed for c in again.get_asset_check_evaluations()}
        assert checks and all(checks.values()), checks
        meta = next(m for m in again.get_asset_materialization_events()).materialization.metadata
        built = meta["generation"].value
        assert built != serving and store.count(built) == rows  # the rebuild holds exactly the live chunks
        assert store.serving_generation() == serving  # a rebuild is a candidate until the evaluation gate passes
    finally:
        node.stop()
