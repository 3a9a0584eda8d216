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
