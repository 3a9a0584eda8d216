"""What Prometheus scrapes, the dashboards and the alert rules: one source for the cluster and the local stack.

Pure rendering, no I/O:

- ``METRICS_SERVICES``: every metrics endpoint (API, LiteLLM, Ray head, DCGM exporter, Neuron monitor). From it come
  the ServiceMonitors (``service_monitors``) and the local Prometheus config (``local_scrape_config``), so the two
  cannot drift apart.
- the dashboards and their panel queries are in ``infra.platform.dashboards``.
- ``alert_rules`` (Prometheus ``groups:``: recording rules and the SLO alerts) and ``prometheus_rule`` (the same as a
  ``PrometheusRule`` for kube-prometheus-stack).
- ``gpu_exporters`` / ``exporter_services``: the DCGM exporter and Neuron monitor DaemonSets and their Services.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

from infra.platform.config import MANAGED_BY, PlatformConfig
from infra.platform.dashboards import API_ERROR_RATIO_EXPR, GATEWAY_FAILURE_RATIO_EXPR, latency_quantile
from infra.platform.security import NODE_NAMESPACE, on_pool_nodes

API_KEY_SECRET = "agentic-api-key"  # the Secret the API reads its key from (key ``key``); the scrape reuses it
PROMETHEUS_RELEASE = "prometheus-agent"  # the kube-prometheus-stack Helm release (manifests.HELM_CHARTS)
DCGM_IMAGE = "nvcr.io/nvidia/k8s/dcgm-exporter:4.2.3-4.1.3-ubuntu22.04"
NEURON_MONITOR_IMAGE = "public.ecr.aws/neuron/neuron-monitor:1.3.0"
EXPORTER_PORTS = {"dcgm-exporter": 9400, "neuron-monitor": 8000}
RUNBOOK = "infra/README.md#"  # + the alert name in lower case: its section under "Monitoring and alerts"

# SLO thresholds (documented in infra/README.md, "Monitoring and alerts")
ANSWER_P95_SECONDS = 20
API_ERROR_RATIO = 0.05
GATEWAY_FAILURE_RATIO = 0.05
EMBEDDER_BACKLOG = 100


@dataclass(frozen=True)
class MetricsService:
    """One metrics endpoint: the Service it is behind (``selector`` matches the Service's labels), the Service port's
    name, the HTTP path, whether it runs beside the apps or as a node agent, its auth and the accelerator it needs."""

    name: str
    selector: dict = field(hash=False)
    port: str
    path: str
    namespace: Literal["app", "node"] = "app"
    # a bearer key guards the endpoint: the Secret holding it on eks (key ``key``) and, locally, the environment
    # variable the process reads it from; None: no auth
    key_secret: str | None = None
    key_env: str | None = None
    gpu: str | None = None


METRICS_SERVICES: tuple[MetricsService, ...] = (
    MetricsService(
        "agentic-api",
        {"app.kubernetes.io/name": "agentic-api"},
        "http",
        "/metrics",
        key_secret=API_KEY_SECRET,
        key_env="AGENTIC_API_KEY",
    ),
    # LiteLLM mounts its exporter at /metrics/ (/metrics answers a 307 redirect) behind its master key
    # (require_auth_for_metrics_endpoint defaults to true)
    MetricsService(
        "litellm",
        {"app.kubernetes.io/name": "litellm"},
        "http",
        "/metrics/",
        key_secret="litellm-master-key",
        key_env="AGENTIC_GATEWAY_KEY",
    ),
    # the head's metrics agent: Serve's proxy, controller and the replicas on that node report through it
    MetricsService("ray-serve", {"ray.io/node-type": "head"}, "metrics", "/metrics"),
    MetricsService(
        "dcgm-exporter", {"app.kubernetes.io/name": "dcgm-exporter"}, "metrics", "/metrics", "node", gpu="nvidia"
    ),
    MetricsService(
        "neuron-monitor", {"app.kubernetes.io/name": "neuron-monitor"}, "metrics", "/metrics", "node", gpu="neuron"
    ),
)


def _meta(cfg: PlatformConfig, name: str, component: str, namespace: str, extra: dict | None = None) -> dict:
    return {
        "name": name,
        "namespace": namespace,
        "labels": {
            "app.kubernetes.io/managed-by": MANAGED_BY,
            "app.kubernetes.io/part-of": cfg.cluster_name,
            "app.kubernetes.io/component": component,
            **(extra or {}),
        },
    }


def _namespace(cfg: PlatformConfig, svc: MetricsService) -> str:
    return NODE_NAMESPACE if svc.namespace == "node" else cfg.namespace


# ------------------------------------------------------------------ scraping


def service_monitors(cfg: PlatformConfig) -> list[dict]:
    """A ServiceMonitor per service, in the service's own namespace and naming it explicitly (an SM without a
    namespaceSelector only looks in its own namespace, which is how the node agents' targets would go missing)."""
    out = []
    for svc in METRICS_SERVICES:
        ns = _namespace(cfg, svc)
        endpoint: dict[str, Any] = {"port": svc.port, "path": svc.path, "interval": "30s"}
        if svc.key_secret:
            # the endpoint wants its bearer key; the operator reads it from the Secret (same namespace as the SM)
            endpoint["authorization"] = {"type": "Bearer", "credentials": {"name": svc.key_secret, "key": "key"}}
        out.append(
            {
                "apiVersion": "monitoring.coreos.com/v1",
                "kind": "ServiceMonitor",
                "metadata": _meta(cfg, svc.name, "metrics", ns),
                "spec": {
                    "selector": {"matchLabels": dict(svc.selector)},
                    "namespaceSelector": {"matchNames": [ns]},
                    "endpoints": [endpoint],
                },
            }
        )
    return out


def local_scrape_config(
    targets: dict[str, str],
    *,
    key_files: dict[str, str] | None = None,
    interval: str = "5s",
    rule_files: tuple[str, ...] = (),
) -> dict:
    """A Prometheus config for the local stack: one job per service named in ``targets`` (``"127.0.0.1:PORT"``),
    scraped on the same path as its ServiceMonitor; a keyed service reads its bearer key from ``key_files[name]``
    (a 0600 file, so no key is in the config). Services
    absent from ``targets`` (the GPU exporters, locally) are left out."""
    known = {s.name: s for s in METRICS_SERVICES}
    unknown = sorted(set(targets) - set(known))
    if unknown:
        raise ValueError(f"unknown metrics services {unknown}; known: {sorted(known)}")
    jobs = []
    for svc in METRICS_SERVICES:
        if svc.name not in targets:
            continue
        job: dict[str, Any] = {
            "job_name": svc.name,
            "metrics_path": svc.path,
            "static_configs": [{"targets": [targets[svc.name]]}],
        }
        if svc.key_secret:
            if not (key_files or {}).get(svc.name):
                raise ValueError(f"{svc.name} needs its bearer key: pass key_files[{svc.name!r}]")
            job["authorization"] = {"type": "Bearer", "credentials_file": key_files[svc.name]}
        jobs.append(job)
    out: dict[str, Any] = {"global": {"scrape_interval": interval, "evaluation_interval": interval}}
    if rule_files:
        out["rule_files"] = list(rule_files)
    out["scrape_configs"] = jobs
    return out


def _alert(name: str, expr: str, for_: str, severity: str, summary: str, description: str) -> dict:
    return {
        "alert": name,
        "expr": expr,
        "for": for_,
        "labels": {"severity": severity},
        "annotations": {"summary": summary, "description": description, "runbook_url": RUNBOOK + name.lower()},
    }


def alert_rules() -> dict:
    """Recording rules for the SLIs and the SLO alerts, as a Prometheus rule file (``groups:``)."""
    return {
        "groups": [
            {
                "name": "agentic-rag.sli",
                "rules": [
                    {"record": "agentic:answer_seconds:p95_5m", "expr": latency_quantile(0.95)},
                    {"record": "agentic:api_error_ratio:5m", "expr": API_ERROR_RATIO_EXPR},
                    {"record": "litellm:failed_ratio:5m", "expr": GATEWAY_FAILURE_RATIO_EXPR},
                    {
                        "record": "ray_serve:embedder_queued_queries:sum",
                        "expr": 'sum(ray_serve_deployment_queued_queries{deployment="embedder"})',
                    },
                ],
            },
            {
                "name": "agentic-rag.slo",
                "rules": [
                    _alert(
                        "AgenticAnswerLatencyHigh",
                        f"agentic:answer_seconds:p95_5m > {ANSWER_P95_SECONDS}",
                        "10m",
                        "warning",
                        f"Answer latency p95 is {{{{ $value | humanizeDuration }}}} (SLO {ANSWER_P95_SECONDS}s)",
                        "For 10 minutes more than 5% of answers (/query, /v1/chat/completions) took longer than "
                        f"{ANSWER_P95_SECONDS}s (p95 over 5-minute windows).",
                    ),
                    _alert(
                        "AgenticApiErrorRatioHigh",
                        f"agentic:api_error_ratio:5m > {API_ERROR_RATIO}",
                        "10m",
                        "critical",
                        "API 5xx ratio is {{ $value | humanizePercentage }}",
                        f"More than {API_ERROR_RATIO:.0%} of API requests failed with a 5xx for 10 minutes.",
                    ),
                    _alert(
                        "GatewayUpstreamFailuresHigh",
                        f"litellm:failed_ratio:5m > {GATEWAY_FAILURE_RATIO}",
                        "10m",
                        "warning",
                        "Model gateway failure ratio is {{ $value | humanizePercentage }}",
                        f"More than {GATEWAY_FAILURE_RATIO:.0%} of LiteLLM requests failed for 10 minutes.",
                    ),
                    _alert(
                        "EmbeddingBacklogHigh",
                        f"ray_serve:embedder_queued_queries:sum > {EMBEDDER_BACKLOG}",
                        "15m",
                        "warning",
                        "{{ $value }} embedding queries queued",
                        f"More than {EMBEDDER_BACKLOG} queries waited for the embedder for 15 minutes: its replicas "
                        "do not keep up.",
                    ),
                    _alert(
                        "AgenticMetricsDown",
                        'up{job=~"agentic-api|litellm"} == 0',
                        "10m",
                        "warning",
                        "{{ $labels.job }} metrics unreachable",
                        "Prometheus could not scrape {{ $labels.job }} ({{ $labels.instance }}) for 10 minutes; the "
                        "SLO alerts above are blind to it meanwhile.",
                    ),
                    _alert(
                        "GpuXidErrors",
                        "max by (Hostname, gpu) (DCGM_FI_DEV_XID_ERRORS) > 0",
                        "1m",
                        "critical",
                        "GPU {{ $labels.gpu }} on {{ $labels.Hostname }} reported XID {{ $value }}",
                        "The driver reported an XID error; the GPU may need its node replaced.",
                    ),
                ],
            },
        ]
    }


def prometheus_rule(cfg: PlatformConfig) -> dict:
    """``alert_rules`` as a PrometheusRule (kube-prometheus-stack evaluates every PrometheusRule: the chart's
    ``ruleSelectorNilUsesHelmValues`` is off; the ``release`` label also satisfies the chart's default selector)."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": _meta(cfg, "agentic-rag-slo", "observability", cfg.namespace, {"release": PROMETHEUS_RELEASE}),
        "spec": copy.deepcopy(alert_rules()),
    }


# ------------------------------------------------------------------ GPU exporters


def _node_agent(cfg: PlatformConfig, name: str, pool: str, taint: str, container: dict, volumes: list[dict]) -> dict:
    sel = {"app.kubernetes.io/name": name}
    spec: dict[str, Any] = {
        "priorityClassName": "system-node-critical",
        "automountServiceAccountToken": False,  # neither reads the Kubernetes API
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        **on_pool_nodes(pool, taint),
        "containers": [container],
    }
    if volumes:
        spec["volumes"] = volumes
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": _meta(cfg, name, "metrics-exporter", NODE_NAMESPACE, sel),
        "spec": {
            "selector": {"matchLabels": sel},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {"metadata": {"labels": sel}, "spec": spec},
        },
    }


def gpu_exporters(cfg: PlatformConfig) -> list[dict]:
    """The DCGM exporter on the GPU pool and the Neuron monitor on the inferentia pool (both as root in the
    privileged node namespace: DCGM needs SYS_ADMIN for its profiling counters, neuron-monitor the Neuron devices)."""
    dcgm = {
        "name": "dcgm-exporter",
        "image": DCGM_IMAGE,
        "env": [
            {"name": "DCGM_EXPORTER_LISTEN", "value": f":{EXPORTER_PORTS['dcgm-exporter']}"},
            {"name": "DCGM_EXPORTER_KUBERNETES", "value": "true"},  # pod/namespace labels from the kubelet's socket
        ],
        "ports": [{"name": "metrics", "containerPort": EXPORTER_PORTS["dcgm-exporter"]}],
        # no allowPrivilegeEscalation: false here, the API server refuses it beside CAP_SYS_ADMIN
        "securityContext": {"runAsNonRoot": False, "runAsUser": 0, "capabilities": {"add": ["SYS_ADMIN"]}},
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "readinessProbe": {"httpGet": {"path": "/health", "port": EXPORTER_PORTS["dcgm-exporter"]}},
        "volumeMounts": [{"name": "pod-resources", "mountPath": "/var/lib/kubelet/pod-resources", "readOnly": True}],
    }
    neuron = {
        "name": "neuron-monitor",
        "image": NEURON_MONITOR_IMAGE,
        "command": ["/opt/bin/entrypoint.sh"],
        "args": ["--port", str(EXPORTER_PORTS["neuron-monitor"])],
        "env": [{"name": "GOMEMLIMIT", "value": "160MiB"}],
        "ports": [{"name": "metrics", "containerPort": EXPORTER_PORTS["neuron-monitor"]}],
        "securityContext": {"privileged": True},
        "resources": {"requests": {"cpu": "256m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
    }
    return [
        _node_agent(
            cfg,
            "dcgm-exporter",
            "gpu",
            "nvidia.com/gpu",
            dcgm,
            [{"name": "pod-resources", "hostPath": {"path": "/var/lib/kubelet/pod-resources"}}],
        ),
        _node_agent(cfg, "neuron-monitor", "inferentia", "aws.amazon.com/neuron", neuron, []),
    ]


def exporter_services(cfg: PlatformConfig) -> list[dict]:
    """The Services the node agents' ServiceMonitors select (labelled like their pods)."""
    out = []
    for svc in METRICS_SERVICES:
        if svc.namespace != "node":
            continue
        port = EXPORTER_PORTS[svc.name]
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": _meta(cfg, svc.name, "metrics-exporter", NODE_NAMESPACE, dict(svc.selector)),
                "spec": {
                    "selector": dict(svc.selector),
                    "ports": [{"name": svc.port, "port": port, "targetPort": port}],
                },
            }
        )
    return out
