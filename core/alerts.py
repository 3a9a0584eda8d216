"""What every alert must carry before it pages anyone: a severity Alertmanager routes on, a summary, a `for:` so one
bad scrape does not fire it, and a runbook section (``### <AlertName>``) in the runbook document it links to."""

from __future__ import annotations

import re

SEVERITIES = ("warning", "critical")


def runbook_sections(markdown: str) -> set[str]:
    return set(re.findall(r"^###\s+(\S+)\s*$", markdown, re.M))


def alert_problems(alerts: list[dict], runbook_markdown: str) -> list[str]:
    """One line per missing piece, naming the alert; [] when every alert is complete."""
    sections = runbook_sections(runbook_markdown)
    problems = []
    for a in alerts:
        name = a.get("alert", "?")
        if a.get("labels", {}).get("severity") not in SEVERITIES:
            problems.append(f"{name}: severity is not one of {SEVERITIES}")
        if not a.get("annotations", {}).get("summary"):
            problems.append(f"{name}: no summary")
        if not a.get("for"):
            problems.append(f"{name}: no `for:` (one bad scrape would fire it)")
        if name not in sections:
            problems.append(f"{name}: no runbook section `### {name}`")
    return problems
