"""The monitoring the platform ships: Grafana dashboards and the Prometheus SLO rules, rendered from
``infra.platform.dashboards`` and ``infra.platform.observability`` (the charts and the alerts read the same
expressions), saved for the platform to apply, and checked for what an on-call engineer needs."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import yaml

from assets.metadata import md_table
from assets.observability.state import ALERT_RULES, DASHBOARD_PREFIX, asset, read_alert_rules
from core.alerts import alert_problems
from infra.platform.dashboards import dashboard_panels, grafana_dashboards
from infra.platform.observability import RUNBOOK, alert_rules
from resources.platform import PlatformResource

# the runbooks the alerts link to (the image copies infra/ whole)
RUNBOOK_FILE = Path(__file__).resolve().parents[2] / RUNBOOK.split("#")[0]


@asset(
    kinds={"prometheus", "grafana"},
    description="The dashboards (agents, gateway, Ray Serve, GPUs) as Grafana JSON and the SLI recording rules and SLO "
    "alerts as a Prometheus rule file, saved under platform/ for platform_workloads to ship (a PrometheusRule and "
    "dashboard ConfigMaps); `agentic up` evaluates the same rules locally.",
)
def monitoring_config(platform: PlatformResource) -> dg.MaterializeResult:
    dashboards = grafana_dashboards()
    for name, dash in dashboards.items():
        platform.save(f"{DASHBOARD_PREFIX}{name}.json", dash)
    rules = alert_rules()
    where = platform.save(ALERT_RULES, yaml.safe_dump(rules, sort_keys=False))
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    panels = dashboard_panels()
    return dg.MaterializeResult(
        metadata={
            "dashboards": dg.MetadataValue.json(sorted(dashboards)),
            "panel_queries": len(panels),
            "panel_queries_on_accelerators": sum(1 for p in panels if p.needs),
            "recording_rules": sum(1 for g in rules["groups"] for r in g["rules"] if "record" in r),
            "alerts": len(alerts),
            "alert_rules": where,
            "alert_table": md_table(
                [
                    {"alert": a["alert"], "severity": a["labels"]["severity"], "for": a["for"], "expr": a["expr"]}
                    for a in alerts
                ],
                ["alert", "severity", "for", "expr"],
            ),
        }
    )


@dg.asset_check(
    asset=monitoring_config,
    description="Every saved alert has a severity Alertmanager routes on, a summary, a `for:` and a runbook section in "
    "the document its runbook_url names.",
)
def alerts_have_runbooks(platform: PlatformResource) -> dg.AssetCheckResult:
    alerts = read_alert_rules(platform.store)  # what the asset saved, read back from the state store
    runbook = RUNBOOK_FILE.read_text()
    problems = alert_problems(alerts, runbook) if alerts else ["no alert rules saved"]
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={"alerts": len(alerts), "problems": dg.MetadataValue.json(problems)},
    )
