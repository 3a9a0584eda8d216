"""Prefix-cache affinity routing against Ray Serve's default router (issue 33, item 3).

Two llama-server replicas (one thread each, on this machine's two cores) under Ray Serve on 127.0.0.1 with token
auth (``resources/serve_routing.py``); the agent's own prompts (``bench_capacity``'s: its system text, retrieved
passages, two-turn conversations) sent by AIPerf at the same concurrency through each router: the two-turn
conversations, then the single-turn questions. Per router and mix: p50/p95 TTFT of first and follow-up turns (AIPerf's
per-request export), requests/s and output tokens/s, and the cache hit ratio from the servers' own counters:
1 - (prompt tokens the replicas' llama-servers processed, ``llamacpp:prompt_tokens_total``) / (prompt tokens the
requests carried, as the server counted them). Result: ``benchmarks/results/routing_<llm>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import save  # noqa: E402


def prompt_tokens_processed(urls: list[str]) -> float:
    import httpx

    from core.capacity import parse_prometheus

    return sum(
        parse_prometheus(httpx.get(f"{u}/metrics", timeout=10).text).get("llamacpp:prompt_tokens_total", 0)
        for u in urls
    )


def per_turn(export: Path) -> dict:
    """TTFT by turn (0: a conversation's first request, 1: its follow-up) and the prompt tokens the requests carried,
    from AIPerf's per-request records."""
    from core.capacity import request_records
    from core.capacity_plan import percentile

    records = request_records(export.read_text())
    ttft: dict[int, list[float]] = {}
    for rec in records:
        if rec["ttft_ms"] is not None:
            ttft.setdefault(rec["turn"], []).append(rec["ttft_ms"])
    out: dict = {"prompt_tokens": sum(rec["prompt"] for rec in records)}
    for turn, xs in sorted(ttft.items()):
        out[f"turn{turn}"] = {"n": len(xs), "ttft_p50_ms": percentile(xs, 50), "ttft_p95_ms": percentile(xs, 95)}
    return out


def served_setup(args, prefix: str, questions: int, conversations: int):
    """What the routed-app benchmarks share: an indexed home's resources, a work folder, the load tool at nice 19 (on
    two cores it would take the server's CPU), the model and its one-thread llama-server binary, and the agent's
    prompts (``bench_capacity``'s) for ``questions`` covered questions and ``conversations`` conversations."""
    from assets.serving.capacity import agent_prompts, eval_items
    from benchmarks.bench_capacity import indexed_settings
    from core.gguf import get_model
    from infra.local.llama_server import resolve_binary
    from pipelines.profiles import build_resources

    # Ray starts its workers at nice 15, and a replica's llama-server inherits it: the tool's timing process, busy at
    # nice 19, then took 40-93% of a core from two replicas (top, 6 Dec). At 0 the tool yields to the servers.
    os.environ["RAY_worker_niceness"] = "0"
    settings = indexed_settings(args.home, args.llm, False)
    res = build_resources(settings)
    work = Path(tempfile.mkdtemp(prefix=prefix))
    load_test = res["load_test"].model_copy(update={"work_dir": str(work / "aiperf"), "niceness": 19})
    load_test.check()
    model = get_model(args.llm)
    path = settings.cache / "models" / "llm" / model.file_name
    tokenizer = load_test.tokenizer(path)
    server = resolve_binary(settings.cache, probe_model=path, threads=1)
    service = res["answer_service"].build(res["retriever"], res["gateway"], config=res["answer_service"].config(web_search="off"))  # fmt: skip
    try:
        covered, convs = eval_items(questions, conversations)
        records = agent_prompts(service, covered, convs, args.max_tokens)["engine"]
    finally:
        service.close()
    return res, work, load_test, model, path, tokenizer, server, records


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llm", default="0.5b", choices=("0.5b", "1.5b"))
    ap.add_argument("--home", default="/tmp/bench-home", help="an indexed home (the prompts); indexed here if empty")
    ap.add_argument("--routers", default="default,prefix")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--conversations", type=int, default=8, help="two-turn conversations (dev split)")
    ap.add_argument("--questions", type=int, default=8, help="single-turn questions (dev split)")
    ap.add_argument("--slots", type=int, default=2, help="llama-server slots per replica")
    ap.add_argument("--ctx", type=int, default=4096, help="context per slot")
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--imbalanced-threshold", type=float, default=2.0)
    ap.add_argument("--level-time-limit", type=float, default=900)
    args = ap.parse_args()

    import httpx

    from core import capacity
    from infra.local.processes import free_port

    res, work, load_test, model, path, tokenizer, (binary, env, origin), records = served_setup(
        args, "bench-routing-", args.questions, args.conversations
    )
    mixes = {
        "two_turn": [r for r in records if capacity.requests_of(r) == 2],
        "single_turn": [r for r in records if capacity.requests_of(r) == 1],
    }
    res["ray_cluster"].ensure()  # Ray is imported after this: it reads its token settings at import
    from ray import serve

    from resources.serve_routing import replica_urls, routed_app

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    out: dict = {"model": model.served_name, "binary": origin, "replicas": 2, "threads_per_replica": 1, "runs": []}
    try:
        for router in args.routers.split(","):
            run_dir = work / f"run-{router}"
            spec = {"binary": str(binary), "env": env, "model_path": str(path), "alias": model.served_name,
                    "ctx_size": args.ctx * args.slots, "parallel": args.slots, "threads": 1, "run_dir": str(run_dir)}  # fmt: skip
            t0 = time.perf_counter()
            serve.run(routed_app(spec, router, 2, args.imbalanced_threshold), name="routed", route_prefix="/routed")
            base = f"http://127.0.0.1:{port}/routed"
            while httpx.get(f"{base}/health", timeout=10).status_code != 200 or len(replica_urls(run_dir)) < 2:
                time.sleep(1)
            urls = replica_urls(run_dir)
            print(f"{router}: 2 replicas up in {time.perf_counter() - t0:.0f} s: {urls}", flush=True)
            for mix, recs in mixes.items():
                n = sum(capacity.requests_of(r) for r in recs)
                level = capacity.Level(capacity.CONCURRENCY, float(args.concurrency), n)
                target = capacity.Target(f"{router}-{mix}", base, model.served_name, urls[0])
                before = prompt_tokens_processed(urls)
                row = load_test.run_level(target, level, recs, tokenizer, "", 600, args.level_time_limit)
                processed = prompt_tokens_processed(urls) - before
                turns = per_turn(work / "aiperf" / target.name / level.name / "aiperf" / "profile_export.jsonl")
                hit = 1 - processed / turns["prompt_tokens"] if turns["prompt_tokens"] else None
                keep = ("completed", "errors", "requests_per_s", "output_tokens_per_s", "ttft_p50_ms", "ttft_p95_ms",
                        "e2e_p50_ms", "e2e_p95_ms", "prompt_cache_read_pct", "wall_s")  # fmt: skip
                run = {"router": router, "mix": mix, "concurrency": args.concurrency, "requests": n,
                       **{k: row.get(k) for k in keep}, **turns, "prompt_tokens_processed": processed,
                       "cache_hit_ratio": None if hit is None else round(hit, 4)}  # fmt: skip
                out["runs"].append(run)
                print(json.dumps(run), flush=True)
            serve.delete("routed")
            while replica_urls(run_dir):  # the replicas stop their llama-servers as they go
                time.sleep(1)
    finally:
        serve.shutdown()
    by = {(r["router"], r["mix"]): r for r in out["runs"]}
    d2, p2 = by.get(("default", "two_turn")), by.get(("prefix", "two_turn"))
    d1, p1 = by.get(("default", "single_turn")), by.get(("prefix", "single_turn"))
    if d2 and p2 and "turn1" in d2 and "turn1" in p2:
        out["follow_up_ttft_p50_default_over_prefix"] = round(
            d2["turn1"]["ttft_p50_ms"] / p2["turn1"]["ttft_p50_ms"], 2
        )
        out["two_turn_throughput_prefix_over_default"] = round(p2["requests_per_s"] / d2["requests_per_s"], 3)
    if d1 and p1:
        out["single_turn_throughput_prefix_over_default"] = round(p1["requests_per_s"] / d1["requests_per_s"], 3)
    out["load_1m"] = os.getloadavg()[0]
    print(
        json.dumps({k: v for k, v in out.items() if k != "runs"}, indent=1), f"\n-> {save(f'routing_{args.llm}', out)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
