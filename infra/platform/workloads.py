"""The platform's own workloads: LiteLLM, the API (Deployment, Service, Ingress), the exporters' Services, the SLO
rules and dashboards, and the Dagster Helm values (one pod per step)."""

from __future__ import annotations

import copy
import json
from typing import Any

import yaml

from infra.platform.config import PlatformConfig
from infra.platform.dashboards import grafana_dashboards
from infra.platform.gateway import AUTH_MODULE
from infra.platform.objects import LITELLM_IMAGE, meta, probe
from infra.platform.observability import exporter_services, prometheus_rule
from infra.platform.ray_services import ray_token_env
from infra.platform.security import (
    CONTAINER_SECURITY,
    POD_SECURITY,
    ingress_annotations,
    restricted,
)


def _deployment(
    cfg: PlatformConfig,
    name: str,
    image: str,
    port: int,
    env: list[dict],
    args: list[str] | None = None,
    volumes: list[dict] | None = None,
    mounts: list[dict] | None = None,
    sa: str | None = None,
    resources: dict | None = None,
    health: str = "/health",
) -> list[dict]:
    sel = {"app.kubernetes.io/name": name}
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "ports": [{"containerPort": port, "name": "http"}],
        "env": env,
        "resources": resources or {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
        "readinessProbe": probe(health, port, 10),
        "livenessProbe": probe(health, port, 30),
    }
    if args:
        container["args"] = args
    if mounts:
        container["volumeMounts"] = mounts
    pod: dict[str, Any] = {"nodeSelector": {"karpenter.sh/nodepool": "general"}, "containers": [container]}
    restricted(pod)
    if sa:
        pod["serviceAccountName"] = sa
    if volumes:
        pod["volumes"] = volumes
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta(cfg, name, "gateway", cfg.namespace, sel),
            # no replica count: KEDA's HPA owns it (min 2, infra/platform/autoscaling.py); an applied count would
            # reset what it scaled to on every apply
            "spec": {
                "selector": {"matchLabels": sel},
                "template": {"metadata": {"labels": sel}, "spec": pod},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta(cfg, name, "gateway", cfg.namespace, sel),
            "spec": {"selector": sel, "ports": [{"name": "http", "port": port, "targetPort": port}]},
        },
    ]


def render_gateway_and_observability(cfg: PlatformConfig, litellm_config: dict) -> list[dict]:
    if "master_key" in json.dumps(litellm_config.get("general_settings", {})) and "os.environ/" not in json.dumps(
        litellm_config.get("general_settings", {})
    ):
        raise ValueError("the LiteLLM master key must be an environment reference, never a literal")
    ns = cfg.namespace
    out: list[dict] = [
        *[
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(cfg, sa, "identity", ns)}
            for sa in ("dagster", "litellm", "ray", "agentic-api")
        ],
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta(cfg, "litellm-config", "gateway", ns),
            # the proxy loads its key check (general_settings.custom_auth) from beside config.yaml
            "data": {
                "config.yaml": yaml.safe_dump(litellm_config, sort_keys=False),
                AUTH_MODULE.name: AUTH_MODULE.read_text(),
            },
        },
    ]
    secret_env = lambda name, secret, key: {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}  # noqa: E731
    out += _deployment(
        cfg,
        "litellm",
        LITELLM_IMAGE,
        4000,
        env=[
            secret_env("LITELLM_MASTER_KEY", "litellm-master-key", "key"),
            secret_env("AGENTIC_UPSTREAM_KEY", "litellm-master-key", "upstream"),
            {"name": "AWS_REGION", "value": cfg.region},
            {"name": "LITELLM_LOCAL_MODEL_COST_MAP", "value": "True"},
            # the otel callback's exporter: Langfuse's OTLP endpoint, its key pair from the Secret as headers
            {"name": "OTEL_EXPORTER", "value": "otlp_http"},
            {"name": "OTEL_SERVICE_NAME", "value": "litellm"},
            {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": f"{cfg.observability.langfuse_host}/api/public/otel"},
            secret_env("OTEL_EXPORTER_OTLP_HEADERS", cfg.observability.langfuse_secret, "otlp_headers"),
        ],
        args=["--config", "/etc/litellm/config.yaml", "--port", "4000"],
        volumes=[{"name": "config", "configMap": {"name": "litellm-config"}}],
        mounts=[{"name": "config", "mountPath": "/etc/litellm"}],
        sa="litellm",
        health="/health/liveliness",
    )
    out += _deployment(
        cfg,
        "agentic-api",
        cfg.image,
        8000,
        env=[
            {"name": "AGENTIC_PROFILE", "value": "eks"},
            secret_env("AGENTIC_API_KEY", "agentic-api-key", "key"),
            secret_env("AGENTIC_GATEWAY_KEY", "litellm-master-key", "key"),
            {"name": "AGENTIC_WEB_SEARCH", "value": "http"},
            {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": f"{cfg.observability.langfuse_host}/api/public/otel"},
            secret_env("OTEL_EXPORTER_OTLP_HEADERS", cfg.observability.langfuse_secret, "otlp_headers"),
        ],
        args=["agentic", "serve", "--host", "0.0.0.0", "--port", "8000"],
        sa="agentic-api",
    )
    out.append(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {
                **meta(cfg, "agentic-api", "gateway", ns),
                "annotations": ingress_annotations(cfg),
            },
            "spec": {
                "ingressClassName": "alb",
                "rules": [
                    {
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": "agentic-api", "port": {"number": 8000}}},
                                }
                            ]
                        }
                    }
                ],
            },
        }
    )
    out += exporter_services(cfg)  # Services are this step's kind; their DaemonSets are cluster add-ons
    out.append(prometheus_rule(cfg))
    for name, dash in grafana_dashboards().items():
        out.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": meta(cfg, f"dashboard-{name}", "observability", ns, {"grafana_dashboard": "1"}),
                "data": {f"{name}.json": json.dumps(dash, indent=1)},
            }
        )
    return out


def render_dagster_values(cfg: PlatformConfig) -> dict:
    """Values for the official Dagster Helm chart: this code location as a user deployment, the K8sRunLauncher,
    Postgres (RDS via a Secret reference in production; the chart's Postgres is off)."""
    repo, tag = cfg.image.rsplit(":", 1)
    env = [
        {"name": "AGENTIC_PROFILE", "value": "eks"},
        {"name": "AWS_REGION", "value": cfg.region},
        {"name": "AGENTIC_DOCUMENT_BUCKET", "value": cfg.document_bucket},
        {"name": "AGENTIC_RAY_ADDRESS", "value": f"ray://agentic-data-head-svc.{cfg.namespace}:10001"},
        # bulk data work goes to the data RayCluster as Ray jobs (its dashboard's Jobs API), state to S3 (state/)
        {"name": "AGENTIC_RAY_JOBS_ADDRESS", "value": f"http://agentic-data-head-svc.{cfg.namespace}:8265"},
        *ray_token_env(cfg),  # the Jobs API and the GCS refuse a client without the cluster's token
        {
            "name": "AGENTIC_DOCUMENT_QUEUE_URL",
            "value": f"https://sqs.{cfg.region}.amazonaws.com/${{AWS_ACCOUNT_ID}}/{cfg.cluster_name}-documents",
        },
    ]
    return {
        "global": {"serviceAccountName": "dagster", "postgresqlSecretName": "dagster-postgresql-secret"},
        "dagster-user-deployments": {
            "enabled": True,
            "deployments": [
                {
                    "name": "agentic",
                    "image": {"repository": repo, "tag": tag, "pullPolicy": "IfNotPresent"},
                    "dagsterApiGrpcArgs": ["-m", "pipelines.definitions"],
                    "port": 3030,
                    "env": env,
                    "envSecrets": [{"name": "agentic-secrets"}, {"name": cfg.observability.langfuse_secret}],
                    "includeConfigInLaunchedRuns": {"enabled": True},
                    "nodeSelector": {"karpenter.sh/nodepool": "general"},
                    "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
                    "podSecurityContext": copy.deepcopy(POD_SECURITY),
                    "securityContext": copy.deepcopy(CONTAINER_SECURITY),
                }
            ],
        },
        "runLauncher": {
            "type": "K8sRunLauncher",
            "config": {
                "k8sRunLauncher": {
                    "jobNamespace": "dagster",
                    "envSecrets": [{"name": "agentic-secrets"}, {"name": cfg.observability.langfuse_secret}],
                    # run pods, and through the run launcher every step pod dagster-k8s makes, pass PSS restricted
                    "runK8sConfig": {
                        "podSpecConfig": {
                            "nodeSelector": {"karpenter.sh/nodepool": "general"},
                            "securityContext": copy.deepcopy(POD_SECURITY),
                        },
                        "containerConfig": {
                            "securityContext": copy.deepcopy(CONTAINER_SECURITY),
                            "env": ray_token_env(cfg),  # step pods submit Ray jobs to the token-guarded cluster
                        },
                    },
                }
            },
        },
        "postgresql": {
            "enabled": False,
            "postgresqlHost": "${RDS_ENDPOINT}",
            "postgresqlUsername": "dagster",
            "postgresqlDatabase": "dagster",
        },
        "generatePostgresqlPasswordSecret": False,
        # the chart gives each Deployment's init containers the same securityContext as its main container
        "dagsterWebserver": {
            "nodeSelector": {"karpenter.sh/nodepool": "general"},
            "service": {"type": "ClusterIP"},
            "podSecurityContext": copy.deepcopy(POD_SECURITY),
            "securityContext": copy.deepcopy(CONTAINER_SECURITY),
        },
        "dagsterDaemon": {
            "enabled": True,
            "nodeSelector": {"karpenter.sh/nodepool": "general"},
            "podSecurityContext": copy.deepcopy(POD_SECURITY),
            "securityContext": copy.deepcopy(CONTAINER_SECURITY),
            "runCoordinator": {
                "enabled": True,
                "type": "QueuedRunCoordinator",
                "config": {"queuedRunCoordinator": {"maxConcurrentRuns": 10}},
            },
        },
    }
