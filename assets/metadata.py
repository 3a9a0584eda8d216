"""Metadata helpers shared by every asset group: markdown previews and quarantine tables for the Dagster UI."""

from __future__ import annotations

import dagster as dg


def md_table(rows: list[dict], columns: list[str], limit: int = 10) -> dg.MetadataValue:
    if not rows:
        return dg.MetadataValue.md("_none_")

    def cell(v):
        s = (
            f"{v:.3f}"
            if isinstance(v, float)
            else str(v if v is not None else "").replace("|", "\\|").replace("\n", " ")
        )
        return s if len(s) <= 120 else s[:117] + "..."

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows[:limit]]
    if len(rows) > limit:
        lines.append(f"\n_{len(rows) - limit} more_")
    return dg.MetadataValue.md("\n".join(lines))


def quarantine_table(rows: list[dict], key: str = "key", limit: int = 100) -> dg.MetadataValue:
    """A quarantine as a real table in the Dagster UI (key, reason, size)."""
    schema = dg.TableSchema(
        columns=[dg.TableColumn(key, "string"), dg.TableColumn("reason", "string"), dg.TableColumn("size", "int")]
    )
    records = [
        dg.TableRecord({key: r[key], "reason": r["reason"], "size": int(r.get("size") or 0)}) for r in rows[:limit]
    ]
    return dg.MetadataValue.table(records=records, schema=schema)
