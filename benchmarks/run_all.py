"""`make bench`: every benchmark in sequence, then a markdown summary of benchmarks/results/*.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    # bench_vector_stores reuses the chunks and vectors bench_scale leaves in its home, so it runs after it.
    # bench_scale_sweep (its own scratch home and Ray head) runs its default sizes, 2k/10k/33k; the full sweep is
    # `bench_scale_sweep.py --sizes 2000,10000,33272,100000,300000`.
    check = ["--llm", "0.5b", "--predict", "--threads", "1", "--slots", "2", "--concurrency", "1,2", "--rates", "",
             "--requests", "30", "--max-tokens", "64", "--nice", "19", "--out", "capacity_check_0.5b",
             "--replies", "capacity_check_0.5b_run6_requests.json,capacity_check_0.5b_run7.json,"
             "capacity_check_0.5b_run8.json,capacity_check_0.5b_run9.json,capacity_check_0.5b_run10.json"]  # fmt: skip
    for script, args in (
        ("bench_embedder_runtime.py", []),
        ("bench_pipeline.py", []),
        ("bench_embed_served.py", []),
        ("bench_answers.py", ["--split", "test"]),  # the benchmark is the one reader of the test split
        ("bench_scale.py", []),
        ("bench_vector_stores.py", []),
        ("bench_access.py", []),
        ("bench_ocr.py", []),
        ("bench_llama_server.py", []),
        ("bench_llama_contention.py", []),
        ("bench_physical_bound.py", []),
        ("bench_speculative.py", []),  # n-gram speculative decoding on the answer call, dev questions
        ("bench_capacity.py", []),  # AIPerf (setup part aiperf) on a llama-server it starts, the agent's prompts
        ("bench_capacity.py", check),  # the planner's prediction of the server, then the load (docs/serving.md)
        ("bench_routing.py", []),  # prefix affinity against Serve's default router, two llama-server replicas
        ("bench_autoscaling.py", []),  # a load step on Serve autoscaling, min 1, max 2
        ("bench_cold_start.py", []),  # scale from zero: a replica's cold start
        ("bench_scale_sweep.py", []),
    ):
        print(f"== {script} {' '.join(args)}", flush=True)
        rc = subprocess.call([sys.executable, str(HERE / script), *args])
        if rc:
            return rc
    for path in sorted((HERE / "results").glob("*.json")):
        print(f"\n{path.name}:\n{json.dumps(json.loads(path.read_text()), indent=1)[:4000]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
