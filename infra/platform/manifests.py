"""Every Kubernetes object the platform declares, rendered from ``PlatformConfig``.

Groups (each a list of manifests, each labelled ``app.kubernetes.io/managed-by: agentic-platform`` so that apply can
prune what is no longer declared):

- ``node_pools``: Karpenter ``NodePool`` per pool; with ``compute_mode="karpenter"`` also an ``EC2NodeClass`` per pool.
  With EKS Auto Mode (the default) the pools reference Auto Mode's built-in ``eks.amazonaws.com`` NodeClass.
- ``cluster_addons``: pinned Helm charts (KubeRay operator, kube-prometheus-stack: Prometheus evaluating the alert
  rules and remote-writing to AMP, Alertmanager) as data, the NVIDIA and Neuron device plugins (karpenter mode; Auto
  Mode ships both), the DCGM exporter and Neuron monitor (not on kwok), ServiceMonitors (observability.py).
- ``model_deployments``: RayServices (embedder on Graviton, vLLM Qwen3-14B and vLLM Qwen2.5-VL-7B on the GPU pool, a
  Neuron variant), the RayCluster that runs the pipeline's Ray Data embedding, their Secrets as references.
- ``gateway_and_observability``: LiteLLM (ConfigMap from ``model_gateway``'s config, Deployment, Service), the API
  (Deployment, Service, Ingress), the GPU exporters' Services, the SLO PrometheusRule, Grafana dashboards as
  ConfigMaps (what is scraped, charted and alerted on is defined once, in ``observability.py``).

Labels are the standard ones (``kubernetes.io/arch``, ``karpenter.sh/nodepool``), not custom node labels.
"""

from __future__ import annotations

from infra.platform.addons import render_cluster_addons
from infra.platform.autoscaling import render_scaled_objects
from infra.platform.config import PlatformConfig
from infra.platform.gateway import render_litellm_config
from infra.platform.node_pools import COMPUTE_MODES, PRUNE_KINDS, render_node_pools
from infra.platform.objects import HELM_CHARTS
from infra.platform.ray_services import render_model_deployments
from infra.platform.security import (
    render_network_policies,
)
from infra.platform.workloads import render_dagster_values, render_gateway_and_observability

# what callers import from here: the renderers and the kinds each step owns
__all__ = [
    "COMPUTE_MODES",
    "HELM_CHARTS",
    "PRUNE_KINDS",
    "litellm_config",
    "render_all",
    "render_cluster_addons",
    "render_dagster_values",
    "render_everything",
    "render_gateway_and_observability",
    "render_model_deployments",
    "render_node_pools",
    "vision_endpoint",
]


def render_all(cfg: PlatformConfig, litellm_config: dict, compute_mode: str = "auto") -> dict[str, list[dict]]:
    return {
        "node_pools": render_node_pools(cfg, compute_mode),
        "cluster_addons": render_cluster_addons(cfg, compute_mode),
        "model_deployments": render_model_deployments(cfg),
        "gateway_and_observability": render_gateway_and_observability(cfg, litellm_config),
        "network_policies": render_network_policies(cfg),
    }


def litellm_config(cfg: PlatformConfig) -> dict:
    """The gateway config for the cluster: the RayServices' Serve endpoints, the judge on Bedrock, the key by reference."""
    ns = cfg.namespace
    return render_litellm_config(
        cfg.models.llm_model_id,
        f"http://agentic-llm-serve-svc.{ns}:8000/llm/v1",
        cfg.models.embedder_model_id,
        f"http://agentic-embed-serve-svc.{ns}:8000/embed/v1",
        judge_name="judge",
        judge_backend=f"bedrock/{cfg.bedrock_model_ids[0]}",
        aws_region=cfg.region,
        vision_name=cfg.models.vision_model_id if cfg.models.vision else "",
        vision_api_base=vision_endpoint(cfg),
        callbacks=("prometheus", "otel"),  # /metrics/ for the ServiceMonitor; spans to Langfuse, in the API's traces
    )


def vision_endpoint(cfg: PlatformConfig) -> str:
    """The vision RayService's OpenAI base URL inside the cluster (KubeRay names its Serve service <name>-serve-svc),
    or "" when the platform declares no vision model."""
    return f"http://agentic-vision-serve-svc.{cfg.namespace}:8000/vision/v1" if cfg.models.vision else ""


def render_everything(cfg: PlatformConfig, compute_mode: str = "auto") -> dict[str, list[dict]]:
    """Every manifest the platform declares, by file name (for ``agentic platform render`` and the assets)."""
    litellm = litellm_config(cfg)
    return {
        "node_pools": render_node_pools(cfg, compute_mode),
        "cluster_addons": render_cluster_addons(cfg, compute_mode),
        "platform_workloads": [
            *render_network_policies(cfg),  # before the pods they isolate
            *render_gateway_and_observability(cfg, litellm),
            *render_model_deployments(cfg),
            *render_scaled_objects(cfg),  # after the Deployments they scale
        ],
    }
