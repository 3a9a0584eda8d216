"""What Prometheus scrapes, charts and alerts on (infra/platform/observability.py), checked with the real tools:
promtool (Debian's Prometheus 2.42, fetched by `make setup`) checks and unit-tests the rendered rules, the local scrape
config and every dashboard query; the Kubernetes objects are validated against their CRDs and schemas."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from infra.platform.config import load_platform_config
from infra.platform.dashboards import dashboard_panels, grafana_dashboards
from infra.platform.manifests import HELM_CHARTS, PRUNE_KINDS, render_everything
from infra.platform.observability import (
    ANSWER_P95_SECONDS,
    METRICS_SERVICES,
    alert_rules,
    exporter_services,
    gpu_exporters,
    local_scrape_config,
    prometheus_rule,
    service_monitors,
)
from infra.platform.security import NODE_NAMESPACE
from infra.validate import validate_manifest
from pipelines.settings import load_settings

REPO = Path(__file__).resolve().parents[2]
ALERT_TESTS = REPO / "infra" / "observability" / "alerts.test.yml"
PROM_VERSION = "2.42.0+ds-5+deb12u1"  # scripts/setup.sh


def _promtool() -> Path:
    path = load_settings().cache / f"prometheus-{PROM_VERSION}" / "root" / "usr" / "bin" / "promtool"
    if not path.exists():
        pytest.fail(f"promtool not found at {path}: `make setup` (which `make test` runs) fetches it")
    return path


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(_promtool()), *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def _write_rules(folder: Path, rules: dict, name: str = "alerts.rules.yml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def cfg():
    return load_platform_config()


PLUGINS = {"nvidia-device-plugin", "neuron-device-plugin"}
needs_crds = pytest.mark.usefixtures("crds")
pytestmark = pytest.mark.contract  # promtool is this module's service


# ------------------------------------------------------------------ alert rules


def test_rendered_rules_pass_promtool_check(tmp_path):
    rules = alert_rules()
    count = sum(len(g["rules"]) for g in rules["groups"])
    r = promtool("check", "rules", str(_write_rules(tmp_path, rules)))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {count} rules found" in r.stdout
    alerts = {x["alert"] for g in rules["groups"] for x in g["rules"] if "alert" in x}
    assert alerts == {
        "AgenticAnswerLatencyHigh",
        "AgenticApiErrorRatioHigh",
        "GatewayUpstreamFailuresHigh",
        "EmbeddingBacklogHigh",
        "AgenticMetricsDown",
        "GpuXidErrors",
    }
    for g in rules["groups"]:
        for x in g["rules"]:
            if "alert" in x:  # every alert says how bad, what and where to look
                assert x["labels"]["severity"] in ("warning", "critical") and x["for"]
                assert {"summary", "description", "runbook_url"} <= set(x["annotations"])
                # the runbook is the README section named after the alert (GitHub's anchor: the name in lower case)
                assert x["annotations"]["runbook_url"] == f"infra/README.md#{x['alert'].lower()}"
                assert f"\n### {x['alert']}\n" in (REPO / "infra" / "README.md").read_text()


def test_alert_unit_tests_pass_on_the_rendered_rules(tmp_path):
    """infra/observability/alerts.test.yml: each alert fires on bad input after its `for:`, stays silent on good input,
    with its annotations rendered; among them a deliberately slowed answer path fires the latency alert."""
    shutil.copy(ALERT_TESTS, tmp_path / ALERT_TESTS.name)
    _write_rules(tmp_path, alert_rules())
    r = promtool("test", "rules", ALERT_TESTS.name, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_the_slow_answer_test_fails_when_the_latency_alert_could_not_fire(tmp_path):
    """The unit tests are live: with the threshold above the slowed answers' 39 s p95 the slow-answer case fails."""
    rules = alert_rules()
    for g in rules["groups"]:
        for x in g["rules"]:
            if x.get("alert") == "AgenticAnswerLatencyHigh":
                x["expr"] = x["expr"].replace(f"> {ANSWER_P95_SECONDS}", "> 60")
    shutil.copy(ALERT_TESTS, tmp_path / ALERT_TESTS.name)
    _write_rules(tmp_path, rules)
    r = promtool("test", "rules", ALERT_TESTS.name, cwd=tmp_path)
    assert r.returncode != 0
    assert "AgenticAnswerLatencyHigh" in r.stdout + r.stderr


@needs_crds
def test_prometheus_rule_validates_and_ships_with_the_workloads(cfg):
    rule = prometheus_rule(cfg)
    assert validate_manifest(rule) == []
    assert rule["spec"] == alert_rules() and rule["metadata"]["labels"]["release"] == HELM_CHARTS[1]["name"]
    for mode in ("auto", "karpenter", "kwok"):
        workloads = render_everything(cfg, mode)["platform_workloads"]
        assert sum(m["kind"] == "PrometheusRule" for m in workloads) == 1
    assert ("monitoring.coreos.com/v1", "PrometheusRule") in PRUNE_KINDS["platform_workloads"]
    bad = copy.deepcopy(rule)
    bad["spec"]["groups"][1]["rules"][0]["fro"] = "10m"
    assert any("fro: unknown field" in e for e in validate_manifest(bad))


def test_prometheus_runs_as_a_server_that_evaluates_rules_and_alerts():
    chart = next(c for c in HELM_CHARTS if c["chart"] == "kube-prometheus-stack")
    values = chart["values"]
    prom = values["prometheus"]
    assert prom.get("agentMode") is False  # an agent evaluates no rules
    spec = prom["prometheusSpec"]
    assert spec["ruleSelectorNilUsesHelmValues"] is False and spec["serviceMonitorSelectorNilUsesHelmValues"] is False
    assert spec["retention"] and spec["remoteWrite"][0]["url"] == "${AMP_REMOTE_WRITE_URL}"  # AMP keeps the history
    am = values["alertmanager"]
    assert am["enabled"] is True
    assert am["alertmanagerSpec"] == {"useExistingSecret": True, "configSecret": "alertmanager-receivers"}
    assert "config" not in am  # no receiver config (webhook URLs, keys) inline


# ------------------------------------------------------------------ scraping


@needs_crds
def test_service_monitors_cover_every_service_in_its_namespace(cfg):
    monitors = {m["metadata"]["name"]: m for m in service_monitors(cfg)}
    assert set(monitors) == {s.name for s in METRICS_SERVICES}
    for svc in METRICS_SERVICES:
        m = monitors[svc.name]
        assert validate_manifest(m) == [], validate_manifest(m)
        ns = NODE_NAMESPACE if svc.namespace == "node" else cfg.namespace
        assert m["metadata"]["namespace"] == ns and m["spec"]["namespaceSelector"] == {"matchNames": [ns]}
        (endpoint,) = m["spec"]["endpoints"]
        assert endpoint["port"] == svc.port and endpoint["path"] == svc.path
        assert m["spec"]["selector"]["matchLabels"] == svc.selector
    assert monitors["agentic-api"]["spec"]["endpoints"][0]["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": "agentic-api-key", "key": "key"},
    }
    assert monitors["litellm"]["spec"]["endpoints"][0]["path"] == "/metrics/"
    assert {s.name for s in METRICS_SERVICES if s.gpu} == {"dcgm-exporter", "neuron-monitor"}
    # the API's key is a Secret the API Deployment reads too (same namespace as the monitor)
    workloads = render_everything(cfg)["platform_workloads"]
    api = next(m for m in workloads if m["kind"] == "Deployment" and m["metadata"]["name"] == "agentic-api")
    refs = [
        e["valueFrom"]["secretKeyRef"]
        for e in api["spec"]["template"]["spec"]["containers"][0]["env"]
        if "valueFrom" in e
    ]
    assert {"name": "agentic-api-key", "key": "key"} in refs


def test_every_monitor_selects_a_rendered_service_by_its_labels_and_port(cfg):
    groups = render_everything(cfg, "auto")
    services = [m for ms in groups.values() for m in ms if m["kind"] == "Service"]
    for m in service_monitors(cfg):
        if m["metadata"]["name"] == "ray-serve":
            continue  # KubeRay makes the head's Service (labelled ray.io/node-type: head, ports from the container)
        ns, sel, port = (
            m["metadata"]["namespace"],
            m["spec"]["selector"]["matchLabels"],
            m["spec"]["endpoints"][0]["port"],
        )
        match = [
            s
            for s in services
            if s["metadata"]["namespace"] == ns
            and sel.items() <= s["metadata"]["labels"].items()
            and port in {p["name"] for p in s["spec"]["ports"]}
        ]
        assert len(match) == 1, (m["metadata"]["name"], match)


def test_local_scrape_config_passes_promtool_and_mirrors_the_monitors(tmp_path):
    key, gw_key = tmp_path / "api.key", tmp_path / "gateway.key"
    key.write_text("not-a-real-key\n")
    gw_key.write_text("not-a-real-key-either\n")
    rules = _write_rules(tmp_path, alert_rules())
    targets = {"agentic-api": "127.0.0.1:8000", "litellm": "127.0.0.1:4000", "ray-serve": "127.0.0.1:8080"}
    config = local_scrape_config(
        targets, key_files={"agentic-api": str(key), "litellm": str(gw_key)}, rule_files=(str(rules),)
    )
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    r = promtool("check", "config", str(path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert config["global"] == {"scrape_interval": "5s", "evaluation_interval": "5s"}
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert set(jobs) == set(targets)  # no GPU exporter locally
    for svc in METRICS_SERVICES:
        if svc.name in jobs:
            assert jobs[svc.name]["metrics_path"] == svc.path
            assert jobs[svc.name]["static_configs"] == [{"targets": [targets[svc.name]]}]
    assert jobs["agentic-api"]["authorization"] == {"type": "Bearer", "credentials_file": str(key)}
    assert jobs["litellm"]["authorization"] == {"type": "Bearer", "credentials_file": str(gw_key)}
    assert "authorization" not in jobs["ray-serve"]
    assert local_scrape_config({"ray-serve": "127.0.0.1:8080"}, interval="15s")["global"]["scrape_interval"] == "15s"
    for name in ("agentic-api", "litellm"):
        with pytest.raises(ValueError, match="key_files"):
            local_scrape_config({name: "127.0.0.1:8000"})
    with pytest.raises(ValueError, match="unknown"):
        local_scrape_config({"litelm": "127.0.0.1:4000"})


# ------------------------------------------------------------------ dashboards

METRIC = re.compile(r"\b((?:agentic|litellm|ray|DCGM|neuron|neuroncore)_[A-Za-z0-9_]+)\b")
# what LiteLLM 1.106.12's prometheus callback and Ray 2.60 export (docs/research: issue 18, sections 3 and 4)
LITELLM_METRICS = {
    "litellm_proxy_total_requests_metric_total",
    "litellm_proxy_failed_requests_metric_total",
    "litellm_request_total_latency_metric_bucket",
    "litellm_llm_api_latency_metric_bucket",
    "litellm_total_tokens_metric_total",
    "litellm_input_tokens_metric_total",
    "litellm_output_tokens_metric_total",
}
RAY_METRICS = {
    "ray_serve_num_http_requests_total",
    "ray_serve_http_request_latency_ms_bucket",
    "ray_serve_deployment_replica_healthy",
    "ray_serve_deployment_queued_queries",
    "ray_node_cpu_utilization",
    "ray_node_mem_used",
}


def _api_metric_names() -> set[str]:
    """The names the real API metrics registry exposes once each metric has a sample."""
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from agents.api import Metrics

    m = Metrics()
    m.requests.labels("/query", "200").inc()
    m.latency.labels("/query").observe(1.0)
    m.answered(SimpleNamespace(route="fast", tokens={"prompt": 3, "completion": 2}, llm_calls=1))
    text = generate_latest(m.registry).decode()
    return {s.name for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_dashboards_chart_only_metrics_something_emits():
    """The old agent panels charted agentic_answer_seconds / agentic_tokens_total / agentic_answers_total, which
    nothing emits; every local panel now names a metric the API (its real registry), LiteLLM or Ray exports."""
    emitted = _api_metric_names() | LITELLM_METRICS | RAY_METRICS
    assert "agentic_request_seconds_bucket" in emitted and "agentic_llm_tokens_total" in emitted
    panels = dashboard_panels()
    assert {p.dashboard for p in panels} == set(grafana_dashboards())
    assert {p.dashboard for p in panels} == {
        "agentic-rag-agents",
        "agentic-rag-gateway",
        "agentic-rag-ray-serve",
        "agentic-rag-gpu",
    }
    for p in panels:
        names = set(METRIC.findall(p.expr))
        assert names, p
        if p.needs is None:
            assert names <= emitted, (p.title, names - emitted)
        else:
            assert p.needs in ("nvidia", "neuron") and p.dashboard == "agentic-rag-gpu"
    dashboards = grafana_dashboards()
    exprs = [t["expr"] for d in dashboards.values() for panel in d["panels"] for t in panel["targets"]]
    assert sorted(exprs) == sorted(p.expr for p in panels)
    for d in dashboards.values():  # unique panel ids and refIds, as Grafana wants
        assert len({panel["id"] for panel in d["panels"]}) == len(d["panels"])


def test_every_panel_query_parses(tmp_path):
    """Each panel query as a recording rule: a syntax error in any of them (GPU ones included) fails promtool."""
    panels = dashboard_panels()
    rules = {
        "groups": [
            {"name": "panels", "rules": [{"record": f"panel:q{i}", "expr": p.expr} for i, p in enumerate(panels)]}
        ]
    }
    r = promtool("check", "rules", str(_write_rules(tmp_path, rules, "panels.yml")))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(panels)} rules found" in r.stdout


# synthetic series in the shapes the exporters emit (labels as in their sample output); 10 minutes, one a minute
SYNTHETIC = [
    ('agentic_request_seconds_bucket{path="/query",le="5"}', "0+1x10"),
    ('agentic_request_seconds_bucket{path="/query",le="20"}', "0+2x10"),
    ('agentic_request_seconds_bucket{path="/query",le="+Inf"}', "0+2x10"),
    ('agentic_requests_total{path="/query",status="200"}', "0+2x10"),
    ('agentic_requests_total{path="/metrics",status="200"}', "0+12x10"),
    ('agentic_llm_tokens_total{kind="prompt"}', "0+900x10"),
    ('agentic_llm_tokens_total{kind="completion"}', "0+200x10"),
    ('agentic_answer_routes_total{route="fast"}', "0+2x10"),
    ("agentic_llm_calls_total", "0+4x10"),
    ('litellm_proxy_total_requests_metric_total{requested_model="qwen",status_code="200"}', "0+6x10"),
    ('litellm_request_total_latency_metric_bucket{requested_model="qwen",le="10"}', "0+6x10"),
    ('litellm_request_total_latency_metric_bucket{requested_model="qwen",le="+Inf"}', "0+6x10"),
    ('litellm_llm_api_latency_metric_bucket{requested_model="qwen",model="openai/qwen",le="10"}', "0+6x10"),
    ('litellm_llm_api_latency_metric_bucket{requested_model="qwen",model="openai/qwen",le="+Inf"}', "0+6x10"),
    ('litellm_input_tokens_metric_total{requested_model="qwen"}', "0+900x10"),
    ('litellm_output_tokens_metric_total{requested_model="qwen"}', "0+200x10"),
    ('litellm_total_tokens_metric_total{requested_model="qwen"}', "0+1100x10"),
    ('ray_serve_num_http_requests_total{application="llm",route="/llm",method="POST",status_code="200"}', "0+6x10"),
    ('ray_serve_num_http_requests_total{application="",route="/-/healthz",method="GET",status_code="200"}', "0+6x10"),
    ('ray_serve_http_request_latency_ms_bucket{application="llm",route="/llm",le="20000"}', "0+6x10"),
    ('ray_serve_http_request_latency_ms_bucket{application="llm",route="/llm",le="+Inf"}', "0+6x10"),
    ('ray_serve_deployment_replica_healthy{application="embedder",deployment="embedder",replica="r1"}', "1x10"),
    ('ray_node_cpu_utilization{instance="127.0.0.1:8080",ip="127.0.0.1"}', "40x10"),
    ('ray_node_mem_used{instance="127.0.0.1:8080",ip="127.0.0.1"}', "2e9x10"),
    ('DCGM_FI_DEV_GPU_UTIL{gpu="0",Hostname="ip-10-0-1-2",UUID="GPU-a",modelName="NVIDIA A10G"}', "50x10"),
    ('DCGM_FI_DEV_FB_USED{gpu="0",Hostname="ip-10-0-1-2",UUID="GPU-a",modelName="NVIDIA A10G"}', "12000x10"),
    ('DCGM_FI_DEV_FB_FREE{gpu="0",Hostname="ip-10-0-1-2",UUID="GPU-a",modelName="NVIDIA A10G"}', "12000x10"),
    ('DCGM_FI_DEV_GPU_TEMP{gpu="0",Hostname="ip-10-0-1-2",UUID="GPU-a",modelName="NVIDIA A10G"}', "60x10"),
    ('DCGM_FI_DEV_POWER_USAGE{gpu="0",Hostname="ip-10-0-1-2",UUID="GPU-a",modelName="NVIDIA A10G"}', "150x10"),
    ('DCGM_FI_DEV_XID_ERRORS{gpu="0",Hostname="ip-10-0-1-2",UUID="GPU-a",modelName="NVIDIA A10G"}', "0x10"),
    ('neuroncore_utilization_ratio{instance_id="i-0abc",instance_type="inf2.xlarge",neuroncore="0"}', "0.25x10"),
    ('neuroncore_utilization_ratio{instance_id="i-0abc",instance_type="inf2.xlarge",neuroncore="1"}', "0.75x10"),
    ('neuron_runtime_memory_used_bytes{instance_id="i-0abc",memory_location="host"}', "9e6x10"),
    ('neuron_runtime_memory_used_bytes{instance_id="i-0abc",memory_location="neuron_device"}', "2e9x10"),
]


def test_every_panel_query_returns_series_on_exporter_shaped_input(tmp_path):
    """Every panel (GPU ones on synthetic DCGM / Neuron series, the rest on API / LiteLLM / Ray series) returns data:
    `count(<expr>) > bool 0` is 1 only when the query has at least one series. Two values are checked outright: the
    GPU memory share and the mean NeuronCore utilisation."""
    panels = dashboard_panels()
    expr_tests = [
        {"expr": f"count({p.expr}) > bool 0", "eval_time": "10m", "exp_samples": [{"labels": "{}", "value": 1}]}
        for p in panels
    ]
    by_title = {p.title: p.expr for p in panels}
    expr_tests += [
        {
            "expr": by_title["GPU memory used (share of total)"],
            "eval_time": "10m",
            "exp_samples": [{"labels": '{Hostname="ip-10-0-1-2",gpu="0"}', "value": 0.5}],
        },
        {
            "expr": by_title["NeuronCore utilisation"],
            "eval_time": "10m",
            "exp_samples": [{"labels": '{instance_id="i-0abc"}', "value": 0.5}],
        },
    ]
    (tmp_path / "empty.yml").write_text(yaml.safe_dump({"groups": []}))
    test = {
        "rule_files": ["empty.yml"],
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in SYNTHETIC],
                "promql_expr_test": expr_tests,
            }
        ],
    }
    (tmp_path / "panels.test.yml").write_text(yaml.safe_dump(test, sort_keys=False))
    r = promtool("test", "rules", "panels.test.yml", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


# ------------------------------------------------------------------ GPU exporters


@needs_crds
@pytest.mark.parametrize("mode", ["auto", "karpenter", "kwok"])
def test_gpu_exporters_run_on_their_pools_in_the_node_namespace(cfg, mode):
    groups = render_everything(cfg, mode)
    addons = groups["cluster_addons"]
    names = {m["metadata"]["name"] for m in addons if m["kind"] == "DaemonSet"}
    namespaces = {m["metadata"]["name"] for m in addons if m["kind"] == "Namespace"}
    assert NODE_NAMESPACE in namespaces  # every mode: Auto Mode nodes need the exporters too
    if mode == "kwok":  # the local control plane's nodes have no device to read
        assert not names & {"dcgm-exporter", "neuron-monitor"}
        return
    assert {"dcgm-exporter", "neuron-monitor"} <= names
    assert addons[-1]["kind"] == "ServiceMonitor"
    exporters = {
        m["metadata"]["name"]: m
        for m in addons
        if m["kind"] == "DaemonSet" and m["metadata"]["name"] in names - PLUGINS
    }
    assert exporters == {m["metadata"]["name"]: m for m in gpu_exporters(cfg)}
    for name, pool, taint in (
        ("dcgm-exporter", "gpu", "nvidia.com/gpu"),
        ("neuron-monitor", "inferentia", "aws.amazon.com/neuron"),
    ):
        ds = exporters[name]
        assert validate_manifest(ds) == [], validate_manifest(ds)
        assert ds["metadata"]["namespace"] == NODE_NAMESPACE
        pod = ds["spec"]["template"]["spec"]
        assert pod["tolerations"] == [{"key": taint, "operator": "Exists", "effect": "NoSchedule"}]
        term = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
        assert term["matchExpressions"] == [{"key": "karpenter.sh/nodepool", "operator": "In", "values": [pool]}]
        (c,) = pod["containers"]
        assert ":" in c["image"] and not c["image"].endswith(":latest")
        assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
        assert c["ports"] == [
            {"name": "metrics", "containerPort": {"dcgm-exporter": 9400, "neuron-monitor": 8000}[name]}
        ]
    # their Services are workloads (the step that owns the Service kind), in the node namespace
    services = [
        m
        for m in groups["platform_workloads"]
        if m["kind"] == "Service" and m["metadata"]["namespace"] == NODE_NAMESPACE
    ]
    assert services == exporter_services(cfg) and all(validate_manifest(s) == [] for s in services)
