"""What every knowledge step shares: its group, owners, and how a step runs a Ray stage and commits its output."""

from __future__ import annotations

import time

import dagster as dg

from assets.stage import stage_asset
from core.progress import Progress
from resources.ray_jobs import RayJobRunner
from resources.state_store import PipelineStateStore, digest_of

GROUP = "knowledge"
OWNERS = ["team:ml-platform"]
# A batch (shard) is the unit of work and of retry: a failed step is retried, and the retry skips every shard whose
# output an earlier attempt already wrote.
RETRY = dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL)
asset = stage_asset(GROUP, OWNERS, retry_policy=RETRY)


def run_stage(
    context: dg.AssetExecutionContext,
    ray_jobs: RayJobRunner,
    store: PipelineStateStore,
    target: str,
    payload: dict,
    outputs: tuple[str, ...],
    label: str = "",
    item_unit: str = "",
) -> tuple[dict[str, dict[int, dict]], dict]:
    """Submit one Ray stage over the dirty shards in ``payload['items']``, then commit its output tables.

    As the stage's shards finish, a progress line (``label``: shards done, ``item_unit`` counted, rate, ETA) goes to
    the step's log every few seconds or tenth of the work; ``info["progress"]`` holds the totals, wall time and rate
    for the step's metadata."""
    items = payload["items"]
    progress = Progress(label or target.rsplit(":", 1)[-1], total=len(items), unit="shards", item_unit=item_unit)
    if not items:
        return {name: {} for name in outputs}, {
            "shards": 0,
            "resumed": 0,
            "seconds": 0.0,
            "computed": {name: {} for name in outputs},
            "progress": progress.metadata(),
        }
    t0 = time.perf_counter()
    context.log.info(f"{target}: {len(items)} dirty shard(s) of {store.layout()} on Ray")

    def on_progress(counts: dict) -> None:
        extra = {k: int(v) for k, v in counts.items() if k not in ("done", "items")}
        if progress.advance(int(counts.get("done", 0)), int(counts.get("items", 0)), **extra):
            # extra: the numbers themselves, for a custom Dagster logger (the event log keeps the message only)
            context.log.info(progress.line(), extra={"progress": progress.snapshot()})

    # The work list goes through the store, not the job's command line (a Ray Jobs entrypoint must stay small).
    key = f"jobs/{target.rsplit(':', 1)[-1]}/{digest_of(context.run_id, [i['input'] for i in items])}"
    store.write_json(key, payload)
    result = ray_jobs.run(target, {"payload_key": key, "store": store.spec()}, on_progress=on_progress)
    entries = {name: {int(s): e for s, e in result["entries"].get(name, {}).items()} for name in outputs}
    for name in outputs:
        store.commit(name, entries[name])
    store.delete_keys([f"{key}.json"])
    info = {k: v for k, v in result.items() if k != "entries"}
    # shards an earlier attempt already computed: committed now, but their work does not count as this run's
    resumed = set(info.get("resumed_shards", []))
    info["computed"] = {name: {s: e for s, e in es.items() if s not in resumed} for name, es in entries.items()}
    info["seconds"] = round(time.perf_counter() - t0, 3)
    info["progress"] = progress.metadata()
    if info.get("resumed"):
        context.log.info(f"{target}: {info['resumed']} shard(s) resumed from an earlier attempt")
    return entries, info
