"""What the observability stage leaves in the state store (under the platform's ``platform/`` prefix, where
``agentic platform render`` copies it from): the Grafana dashboards and the Prometheus rule file."""

from __future__ import annotations

import json

import yaml

from assets.stage import stage_asset

GROUP = "observability"
OWNERS = ["team:platform"]
asset = stage_asset(GROUP, OWNERS)
DASHBOARD_PREFIX = "dashboards/"  # + <name>.json
ALERT_RULES = "observability/alert_rules.yaml"


def read_alert_rules(store) -> list[dict]:
    """The saved rule file's alerting rules (recording rules left out); [] before the asset ran."""
    raw = store.get_bytes(f"platform/{ALERT_RULES}")
    if raw is None:
        return []
    return [r for g in yaml.safe_load(raw)["groups"] for r in g["rules"] if "alert" in r]


def read_dashboards(store) -> dict[str, dict]:
    """The saved dashboards by name."""
    prefix = f"platform/{DASHBOARD_PREFIX}"
    return {
        key[len(prefix) : -len(".json")]: json.loads(store.get_bytes(key))
        for key in store.list_keys(prefix)
        if key.endswith(".json")
    }
