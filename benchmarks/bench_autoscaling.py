"""Ray Serve autoscaling of the local model deployment under a load step (issue 33, item 4).

The routed LLM app (``resources/serve_routing.py``: an ingress, llama-server replicas of one thread each) with Serve's
autoscaling on requests in flight per replica (min 1, max 2) on 127.0.0.1 with token auth. AIPerf sends the agent's
prompts at a low concurrency, then steps up, then the load stops. The step is what the replica bound can absorb:
``max_replicas`` times the low concurrency, so that once scaled each replica carries the low phase's load again. The
SLO, unless given, is relative to this machine: ``--slo-factor`` times the low phase's p95 end-to-end latency (one
replica, unsaturated). Every second: the replicas Serve reports running.
From AIPerf's per-request records (start and end times): p95 end-to-end latency of the requests that started in each
window. Reported: when the second replica was ready, when requests starting after it met the SLO's p95 again, and when
Serve went back to one replica after the idle window. A replica takes one request at a time (``--max-ongoing``):
with 16, Serve's default router put both of a pair on one replica in a quarter of the step's seconds.
Result: ``benchmarks/results/autoscaling_<llm>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import save  # noqa: E402


def running_replicas(serve, app: str, deployment: str) -> int:
    status = serve.status().applications.get(app)
    if status is None or deployment not in status.deployments:
        return 0
    return int(status.deployments[deployment].replica_states.get("RUNNING", 0))


def requests_of(export: Path) -> list[dict]:
    """Start, end (s since the epoch), end-to-end and TTFT (ms) of each finished request."""
    from core.capacity import request_records

    return [
        {"start": r["start_ns"] / 1e9, "end": r["end_ns"] / 1e9, "e2e_ms": r["e2e_ms"], "ttft_ms": r["ttft_ms"] or 0.0}
        for r in request_records(export.read_text())
        if r["e2e_ms"] is not None
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llm", default="0.5b", choices=("0.5b", "1.5b"))
    ap.add_argument("--home", default="/tmp/bench-home", help="an indexed home (the prompts); indexed here if empty")
    ap.add_argument("--low", type=int, default=1, help="concurrency before the step")
    ap.add_argument("--low-requests", type=int, default=4)
    ap.add_argument("--high", type=int, default=0, help="concurrency of the step (0: max replicas x --low)")
    ap.add_argument("--high-requests", type=int, default=24)
    ap.add_argument("--target-ongoing", type=float, default=1.0, help="Serve's target requests in flight per replica")
    ap.add_argument("--upscale-delay", type=float, default=5.0)
    ap.add_argument("--downscale-delay", type=float, default=30.0)
    ap.add_argument("--e2e-p95-ms", type=float, default=0, help="the SLO the p95 must come back under (0: relative)")
    ap.add_argument("--slo-factor", type=float, default=1.5, help="relative SLO: this x the low phase's p95")
    ap.add_argument("--router", default="default", choices=("default", "prefix"), help="Serve's request router")
    # a replica's capacity at the SLO: one request (one replica at c2 missed it); the rest wait in Serve for a free one
    ap.add_argument("--max-ongoing", type=int, default=1, help="requests a replica takes at once (0: the app's 16)")
    ap.add_argument("--slots", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--questions", type=int, default=16)
    ap.add_argument("--idle-limit", type=float, default=180, help="how long to wait for the scale-down")
    args = ap.parse_args()

    from benchmarks.bench_routing import served_setup
    from core import capacity
    from core.capacity_plan import percentile
    from infra.local.processes import free_port

    res, work, load_test, model, path, tokenizer, (binary, env, origin), records = served_setup(
        args, "bench-autoscaling-", args.questions, 0
    )
    res["ray_cluster"].ensure()  # Ray is imported after this: it reads its token settings at import
    import httpx
    from ray import serve

    from resources.serve_routing import replica_urls, routed_app

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    run_dir = work / "replicas"
    spec = {"binary": str(binary), "env": env, "model_path": str(path), "alias": model.served_name,
            "ctx_size": args.ctx * args.slots, "parallel": args.slots, "threads": 1, "run_dir": str(run_dir)}  # fmt: skip
    high = args.high or 2 * args.low  # what two replicas carry at the low phase's load each
    autoscaling = {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": args.target_ongoing,
                   "upscale_delay_s": args.upscale_delay, "downscale_delay_s": args.downscale_delay}  # fmt: skip
    timeline: list[dict] = []
    stop = threading.Event()
    t0 = time.time()

    def processing(url: str) -> float | None:
        try:
            return capacity.engine_gauges(capacity.parse_prometheus(httpx.get(f"{url}/metrics", timeout=2).text))[
                "processing"
            ]
        except httpx.HTTPError:
            return None

    def sample() -> None:
        # requests each llama-server has in flight: where the router put them
        while not stop.is_set():
            timeline.append({"t": round(time.time() - t0, 1), "replicas": running_replicas(serve, "routed", "llama"),
                             "processing": [processing(u) for u in replica_urls(run_dir)]})  # fmt: skip
            stop.wait(1.0)

    out: dict = {
        "model": model.served_name,
        "binary": origin,
        "autoscaling": autoscaling,
        "router": args.router,
        "max_ongoing_requests": args.max_ongoing or None,  # None: the deployment's own
        "slo_e2e_p95_ms": args.e2e_p95_ms or None,
    }
    sampler = threading.Thread(target=sample, daemon=True)
    try:
        serve.run(
            routed_app(spec, args.router, 1, autoscaling=autoscaling, max_ongoing=args.max_ongoing),
            name="routed",
            route_prefix="/routed",
        )
        base = f"http://127.0.0.1:{port}/routed"

        while httpx.get(f"{base}/health", timeout=10).status_code != 200 or not replica_urls(run_dir):
            time.sleep(1)
        t0 = time.time()
        sampler.start()
        reqs, phases = [], []
        pool = iter(capacity.level_datasets(records, [capacity.Level(capacity.CONCURRENCY, 1, args.low_requests),
                                                      capacity.Level(capacity.CONCURRENCY, 1, args.high_requests)]))  # fmt: skip
        for name, c, n in (("low", args.low, args.low_requests), ("step", high, args.high_requests)):
            level = capacity.Level(capacity.CONCURRENCY, float(c), n)
            target = capacity.Target(name, base, model.served_name, replica_urls(run_dir)[0])
            phases.append({"phase": name, "concurrency": c, "start": round(time.time() - t0, 1)})
            row = load_test.run_level(target, level, next(pool), tokenizer, "", 600, 900)
            phases[-1].update(end=round(time.time() - t0, 1), completed=row["completed"], e2e_p95_ms=row["e2e_p95_ms"])
            reqs += [{**r, "phase": name} for r in requests_of(work / "aiperf" / name / level.name / "aiperf" / "profile_export.jsonl")]  # fmt: skip
            print(json.dumps(phases[-1]), flush=True)
            if name == "low" and not out["slo_e2e_p95_ms"]:
                out["slo_e2e_p95_ms"] = round(args.slo_factor * row["e2e_p95_ms"], 1)
                out["slo_source"] = f"{args.slo_factor} x the low phase's p95 end-to-end"
        idle_from = time.time() - t0
        deadline = time.time() + args.idle_limit
        while time.time() < deadline and running_replicas(serve, "routed", "llama") > 1:
            time.sleep(1)
        time.sleep(2)
    finally:
        stop.set()
        sampler.join(5)
        serve.shutdown()
    for r in reqs:
        r["start"], r["end"] = round(r["start"] - t0, 2), round(r["end"] - t0, 2)
    two = next((s["t"] for s in timeline if s["replicas"] >= 2), None)
    back = next((s["t"] for s in timeline if two is not None and s["t"] > two and s["replicas"] == 1), None)
    after = [r for r in reqs if two is not None and r["start"] >= two]
    # the first moment from which every later-starting request's p95 meets the SLO
    recovered = None
    for r in sorted(after, key=lambda r: r["start"]):
        later = [x["e2e_ms"] for x in after if x["start"] >= r["start"]]
        if len(later) >= 3 and percentile(later, 95) <= out["slo_e2e_p95_ms"]:
            recovered = r["start"]
            break
    step = [r["e2e_ms"] for r in reqs if r["phase"] == "step"]
    before = [r["e2e_ms"] for r in reqs if r["phase"] == "step" and two is not None and r["start"] < two]
    out.update(
        phases=phases,
        timeline=timeline,
        requests=reqs,
        second_replica_ready_s=two,
        p95_e2e_before_second_replica_ms=percentile(before, 95) if before else None,
        p95_e2e_step_ms=percentile(step, 95) if step else None,
        p95_e2e_after_second_replica_ms=percentile([r["e2e_ms"] for r in after], 95) if after else None,
        p95_back_under_slo_s=recovered,
        p95_back_under_slo_after_ready_s=None if recovered is None or two is None else round(recovered - two, 1),
        idle_from_s=round(idle_from, 1),
        back_to_one_replica_s=back,
        back_to_one_after_idle_s=None if back is None else round(back - idle_from, 1),
        load_1m=os.getloadavg()[0],
    )
    keys = ("slo_e2e_p95_ms", "second_replica_ready_s", "p95_e2e_before_second_replica_ms",
            "p95_e2e_after_second_replica_ms", "p95_back_under_slo_after_ready_s", "back_to_one_after_idle_s")  # fmt: skip
    print(json.dumps({k: out[k] for k in keys}, indent=1), f"\n-> {save(f'autoscaling_{args.llm}', out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
