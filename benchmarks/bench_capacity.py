"""Serving capacity with AIPerf and the agent's prompts: the code of the ``serving_capacity`` asset
(``assets/serving/capacity.py``), run here.

Default: a llama-server started here on 127.0.0.1 (the binary setup chose, ``--slots`` slots, ``--threads`` threads)
is the model server; the prompts are built from an indexed home (``--home``; the project's ``.agentic`` by default,
which ``make run`` indexes; without an index there, or with ``--build-home``, a new home with the 2,000-abstract
sample, as bench_answers builds it). ``--live``: the running stack of ``--home`` instead (``agentic up``: model server, gateway and API),
through the asset itself. Every level is bounded in requests and time. Result:
``benchmarks/results/capacity_<llm>.json``, the curves beside it as PNG.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS, save  # noqa: E402


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def predict(args, cfg, levels, records: list[dict], tokenizer: Path) -> dict:
    """The planner's model of this server, from ``bench_physical_bound``'s measurement of one request on this machine,
    for each concurrency level's own conversations: written before the load runs them. ``levels``: llama-server's
    scheduler simulated with the planner's engine (``core.capacity_sim``), the levels' ramps as the sweep sets them;
    ``closed_form``: ``core.capacity_plan``'s formula for requests out of phase, which the GPU variants use."""
    from tokenizers import Tokenizer

    from core import capacity, capacity_sim
    from core import capacity_plan as cp

    tok = Tokenizer.from_file(str(tokenizer / "tokenizer.json"))
    count = lambda text: len(tok.encode(text, add_special_tokens=False).ids)  # noqa: E731
    engine = calibrated_engine(args)
    lengths = reply_lengths(args.replies, cfg.max_tokens)
    speeds = machine_speeds(args.replies, engine)
    rows, closed, service_ms = [], [], None
    for level, chosen in zip(levels, capacity.level_datasets(records, levels)):
        if level.mode != capacity.CONCURRENCY:
            continue
        level = capacity.staggered(level, service_ms)  # as LoadTestResource.sweep opens it
        conversations = [cp.uncached_prompts(r, count) for r in chosen]
        flat = [n for c in conversations for n in c]
        done = capacity_sim.simulate(engine, conversations, cfg.max_tokens, int(level.value), level.ramp_s)
        sim = capacity_sim.measured_like(done)
        service_ms = sim["e2e_p50_ms"]
        rows.append({"level": level.name, "ramp_s": level.ramp_s, **{k: round(v, 3) for k, v in sim.items()}})
        if lengths:
            draws = capacity_sim.sampled(
                engine, conversations, lengths, int(level.value), level.ramp_s, args.draws, speeds=speeds
            )
            rows[-1]["sampled"] = {k: capacity_sim.spread(draws, k) for k in SAMPLED}
        point = cp.predict_level(engine, flat, cfg.max_tokens, int(level.value))
        closed.append({"level": level.name, **{k: round(v, 3) for k, v in point.items()}})
    slo = cp.Slo(cfg.ttft_p95_ms, cfg.e2e_p95_ms)
    meeting = [r for r in rows if r["ttft_p95_ms"] <= slo.ttft_p95_ms and r["e2e_p95_ms"] <= slo.e2e_p95_ms]
    return {
        "engine": dataclasses.asdict(engine),
        "output_tokens": cfg.max_tokens,
        "model": "core.capacity_sim (llama-server's scheduler, the planner's engine)",
        "levels": rows,
        "closed_form": closed,
        "sampled_from": {
            "replies": args.replies,
            "reply_lengths": len(lengths),
            "draws": args.draws,
            "machine_speeds": [{"n": len(run), **capacity_sim.spread([{"s": x} for x in run], "s")} for run in speeds],
        },
        "capacity": meeting[-1]["level"] if meeting else None,
        "predicted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


SAMPLED = ("requests_per_s", "ttft_p95_ms", "e2e_p95_ms")


def reply_lengths(files: str, max_tokens: int) -> list[int]:
    """The reply lengths (output tokens) of every request in earlier runs' records (``requests``), kept where the
    runs had this token limit: what the model emits on these prompts, which may end before the limit."""
    out = []
    for name in (f for f in files.split(",") if f.strip()):
        for rows in json.loads((RESULTS / name.strip()).read_text())["requests"].values():
            out += [r["out"] for r in rows if r.get("out") and r["out"] <= max_tokens]
    return out


MIN_WORK_S = 1.0


def machine_speeds(files: str, engine) -> list[list[float]]:
    """How fast the machine ran each request that earlier runs served alone (their c1 levels), relative to the
    planner's ``engine`` (``core.capacity_sim.speed_of``): its drift from the calibration, request by request, one
    list per run (a run without such requests left out). A request of under ``MIN_WORK_S`` of engine time is left
    out: the HTTP and tokenizer overhead the engine does not model (~0.2 s) would read as a slow machine (a 20-token
    follow-up with a 2-token reply: "0.46")."""
    from core import capacity_sim

    out = []
    for name in (f for f in files.split(",") if f.strip()):
        run = []
        for r in json.loads((RESULTS / name.strip()).read_text())["requests"].get("c1", []):
            work = capacity_sim.engine_s(engine, r["uncached"], r.get("out") or 1)
            if r.get("out") and r["end_s"] > r["sent_s"] and work >= MIN_WORK_S:
                run.append(capacity_sim.speed_of(engine, r["uncached"], r["out"], r["end_s"] - r["sent_s"]))
        if run:
            out.append(run)
    return out


def calibrated_engine(args):
    """The planner's engine for this server: ``--calibration``'s measurement of one request, one thread or all."""
    from core import capacity_plan as cp

    bound = json.loads((RESULTS / args.calibration).read_text())
    model = bound["models"][args.llm]
    if args.threads == 1:  # the server on one core (the load tool on the other): the one-thread measurement
        model, procs = {**model, **model["one_thread"]}, 1
    else:
        procs = max(b["processes"] for b in bound["bandwidth"])
    read = next(b["read_gb_s"] for b in bound["bandwidth"] if b["processes"] == procs)
    source = f"{args.calibration} ({bound['measured_at']}): one request, {model['prompt_tokens']} tokens in, {procs} thread(s)"
    return cp.cpu_engine(model, read, args.slots, source)


def compare(prediction: dict, rows: list[dict]) -> dict:
    """Predicted against measured, per concurrency level (measured / predicted): the simulation's ``levels`` and the
    closed form's."""
    measured = {f"c{r['value']:g}": r for r in rows if r["mode"] == "concurrency"}

    def ratios(levels: list[dict]) -> list[dict]:
        out = []
        for p in levels:
            m = measured.get(p["level"])
            if m is None:
                continue
            row = {"level": p["level"]}
            for key in SAMPLED:
                row[key] = {"predicted": p[key], "measured": m.get(key)}
                row[key]["ratio"] = round(m[key] / p[key], 3) if m.get(key) else None
            out.append(row)
        return out

    sampled = []
    for p in prediction["levels"]:
        m = measured.get(p["level"])
        if m is None or "sampled" not in p:
            continue
        row = {"level": p["level"]}
        for key, d in p["sampled"].items():
            ratio = round(m[key] / d["median"], 3) if m.get(key) else None
            row[key] = {**d, "measured": m.get(key), "ratio": ratio, "inside": d["p5"] <= (m.get(key) or 0) <= d["p95"]}
        sampled.append(row)
    return {
        "simulated": ratios(prediction["levels"]),
        "closed_form": ratios(prediction.get("closed_form", [])),
        "sampled": sampled,
    }


def timelines(target_dir: Path) -> dict[str, list[dict]]:
    """Each level's requests as AIPerf recorded them, in send order: session, turn, send and end (s from the level's
    first send), TTFT, the prompt tokens the server processed (prompt - read from its cache) and the tokens out. What
    a p95 is made of: the check's explanations read these beside the server's log."""
    from core.capacity import request_records

    def row(r: dict, t0: int) -> dict:
        return {
            "session": r["session"],
            "turn": r["turn"],
            "sent_s": round((r["start_ns"] - t0) / 1e9, 3),
            "end_s": round((r["end_ns"] - t0) / 1e9, 3) if r["end_ns"] else None,
            "ttft_s": round(r["ttft_ms"] / 1000, 3) if r["ttft_ms"] else None,
            "uncached": int(r["prompt"] - r["cached"]),
            "out": r["out"],
        }

    out = {}
    for path in sorted(target_dir.glob("*/aiperf/profile_export.jsonl")):
        records = request_records(path.read_text())
        out[path.parent.parent.name] = [row(r, records[0]["start_ns"]) for r in records]
    return out


def engine_run(args, settings, cfg) -> dict:
    """A llama-server started here, the model server target only."""
    from assets.serving.capacity import agent_prompts, eval_items, hardware, measure
    from core import capacity
    from core.gguf import get_model
    from infra.local.llama_server import LlamaServer, resolve_binary
    from pipelines.profiles import build_resources
    from pipelines.services import resolve_env

    res = build_resources(settings)
    load_test = res["load_test"].model_copy(update={"work_dir": str(Path(args.work_dir)), "niceness": args.nice})
    model = get_model(args.llm)
    path = settings.cache / "models" / "llm" / model.file_name
    slo = capacity.Slo(cfg.ttft_p95_ms, cfg.e2e_p95_ms)
    levels = capacity.sweep_plan(cfg.concurrency, cfg.poisson_rates, cfg.requests_per_level, cfg.max_requests)
    load_test.check()
    tokenizer = load_test.tokenizer(path)
    server, url = None, args.engine_url
    if url:  # a server someone else started: what it says of itself
        import httpx

        props = httpx.get(f"{url}/props", timeout=10).json()
        origin, args.slots, args.threads = "given (--engine-url)", props.get("total_slots"), None
        args.ctx = (props.get("default_generation_settings") or {}).get("n_ctx", args.ctx)
    else:  # started before the index is opened: no fork after LanceDB's runtime is up
        binary, env, origin = resolve_binary(settings.cache, probe_model=path, threads=args.threads)
        log = Path(args.work_dir) / "llama-server.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        server = LlamaServer(
            binary, env, path, model.served_name, ctx_size=args.ctx * args.slots, parallel=args.slots,
            threads=args.threads, log_path=log,
        )  # fmt: skip
        server.start()
        url = server.url
    try:
        t0 = time.perf_counter()
        gateway = resolve_env(res["gateway"]) if os.environ.get("AGENTIC_GATEWAY_KEY") else res["gateway"]
        service = res["answer_service"].build(
            res["retriever"], gateway, config=res["answer_service"].config(web_search="off")
        )
        try:
            covered, conversations = eval_items(cfg.questions, cfg.conversations)
            prompts = agent_prompts(service, covered, conversations, cfg.max_tokens)
        finally:
            service.close()
        prompt_s = time.perf_counter() - t0
        prediction = predict(args, cfg, levels, prompts["engine"], tokenizer) if args.predict else None
        if prediction:
            print("predicted before the load:", json.dumps(prediction["levels"], indent=1), flush=True)
        target = capacity.Target("model_server", url, model.served_name, url)
        t1 = time.perf_counter()
        rows, found = measure(load_test, [target], prompts, levels, tokenizer, {}, slo, cfg, print)
        load_s = time.perf_counter() - t1
    finally:
        if server is not None:
            server.stop()
    machine = hardware(cfg.hardware)
    png = capacity.curves_png(rows, slo, f"{model.served_name} on {machine}")
    (RESULTS / f"{args.out or f'capacity_{args.llm}'}.png").write_bytes(png)
    return {
        "mode": "engine",
        "model": model.served_name,
        "hardware": machine,
        "server": {"binary": origin, "slots": args.slots, "ctx_per_slot": args.ctx, "threads": args.threads},
        "slo": slo.as_dict(),
        "tool": f"aiperf {load_test.version()}",
        "prompts": {"conversations": len(prompts["engine"]), "questions": len(covered), "two_turn": len(conversations)},
        "capacity": found,
        "rows": rows,
        "requests": timelines(Path(args.work_dir) / target.name),
        "prompt_seconds": round(prompt_s, 1),
        "load_seconds": round(load_s, 1),
        **({"prediction": prediction, "predicted_vs_measured": compare(prediction, rows)} if prediction else {}),
    }


def live_run(args, settings, cfg) -> dict:
    """The running stack of the home, through the asset (its record is read back from the state store)."""
    import dagster as dg

    from assets.serving import serving_capacity
    from pipelines.profiles import build_resources

    res = build_resources(settings)
    run_config = {"ops": {"serving_capacity": {"config": cfg.model_dump()}}}
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([serving_capacity], resources=res, run_config=run_config, instance=instance)
    key = result.asset_materializations_for_node("serving_capacity")[0].metadata["record"].value
    (RESULTS / f"capacity_{args.llm}.png").write_bytes(res["pipeline_state"].get_bytes(f"{key}.png"))
    return {"mode": "live", **res["pipeline_state"].read_json(key)}


def indexed_settings(home: str, llm: str, build: bool, need_index: bool = False):
    """Settings over an indexed home (the prompts' passages): ``home`` when it has an index, else (or with ``build``)
    the 2,000-abstract sample indexed as bench_answers does, into ``home`` when it is empty or absent, else a new one."""
    from pipelines.settings import load_settings

    path = Path(home).resolve()
    settings = dataclasses.replace(load_settings({**os.environ, "AGENTIC_HOME": str(path)}), llm=llm)
    unindexed = settings.vector_store == "lancedb" and not (settings.index_root / "_serving.json").is_file()
    if need_index and unindexed:
        raise SystemExit(f"{path} has no index: --live measures the stack `make run` / `agentic up` made")
    if build or unindexed:
        from benchmarks import bench_answers
        from benchmarks.common import bench_settings

        if build or (path.exists() and any(path.iterdir())):  # never index into a home that holds something else
            path = Path(tempfile.mkdtemp(prefix="bench-capacity-home-"))
        print(f"indexing the 2,000-abstract sample into {path} (the prompts' passages)", flush=True)
        settings = dataclasses.replace(bench_settings(path), llm=llm)
        bench_answers.build_home(argparse.Namespace(docs=2000), settings)
    return settings


def main() -> int:
    from assets.serving.capacity import CapacityConfig

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llm", default="1.5b", choices=("0.5b", "1.5b"))
    ap.add_argument("--home", default=os.environ.get("AGENTIC_HOME", ".agentic"), help="an indexed home (the prompts)")
    ap.add_argument("--build-home", action="store_true", help="index the 2,000-abstract sample into a new home")
    ap.add_argument(
        "--live", action="store_true", help="the home's running stack (agentic up) instead of a server here"
    )
    ap.add_argument("--targets", default="model_server,gateway,api", help="--live: which targets")
    ap.add_argument("--engine-url", default="", help="a llama-server already running on loopback (else one is started)")
    ap.add_argument("--slots", type=int, default=4, help="llama-server slots (the stack's default: 4)")
    ap.add_argument("--ctx", type=int, default=4096, help="context per slot")
    ap.add_argument("--threads", type=int, default=0, help="llama-server threads (0: all cores)")
    ap.add_argument("--concurrency", default="1,2,4")
    ap.add_argument("--rates", default="0.02,0.05", help="Poisson arrival rates, requests/s")
    ap.add_argument("--requests", type=int, default=8, help="requests per level")
    ap.add_argument("--max-requests", type=int, default=200)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--questions", type=int, default=12)
    ap.add_argument("--conversations", type=int, default=6)
    ap.add_argument("--ttft-p95-ms", type=float, default=15000)
    ap.add_argument("--e2e-p95-ms", type=float, default=40000)
    ap.add_argument("--level-time-limit", type=float, default=600)
    ap.add_argument("--nice", type=int, default=0, help="the load tool's niceness")
    ap.add_argument(
        "--calibration",
        default="physical_bound.json",
        help="--predict: bench_physical_bound's result for this CPU, in benchmarks/results (a copy per CPU kind)",
    )
    ap.add_argument("--work-dir", default="", help="the tool's artifacts (default: a temporary folder)")
    ap.add_argument(
        "--predict", action="store_true", help="the planner's prediction of each concurrency level, before the load"
    )
    ap.add_argument(
        "--replies",
        default="",
        help="--predict: earlier runs' results (comma-separated, in benchmarks/results) whose replies' lengths the "
        "prediction draws from, with the launch race, over --draws simulated loads",
    )
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--out", default="", help="result name (default capacity_<llm>)")
    args = ap.parse_args()
    args.work_dir = args.work_dir or tempfile.mkdtemp(prefix="bench-capacity-")
    cfg = CapacityConfig(
        targets=args.targets.split(",") if args.live else ["model_server"],
        concurrency=[int(c) for c in floats(args.concurrency)],
        poisson_rates=floats(args.rates),
        requests_per_level=args.requests,
        max_requests=args.max_requests,
        level_time_limit_s=args.level_time_limit,
        max_tokens=args.max_tokens,
        ttft_p95_ms=args.ttft_p95_ms,
        e2e_p95_ms=args.e2e_p95_ms,
        questions=args.questions,
        conversations=args.conversations,
    )
    settings = indexed_settings(args.home, args.llm, args.build_home, need_index=args.live)
    out = live_run(args, settings, cfg) if args.live else engine_run(args, settings, cfg)
    out["load_1m"], out["niceness"] = os.getloadavg()[0], os.nice(0)
    path = save(args.out or f"capacity_{args.llm}", out)
    if out.get("predicted_vs_measured"):
        print(json.dumps(out["predicted_vs_measured"], indent=1))
    print(json.dumps(out["capacity"], indent=1), f"\n-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
