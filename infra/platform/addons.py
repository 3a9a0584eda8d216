"""Cluster add-ons: pinned Helm charts as data, device plugins and exporters as DaemonSets, ServiceMonitors."""

from __future__ import annotations

import copy

from infra.platform.config import PlatformConfig
from infra.platform.objects import meta
from infra.platform.observability import (
    gpu_exporters,
    service_monitors,
)
from infra.platform.security import (
    NODE_AGENT_SECURITY,
    NODE_NAMESPACE,
    on_pool_nodes,
    render_namespaces,
    render_rbac,
)


def _daemonset(
    cfg: PlatformConfig, name: str, image: str, toleration: str, resource_key: str, args: list[str] | None = None
) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": meta(cfg, name, "device-plugin", NODE_NAMESPACE),
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": name}},
                "spec": {
                    "priorityClassName": "system-node-critical",
                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                    **on_pool_nodes("gpu" if resource_key == "nvidia.com/gpu" else "inferentia", toleration),
                    "containers": [
                        {
                            "name": name,
                            "image": image,
                            **({"args": args} if args else {}),
                            "securityContext": copy.deepcopy(NODE_AGENT_SECURITY),
                            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
                            "volumeMounts": [{"name": "device-plugin", "mountPath": "/var/lib/kubelet/device-plugins"}],
                        }
                    ],
                    "volumes": [{"name": "device-plugin", "hostPath": {"path": "/var/lib/kubelet/device-plugins"}}],
                },
            },
        },
    }


def render_cluster_addons(cfg: PlatformConfig, compute_mode: str = "auto") -> list[dict]:
    # the namespaces come first (the ServiceMonitors here and every workload after live in them), with their Pod
    # Security labels, then the access roles' bindings in them
    # the node namespace in every mode: Auto Mode brings its own device plugins, not the GPU / Neuron exporters
    out: list[dict] = [*render_namespaces(cfg, node_agents=True), *render_rbac(cfg)]
    if compute_mode != "auto":  # Auto Mode nodes come with the NVIDIA and Neuron device plugins
        out.append(
            _daemonset(
                cfg,
                "nvidia-device-plugin",
                "nvcr.io/nvidia/k8s-device-plugin:v0.17.1",
                "nvidia.com/gpu",
                "nvidia.com/gpu",
                ["--fail-on-init-error=false"],
            )
        )
        out.append(
            _daemonset(
                cfg,
                "neuron-device-plugin",
                "public.ecr.aws/neuron/neuron-device-plugin:2.24.23.0",
                "aws.amazon.com/neuron",
                "aws.amazon.com/neuron",
            )
        )
    if compute_mode != "kwok":  # kwok's nodes have no GPU or Neuron device to read; Auto Mode ships no exporters
        out += gpu_exporters(cfg)
    out += service_monitors(cfg)  # last: they select Services the later steps create
    return out
