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
import dataclasses
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infra.local.processes import free_port  # noqa: E402

STEPS = [
    "document_inventory",
    "parsed_documents",
    "document_chunks",
    "chunk_embeddings",
    "specialty_classifier",
    "document_classes",
    "vector_index",
]
SHORT = {
    "document_inventory": "inventory",
    "parsed_documents": "parse",
    "document_chunks": "chunk",
    "chunk_embeddings": "embed",
    "specialty_classifier": "classifier",
    "document_classes": "classes",
    "vector_index": "index",
}
RAY_STEPS = {"parsed_documents", "document_chunks", "chunk_embeddings"}
SCENARIOS = ("scratch", "nochange", "change1")
REAL_DOCS = 33_272
HASHED_MODEL_ID = "hashed-wordpiece-384"
HASHED_LABEL = "hashed embedder (timings of the embed step are not the real model's)"
MARK = "SCALE_SWEEP_RESULT "
RESULTS = ROOT / "benchmarks" / "results"
DONE_KEYS = (
    "documents",
    "new",
    "changed",
    "deleted",
    "changed_shards",
    "parsed_this_run",
    "read_this_run",
    "quarantined",
    "chunks",
    "rechunked_documents",
    "embedded_this_run",
    "reused_from_cache",
    "pruned_from_cache",
    "live_chunks",
    "dirty_shards",
    "retrained",
    "labelled_documents",
    "macro_f1",
    "classified_documents",
    "changed_class",
    "rows",
    "added",
    "reclassified_documents",
    "chunks_per_second",
    "ray_seconds",
    "actor_embed_seconds",
    "ray_actors_max",
)


def _mb(kb: float) -> float:
    return round(kb / 1024, 1)


def _rss_kb(pid: int | str = "self", field: str = "VmRSS") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# ------------------------------------------------------------------ child processes


def child_step(args: argparse.Namespace) -> None:
    """One knowledge step in this process: build the resources for the home, materialize the asset (with its checks)."""
    t0 = time.perf_counter()
    import dagster as dg

    from assets.knowledge import knowledge_assets, knowledge_checks
    from benchmarks.common import bench_settings
    from pipelines.profiles import build_resources
    from resources.embedder import EmbedderResource

    settings = bench_settings(Path(args.home))
    if args.shards:
        settings = dataclasses.replace(settings, state_shards=args.shards)
    if args.opensearch_port:  # the eks profile's index: the step only sends bulk requests, the node builds the index
        settings = dataclasses.replace(settings, vector_store="opensearch", opensearch_port=args.opensearch_port)
    res = build_resources(settings)
    if args.embedder == "hashed":
        res["embedder"] = EmbedderResource(
            kind="hashed", model_id=HASHED_MODEL_ID, tokenizer_path=res["embedder"].tokenizer_path
        )
    setup_s = time.perf_counter() - t0
    rss_setup = _rss_kb()
    t1 = time.perf_counter()
    result = dg.materialize(
        [*knowledge_assets, *knowledge_checks],
        selection=[args.step],
        resources=res,
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    seconds = time.perf_counter() - t1
    meta: dict = {}
    for ev in result.get_asset_materialization_events():
        m = ev.event_specific_data.materialization
        meta.update({k: v.value for k, v in m.metadata.items() if isinstance(v.value, bool | int | float)})
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    out = {
        "step": args.step,
        "success": result.success,
        "seconds": round(seconds, 3),
        "setup_seconds": round(setup_s, 3),
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork+exec, so it would report the parent's size
        "peak_rss_mb": _mb(_rss_kb("self", "VmHWM")),
        "rss_after_setup_mb": _mb(rss_setup),
        "metadata": meta,
        "checks": checks,
    }
    print(MARK + json.dumps(out), flush=True)
    sys.stdout.flush()
    os._exit(0 if result.success else 1)  # skip interpreter teardown (Ray, LanceDB threads): not part of the step


def child_raw(args: argparse.Namespace) -> None:
    """The model alone (and the hashed embedder) on a random sample of the home's chunk texts, in this process, at the
    Ray workers' niceness (Ray starts its workers at nice 15): on a shared machine the comparison is then like for like."""
    if args.raw_nice:
        os.nice(args.raw_nice)
    from benchmarks.common import bench_settings
    from core.embedding import HashedEmbedder
    from pipelines.profiles import build_resources

    settings = bench_settings(Path(args.home))
    if args.shards:
        settings = dataclasses.replace(settings, state_shards=args.shards)
    res = build_resources(settings)
    texts: list[str] = []
    for _, t in res["pipeline_state"].iter_shards("chunks", columns=["text"]):
        texts += t.column("text").to_pylist()
    sample = random.Random(0).sample(texts, min(args.raw_sample, len(texts)))
    emb = res["embedder"]
    model = emb.build(threads=args.raw_threads)
    model.embed(sample[:64])  # warm up
    t = time.perf_counter()
    model.embed(sample)
    onnx_s = time.perf_counter() - t
    hashed = HashedEmbedder(emb.tokenizer_path, dimension=emb.dimension, max_tokens=emb.max_tokens)
    hashed.embed(sample[:64])
    t = time.perf_counter()
    hashed.embed(sample)
    hashed_s = time.perf_counter() - t
    tokens = sum(model.count_tokens(sample))
    out = {
        "chunks_in_home": len(texts),
        "sample_chunks": len(sample),
        "sample_tokens_mean": round(tokens / max(1, len(sample)), 1),
        "threads": args.raw_threads,
        "niceness": os.nice(0),
        "onnx_seconds": round(onnx_s, 2),
        "onnx_chunks_per_second": round(len(sample) / onnx_s, 2),
        "hashed_seconds": round(hashed_s, 3),
        "hashed_chunks_per_second": round(len(sample) / hashed_s, 1),
    }
    print(MARK + json.dumps(out), flush=True)
    os._exit(0)


# ------------------------------------------------------------------ the Ray head and its workers


def _ppid_map() -> dict[int, int]:
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                out[int(d)] = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class RayHead:
    """A Ray head owned by the sweep process, with its own temp dir; its processes are stopped by pid (never ``ray stop``)."""

    def __init__(self, root: Path, cpus: int, object_store_mb: int):
        self.temp_dir = str(root / "ray")
        self.cpus, self.object_store_mb = cpus, object_store_mb
        self.address = ""
        self.raylet_pid = 0

    def start(self) -> str:
        """A Ray head owned by this process (``ray.init(address="local")``, node IP 127.0.0.1, its own temp dir), that the
        step processes join through its GCS address. Not ``ray start``: that also starts a Ray Client server on the
        machine's address, which cannot be turned off. (Ray's GCS and raylet listen on every interface either way;
        Ray has no setting to bind them to loopback only.)"""
        from resources.ray_cluster import apply_ray_env_defaults

        apply_ray_env_defaults()
        import ray

        ray.init(
            address="local",
            num_cpus=self.cpus,
            object_store_memory=self.object_store_mb * 1024 * 1024,
            include_dashboard=False,
            dashboard_host="127.0.0.1",
            dashboard_port=free_port(),
            _node_ip_address="127.0.0.1",
            _temp_dir=self.temp_dir,
            namespace="agentic-scale-sweep",
            log_to_driver=False,
            configure_logging=False,
        )
        self.address = ray.get_runtime_context().gcs_address
        for pid in self.own_pids():
            if "/raylet" in _cmdline(pid).split(" ")[0]:
                self.raylet_pid = pid
        return self.address

    def own_pids(self) -> set[int]:
        """The head's processes (their command lines name its temp dir) and everything below them (the workers,
        whose titles Ray rewrites to ``ray::...``)."""
        ppids = _ppid_map()
        ours = {pid for pid in ppids if self.temp_dir in _cmdline(pid)}
        ours.discard(os.getpid())
        grew = True
        while grew:
            kids = {p for p, pp in ppids.items() if pp in ours and p not in ours}
            ours |= kids
            grew = bool(kids)
        return ours

    def worker_pids(self) -> list[int]:
        if not self.raylet_pid:
            return []
        ppids = _ppid_map()
        return [p for p, pp in ppids.items() if pp == self.raylet_pid and _cmdline(p).startswith("ray::")]

    def stop(self) -> None:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        pids = self.own_pids()
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.time() + grace
            while pids and time.time() < deadline:
                pids = {p for p in pids if Path(f"/proc/{p}").exists() and "zombie" not in _status(p)}
                time.sleep(0.2)
            if not pids:
                return


def _status(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return "zombie"


class WorkerSampler(threading.Thread):
    """Samples the Ray workers' RSS while one step runs (not Ray's own agents): the largest worker and the largest sum,
    over all workers and over the step's workers (those seen running a task or actor of the step; not idle ones, nor
    Ray Data's long-lived helper actors that were already there when the step started)."""

    AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")

    def __init__(self, head: RayHead, interval_s: float = 0.25):
        super().__init__(daemon=True)
        self.head, self.interval_s = head, interval_s
        self.stop_event = threading.Event()
        self.before: dict[int, str] | None = None
        self.active: set[int] = set()
        self.max_worker_kb = self.max_sum_kb = self.max_step_worker_kb = self.max_step_sum_kb = 0
        self.titles: set[str] = set()
        self.samples = 0

    def run(self) -> None:
        pids: list[int] = []
        n = 0
        while not self.stop_event.is_set():
            if n % 4 == 0:  # the worker list once a second; titles and RSS every sample
                pids = [p for p in self.head.worker_pids() if not _cmdline(p).startswith(self.AGENTS)]
            titles = {p: _cmdline(p).split(" ")[0][:48] for p in pids}
            if self.before is None:
                self.before = {p: t for p, t in titles.items() if t != "ray::IDLE"}
            for p, t in titles.items():
                if t and t != "ray::IDLE" and self.before.get(p) != t:
                    self.active.add(p)
                    self.titles.add(t)
            rss = [(p, _rss_kb(p)) for p in pids]
            rss = [(p, r) for p, r in rss if r]
            step = [r for p, r in rss if p in self.active]
            if rss:
                self.max_worker_kb = max(self.max_worker_kb, max(r for _, r in rss))
                self.max_sum_kb = max(self.max_sum_kb, sum(r for _, r in rss))
            if step:
                self.max_step_worker_kb = max(self.max_step_worker_kb, max(step))
                self.max_step_sum_kb = max(self.max_step_sum_kb, sum(step))
            self.samples += 1
            n += 1
            self.stop_event.wait(self.interval_s)

    def result(self) -> dict:
        return {
            "step_workers_max_rss_mb": _mb(self.max_step_worker_kb),
            "step_workers_max_sum_rss_mb": _mb(self.max_step_sum_kb),
            "step_workers": len(self.active),
            "all_workers_max_rss_mb": _mb(self.max_worker_kb),
            "all_workers_max_sum_rss_mb": _mb(self.max_sum_kb),
            "samples": self.samples,
            "titles": sorted(self.titles),
        }


# ------------------------------------------------------------------ documents


_WORD = re.compile(rb"(?<=\s)[A-Za-z]{4,}(?=[\s.,;:])")
_ABSTRACT = re.compile(rb"<AbstractText[^>]*>(.*?)</AbstractText>", re.S)
_PMID = re.compile(rb"(<PMID[^>]*>)\s*\d+\s*(</PMID>)")
FILLER = [b"patients", b"results", b"clinical", b"therapy", b"outcomes", b"analysis", b"cohort", b"treatment"]


def change_word(data: bytes, salt: int, replacement: bytes | None = None) -> bytes:
    """The document with one word of its (first) abstract paragraph replaced, chosen by ``salt``."""
    m = _ABSTRACT.search(data)
    if not m:
        return data.replace(b"</ArticleTitle>", b" revised</ArticleTitle>", 1)
    words = list(_WORD.finditer(m.group(1)))
    if not words:
        return data[: m.end(1)] + b" revised" + data[m.end(1) :]
    w = words[salt % len(words)]
    new = replacement or FILLER[salt % len(FILLER)]
    if new.lower() == w.group(0).lower():
        new = FILLER[(salt + 1) % len(FILLER)]
    return data[: m.start(1) + w.start()] + new + data[m.start(1) + w.end() :]


def document(i: int, corpus: list[tuple[str, bytes]]) -> tuple[str, bytes]:
    """Document i of a sweep: a real abstract below len(corpus), else a copy of one with a new PMID and a changed word."""
    pmid, data = corpus[i % len(corpus)]
    copy = i // len(corpus)
    if copy == 0:
        return pmid, data
    new_pmid = str(copy * 100_000_000 + int(pmid))  # real PMIDs have at most 8 digits
    data = _PMID.sub(lambda m: m.group(1) + new_pmid.encode() + m.group(2), data, count=1)
    return new_pmid, change_word(data, int(pmid) * 31 + copy)


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
        cmd = [sys.executable, str(Path(__file__).resolve()), "--home", str(home), *extra]
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


# ------------------------------------------------------------------ goals, table, plot


def goals(out: dict) -> dict:
    runs = {int(n): r for n, r in out["runs"].items()}
    g: dict = {}
    scratch = {n: r["scenarios"]["scratch"] for n, r in runs.items() if "scratch" in r["scenarios"]}
    lo = min((n for n in scratch if n >= 10_000), default=None)
    hi = max(scratch, default=None)
    if lo and hi and hi > lo:
        per = {
            SHORT[s]: round(scratch[hi]["steps"][s]["peak_rss_mb"] / scratch[lo]["steps"][s]["peak_rss_mb"], 3)
            for s in STEPS
        }
        ray = {
            SHORT[s]: round(
                scratch[hi]["steps"][s]["ray_workers"]["step_workers_max_sum_rss_mb"]
                / max(1.0, scratch[lo]["steps"][s]["ray_workers"]["step_workers_max_sum_rss_mb"]),
                3,
            )
            for s in STEPS
            if s in RAY_STEPS
        }
        g["rss_growth"] = {
            "from": lo,
            "to": hi,
            "target": "<= 1.3x per step",
            "step_process_ratio": per,
            "ray_workers_sum_ratio": ray,
            "worst_step": max(per, key=per.get),
            "worst": max(per.values()),
            "pass": max(per.values()) <= 1.3,
            "full_range": hi == 300_000 and lo == 10_000,
        }
    nochange = {n: r["scenarios"]["nochange"] for n, r in runs.items() if "nochange" in r["scenarios"]}
    if len(nochange) >= 2:
        a, b = min(nochange), max(nochange)
        ra, rb = nochange[a]["total"]["seconds"], nochange[b]["total"]["seconds"]
        exponent = math.log(rb / ra) / math.log(b / a)
        g["nochange_flat"] = {
            "smallest": a,
            "largest": b,
            "documents_ratio": round(b / a, 1),
            "seconds_smallest": ra,
            "seconds_largest": rb,
            "seconds_ratio": round(rb / ra, 2),
            "loglog_slope": round(exponent, 3),
            "process_seconds_ratio": round(
                nochange[b]["total"]["process_seconds"] / nochange[a]["total"]["process_seconds"], 2
            ),
            "per_step_ratio": {
                SHORT[s]: round(nochange[b]["steps"][s]["seconds"] / max(1e-3, nochange[a]["steps"][s]["seconds"]), 2)
                for s in STEPS
            },
            "target": "time in proportion to what changed, not to N: pass when the no-change run's seconds grow < 2x over the whole range "
            "(log-log slope ~0; linear in N would be the documents ratio)",
            "pass": rb / ra < 2.0,
        }
    change = {n: r["scenarios"]["change1"] for n, r in runs.items() if "change1" in r["scenarios"]}
    if change:
        g["change1_vs_scratch"] = {
            str(n): round(change[n]["total"]["seconds"] / scratch[n]["total"]["seconds"], 4)
            for n in sorted(change)
            if n in scratch
        }
        g["change1_vs_scratch_process_seconds"] = {
            str(n): round(change[n]["total"]["process_seconds"] / scratch[n]["total"]["process_seconds"], 4)
            for n in sorted(change)
            if n in scratch
        }
    raw = out.get("raw_embedder")
    if raw:
        n = raw["documents"]
        rec = scratch[n]
        pipe_total_cps = rec["total"]["embedded"] / rec["total"]["process_seconds"]
        step_ratio = raw["pipeline_embed_step_chunks_per_second"] / raw["onnx_chunks_per_second"]
        g["throughput_vs_raw"] = {
            "documents": n,
            "raw_chunks_per_second": raw["onnx_chunks_per_second"],
            "embed_step_chunks_per_second": raw["pipeline_embed_step_chunks_per_second"],
            "embed_step_ratio": round(step_ratio, 3),
            "embed_step_process_ratio": round(
                raw["pipeline_embed_process_chunks_per_second"] / raw["onnx_chunks_per_second"], 3
            ),
            "whole_pipeline_chunks_per_second": round(pipe_total_cps, 2),
            "whole_pipeline_ratio": round(pipe_total_cps / raw["onnx_chunks_per_second"], 3),
            "target": ">= 0.8 (embed step: chunks embedded / the step's seconds; whole pipeline: / all 7 step processes' seconds)",
            "pass": step_ratio >= 0.8,
            "whole_pipeline_pass": pipe_total_cps / raw["onnx_chunks_per_second"] >= 0.8,
        }
    return g


def table(out: dict) -> str:
    head = (
        f"{'N':>8} {'emb':6} {'scenario':8} "
        + " ".join(f"{SHORT[s]:>15}" for s in STEPS)
        + f" {'total s':>9} {'s/1k':>7}"
    )
    lines = ["per step: seconds | peak RSS MB of the step process", head]
    for n, run in sorted(out["runs"].items(), key=lambda x: int(x[0])):
        for sc, rec in run["scenarios"].items():
            cells = " ".join(
                f"{rec['steps'][s]['seconds']:>7.1f}|{rec['steps'][s]['peak_rss_mb']:>6.0f}" for s in STEPS
            )
            lines.append(
                f"{int(n):>8,} {run['embedder']:6} {sc:8} {cells} {rec['total']['seconds']:>9.1f} "
                f"{rec['total']['seconds_per_1k_docs']:>7.2f}"
            )
    lines.append("Ray workers started by the step (parse/chunk/embed): max single worker | max sum over them, MB")
    for n, run in sorted(out["runs"].items(), key=lambda x: int(x[0])):
        for sc, rec in run["scenarios"].items():
            lines.append(
                f"{int(n):>8,} {sc:8} "
                + "  ".join(
                    f"{SHORT[s]} {rec['steps'][s]['ray_workers']['step_workers_max_rss_mb']:.0f}|{rec['steps'][s]['ray_workers']['step_workers_max_sum_rss_mb']:.0f}"
                    for s in STEPS
                    if s in RAY_STEPS
                )
            )
    return "\n".join(lines)


def plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = sorted(((int(n), r) for n, r in out["runs"].items() if "scratch" in r["scenarios"]), key=lambda x: x[0])
    if not runs:
        return
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, metric, title in (
        (axes[0], "seconds", "seconds per step (from scratch)"),
        (axes[1], "peak_rss_mb", "peak RSS per step process, MB (from scratch)"),
    ):
        for i, s in enumerate(STEPS):
            xs = [n for n, _ in runs]
            ys = [r["scenarios"]["scratch"]["steps"][s][metric] for _, r in runs]
            ax.plot(xs, ys, "-", color=colors[i % len(colors)], label=SHORT[s])
            for (n, r), y in zip(runs, ys):
                ax.plot(
                    [n],
                    [y],
                    "o",
                    color=colors[i % len(colors)],
                    mfc="white" if r["embedder"] == "hashed" else colors[i % len(colors)],
                )
        if metric == "seconds":
            ax.plot(
                [n for n, _ in runs],
                [r["scenarios"]["scratch"]["total"]["seconds"] for _, r in runs],
                "k--",
                label="total",
            )
            proj = [
                (n, r["scenarios"]["scratch"]["steps"]["chunk_embeddings"].get("projected_real_embed_seconds"))
                for n, r in runs
                if r["embedder"] == "hashed"
            ]
            if any(y for _, y in proj):
                xs, ys = zip(*[(n, y) for n, y in proj if y])
                ax.plot(xs, ys, "x", color=colors[3], ms=8, label="embed, projected for the real model")
        else:
            ax.plot(
                [n for n, _ in runs],
                [
                    r["scenarios"]["scratch"]["steps"]["chunk_embeddings"]["ray_workers"]["step_workers_max_sum_rss_mb"]
                    for _, r in runs
                ],
                "k:",
                label="embed step's Ray workers (sum)",
            )
        ax.set_title(title)
    ax = axes[2]
    for i, sc in enumerate(SCENARIOS):
        pts = [(n, r["scenarios"][sc]["total"]["seconds"]) for n, r in runs if sc in r["scenarios"]]
        if pts:
            ax.plot(*zip(*pts), "o-", color=colors[i], label=sc)
    n0, t0 = runs[0][0], runs[0][1]["scenarios"]["scratch"]["total"]["seconds"]
    ax.plot([n0, runs[-1][0]], [t0, t0 * runs[-1][0] / n0], color="grey", lw=0.8, ls=":", label="linear in N")
    ax.set_title("total seconds per scenario")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("documents (N)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].legend(fontsize=7, loc="lower right")
    hashed = [n for n, r in runs if r["embedder"] == "hashed"]
    note = (
        f"hollow markers: hashed embedder at N >= {min(hashed):,} (timings of the embed step are not the real model's)"
        if hashed
        else "real embedder at every N"
    )
    fig.suptitle(
        f"Knowledge pipeline scale sweep, each step in its own process, one Ray head, {out['config']['cpus']} cores; {note}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
