"""How close the local LLM server runs to this machine's physical limits (issue 33, item 2).

Decode reads every weight once per generated token, so its bound is memory bandwidth / bytes read per token; prefill
multiplies every matrix by each prompt token, so its bound is the CPU's matrix-multiply rate. Measured here, once:
- memory bandwidth, STREAM-style (copy: bytes read + written; read: a sum over the array), one process and one per
  core at once, 256 MiB per process (far past the caches);
- fp32 matrix-multiply rate (numpy's OpenBLAS, all cores) on the models' own MLP shapes;
- per model: the bytes read per token and multiply-accumulates per prompt token from the GGUF header's tensor table
  (`core.gguf_tensors`), and llama-server's own prefill and decode tokens/s (the binary and settings the project
  runs: 4 slots, all cores) on one ~1,200-token prompt with 128 tokens out, the prompt cache off; and with one
  thread, to tell a memory-bound step (it scales like the bandwidth) from a compute-bound one (like the cores).
Result: benchmarks/results/physical_bound.json (`--models 0.5b 1.5b`).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_llama_server import complete  # noqa: E402
from benchmarks.common import save  # noqa: E402
from core.gguf import get_model  # noqa: E402
from core.gguf_tensors import read_tensors, token_cost  # noqa: E402
from infra.local.llama_server import LlamaServer, resolve_binary  # noqa: E402

MIB = 1 << 20
PROMPT_REPEATS = 48  # ~1,160 prompt tokens: the 1,200-token prefill


def _stream(n_bytes: int, reps: int, barrier, out) -> None:
    src = np.ones(n_bytes // 8, dtype=np.float64)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # touch every page before timing
    barrier.wait()
    copy = read = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        copy = min(copy, time.perf_counter() - t0)
        t0 = time.perf_counter()
        float(src.sum())
        read = min(read, time.perf_counter() - t0)
    out.put((2 * n_bytes / copy, n_bytes / read))


def bandwidth(procs: int, n_bytes: int = 256 * MIB, reps: int = 5) -> dict:
    """GB/s, best of ``reps``, summed over ``procs`` processes started together."""
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(procs), ctx.Queue()
    workers = [ctx.Process(target=_stream, args=(n_bytes, reps, barrier, out)) for _ in range(procs)]
    for w in workers:
        w.start()
    got = [out.get(timeout=300) for _ in workers]
    for w in workers:
        w.join()
    return {
        "processes": procs,
        "copy_gb_s": round(sum(c for c, _ in got) / 1e9, 2),
        "read_gb_s": round(sum(r for _, r in got) / 1e9, 2),
    }


def gemm_gflops(m: int, k: int, n: int, reps: int = 5) -> float:
    a = np.random.default_rng(0).standard_normal((m, k), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((k, n), dtype=np.float32)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return round(2 * m * k * n / best / 1e9, 1)


def served_rates(model: Path, cache: Path, reps: int = 2, threads: int = 0, policy: str = "") -> dict:
    """``policy``: OpenMP's wait policy, if not the product's (``server_env``: threads sleep when they wait)."""
    binary, env, origin = resolve_binary(cache, model)
    server = LlamaServer(binary, {**env, "OMP_WAIT_POLICY": policy} if policy else env, model, "bench", threads=threads)
    server.start()
    try:
        complete(server.url, 0, 8, PROMPT_REPEATS)  # warm-up
        runs = [complete(server.url, i, 128, PROMPT_REPEATS) for i in range(1, reps + 1)]
    finally:
        server.stop()
    return {
        "binary": origin,
        "prompt_tokens": runs[0]["prompt_n"],
        "prefill_tokens_per_s": [round(r["prompt_per_second"], 1) for r in runs],
        "decode_tokens_per_s": [round(r["predicted_per_second"], 1) for r in runs],
    }


def kv_bytes_per_position(meta: dict) -> int:
    """K and V (f16) of one context position, all layers: what decode reads per token of context besides weights."""
    arch = meta["general.architecture"]
    layers, heads = meta[f"{arch}.block_count"], meta[f"{arch}.attention.head_count"]
    kv_heads = meta.get(f"{arch}.attention.head_count_kv", heads)
    head_dim = meta[f"{arch}.embedding_length"] // heads
    return 2 * layers * kv_heads * head_dim * 2


def model_row(key: str, cache: Path, read_gb_s: float, gemm: float) -> dict:
    path = cache / "models" / "llm" / get_model(key).file_name
    meta, tensors = read_tensors(path)
    cost = token_cost(tensors)
    rates = served_rates(path, cache)
    # one thread against all: decode scaling like the bandwidth (1 -> all processes) says memory bound; like the
    # core count, compute bound (the quantized weights' unpacking)
    one = served_rates(path, cache, reps=1, threads=1)
    # the product's threads sleep at every wait (for the processes beside it); spinning shows what that costs
    spinning = served_rates(path, cache, reps=1, policy="ACTIVE")
    context = rates["prompt_tokens"] + 64  # mid-way through the 128 generated tokens
    per_token = cost.decode_bytes + kv_bytes_per_position(meta) * context
    decode_bound = read_gb_s * 1e9 / per_token
    prefill_bound = gemm * 1e9 / (2 * cost.prefill_macs)
    decode, prefill = max(rates["decode_tokens_per_s"]), max(rates["prefill_tokens_per_s"])
    return {
        "file": path.name,
        "params": cost.params,
        "weight_types": cost.types,
        "decode_bytes_per_token": per_token,
        "prefill_macs_per_token": cost.prefill_macs,
        **rates,
        "decode_bound_tokens_per_s": round(decode_bound, 1),
        "decode_share_of_bound": round(decode / decode_bound, 3),
        "prefill_gflops": round(prefill * 2 * cost.prefill_macs / 1e9, 1),
        "prefill_fp32_gemm_bound_tokens_per_s": round(prefill_bound, 1),
        "prefill_share_of_fp32_gemm": round(prefill / prefill_bound, 3),
        "one_thread": {k: one[k] for k in ("prefill_tokens_per_s", "decode_tokens_per_s")},
        "threads_spinning": {
            **{k: spinning[k] for k in ("prefill_tokens_per_s", "decode_tokens_per_s")},
            "decode_share_of_bound": round(spinning["decode_tokens_per_s"][0] / decode_bound, 3),
        },
        "decode_scaling_all_threads_vs_one": round(decode / one["decode_tokens_per_s"][0], 2),
        "prefill_scaling_all_threads_vs_one": round(prefill / one["prefill_tokens_per_s"][0], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["0.5b", "1.5b"], choices=("0.5b", "1.5b"))
    ap.add_argument("--out", default="physical_bound", help="the result's name (a copy per CPU kind)")
    a = ap.parse_args()
    cache = Path(os.environ.get("AGENTIC_CACHE", Path.home() / ".cache" / "agentic"))
    cores = os.cpu_count() or 1
    load_before = os.getloadavg()[0]
    bw = [bandwidth(1), bandwidth(cores)]
    gemm = {
        "0.5b_mlp_512x896x4864": gemm_gflops(512, 896, 4864),
        "1.5b_mlp_512x1536x8960": gemm_gflops(512, 1536, 8960),
    }
    best_gemm = max(gemm.values())
    read_all = bw[-1]["read_gb_s"]
    rows = {k: model_row(k, cache, read_all, best_gemm) for k in a.models}
    result = {
        "cores": cores,
        "load_1m_before": load_before,
        "load_1m_at_end": os.getloadavg()[0],
        "bandwidth": bw,
        "bandwidth_scaling_all_vs_one": round(bw[-1]["read_gb_s"] / bw[0]["read_gb_s"], 2),
        "fp32_gemm_gflops": gemm,
        "models": rows,
        "method": "decode bound = all-core read bandwidth / (weights read per token + f16 KV of the context); "
        "prefill bound = best fp32 GEMM rate / (2 x multiply-accumulates per prompt token)",
    }
    out = save(a.out, result)
    print(json.dumps(result, indent=1), f"\n-> {out}")


if __name__ == "__main__":
    main()
