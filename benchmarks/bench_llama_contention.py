"""llama-server's OpenMP wait policy on a small shared machine: the same six answers (a ~750-token prompt, 64 tokens
out, one at a time) alone and beside one busy process (a Python loop, as a Dagster step or a Ray worker would be), with
OpenMP's threads spinning while they wait (ACTIVE), sleeping at once (PASSIVE), and spinning a bounded while before
they sleep (SPIN: no wait policy, ``GOMP_SPINCOUNT`` 300,000, libgomp's own default when no policy is set), and at
each thread count asked (``--threads``, default 2: does a server with fewer threads than cores lose less beside the
busy process?). Per run:
llama-server's CPU seconds (from /proc), wall seconds, and its own prefill and decode tokens/s. On 127.0.0.1; the busy process and the server are this script's own, stopped by id.

    python benchmarks/bench_llama_contention.py [--model 0.5b|1.5b] [--threads 2 1] [--policies PASSIVE]

Result: benchmarks/results/llama_contention_<model>.json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import save  # noqa: E402
from core.gguf import get_model  # noqa: E402
from infra.local.llama_server import LlamaServer, resolve_binary  # noqa: E402
from pipelines.settings import load_settings  # noqa: E402

BUSY = "import time\nt = time.time()\nwhile time.time() - t < 900:\n    pass\n"
TEXT = (Path(__file__).resolve().parents[1] / "docs" / "knowledge.md").read_text()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def body(i: int) -> dict:
    return {
        "messages": [{"role": "user", "content": f"{i} {TEXT[i * 300 : i * 300 + 3000]}\nSummarize."}],
        "max_tokens": 64,
        "temperature": 0,
        "ignore_eos": True,
    }


POLICIES = ("ACTIVE", "PASSIVE", "SPIN")


def policy_env(policy: str, spin_count: int) -> dict[str, str]:
    if policy == "SPIN":  # an empty policy is libgomp's "not set"
        return {"OMP_WAIT_POLICY": "", "GOMP_SPINCOUNT": str(spin_count)}
    return {"OMP_WAIT_POLICY": policy}


def one_run(binary, env, model, policy: str, spin_count: int, busy: bool, answers: int, threads: int = 2) -> dict:
    server = LlamaServer(binary, {**env, **policy_env(policy, spin_count)}, model, "m", ctx_size=16384, parallel=4,
                         threads=threads)  # fmt: skip
    server.start()
    hog = None
    try:
        httpx.post(f"{server.url}/v1/chat/completions", json=body(99), timeout=300)  # warm
        hog = subprocess.Popen([sys.executable, "-c", BUSY]) if busy else None
        c0, t0, prefill, decode = cpu_seconds(server.proc.pid), time.time(), [], []
        for i in range(answers):
            timings = httpx.post(f"{server.url}/v1/chat/completions", json=body(i), timeout=300).json()["timings"]
            prefill.append(timings["prompt_per_second"])
            decode.append(timings["predicted_per_second"])
        return {
            "policy": policy,
            "threads": threads,
            "beside": "one busy process" if busy else "nothing",
            "answers": answers,
            "llama_cpu_s": round(cpu_seconds(server.proc.pid) - c0, 1),
            "wall_s": round(time.time() - t0, 1),
            "prefill_tok_s": round(sum(prefill) / answers, 1),
            "decode_tok_s": round(sum(decode) / answers, 1),
        }
    finally:
        if hog:
            hog.kill()
            hog.wait()
        server.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="0.5b", choices=("0.5b", "1.5b"))
    ap.add_argument("--answers", type=int, default=6)
    ap.add_argument("--spin-count", type=int, default=300000, help="SPIN's GOMP_SPINCOUNT")
    ap.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    ap.add_argument("--threads", nargs="+", type=int, default=[2], help="llama-server's thread counts to run")
    ap.add_argument("--out", default="", help="the result's name (default llama_contention_<model>)")
    args = ap.parse_args()
    settings = load_settings({})
    model = settings.cache / "models" / "llm" / get_model(args.model).file_name
    binary, env, origin = resolve_binary(settings.cache, model, threads=2)
    runs = []
    for busy in (False, True):
        for threads in args.threads:
            for policy in args.policies:
                runs.append(one_run(binary, env, model, policy, args.spin_count, busy, args.answers, threads))
                print(runs[-1], flush=True)
    by = {(r["policy"], r["beside"]): r for r in runs if r["threads"] == args.threads[0]}
    ratios = {}
    for policy in (p for p in args.policies if p != "PASSIVE" and "PASSIVE" in args.policies):
        for beside, tag in (("nothing", "alone"), ("one busy process", "beside_a_busy_process")):
            mine, base = by[(policy, beside)], by[("PASSIVE", beside)]
            for key, name in (("decode_tok_s", "decode"), ("wall_s", "wall"), ("llama_cpu_s", "cpu")):
                ratios[f"{name}_{policy.lower()}_over_passive_{tag}"] = round(mine[key] / base[key], 3)
    for threads in args.threads[1:]:  # each other thread count against the first, per policy and neighbour
        for r in (r for r in runs if r["threads"] == threads):
            base, tag = by[(r["policy"], r["beside"])], "alone" if r["beside"] == "nothing" else "beside_a_busy_process"
            ratios[f"wall_{threads}_threads_over_{args.threads[0]}_{r['policy'].lower()}_{tag}"] = round(
                r["wall_s"] / base["wall_s"], 3
            )
    print(ratios)
    result = {"model": args.model, "binary": origin, "spin_count": args.spin_count, "runs": runs, "ratios": ratios}
    path = save(args.out or f"llama_contention_{args.model}", result)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
