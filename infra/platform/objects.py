"""What every platform object shares: the image and Helm chart pins, and the labels and metadata that let apply
prune what is no longer declared (``app.kubernetes.io/managed-by``)."""

from __future__ import annotations

from typing import Any

from infra.platform.config import MANAGED_BY, PlatformConfig
from infra.platform.observability import (
    PROMETHEUS_RELEASE,
)

RAY_VERSION = "2.60.0"
VLLM_IMAGE_TAG = "2.60.0-py311-cu128"  # rayproject/ray-llm: Ray Serve LLM with vLLM, matching the Ray version
LITELLM_IMAGE = (
    "ghcr.io/berriai/litellm:v1.76.1-stable"  # the proxy image; the local twin runs litellm 1.106 (infra/gateway)
)

HELM_CHARTS = [
    {
        "name": "kuberay-operator",
        "repo": "https://ray-project.github.io/kuberay-helm/",
        "chart": "kuberay-operator",
        "version": "1.7.0",
        "namespace": "kuberay-system",
        "values": {"batchScheduler": {"enabled": False}},
    },
    {
        # Prometheus in server mode (an agent evaluates no rules): short local retention for rules and alerts, every
        # sample still remote-written to AMP. The release keeps its name: a new one would install a second stack.
        "name": PROMETHEUS_RELEASE,
        "repo": "https://prometheus-community.github.io/helm-charts",
        "chart": "kube-prometheus-stack",
        "version": "75.15.1",
        "namespace": "monitoring",
        "values": {
            "grafana": {"enabled": False},
            # receivers (Slack, PagerDuty, SNS...) come from the Secret alertmanager-receivers (key alertmanager.yaml),
            # created out of band: no webhook URL or key lives in this repository
            "alertmanager": {
                "enabled": True,
                "alertmanagerSpec": {"useExistingSecret": True, "configSecret": "alertmanager-receivers"},
            },
            "prometheus": {
                "agentMode": False,
                "serviceAccount": {"name": "prometheus-amp"},
                "prometheusSpec": {
                    "serviceMonitorSelectorNilUsesHelmValues": False,
                    "ruleSelectorNilUsesHelmValues": False,  # every PrometheusRule, not only the release's own
                    "retention": "2d",  # AMP keeps the history; locally only what rules and alerts look back on
                    "retentionSize": "8GB",
                    "remoteWrite": [{"url": "${AMP_REMOTE_WRITE_URL}", "sigv4": {"region": "${AWS_REGION}"}}],
                },
            },
        },
    },
    {
        # the ScaledObjects' controller (infra/platform/autoscaling.py); the chart version is KEDA's own, whose CRD
        # infra/crds vendors
        "name": "keda",
        "repo": "https://kedacore.github.io/charts",
        "chart": "keda",
        "version": "2.18.0",
        "namespace": "keda",
        "values": {},
    },
    {
        "name": "dagster",
        "repo": "https://dagster-io.github.io/helm",
        "chart": "dagster",
        "version": "1.13.27",
        "namespace": "dagster",
        "values_file": "dagster-values.yaml",
    },
]


def labels(cfg: PlatformConfig, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": cfg.cluster_name,
        "app.kubernetes.io/component": component,
    }


def meta(
    cfg: PlatformConfig, name: str, component: str, namespace: str | None = None, extra: dict | None = None
) -> dict:
    m: dict[str, Any] = {"name": name, "labels": {**labels(cfg, component), **(extra or {})}}
    if namespace:
        m["namespace"] = namespace
    return m


def probe(path: str, port: int, delay: int) -> dict:
    return {
        "httpGet": {"path": path, "port": port},
        "initialDelaySeconds": delay,
        "periodSeconds": 15,
        "timeoutSeconds": 5,
        "failureThreshold": 6,
    }
