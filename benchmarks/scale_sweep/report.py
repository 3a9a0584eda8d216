"""The sweep's goals, its Markdown table and its log-log plot."""

from __future__ import annotations

import math
from pathlib import Path

from benchmarks.scale_sweep.common import RAY_STEPS, SCENARIOS, SHORT, STEPS

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
