"""Scale to zero and back: the cold start of a model replica (issue 33, item 4).

The routed LLM app (``resources/serve_routing.py``) with Serve autoscaling from zero (min 0, max 1, no initial
replica) on 127.0.0.1 with token auth: once no replica runs, one chat request (an agent prompt, streamed) is sent and
timed to its first token; then the same request again, warm, both with the prompt cache off. The cold start is the
difference. It is the local twin's
(llama-server loading a GGUF file from the page cache); the vision model on eks (vLLM loading Qwen2.5-VL-7B onto a GPU,
``models.vision_min_replicas: 0``) was not measured here. Result: ``benchmarks/results/cold_start_<llm>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import save  # noqa: E402


def first_token_s(url: str, model: str, messages: list[dict], max_tokens: int) -> tuple[float, float]:
    """Seconds to the first streamed content and to the end of one chat request."""
    import httpx

    # the prompt cache off: the warm request pays the same prefill as the cold one
    body = {"model": model, "messages": messages, "max_tokens": max_tokens, "stream": True, "cache_prompt": False}
    t0, first = time.perf_counter(), None
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if first is None and line.startswith("data: ") and '"content"' in line:
                first = time.perf_counter() - t0
    return first if first is not None else float("nan"), time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llm", default="0.5b", choices=("0.5b", "1.5b"))
    ap.add_argument("--home", default="/tmp/bench-home", help="an indexed home (the prompt); indexed here if empty")
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--downscale-delay", type=float, default=5.0)
    args = ap.parse_args()

    from benchmarks.bench_routing import served_setup
    from infra.local.processes import free_port

    res, work, _, model, path, _, (binary, env, origin), records = served_setup(args, "bench-cold-", 1, 0)
    turns = records[0]["turns"]
    messages = [{"role": "system", "content": turns[0]["text"]}, {"role": "user", "content": turns[1]["text"]}]
    res["ray_cluster"].ensure()  # Ray is imported after this: it reads its token settings at import
    from ray import serve

    from benchmarks.bench_autoscaling import running_replicas
    from resources.serve_routing import routed_app

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    spec = {"binary": str(binary), "env": env, "model_path": str(path), "alias": model.served_name,
            "ctx_size": 4096, "parallel": 1, "threads": 0, "run_dir": str(work / "replicas")}  # fmt: skip
    autoscaling = {"min_replicas": 0, "initial_replicas": 0, "max_replicas": 1, "target_ongoing_requests": 1,
                   "upscale_delay_s": 0, "downscale_delay_s": args.downscale_delay}  # fmt: skip
    base = f"http://127.0.0.1:{port}/routed"
    try:
        serve.run(routed_app(spec, "default", 1, autoscaling=autoscaling), name="routed", route_prefix="/routed")
        idle = running_replicas(serve, "routed", "llama")
        cold = first_token_s(base, model.served_name, messages, args.max_tokens)
        up = running_replicas(serve, "routed", "llama")
        warm = first_token_s(base, model.served_name, messages, args.max_tokens)
    finally:
        serve.shutdown()
    out = {
        "model": model.served_name,
        "binary": origin,
        "autoscaling": autoscaling,
        "replicas_before": idle,
        "replicas_after_the_first_request": up,
        "cold_ttft_s": round(cold[0], 2),
        "cold_e2e_s": round(cold[1], 2),
        "warm_ttft_s": round(warm[0], 2),
        "warm_e2e_s": round(warm[1], 2),
        "cold_start_s": round(cold[0] - warm[0], 2),
    }
    print(json.dumps(out, indent=1), f"\n-> {save(f'cold_start_{args.llm}', out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
