"""How the cost assets show their numbers: cost lines as Markdown, and the report's and the simulation's plots."""

from core.cost import (
    total,
)
from core.plots import png_bytes


def lines_markdown(lines: list[dict], title: str) -> str:
    rows = [f"**{title}**", "", "| service | dimension | monthly USD | assumption |", "|---|---|---:|---|"]
    rows += [
        f"| {l['service']} | {l['dimension']} | {l['monthly_usd']:,.2f} | {l.get('assumption', '') if not l.get('parts') or len(l['parts']) < 2 else '; '.join(p['assumption'] for p in l['parts'])} |"
        for l in lines
    ]
    rows.append(f"| **total** | | **{total(lines):,.2f}** | |")
    return "\n".join(rows)


def stacked_png(scenarios: dict[str, list[dict]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    services = sorted({l["service"] for ls in scenarios.values() for l in ls})
    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    bottoms = [0.0] * len(scenarios)
    cmap = plt.get_cmap("tab20")
    for i, svc in enumerate(services):
        vals = [sum(l["monthly_usd"] for l in ls if l["service"] == svc) for ls in scenarios.values()]
        ax.bar(list(scenarios), vals, bottom=bottoms, label=svc, color=cmap(i % 20))
        bottoms = [b + v for b, v in zip(bottoms, vals)]
    for x, b in enumerate(bottoms):
        ax.text(x, b, f"${b:,.0f}", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("USD per month")
    ax.set_title("Monthly cost by service")
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1, 1))
    fig.tight_layout()
    return png_bytes(fig)


def simulation_png(timeline, pools: list[str]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    hours = [r["hour"] for r in timeline.replicas]
    a.step(hours, [r["answers"] for r in timeline.replicas], where="post", label="answers/h")
    a.set_ylabel("answers per hour")
    for p in pools:
        b.plot([n["hour"] for n in timeline.nodes], [n.get(p, 0) for n in timeline.nodes], label=p)
    b.set_ylabel("nodes (NodeClaims)")
    b.set_xlabel("simulated hour")
    b.legend(loc="upper right")
    fig.tight_layout()
    return png_bytes(fig, dpi=80)
