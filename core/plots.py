"""Figures as PNG bytes for asset metadata and the state store."""

from __future__ import annotations


def png_bytes(fig, dpi: int | None = None) -> bytes:
    """A matplotlib figure as PNG bytes, in memory (the caller puts them in the state store or the metadata; no
    step writes a local file), and the figure closed."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", **({"dpi": dpi} if dpi else {}))
    plt.close(fig)
    return buf.getvalue()


def cost_per_answer_png(rows: list[dict]) -> bytes:
    """Grouped bars: USD per 1,000 answers for each route, one bar per model (``core.trace_cost`` rows); an unpriced
    model's bar is left out and named in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    routes = sorted({r["route"] for r in rows})
    models = sorted({r["model"] for r in rows})
    by = {(r["route"], r["model"]): r for r in rows}
    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    width = 0.8 / max(1, len(models))
    for j, model in enumerate(models):
        xs, ys = [], []
        for i, route in enumerate(routes):
            r = by.get((route, model))
            if r is not None and r["usd_per_1000_answers"] is not None:
                xs.append(i - 0.4 + width * (j + 0.5))
                ys.append(r["usd_per_1000_answers"])
        priced = any(by.get((route, model), {}).get("usd_per_1000_answers") is not None for route in routes)
        bars = ax.bar(xs, ys, width, label=model if priced else f"{model} (unpriced)")
        ax.bar_label(bars, fmt="$%.3f", fontsize=7)
    ax.set_xticks(range(len(routes)), routes)
    ax.set_ylabel("USD per 1,000 answers")
    ax.set_title("Cost per answer by route and model (from traces)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return png_bytes(fig)
