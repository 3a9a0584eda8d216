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
    for script in (
        "bench_embedder_runtime.py",
        "bench_pipeline.py",
        "bench_embed_served.py",
        "bench_answers.py",
        "bench_scale.py",
        "bench_vector_stores.py",
        "bench_access.py",
        "bench_ocr.py",
        "bench_llama_server.py",
        "bench_llama_contention.py",
        "bench_physical_bound.py",
        "bench_capacity.py",  # AIPerf (setup part aiperf) on a llama-server it starts, the agent's prompts
        "bench_scale_sweep.py",
    ):
        print(f"== {script}", flush=True)
        rc = subprocess.call([sys.executable, str(HERE / script)])
        if rc:
            return rc
    for path in sorted((HERE / "results").glob("*.json")):
        print(f"\n{path.name}:\n{json.dumps(json.loads(path.read_text()), indent=1)[:4000]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
