"""Throughput measured by the benchmarks (benchmarks/results), parsed for unit economics and the cost per answer."""

import json

from assets.cost.state import (
    MEASURED_FILES,
    RESULTS,
)
from core.cost import (
    Throughput,
)


def load_result(name: str) -> dict | None:
    assert name in MEASURED_FILES, f"{name}: add it to MEASURED_FILES (and so to the image)"
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def measured_throughputs() -> tuple[list[Throughput], float]:
    """Serving options with their measured throughput (benchmark results), each labelled with where it was measured.
    Returns (options, tokens per answer measured on the fast path)."""
    options: list[Throughput] = []
    tokens_per_answer = 1900.0
    cpu = load_result("answer_latency_1.5b.json")
    if cpu:
        rows = cpu["rows"]
        toks = sum(r["answer_tokens"]["prompt"] + r["answer_tokens"]["completion"] for r in rows)
        secs = sum(r["answer_s"] for r in rows)
        tokens_per_answer = toks / len(rows)
        per_vcpu = toks / secs / cpu["machine"]["cpus"]
        options.append(
            Throughput(
                "cpu-graviton",
                "Qwen2.5-Coder-1.5B (llama.cpp, Q8 GGUF)",
                round(per_vcpu * 8, 1),
                f"measured {cpu['measured_at'][:10]} on {cpu['machine']['cpus']} vCPU (AMD EPYC, this CI class): "
                f"{toks / secs:.1f} tokens/s over {len(rows)} fast-path answers; scaled x4 to c7g.2xlarge's 8 vCPU "
                "(assumption: linear in vCPU, same per-core speed)",
                "c7g.2xlarge",
                tokens_per_answer=tokens_per_answer,
                extra={"measured_tokens_per_s_2vcpu": round(toks / secs, 1)},
            )
        )
    gpu = load_result("gpu_decode_h100.json")
    if gpu:
        for model, label in (("qwen3-14b", "Qwen3-14B"), ("qwen2.5-1.5b", "Qwen2.5-1.5B")):
            rows = [r for r in gpu["models"][model]["rows"] if "processed_tokens_per_s" in r]
            best = max(rows, key=lambda r: r["processed_tokens_per_s"])
            options.append(
                Throughput(
                    f"gpu-h100-{model}",
                    f"{label} (bf16)",
                    best["processed_tokens_per_s"],
                    f"measured {gpu['measured_at'][:10]} on one {gpu['device']} with {gpu['engine']}, batch {best['batch']}, "
                    f"prompt {best['prompt_tokens']} + {best['new_tokens']} new tokens (a lower bound for vLLM); priced as "
                    "1/8 of p5.48xlarge (per GPU-hour; on demand the node has 8)",
                    "p5.48xlarge",
                    nodes=1 / 8,
                    tokens_per_answer=tokens_per_answer,
                )
            )
    options.append(
        Throughput(
            "inferentia-inf2",
            "Qwen3-8B (Neuron)",
            0.0,
            "not measured: no Inferentia machine here; only its node cost is priced",
            "inf2.xlarge",
            measured=False,
            tokens_per_answer=tokens_per_answer,
        )
    )
    return options, tokens_per_answer
