"""The observability stage's monitoring_config: the dashboards and rules it saves, read back from the state store, and
its check, which fails on an alert nobody could act on."""

from __future__ import annotations

import dagster as dg

from assets.observability import alerts_have_runbooks, monitoring_config
from assets.observability.state import read_alert_rules, read_dashboards
from core.alerts import alert_problems
from infra.platform.dashboards import grafana_dashboards
from resources.platform import RenderedPlatform
from resources.state_store import LocalStateStore


def test_monitoring_config_saves_the_dashboards_and_rules_and_its_check_passes(tmp_path):
    platform = RenderedPlatform(store=LocalStateStore(root=str(tmp_path / "state")))
    result = dg.materialize([monitoring_config, alerts_have_runbooks], resources={"platform": platform})
    assert result.success
    [check] = result.get_asset_check_evaluations()
    assert check.passed, check.metadata
    assert read_dashboards(platform.store) == grafana_dashboards()
    alerts = read_alert_rules(platform.store)
    assert "AgenticAnswerLatencyHigh" in {a["alert"] for a in alerts}
    meta = result.asset_materializations_for_node("monitoring_config")[0].metadata
    assert meta["alerts"].value == len(alerts) and meta["dashboards"].value == sorted(grafana_dashboards())


def test_an_alert_without_severity_for_or_runbook_is_named():
    good = {"alert": "A", "for": "5m", "labels": {"severity": "warning"}, "annotations": {"summary": "s"}}
    bad = {"alert": "B", "labels": {"severity": "page-me"}, "annotations": {}}
    problems = alert_problems([good, bad], "## Alerts\n\n### A\n\nwhat to do\n")
    assert problems == [
        "B: severity is not one of ('warning', 'critical')",
        "B: no summary",
        "B: no `for:` (one bad scrape would fire it)",
        "B: no runbook section `### B`",
    ]
