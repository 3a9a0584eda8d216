"""The sweep: every size and scenario, each step in its own process, results written after every scenario."""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.scale_sweep.common import (
    DONE_KEYS,
    HASHED_LABEL,
    HASHED_MODEL_ID,
    MARK,
    RAY_STEPS,
    REAL_DOCS,
    ROOT,
    STEPS,
)
from benchmarks.scale_sweep.documents import change_word, document
from benchmarks.scale_sweep.ray_head import RayHead, WorkerSampler
from infra.local.processes import free_port

# ------------------------------------------------------------------ the sweep


class Sweep:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.t_start = time.time()
        self.deadline = self.t_start + args.budget_min * 60 if args.budget_min else math.inf
        self.root = (
            Path(args.scratch) if args.scratch else Path(tempfile.mkdtemp(prefix="sw", dir="/tmp"))
        )  # short: Ray sockets
        self.root.mkdir(parents=True, exist_ok=True)
        self.head = RayHead(self.root, os.cpu_count() or 2, args.object_store_mb)
        self.out: dict = {}
        self.env: dict[str, str] = {}
        self.opensearch = None

    # ---------------------------------------------------------- processes
    def shards_for(self, n: int) -> int:
        """The store's shard count at n documents: fixed (--shards), or sized to the corpus (--docs-per-shard), as an
        operator creates the store for the corpus they expect (one shard bounds what a step holds at once)."""
        fixed = self.args.shards or 32
        if not self.args.docs_per_shard:
            return self.args.shards
        return max(fixed, math.ceil(n / self.args.docs_per_shard))

    def _child(self, extra: list[str], home: Path, sample: bool, n: int) -> tuple[dict, float, dict | None]:
        cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_scale_sweep.py"), "--home", str(home), *extra]
        if self.opensearch is not None:
            cmd += ["--opensearch-port", str(self.opensearch.port)]
        if self.shards_for(n):
            cmd += ["--shards", str(self.shards_for(n))]
        sampler = WorkerSampler(self.head) if sample else None
        if sampler:
            sampler.start()
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=self.env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if sampler:
            sampler.stop_event.set()
            sampler.join()
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
        if proc.returncode != 0 or not lines:
            tail = (proc.stdout[-1500:] + "\n" + proc.stderr[-3000:]).strip()
            raise RuntimeError(f"{' '.join(extra)} failed (exit {proc.returncode}):\n{tail}")
        return json.loads(lines[-1][len(MARK) :]), wall, sampler.result() if sampler else None

    def run_step(self, step: str, home: Path, kind: str, n: int) -> dict:
        load = os.getloadavg()[0]
        r, wall, workers = self._child(["--step", step, "--embedder", kind], home, sample=True, n=n)
        meta = r.pop("metadata")
        rec = {
            "seconds": r["seconds"],
            "seconds_per_1k_docs": round(r["seconds"] / (n / 1000), 4),
            "process_seconds": round(wall, 3),
            "process_seconds_per_1k_docs": round(wall / (n / 1000), 4),
            "setup_seconds": r["setup_seconds"],
            "peak_rss_mb": r["peak_rss_mb"],
            "rss_after_setup_mb": r["rss_after_setup_mb"],
            "ray_workers": workers if step in RAY_STEPS else None,
            "load_1min_at_start": round(load, 2),
            "done": {k: meta[k] for k in DONE_KEYS if k in meta},
            "checks": r["checks"],
        }
        if step == "chunk_embeddings" and kind == "hashed":
            rec["embedder"] = HASHED_LABEL
        return rec

    # ---------------------------------------------------------- projections (for --budget-min)
    def _measured(self, scenario: str) -> list[tuple[int, str, dict]]:
        return [
            (int(n), run["embedder"], run["scenarios"][scenario])
            for n, run in self.out["runs"].items()
            if scenario in run.get("scenarios", {})
        ]

    def project(self, n: int, kind: str, scenario: str) -> float:
        """Seconds a scenario at n would take: per step, the process overhead as measured plus the step's work
        scaled linearly from the largest measured n (a hashed embed step never scaled from a model's)."""
        base = self._measured(scenario) or self._measured("scratch")
        if not base:
            return 0.0
        n0, kind0, rec = max(base, key=lambda x: x[0])
        f = n / n0
        total = 0.0
        for step, s in rec["steps"].items():
            overhead = max(0.0, s["process_seconds"] - s["seconds"])
            work = s["seconds"] * f
            if step == "chunk_embeddings" and kind == "hashed" and kind0 != "hashed":
                hashed_rate = [(m, r) for m, k, r in self._measured(scenario) if k == "hashed"]
                work = 2.1 * n / 1500 if scenario == "scratch" else work * 0.05  # chunks/doc ~2.1, >= 1500 chunks/s
                if hashed_rate:
                    m, r = max(hashed_rate, key=lambda x: x[0])
                    work = r["steps"][step]["seconds"] * n / m
            total += overhead + work
        if scenario == "scratch":
            seeded = [(int(k), v["seed_seconds"]) for k, v in self.out["runs"].items() if v.get("seed_seconds")]
            if seeded:
                k, s = max(seeded)
                total += s * n / k
        return total * 1.15

    def fits(self, n: int, kind: str, scenario: str, reserve: float = 0.0) -> tuple[bool, str]:
        left = self.deadline - time.time() - 60  # a minute for the plot and cleanup
        need = self.project(n, kind, scenario)
        ok = need + reserve <= left
        why = (
            f"projected {need / 60:.1f} min"
            + (f" + {reserve / 60:.1f} min reserved for larger sizes" if reserve else "")
            + f", {max(0, left) / 60:.1f} min left of --budget-min {self.args.budget_min}"
        )
        return ok, why

    # ---------------------------------------------------------- the sweep
    def run(self) -> None:
        args = self.args
        from core.corpus import ARTICLE_TABLE, document_key, load_sample
        from pipelines.settings import load_settings
        from resources.document_store import LocalDocumentStore

        settings = load_settings({k: v for k, v in os.environ.items() if k != "AGENTIC_HOME"})
        self.out = {
            "sizes": args.sizes,
            "scenarios": args.scenarios,
            "load_average": {"start": [round(x, 2) for x in os.getloadavg()]},
            "config": {
                "steps": STEPS,
                "state_shards": args.shards or settings.state_shards,
                "docs_per_shard": args.docs_per_shard or None,
                "state_shards_by_size": {str(n): self.shards_for(n) or settings.state_shards for n in args.sizes},
                "chunker": "asset defaults (200 tokens, 40 overlap)",
                "embedder_real": "all-MiniLM-L6-v2 int8 ONNX (OnnxEmbedder), Ray Data actor pool, one per core, 1 thread each",
                "embedder_above": args.hashed_above,
                "embedder_hashed": f"{HASHED_MODEL_ID}: {HASHED_LABEL}",
                "ray": "one Ray head for the whole sweep (started by the sweep process, node IP 127.0.0.1, AGENTIC_RAY_ADDRESS); each step process "
                "connects to it (connection time is in the step's seconds), none starts Ray",
                "seconds": "materialization of the step and its checks inside its process; process_seconds adds Python/Dagster "
                "imports and resource setup",
                "peak_rss_mb": "VmHWM of the step's process (the Ray driver for parse/chunk/embed runs in it)",
                "ray_workers": "Ray worker processes' RSS sampled every 0.25 s during the step: step_workers_* over the workers seen "
                "running the step's tasks/actors, all_workers_* over every worker (idle ones and Ray Data's "
                "helper actors too); shared object-store pages count in every process that touches them",
                "documents": f"real PubMed abstracts up to {REAL_DOCS:,}; beyond, copies with a new PMID/key and one word changed",
                "change1": "1% of the documents (random, seed 1) get one abstract word replaced, then every step runs again",
                "cpus": os.cpu_count(),
                "budget_min": args.budget_min,
            },
            "runs": {},
            "skipped": [],
        }
        self.save()
        if args.vector_store == "opensearch":
            from infra.local.opensearch_node import OpenSearchNode

            self.opensearch = OpenSearchNode(self.root / "opensearch", free_port(), heap=args.opensearch_heap)
            self.opensearch.start(timeout_s=180)
            self.out["config"]["vector_store"] = f"a local OpenSearch node (heap {args.opensearch_heap}), as on eks"
        else:
            self.out["config"]["vector_store"] = "LanceDB, embedded in the step process (local profile)"
        address = self.head.start()
        print(f"Ray head {address} (temp dir {self.head.temp_dir}); scratch {self.root}", flush=True)
        self.env = {k: v for k, v in os.environ.items() if k not in ("AGENTIC_HOME", "RAY_ADDRESS")}
        self.env.update(AGENTIC_RAY_ADDRESS=address, RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1")
        corpus = load_sample(settings.pubmed_dir / ARTICLE_TABLE, 0)
        sizes = sorted(args.sizes)
        real_sizes = [n for n in sizes if n <= args.hashed_above]
        raw_at = max(real_sizes) if real_sizes else None
        for idx, n in enumerate(sizes):
            kind = "hashed" if n > args.hashed_above else "onnx"
            home = self.root / f"home-{n}"
            run: dict = {
                "documents": n,
                "real_documents": min(n, len(corpus)),
                "synthesized_documents": max(0, n - len(corpus)),
                "embedder": kind,
                "scenarios": {},
            }
            if kind == "hashed":
                run["label"] = HASHED_LABEL
            for scenario in args.scenarios:
                reserve = 0.0
                if (
                    scenario == "change1" and n > args.hashed_above
                ):  # optional: keep time for the larger sizes' main runs
                    for m in sizes[idx + 1 :]:
                        need = self.project(m, "hashed", "scratch") + self.project(m, "hashed", "nochange")
                        if need <= self.deadline - time.time() - 60 - reserve:
                            reserve += need
                ok, why = self.fits(n, kind, scenario, reserve)
                if scenario != "scratch" and "scratch" not in run["scenarios"]:
                    ok, why = False, "no scratch run at this size"
                if not ok:
                    print(f"-- skip N={n:,} {scenario}: {why}", flush=True)
                    self.out["skipped"].append({"documents": n, "scenario": scenario, "why": why})
                    continue
                if scenario == "scratch":
                    shutil.rmtree(home, ignore_errors=True)
                    store = LocalDocumentStore(root=str(home / "documents"))
                    t0 = time.perf_counter()
                    for i in range(n):
                        pmid, data = document(i, corpus)
                        store.put(document_key(pmid), data)
                    run["seed_seconds"] = round(time.perf_counter() - t0, 1)
                    self.out["runs"][str(n)] = run
                    changed = n
                elif scenario == "change1":
                    store = LocalDocumentStore(root=str(home / "documents"))
                    picks = random.Random(1).sample(range(n), max(1, n // 100))
                    for i in picks:
                        pmid, data = document(i, corpus)
                        store.put(document_key(pmid), change_word(data, i * 7 + 3, b"revised"))
                    changed = len(picks)
                else:
                    changed = 0
                print(
                    f"== N={n:,} {scenario} ({kind} embedder, {changed:,} documents new or changed), load "
                    f"{os.getloadavg()[0]:.2f}",
                    flush=True,
                )
                steps: dict = {}
                for step in STEPS:
                    steps[step] = self.run_step(step, home, kind, n)
                    s = steps[step]
                    ray = s["ray_workers"]
                    print(
                        f"   {step:22s} {s['seconds']:9.2f} s ({s['process_seconds']:8.2f} s process)  peak RSS "
                        f"{s['peak_rss_mb']:7.1f} MB"
                        + (
                            f"  Ray workers of the step max {ray['step_workers_max_rss_mb']:.0f} MB, sum "
                            f"{ray['step_workers_max_sum_rss_mb']:.0f} MB ({ray['step_workers']} workers; all workers {ray['all_workers_max_sum_rss_mb']:.0f})"
                            if ray
                            else ""
                        )
                        + f"  {json.dumps(_brief(s['done']))}",
                        flush=True,
                    )
                total_s = sum(s["seconds"] for s in steps.values())
                total_p = sum(s["process_seconds"] for s in steps.values())
                rec = {
                    "changed_documents": changed,
                    "steps": steps,
                    "total": {
                        "seconds": round(total_s, 2),
                        "process_seconds": round(total_p, 2),
                        "seconds_per_1k_docs": round(total_s / (n / 1000), 3),
                        "peak_rss_mb": max(s["peak_rss_mb"] for s in steps.values()),
                    },
                }
                emb = steps["chunk_embeddings"]
                embedded = int(emb["done"].get("embedded_this_run", 0))
                rec["total"]["embedded"] = embedded
                if embedded:
                    rec["total"]["pipeline_chunks_per_second"] = round(embedded / total_p, 2)
                    emb["chunks_per_second_step"] = round(embedded / emb["seconds"], 2)
                    emb["chunks_per_second_process"] = round(embedded / emb["process_seconds"], 2)
                run["scenarios"][scenario] = rec
                self.out["runs"][str(n)] = run
                if scenario == "scratch" and n == raw_at and kind == "onnx":
                    self.raw(home, n, embedded, emb)
                self.save()
            self.calibrate()
            self.save()
            shutil.rmtree(home, ignore_errors=True)

    def raw(self, home: Path, n: int, embedded: int, emb: dict) -> None:
        print(f"== raw embedder on a sample of N={n:,}'s chunks", flush=True)
        r, wall, _ = self._child(
            [
                "--raw",
                "--raw-sample",
                str(self.args.raw_sample),
                "--raw-threads",
                str(os.cpu_count() or 2),
                "--raw-nice",
                str(self.args.raw_nice),
            ],
            home,
            sample=False,
            n=n,
        )
        r["load_1min_at_end"] = round(os.getloadavg()[0], 2)
        r["documents"] = n
        r["process_seconds"] = round(wall, 1)
        r["pipeline_embed_step_chunks_per_second"] = emb["chunks_per_second_step"]
        r["pipeline_embed_process_chunks_per_second"] = emb["chunks_per_second_process"]
        self.out["raw_embedder"] = r
        print(
            f"   raw model {r['onnx_chunks_per_second']} chunks/s ({r['threads']} threads, {r['sample_chunks']} chunks); "
            f"hashed {r['hashed_chunks_per_second']} chunks/s; pipeline embed step {emb['chunks_per_second_step']} chunks/s",
            flush=True,
        )

    def calibrate(self) -> None:
        raw = self.out.get("raw_embedder")
        if not raw:
            return
        real_cps = raw["pipeline_embed_step_chunks_per_second"]
        self.out["calibration"] = {
            "hashed_vs_model_raw_speed": round(raw["hashed_chunks_per_second"] / raw["onnx_chunks_per_second"], 1),
            "note": "hashed rows' embed step is not the model's: projected_real_embed_seconds = chunks embedded / the real "
            f"pipeline's embedding-step rate at N={raw['documents']:,} ({real_cps} chunks/s)",
        }
        for run in self.out["runs"].values():
            if run["embedder"] != "hashed":
                continue
            for rec in run["scenarios"].values():
                e = rec["steps"]["chunk_embeddings"]
                embedded = int(e["done"].get("embedded_this_run", 0))
                e["projected_real_embed_seconds"] = round(embedded / real_cps, 1) if real_cps else None
                rec["total"]["projected_real_seconds"] = round(
                    rec["total"]["seconds"] - e["seconds"] + (e["projected_real_embed_seconds"] or 0), 1
                )

    def save(self) -> Path:
        from benchmarks.common import save

        return save(self.args.name, self.out)

    def close(self) -> None:
        self.head.stop()
        if self.opensearch is not None:
            self.opensearch.stop()
        if not self.args.keep:
            shutil.rmtree(self.root, ignore_errors=True)
        self.out["load_average"]["end"] = [round(x, 2) for x in os.getloadavg()]
        self.out["sweep_minutes"] = round((time.time() - self.t_start) / 60, 1)


def _brief(done: dict) -> dict:
    keys = (
        "new",
        "changed",
        "parsed_this_run",
        "rechunked_documents",
        "embedded_this_run",
        "retrained",
        "added",
        "deleted",
        "classified_documents",
    )
    return {k: done[k] for k in keys if k in done}
