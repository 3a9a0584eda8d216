"""The Grafana dashboards and every panel query, with what each needs to return data (pure rendering, no I/O). The
alert rules (``infra.platform.observability``) read the same expressions, so a chart and its alert cannot differ."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ANSWER_PATHS = "/query|/v1/chat/completions"  # the API routes that answer a question
# ------------------------------------------------------------------ dashboards


@dataclass(frozen=True)
class PanelQuery:
    """One query of a dashboard panel; ``needs`` is None when the local stack serves it, else the accelerator
    ("nvidia" / "neuron") whose exporter it reads."""

    dashboard: str
    title: str
    expr: str
    needs: str | None = None


@dataclass(frozen=True)
class _Panel:
    title: str
    targets: tuple[tuple[str, str], ...]  # (legend, expr)
    unit: str
    needs: str | None = None


def latency_quantile(q: float) -> str:
    return f'histogram_quantile({q}, sum by (le) (rate(agentic_request_seconds_bucket{{path=~"{ANSWER_PATHS}"}}[5m])))'


# 5xx over every request but the scrapes and health checks (those would dilute the ratio); no 5xx at all is 0, not
# an empty result
API_ERROR_RATIO_EXPR = (
    '(sum(rate(agentic_requests_total{status=~"5..",path!~"/metrics|/health"}[5m])) or vector(0))'
    ' / sum(rate(agentic_requests_total{path!~"/metrics|/health"}[5m]))'
)
GATEWAY_FAILURE_RATIO_EXPR = (
    "(sum(rate(litellm_proxy_failed_requests_metric_total[5m])) or vector(0))"
    " / sum(rate(litellm_proxy_total_requests_metric_total[5m]))"
)
# what waits in the embedder's handles; 0 (not nothing) while the embedder runs and no handle has queued yet
_EMBEDDER_BACKLOG = (
    'sum(ray_serve_deployment_queued_queries{deployment="embedder"})'
    ' or (sum(ray_serve_deployment_replica_healthy{deployment="embedder"}) * 0)'
)
_NOT_HEALTH = 'route!~"/-/.*"'  # Serve's own health routes

DASHBOARDS: dict[str, dict[str, Any]] = {
    "agentic-rag-agents": {
        "title": "Agentic RAG: agents",
        "uid": "agentic-agents",
        "panels": (
            _Panel("Answer latency p50 / p95", (("p50", latency_quantile(0.5)), ("p95", latency_quantile(0.95))), "s"),
            _Panel("API error ratio (5xx)", (("5xx", API_ERROR_RATIO_EXPR),), "percentunit"),
            _Panel(
                "LLM tokens per second (prompt, completion)",
                (("{{kind}}", "sum by (kind) (rate(agentic_llm_tokens_total[5m]))"),),
                "short",
            ),
            _Panel(
                "Answers by route", (("{{route}}", "sum by (route) (rate(agentic_answer_routes_total[5m]))"),), "reqps"
            ),
            _Panel(
                "LLM calls per answer",
                (
                    (
                        "calls/answer",
                        "sum(rate(agentic_llm_calls_total[5m])) / sum(rate(agentic_answer_routes_total[5m]))",
                    ),
                ),
                "short",
            ),
            _Panel(
                "API requests by path and status",
                (("{{path}} {{status}}", "sum by (path, status) (rate(agentic_requests_total[5m]))"),),
                "reqps",
            ),
        ),
    },
    "agentic-rag-gateway": {
        "title": "Agentic RAG: model gateway (LiteLLM)",
        "uid": "agentic-gateway",
        "panels": (
            _Panel(
                "Requests by model",
                (
                    (
                        "{{requested_model}}",
                        "sum by (requested_model) (rate(litellm_proxy_total_requests_metric_total[5m]))",
                    ),
                ),
                "reqps",
            ),
            _Panel(
                "Upstream latency p95 by model",
                (
                    (
                        "{{requested_model}}",
                        "histogram_quantile(0.95, sum by (le, requested_model) "
                        "(rate(litellm_llm_api_latency_metric_bucket[5m])))",
                    ),
                ),
                "s",
            ),
            _Panel(
                "Request latency p95 (through the proxy)",
                (
                    (
                        "p95",
                        "histogram_quantile(0.95, sum by (le) (rate(litellm_request_total_latency_metric_bucket[5m])))",
                    ),
                ),
                "s",
            ),
            _Panel(
                "Failed requests by model",
                (
                    (
                        "{{requested_model}}",
                        # 0 per model until the first failure creates the series
                        "sum by (requested_model) (rate(litellm_proxy_failed_requests_metric_total[5m]))"
                        " or sum by (requested_model) (rate(litellm_proxy_total_requests_metric_total[5m])) * 0",
                    ),
                ),
                "reqps",
            ),
            _Panel("Failure ratio", (("failed", GATEWAY_FAILURE_RATIO_EXPR),), "percentunit"),
            _Panel(
                "Tokens per second (input, output)",
                (
                    ("input", "sum(rate(litellm_input_tokens_metric_total[5m]))"),
                    ("output", "sum(rate(litellm_output_tokens_metric_total[5m]))"),
                    ("total", "sum(rate(litellm_total_tokens_metric_total[5m]))"),
                ),
                "short",
            ),
        ),
    },
    "agentic-rag-ray-serve": {
        "title": "Agentic RAG: Ray Serve",
        "uid": "agentic-ray-serve",
        "panels": (
            _Panel(
                "HTTP requests by application and route",
                (
                    (
                        "{{application}} {{route}}",
                        f"sum by (application, route) (rate(ray_serve_num_http_requests_total{{{_NOT_HEALTH}}}[5m]))",
                    ),
                ),
                "reqps",
            ),
            _Panel(
                "HTTP latency p95 by application",
                (
                    (
                        "{{application}}",
                        "histogram_quantile(0.95, sum by (application, le) "
                        f"(rate(ray_serve_http_request_latency_ms_bucket{{{_NOT_HEALTH}}}[5m])))",
                    ),
                ),
                "ms",
            ),
            _Panel(
                "Healthy replicas",
                (
                    (
                        "{{application}}/{{deployment}}",
                        "sum by (application, deployment) (ray_serve_deployment_replica_healthy)",
                    ),
                ),
                "short",
            ),
            _Panel("Embedding backlog (embedder queued queries)", (("queued", _EMBEDDER_BACKLOG),), "short"),
            _Panel(
                "Ray nodes: CPU utilisation",
                (("{{instance}}", "avg by (instance) (ray_node_cpu_utilization)"),),
                "percent",
            ),
            _Panel("Ray nodes: memory used", (("{{instance}}", "sum by (instance) (ray_node_mem_used)"),), "bytes"),
        ),
    },
    "agentic-rag-gpu": {
        "title": "Agentic RAG: GPUs and NeuronCores",
        "uid": "agentic-gpu",
        "panels": (
            _Panel(
                "GPU utilisation",
                (("{{Hostname}} gpu {{gpu}}", "avg by (Hostname, gpu) (DCGM_FI_DEV_GPU_UTIL)"),),
                "percent",
                "nvidia",
            ),
            _Panel(
                "GPU memory used",
                (("{{Hostname}} gpu {{gpu}}", "sum by (Hostname, gpu) (DCGM_FI_DEV_FB_USED)"),),
                "decmbytes",
                "nvidia",
            ),
            _Panel(
                "GPU memory used (share of total)",
                (
                    (
                        "{{Hostname}} gpu {{gpu}}",
                        "sum by (Hostname, gpu) (DCGM_FI_DEV_FB_USED)"
                        " / (sum by (Hostname, gpu) (DCGM_FI_DEV_FB_USED) + sum by (Hostname, gpu) (DCGM_FI_DEV_FB_FREE))",
                    ),
                ),
                "percentunit",
                "nvidia",
            ),
            _Panel(
                "GPU temperature and power",
                (
                    ("{{Hostname}} gpu {{gpu}} °C", "max by (Hostname, gpu) (DCGM_FI_DEV_GPU_TEMP)"),
                    ("{{Hostname}} W", "sum by (Hostname) (DCGM_FI_DEV_POWER_USAGE)"),
                ),
                "short",
                "nvidia",
            ),
            _Panel(
                "GPU XID errors (last code)",
                (("{{Hostname}} gpu {{gpu}}", "max by (Hostname, gpu) (DCGM_FI_DEV_XID_ERRORS)"),),
                "short",
                "nvidia",
            ),
            _Panel(
                "NeuronCore utilisation",
                (("{{instance_id}}", "avg by (instance_id) (neuroncore_utilization_ratio)"),),
                "percentunit",
                "neuron",
            ),
            _Panel(
                "Neuron runtime memory used",
                (
                    (
                        "{{instance_id}} {{memory_location}}",
                        "sum by (instance_id, memory_location) (neuron_runtime_memory_used_bytes)",
                    ),
                ),
                "bytes",
                "neuron",
            ),
        ),
    },
}


def dashboard_panels() -> list[PanelQuery]:
    """Every query of every dashboard panel (one per panel target)."""
    return [
        PanelQuery(name, panel.title, expr, panel.needs)
        for name, dash in DASHBOARDS.items()
        for panel in dash["panels"]
        for _legend, expr in panel.targets
    ]


def grafana_dashboards() -> dict[str, dict]:
    """The dashboards as Grafana JSON (provisioned from ConfigMaps labelled ``grafana_dashboard``)."""
    out = {}
    for name, dash in DASHBOARDS.items():
        panels = []
        for i, p in enumerate(dash["panels"]):
            panels.append(
                {
                    "id": i + 1,
                    "type": "timeseries",
                    "title": p.title,
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
                    "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
                    "targets": [
                        {"refId": chr(ord("A") + j), "expr": expr, "legendFormat": legend}
                        for j, (legend, expr) in enumerate(p.targets)
                    ],
                }
            )
        out[name] = {
            "title": dash["title"],
            "uid": dash["uid"],
            "schemaVersion": 39,
            "time": {"from": "now-6h", "to": "now"},
            "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus"}]},
            "panels": panels,
        }
    return out
