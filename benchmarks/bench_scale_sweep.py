"""Scale sweep of the knowledge pipeline: time and peak memory per step, from 2k to 300k documents.

    python benchmarks/bench_scale_sweep.py                                       # make bench: 2k, 10k, 33k
    python benchmarks/bench_scale_sweep.py --sizes 2000,10000,33272,100000,300000 --budget-min 75

For every N and scenario (``scratch``: a fresh home; ``nochange``: the same documents again; ``change1``: 1% of the
documents with one word changed), each knowledge step (document_inventory .. vector_index, with its asset checks)
runs in its own process, as a pod per step would on eks: the process builds the local profile's resources for the
sweep's home and materializes just that asset. Per step: wall seconds of the materialization (and of the whole
process, imports and Ray connection included), seconds per 1k documents, the process's peak RSS (``VmHWM``),
the Ray workers' RSS (sampled from /proc every 0.25 s while the step runs: the largest worker and the largest sum
over workers; Ray's object store is shared memory and not counted apart), and what the step did (its
materialization metadata: parsed, rechunked, embedded, added, ...).

* One Ray head (started by the sweep process on 127.0.0.1 with the machine's cores) serves the whole sweep through
  ``AGENTIC_RAY_ADDRESS``: no step pays a Ray start, each pays a Ray connection (in its seconds).
* Documents: the real PubMed abstracts (33,272); beyond them, copies of real abstracts with a new PMID (and key)
  and one word changed, deterministically.
* Above ``--hashed-above`` documents (default 33,272) the embedding step uses ``core.embedding.HashedEmbedder``
  (feature hashing of word pieces; not a language model): those rows are labelled ``hashed`` and their embedding
  seconds are not the model's. Calibration: at the largest real N, the model (``OnnxEmbedder``, as many threads
  as the pipeline's actors have in total) and the hashed embedder embed the same random sample of that run's chunk
  texts in one process ("raw" chunks/s); hashed rows also carry ``projected_real_embed_seconds`` = chunks embedded
  / the real pipeline's embedding-step chunks/s.
* ``--budget-min``: a size or scenario whose projected time does not fit in what is left is skipped (recorded).
  change1 above the real corpus runs only if it leaves time for the larger sizes' scratch + nochange runs.

Results: benchmarks/results/scale_sweep.json (written after every scenario) and scale_sweep.png (log-log).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: the repository's packages

from benchmarks.scale_sweep.children import child_raw, child_step  # noqa: E402
from benchmarks.scale_sweep.common import REAL_DOCS, RESULTS, SCENARIOS  # noqa: E402
from benchmarks.scale_sweep.report import goals, plot, table  # noqa: E402
from benchmarks.scale_sweep.sweep import Sweep  # noqa: E402

# ------------------------------------------------------------------ main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="2000,10000,33272", help="documents per run, comma-separated")
    ap.add_argument("--scenarios", default="scratch,nochange,change1")
    ap.add_argument(
        "--hashed-above", type=int, default=REAL_DOCS, help="sizes above this embed with the hashed stand-in"
    )
    ap.add_argument(
        "--budget-min", type=float, default=0, help="skip what does not fit in this many minutes (0 = no limit)"
    )
    ap.add_argument(
        "--raw-sample", type=int, default=4000, help="chunks the raw embedder embeds for the throughput goal"
    )
    ap.add_argument("--raw-threads", type=int, default=0)
    ap.add_argument(
        "--raw-nice", type=int, default=15, help="niceness of the raw embedder run (Ray's workers run at 15)"
    )
    ap.add_argument("--shards", type=int, default=0, help="state-store shards (0 = the settings' default)")
    ap.add_argument("--vector-store", choices=("lancedb", "opensearch"), default="lancedb")
    ap.add_argument("--opensearch-heap", default="2g")
    ap.add_argument("--name", default="scale_sweep", help="results file name (benchmarks/results/NAME.json and .png)")
    ap.add_argument("--opensearch-port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument(
        "--docs-per-shard",
        type=int,
        default=0,
        help="size the store's shards to the corpus: max(--shards or 32, N / this); 0 = a fixed count",
    )
    ap.add_argument("--object-store-mb", type=int, default=1024)
    ap.add_argument("--scratch", default="", help="scratch folder (default: a new one under /tmp, removed at the end)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    ap.add_argument("--replot", action="store_true", help="only redo goals, table and plot from the saved JSON")
    ap.add_argument("--home", help=argparse.SUPPRESS)
    ap.add_argument("--step", help=argparse.SUPPRESS)
    ap.add_argument("--embedder", default="onnx", help=argparse.SUPPRESS)
    ap.add_argument("--raw", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.step:
        child_step(args)
        return 0
    if args.raw:
        child_raw(args)
        return 0
    if args.replot:
        path = RESULTS / f"{args.name}.json"
        out = json.loads(path.read_text())
        out["goals"] = goals(out)
        path.write_text(json.dumps(out, indent=2))
        plot(out, RESULTS / f"{args.name}.png")
        print(table(out))
        print(json.dumps(out["goals"], indent=1))
        return 0
    args.sizes = [int(x) for x in str(args.sizes).split(",") if x.strip()]
    args.scenarios = [x.strip() for x in args.scenarios.split(",") if x.strip()]
    if bad := [s for s in args.scenarios if s not in SCENARIOS]:
        ap.error(f"unknown scenario(s) {bad}; choose from {SCENARIOS}")
    if args.scenarios[0] != "scratch":
        ap.error("the first scenario must be scratch (the others rerun its home)")

    sweep = Sweep(args)
    try:
        sweep.run()
    finally:
        sweep.close()
    out = sweep.out
    out["goals"] = goals(out)
    path = sweep.save()
    plot(out, RESULTS / f"{args.name}.png")
    print()
    print(table(out))
    print(json.dumps(out["goals"], indent=1))
    if out.get("raw_embedder"):
        print("raw embedder:", json.dumps(out["raw_embedder"]))
    for s in out["skipped"]:
        print(f"skipped N={s['documents']:,} {s['scenario']}: {s['why']}")
    print(
        f"load average: start {out['load_average']['start']}, end {out['load_average']['end']}; {out['sweep_minutes']} min"
    )
    print("saved", path, "and", RESULTS / f"{args.name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
