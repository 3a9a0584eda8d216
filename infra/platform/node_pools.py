"""Karpenter ``NodePool`` per pool (and ``EC2NodeClass`` with self-managed Karpenter), for EKS Auto Mode, self-managed
Karpenter on EC2, or Karpenter's kwok provider on the local control plane; and the kinds each platform step owns
(what apply prunes)."""

from __future__ import annotations

from typing import Any

from infra.platform.config import NodePoolConfig, PlatformConfig
from infra.platform.objects import meta

COMPUTE_MODES = ("auto", "karpenter", "kwok")
# The kinds each platform step owns, whatever its render holds today: prune looks at all of them, so an object whose
# kind left the render entirely (every RayService scaled away, EC2NodeClasses after a switch to Auto Mode) still goes.
# No kind belongs to two steps (each step would prune the other's objects).
PRUNE_KINDS: dict[str, set[tuple[str, str]]] = {
    "node_pools": {
        ("karpenter.sh/v1", "NodePool"),
        ("karpenter.k8s.aws/v1", "EC2NodeClass"),
        ("karpenter.kwok.sh/v1alpha1", "KWOKNodeClass"),
    },
    "cluster_addons": {
        ("v1", "Namespace"),
        ("apps/v1", "DaemonSet"),
        ("monitoring.coreos.com/v1", "ServiceMonitor"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding"),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    },
    "platform_workloads": {
        ("v1", "ServiceAccount"),
        ("v1", "ConfigMap"),
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("networking.k8s.io/v1", "Ingress"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
        ("ray.io/v1", "RayService"),
        ("ray.io/v1", "RayCluster"),
        ("monitoring.coreos.com/v1", "PrometheusRule"),
        ("keda.sh/v1alpha1", "ScaledObject"),
    },
}
# Where instance labels live and which node class a pool references, per compute target: EKS Auto Mode, self-managed
# Karpenter on EC2, or Karpenter's kwok provider on the local control plane (the only differences between them).
LABEL_DOMAIN = {"auto": "eks.amazonaws.com", "karpenter": "karpenter.k8s.aws", "kwok": "karpenter.kwok.sh"}


def _generation(family: str) -> int:
    digits = "".join(c for c in family if c.isdigit())
    return int(digits) if digits else 0


def _requirements(pool: NodePoolConfig, compute_mode: str) -> list[dict]:
    prefix = LABEL_DOMAIN[compute_mode]
    reqs = [
        {"key": "kubernetes.io/arch", "operator": "In", "values": [pool.arch]},
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": list(pool.capacity_types)},
        {"key": f"{prefix}/instance-family", "operator": "In", "values": list(pool.instance_families)},
    ]
    if pool.min_generation and compute_mode != "kwok":
        reqs.append(
            {"key": f"{prefix}/instance-generation", "operator": "Gt", "values": [str(pool.min_generation - 1)]}
        )
    elif pool.min_generation:
        # kwok labels no generation: the family list must already honour it
        old = [f for f in pool.instance_families if _generation(f) < pool.min_generation]
        if old:
            raise ValueError(f"pool {pool.name}: families {old} are older than min_generation {pool.min_generation}")
    return reqs


def _node_class_ref(pool: NodePoolConfig, compute_mode: str) -> dict:
    if compute_mode == "auto":
        return {"group": "eks.amazonaws.com", "kind": "NodeClass", "name": "default"}
    if compute_mode == "kwok":
        return {"group": "karpenter.kwok.sh", "kind": "KWOKNodeClass", "name": pool.name}
    return {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": pool.name}


def render_node_pools(cfg: PlatformConfig, compute_mode: str = "auto") -> list[dict]:
    if compute_mode not in COMPUTE_MODES:
        raise ValueError(
            "compute_mode must be auto (EKS Auto Mode), karpenter (self-managed Karpenter) or kwok (local control plane)"
        )
    out = []
    for pool in cfg.node_pools:
        limits: dict[str, Any] = {"cpu": str(pool.cpu_limit), "memory": f"{pool.memory_limit_gi}Gi"}
        if pool.gpu_limit:
            limits["nvidia.com/gpu"] = str(pool.gpu_limit)
        if pool.neuron_limit:
            limits["aws.amazon.com/neuron"] = str(pool.neuron_limit)
        node_class_ref = _node_class_ref(pool, compute_mode)
        spec_template: dict[str, Any] = {
            "nodeClassRef": node_class_ref,
            "requirements": _requirements(pool, compute_mode),
            "expireAfter": pool.expire_after,
        }
        if pool.taints:
            spec_template["taints"] = [dict(t) for t in pool.taints]
        out.append(
            {
                "apiVersion": "karpenter.sh/v1",
                "kind": "NodePool",
                "metadata": meta(cfg, pool.name, "node-pool"),
                "spec": {
                    "template": {"spec": spec_template},
                    "limits": limits,
                    "disruption": {
                        "consolidationPolicy": "WhenEmptyOrUnderutilized",
                        "consolidateAfter": pool.consolidate_after,
                        "budgets": [{"nodes": pool.disruption_budget}],
                    },
                },
            }
        )
        if compute_mode == "kwok":
            out.append(
                {
                    "apiVersion": "karpenter.kwok.sh/v1alpha1",
                    "kind": "KWOKNodeClass",
                    "metadata": meta(cfg, pool.name, "node-class"),
                    "spec": {},
                }
            )
        if compute_mode == "karpenter":
            out.append(
                {
                    "apiVersion": "karpenter.k8s.aws/v1",
                    "kind": "EC2NodeClass",
                    "metadata": meta(cfg, pool.name, "node-class"),
                    "spec": {
                        "role": f"{cfg.cluster_name}-node",
                        "amiSelectorTerms": [
                            {"alias": "al2023@latest"}
                        ],  # Karpenter picks the NVIDIA / Neuron AL2023 variants
                        "subnetSelectorTerms": [{"tags": {"karpenter.sh/discovery": cfg.cluster_name}}],
                        "securityGroupSelectorTerms": [{"tags": {"karpenter.sh/discovery": cfg.cluster_name}}],
                        "blockDeviceMappings": [
                            {
                                "deviceName": "/dev/xvda",
                                "ebs": {
                                    "volumeSize": f"{pool.volume_gi}Gi",
                                    "volumeType": "gp3",
                                    "encrypted": True,
                                    "deleteOnTermination": True,
                                },
                            }
                        ],
                        "metadataOptions": {
                            "httpEndpoint": "enabled",
                            "httpTokens": "required",
                            "httpPutResponseHopLimit": 1,
                        },
                        "tags": {"agentic/cluster": cfg.cluster_name, "agentic/pool": pool.name},
                    },
                }
            )
    return out
