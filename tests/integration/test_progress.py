"""Progress you can see: the tracker (rates, ETA, throttling, bounded), progress lines and metadata of the knowledge
steps on real Ray and Dagster, and the `agentic run` bar in a pseudo-terminal and in a pipe."""

from __future__ import annotations

import io
import re
import sys
import time
import tracemalloc
from pathlib import Path

import dagster as dg
import pytest

from core.corpus import document_key
from core.progress import PROGRESS_TAG, Progress, RunBar
from pipelines.profiles import build_resources
from resources.ray_cluster import RayResource
from resources.ray_jobs import LocalRayJobRunner, RayJobsApiRunner, parse_progress, report_progress
from tests.conftest import REPO

AGENTIC = str(Path(sys.executable).parent / "agentic")


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


# ---------------------------------------------------------------- core.progress


def test_rate_and_eta_follow_the_work_done():
    clock = Clock()
    p = Progress("embedding", total=40, unit="shards", item_unit="chunks", clock=clock)
    assert p.eta_s() is None and p.rate() == 0.0
    clock.t += 10
    p.advance(10, items=500, quarantined=2)
    assert p.rate() == pytest.approx(50.0)  # chunks per second
    assert p.eta_s() == pytest.approx(30.0)  # 10 of 40 shards in 10 s: 30 s left
    line = p.line()
    assert line.startswith(f"{PROGRESS_TAG} embedding: 10/40 shards (25%)")
    assert "500 chunks" in line and "2 quarantined" in line and "50.0 chunks/s" in line and "eta 30 s" in line
    clock.t += 30
    p.advance(30, items=1500)
    assert "40/40 shards (100%)" in p.line() and "done in 40 s" in p.line()
    meta = p.metadata()
    assert meta == {
        "shards_done": 40,
        "wall_seconds": 40.0,
        "shards_per_second": 1.0,
        "chunks_this_run": 2000,
        "chunks_per_second": 50.0,
    }
    # without an item unit the rate is per unit; several trackers of a step keep apart by prefix
    q = Progress("answering", total=4, unit="questions", clock=clock)
    clock.t += 8
    q.update(2)
    assert q.rate() == pytest.approx(0.25) and "2/4 questions (50%), 0.2 questions/s, eta 8 s" in q.line()
    assert q.metadata("answering_")["answering_questions_per_second"] == 0.25


def test_lines_are_throttled_by_time_and_fraction_and_the_last_one_always_comes():
    clock = Clock()
    p = Progress("parsing", total=10_000, unit="shards", every_s=10, every_frac=0.1, clock=clock)
    due = [p.advance() for _ in range(9_999)]  # all within the same instant: only every tenth of the work
    assert sum(due) == 9
    assert p.advance() is True  # the end is always reported
    assert p.advance() is False  # and only once

    clock = Clock()
    p = Progress("parsing", total=10_000, every_s=10, every_frac=0.5, clock=clock)
    assert p.advance() is False
    clock.t += 10
    assert p.advance() is True  # ten seconds since the last line
    clock.t += 30
    assert p.due() is False  # time passed but nothing new was done: no line repeating itself
    assert p.advance() is True and p.advance() is False


def test_memory_does_not_grow_with_the_work():
    p = Progress("embedding", total=0, item_unit="chunks")  # total unknown: counts go on
    for _ in range(1000):
        p.advance(1, items=10, quarantined=1)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for _ in range(200_000):
        p.advance(1, items=10, quarantined=1)
    grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename") if s.size_diff > 0)
    tracemalloc.stop()
    assert p.done == 201_000 and p.items == 2_010_000 and p.extra == {"quarantined": 201_000}
    assert grown < 20_000, grown


def test_the_bar_redraws_in_place_on_a_tty_and_prints_lines_elsewhere():
    clock = Clock()
    out = io.StringIO()
    bar = RunBar(3, out, tty=True, width=90, min_interval_s=0, clock=clock)
    bar.step_started("parsed_documents")
    clock.t += 5
    bar.step_progress("parsed_documents", "progress parsing: 4/8 shards (50%), 120 documents, 24.0 documents/s")
    bar.step_finished("parsed_documents")
    bar.close(True)
    text = out.getvalue()
    assert "\n" not in text[:-1]  # one line, redrawn
    frames = text.split("\r")[1:]
    assert frames[0] == "[--------------------] 0/3 steps parsed_documents\x1b[K"
    assert frames[1].startswith("[--------------------] 0/3 steps parsed_documents: parsing: 4/8 shards (50%)")
    assert frames[2] == "[######--------------] 1/3 steps\x1b[K"
    assert frames[3] == "[######--------------] 1/3 steps, succeeded in 5 s\x1b[K\n"
    assert all(len(f.removesuffix("\x1b[K").removesuffix("\x1b[K\n")) <= 90 for f in frames)

    out = io.StringIO()
    bar = RunBar(2, out, tty=False, clock=clock)
    bar.step_started("a")
    bar.step_progress("a", "progress embedding: 2/2 shards (100%), 10 chunks, 5.0 chunks/s, done in 2 s")
    clock.t += 2
    bar.step_finished("a")
    bar.step_started("b")
    bar.step_finished("b", "failed")
    bar.close(False)
    assert out.getvalue().splitlines() == [
        "[1/2] a done in 2 s (embedding: 2/2 shards (100%), 10 chunks, 5.0 chunks/s, done in 2 s)",
        "[2/2] b failed in 0 s",
        "2/2 steps, FAILED in 2 s",
    ]


# ---------------------------------------------------------------- Ray jobs: the progress channel


def reporting_target(payload: dict) -> dict:
    """A Ray job target whose tasks finish one by one; it reports each as it completes."""
    import ray

    @ray.remote(num_cpus=0.1)
    def work(i: int) -> int:
        time.sleep(0.3 * i)
        return i

    pending, total = [work.remote(i) for i in range(payload["n"])], 0
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        total += sum(ray.get(ready))
        report_progress(done=1, items=10)
    return {"total": total}


def test_local_runner_hands_progress_to_the_caller_while_the_job_runs(ray_address):
    runner = LocalRayJobRunner(ray_cluster=RayResource(address=ray_address), poll_interval_s=0.1)
    calls: list[tuple[float, dict]] = []
    t0 = time.monotonic()
    result = runner.run(
        "tests.integration.test_progress:reporting_target",
        {"n": 5},
        on_progress=lambda c: calls.append((time.monotonic(), c)),
    )
    end = time.monotonic()
    assert result == {"total": 10}
    assert sum(c["done"] for _, c in calls) == 5 and sum(c["items"] for _, c in calls) == 50
    assert len(calls) >= 3  # as tasks finish, not one sum at the end
    assert calls[0][0] < end - 0.5 and calls[0][0] > t0
    # with no listener a target's reports go nowhere
    assert runner.run("tests.integration.test_progress:reporting_target", {"n": 2}) == {"total": 1}


@pytest.mark.timeout(240)
def test_jobs_api_runner_reads_progress_from_the_jobs_logs(ray_head):
    """The eks path: the target's reports travel as lines of the Ray job's logs, read back while the job runs."""
    runner = RayJobsApiRunner(address=ray_head["dashboard"], poll_interval_s=0.3, progress_interval_s=0.3)
    calls: list[dict] = []
    env = {"PYTHONPATH": str(REPO)}
    result = runner.run(
        "tests.integration.test_progress:reporting_target", {"n": 6}, env=env, timeout_s=120, on_progress=calls.append
    )
    assert result == {"total": 15}
    assert sum(c["done"] for c in calls) == 6 and sum(c["items"] for c in calls) == 60  # each line read once
    assert len(calls) >= 2, calls  # while the job ran, not only once it had ended


def test_progress_lines_in_a_jobs_logs_are_summed():
    logs = (
        'some output\nAGENTIC_RAY_JOB_PROGRESS {"done":1,"items":120}\n(pid=1) noise\n'
        'AGENTIC_RAY_JOB_PROGRESS {"done":2,"items":80,"ocr_pages":3}\nAGENTIC_RAY_JOB_PROGRESS {not json}\n'
    )
    assert parse_progress(logs) == {"done": 3, "items": 200, "ocr_pages": 3}
    assert parse_progress("nothing here\n") == {}


def gathering_target(payload: dict) -> dict:
    """Two shard tasks through the data path's ``_gather``: the second waits until the caller has heard of the first
    (the gate file), so the test does not depend on how fast either runs."""
    import ray

    from resources.data_path import _gather

    @ray.remote(num_cpus=0.1)
    def shard_task(i: int, gate: str) -> list[dict]:
        deadline = time.monotonic() + 60  # bounded: a gather that reports only at the end fails, it does not hang
        while gate and not Path(gate).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return [{"shard": i, "entries": {"t": {"stats": {"rows": 10 + i}}}}]

    results = _gather([shard_task.remote(0, ""), shard_task.remote(1, payload["gate"])], "t", "rows")
    return {"shards": sorted(r["shard"] for r in results)}


def test_the_data_path_reports_each_shard_task_as_it_finishes(ray_address, tmp_path):
    """What the knowledge steps' lines rest on: ``_gather`` reports a finished task's shards before the others end
    (the second task only ends once the caller has heard of the first)."""
    gate = tmp_path / "gate"
    calls: list[dict] = []

    def on_progress(counts: dict) -> None:
        calls.append(counts)
        gate.touch()

    runner = LocalRayJobRunner(ray_cluster=RayResource(address=ray_address), poll_interval_s=0.1)
    result = runner.run(
        "tests.integration.test_progress:gathering_target", {"gate": str(gate)}, on_progress=on_progress
    )
    assert result == {"shards": [0, 1]}
    assert calls == [{"done": 1, "items": 10}, {"done": 1, "items": 11}], calls


# ---------------------------------------------------------------- the knowledge steps on Ray, through Dagster


def test_knowledge_steps_log_progress_and_report_rates(indexed_copy, pubmed_sample):
    """16 new articles arrive in a copy of the indexed home: the steps that work on them report their progress."""
    from assets.knowledge import knowledge_assets

    resources = build_resources(indexed_copy.settings)
    for pmid, data in pubmed_sample[150:166]:  # not in the indexed home
        resources["document_store"].put(document_key(pmid), data)
    instance = dg.DagsterInstance.ephemeral()
    steps = ["document_inventory", "parsed_documents", "document_chunks", "chunk_embeddings"]
    result = dg.materialize(knowledge_assets, resources=resources, selection=steps, instance=instance)
    assert result.success
    meta = {
        m.asset_key.to_user_string(): {k: v.value for k, v in m.metadata.items()}
        for m in (e.event_specific_data.materialization for e in result.get_asset_materialization_events())
    }
    logs = [e for e in instance.all_logs(result.run_id) if not e.is_dagster_event]
    lines = {
        s: [e.user_message for e in logs if e.step_key == s and e.user_message.startswith(PROGRESS_TAG)] for s in steps
    }

    shards = meta["parsed_documents"]["dirty_shards"]
    assert shards > 1
    parse = lines["parsed_documents"]
    assert parse, lines
    # Lines come as shard tasks finish (test_the_data_path_reports_each_shard_task_as_it_finishes); how many here
    # depends on timing: when Ray's workers start slowly, all 16 documents can land within one poll, so one line.
    for line in parse[:-1]:
        assert re.match(
            rf"progress parsing: \d+/{shards} shards \(\d+%\), \d+ documents, [\d.]+ documents/s, eta ", line
        )
    assert re.match(
        rf"progress parsing: {shards}/{shards} shards \(100%\), 16 documents, [\d.]+ documents/s, done in \d+ s$",
        parse[-1],
    )
    chunk, embed = lines["document_chunks"], lines["chunk_embeddings"]
    assert chunk and re.match(r"progress chunking: (\d+)/\1 shards \(100%\), [\d,]+ chunks, [\d.]+ chunks/s", chunk[-1])
    embedded = meta["chunk_embeddings"]["embedded_this_run"]
    assert embedded > 16
    assert re.match(rf"progress embedding: (\d+)/\1 shards \(100%\), {embedded:,} chunks, [\d.]+ chunks/s", embed[-1])
    assert not lines["document_inventory"]  # quick steps stay quiet

    for step, unit, done in (("parsed_documents", "documents", 16), ("chunk_embeddings", "chunks", embedded)):
        m = meta[step]
        assert m["shards_done"] == m["dirty_shards"] and m[f"{unit}_this_run"] == done
        assert m["wall_seconds"] > 0 and m[f"{unit}_per_second"] > 0 and m["shards_per_second"] > 0
        assert m[f"{unit}_per_second"] == pytest.approx(done / m["wall_seconds"], rel=0.2)
