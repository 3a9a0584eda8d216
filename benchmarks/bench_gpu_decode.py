"""GPU serving throughput for the cost model (issue 8's unit economics), measured on the accelerator machine.

Runs Hugging Face transformers' batched ``generate`` (eager PyTorch, SDPA attention, bf16, static batches) on models
with the exact architectures the platform serves, with random weights: Qwen3-14B (production LLM) and
Qwen2.5-1.5B (the local twin's LLM). Throughput does not depend on the weights' values, so random weights measure
the same arithmetic and memory traffic; it avoids shipping 30 GB of weights to a machine with no network.
This is a lower bound for vLLM (continuous batching, paged attention, CUDA graphs), which the platform deploys.

    python benchmarks/bench_gpu_decode.py --out results.json   (needs a CUDA GPU and transformers>=4.51)
"""

from __future__ import annotations

import argparse
import json
import platform
import time

ARCHS = {
    # Qwen/Qwen3-14B config.json (architecture only)
    "qwen3-14b": dict(
        kind="qwen3",
        hidden_size=5120,
        intermediate_size=17408,
        num_hidden_layers=40,
        num_attention_heads=40,
        num_key_value_heads=8,
        head_dim=128,
        vocab_size=151936,
        max_position_embeddings=40960,
        rope_theta=1000000.0,
        tie_word_embeddings=False,
    ),
    # Qwen/Qwen2.5-Coder-1.5B-Instruct config.json
    "qwen2.5-1.5b": dict(
        kind="qwen2",
        hidden_size=1536,
        intermediate_size=8960,
        num_hidden_layers=28,
        num_attention_heads=12,
        num_key_value_heads=2,
        vocab_size=151936,
        max_position_embeddings=32768,
        rope_theta=1000000.0,
        tie_word_embeddings=True,
    ),
}


def build(name: str):
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config, Qwen3Config

    spec = dict(ARCHS[name])
    kind = spec.pop("kind")
    cfg = (Qwen3Config if kind == "qwen3" else Qwen2Config)(**spec)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16, attn_implementation="sdpa")
    model.eval()
    n = sum(p.numel() for p in model.parameters())
    return model, n


def run(model, batch: int, prompt: int, new: int, vocab: int) -> dict:
    import torch

    ids = torch.randint(100, vocab - 100, (batch, prompt), device="cuda")
    mask = torch.ones_like(ids)
    kw = dict(attention_mask=mask, do_sample=False, pad_token_id=0, eos_token_id=None)
    with torch.inference_mode():
        model.generate(
            ids[:, :32], max_new_tokens=4, min_new_tokens=4, **{**kw, "attention_mask": mask[:, :32]}
        )  # warm-up
        torch.cuda.synchronize()
        t = time.perf_counter()
        model.generate(ids, max_new_tokens=1, min_new_tokens=1, **kw)
        torch.cuda.synchronize()
        prefill = time.perf_counter() - t
        t = time.perf_counter()
        out = model.generate(ids, max_new_tokens=new, min_new_tokens=new, **kw)
        torch.cuda.synchronize()
        total = time.perf_counter() - t
    generated = (out.shape[1] - prompt) * batch
    decode = max(total - prefill, 1e-9)
    return {
        "batch": batch,
        "prompt_tokens": prompt,
        "new_tokens": new,
        "seconds": round(total, 3),
        "prefill_seconds": round(prefill, 3),
        "output_tokens_per_s": round(generated / total, 1),
        "decode_tokens_per_s": round((generated - batch) / decode, 1),
        "processed_tokens_per_s": round((generated + batch * prompt) / total, 1),
    }


def main() -> None:
    import torch
    import transformers

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument(
        "--prompt", type=int, default=1024
    )  # an answer prompt is ~1,800 tokens with 5 passages; 1,024 keeps batches in memory
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--batches", default="1,8,32")
    args = ap.parse_args()
    result = {
        "benchmark": "gpu_decode",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "engine": "transformers generate (eager, sdpa, bf16), random weights",
        "models": {},
    }
    for name in ARCHS:
        model, n = build(name)
        rows = []
        for b in [int(x) for x in args.batches.split(",")]:
            try:
                rows.append(run(model, b, args.prompt, args.new, model.config.vocab_size))
                print(name, rows[-1], flush=True)
            except torch.cuda.OutOfMemoryError:
                rows.append({"batch": b, "error": "out of memory"})
                torch.cuda.empty_cache()
        result["models"][name] = {
            "parameters": n,
            "rows": rows,
            "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1),
        }
        del model
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
