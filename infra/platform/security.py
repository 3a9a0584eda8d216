"""The cluster's security posture, rendered from ``PlatformConfig.security``: Pod Security Standards on the platform's
namespaces and the security contexts every workload needs to pass them, RBAC for the four access roles, default-deny
NetworkPolicies with the allows the graph needs, and the API's ingress.

- Pod Security: the platform's namespaces (``agentic``, ``dagster``) enforce ``restricted``. The NVIDIA / Neuron device
  plugins (rendered only without Auto Mode) need a hostPath to the kubelet's device-plugin socket, which only the
  ``privileged`` level allows: they run in their own namespace (``agentic-node``), enforced ``privileged`` and warned /
  audited at ``restricted``, so nothing else the platform runs gets that exemption.
- RBAC: EKS access policies map to the built-in ClusterRoles (AmazonEKSClusterAdminPolicy -> cluster-admin,
  AmazonEKSAdminPolicy -> admin, AmazonEKSEditPolicy -> edit, AmazonEKSViewPolicy -> view). The access entries (AWS
  plan) put each principal in a Kubernetes group and associate the policy; the bindings here give those groups the same
  ClusterRoles, so a cluster without EKS's authorizer (the local control plane) grants exactly what EKS does.
- NetworkPolicies: deny everything in the platform's namespace, then allow DNS, API -> gateway -> models, Dagster ->
  Ray Data / gateway, the ALB -> API, Prometheus -> metrics ports, Ray nodes within their own cluster, KubeRay -> the
  Ray dashboards, and HTTPS out of the cluster for the pods that call AWS or the web. ``reachable`` evaluates them.
"""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

from infra.platform.config import ACCESS_ROLES, MANAGED_BY, PlatformConfig

NODE_NAMESPACE = "agentic-node"  # the device plugins' namespace: the one place allowed hostPath (privileged)
DAGSTER_NAMESPACE = "dagster"
MONITORING_NAMESPACE = "monitoring"  # the Prometheus agent (Helm), which scrapes the metrics ports
KUBERAY_NAMESPACE = "kuberay-system"  # the operator polls each Ray head's dashboard
RUN_AS = (
    1000  # the images' non-root user (ray's `ray`, the platform image's `app`); numeric so the kubelet can check it
)

# what PSS `restricted` asks of every container (runAsNonRoot may sit on the pod instead)
CONTAINER_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
POD_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": RUN_AS,
    "runAsGroup": RUN_AS,
    "fsGroup": RUN_AS,
    "seccompProfile": {"type": "RuntimeDefault"},
}
# the device plugins must write the kubelet's root-owned socket directory: root, but nothing else added
NODE_AGENT_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
    "readOnlyRootFilesystem": True,
}


def on_pool_nodes(pool: str, taint: str) -> dict[str, Any]:
    """A node agent's placement: it tolerates the pool's taint and runs only on that Karpenter pool's nodes."""
    return {
        "tolerations": [{"key": taint, "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "karpenter.sh/nodepool", "operator": "In", "values": [pool]}]}
                    ]
                }
            }
        },
    }


def restricted(pod_spec: dict) -> dict:
    """``pod_spec`` with the pod and container security contexts PSS ``restricted`` requires (in place, returned)."""
    pod_spec["securityContext"] = {**copy.deepcopy(POD_SECURITY), **pod_spec.get("securityContext", {})}
    for c in [*pod_spec.get("initContainers", []), *pod_spec.get("containers", [])]:
        c["securityContext"] = {**copy.deepcopy(CONTAINER_SECURITY), **c.get("securityContext", {})}
    return pod_spec


def _labels(cfg: PlatformConfig, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": cfg.cluster_name,
        "app.kubernetes.io/component": component,
    }


def pss_labels(enforce: str, warn: str = "restricted") -> dict[str, str]:
    return {
        "pod-security.kubernetes.io/enforce": enforce,
        "pod-security.kubernetes.io/enforce-version": "latest",
        "pod-security.kubernetes.io/warn": warn,
        "pod-security.kubernetes.io/warn-version": "latest",
        "pod-security.kubernetes.io/audit": warn,
        "pod-security.kubernetes.io/audit-version": "latest",
    }


def platform_namespaces(cfg: PlatformConfig) -> list[str]:
    """The namespaces whose pods the platform renders (and the access roles' default scope)."""
    return [cfg.namespace, DAGSTER_NAMESPACE]


def render_namespaces(cfg: PlatformConfig, node_agents: bool) -> list[dict]:
    level = cfg.security.pod_security
    out = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": ns, "labels": {**_labels(cfg, "namespace"), **pss_labels(level)}},
        }
        for ns in platform_namespaces(cfg)
    ]
    if node_agents:
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": NODE_NAMESPACE,
                    "labels": {**_labels(cfg, "namespace"), **pss_labels("privileged")},
                },
            }
        )
    return out


# ------------------------------------------------------------------ RBAC


def access_group(cfg: PlatformConfig, role: str) -> str:
    """The Kubernetes group an access entry puts its principal in (never ``system:``: EKS refuses those)."""
    return f"{cfg.cluster_name}:{role}"


def render_rbac(cfg: PlatformConfig) -> list[dict]:
    """Bindings of the four access groups to the ClusterRoles their EKS access policies map to: cluster-admin
    cluster-wide, admin / edit / view in each platform namespace."""
    out: list[dict] = [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": f"{cfg.cluster_name}-cluster-admin", "labels": _labels(cfg, "access")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": access_group(cfg, "cluster-admin")}
            ],
        }
    ]
    for ns in platform_namespaces(cfg):
        for role in ("admin", "edit", "read"):
            out.append(
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "RoleBinding",
                    "metadata": {
                        "name": f"{cfg.cluster_name}-{role}",
                        "namespace": ns,
                        "labels": _labels(cfg, "access"),
                    },
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": ACCESS_ROLES[role]["cluster_role"],
                    },
                    "subjects": [
                        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": access_group(cfg, role)}
                    ],
                }
            )
    return out


# ------------------------------------------------------------------ ingress


def ingress_cidrs(cfg: PlatformConfig) -> list[str]:
    return list(cfg.security.ingress_allowed_cidrs) or [cfg.vpc.cidr]


def ingress_annotations(cfg: PlatformConfig) -> dict[str, str]:
    """The AWS load balancer controller's annotations for the API: internal unless asked, the callers' ranges only,
    HTTPS with the configured certificate (internal without one: HTTP inside the VPC only)."""
    sec = cfg.security
    ann = {
        "alb.ingress.kubernetes.io/scheme": sec.ingress_scheme,
        "alb.ingress.kubernetes.io/target-type": "ip",
        "alb.ingress.kubernetes.io/inbound-cidrs": ",".join(ingress_cidrs(cfg)),
        "alb.ingress.kubernetes.io/healthcheck-path": "/health",
    }
    if sec.certificate_arn:
        ann["alb.ingress.kubernetes.io/certificate-arn"] = sec.certificate_arn
        ann["alb.ingress.kubernetes.io/listen-ports"] = '[{"HTTP":80},{"HTTPS":443}]'
        ann["alb.ingress.kubernetes.io/ssl-redirect"] = "443"
        ann["alb.ingress.kubernetes.io/ssl-policy"] = "ELBSecurityPolicy-TLS13-1-2-2021-06"
    else:
        ann["alb.ingress.kubernetes.io/listen-ports"] = '[{"HTTP":80}]'
    return ann


# ------------------------------------------------------------------ NetworkPolicies

# pod selectors of the graph's parts (labels the renders put on their pods; KubeRay keeps template labels)
API = {"app.kubernetes.io/name": "agentic-api"}
GATEWAY = {"app.kubernetes.io/name": "litellm"}
DAGSTER_STEP = {"app.kubernetes.io/name": "dagster"}  # dagster-k8s labels every step pod with it
RAY_LABEL = "agentic/ray"  # set on every pod template of a RayService / RayCluster: which Ray cluster it belongs to
MODEL_CLUSTERS = ("agentic-llm", "agentic-embed", "agentic-llm-neuron", "agentic-vision")
DATA_CLUSTER = "agentic-data"
PORTS = {"api": 8000, "gateway": 4000, "serve": 8000, "dashboard": 8265, "client": 10001, "metrics": 8080}


def _ns(name: str) -> dict:
    return {"matchLabels": {"kubernetes.io/metadata.name": name}}


def _port(p: int, proto: str = "TCP") -> dict:
    return {"protocol": proto, "port": p}


def _policy(cfg: PlatformConfig, name: str, selector: dict, ingress=None, egress=None) -> dict:
    types = [t for t, rules in (("Ingress", ingress), ("Egress", egress)) if rules is not None]
    spec: dict[str, Any] = {"podSelector": {"matchLabels": selector} if selector else {}, "policyTypes": types}
    # an empty rule list (deny all) is left out: the API server drops it, and a re-plan would show it as drift
    if ingress:
        spec["ingress"] = ingress
    if egress:
        spec["egress"] = egress
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": cfg.namespace, "labels": _labels(cfg, "network-policy")},
        "spec": spec,
    }


def _outside_https(cfg: PlatformConfig) -> list[dict]:
    """HTTPS to anything outside the cluster's pods (AWS APIs, VPC endpoints, Bedrock, Langfuse, web search); the
    pod CIDRs are not excepted: pods of the platform listen on no 443."""
    if not cfg.security.allow_external_https:
        return []
    return [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [_port(443)]}]


def render_network_policies(cfg: PlatformConfig) -> list[dict]:
    vpc = cfg.vpc.cidr
    ray = lambda name: {RAY_LABEL: name}  # noqa: E731
    scrape = {"from": [{"namespaceSelector": _ns(MONITORING_NAMESPACE)}]}
    out = [
        _policy(cfg, "default-deny", {}, ingress=[], egress=[]),
        _policy(
            cfg,
            "allow-dns",
            {},
            egress=[
                {
                    "to": [
                        {
                            "namespaceSelector": _ns("kube-system"),
                            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                        }
                    ],
                    "ports": [_port(53, "UDP"), _port(53, "TCP")],
                }
            ],
        ),
        # the ALB (target type ip) reaches the pods from its addresses in the VPC
        _policy(
            cfg,
            "agentic-api",
            API,
            ingress=[
                {"from": [{"ipBlock": {"cidr": vpc}}], "ports": [_port(PORTS["api"])]},
                {**scrape, "ports": [_port(PORTS["api"])]},
            ],
            egress=[{"to": [{"podSelector": {"matchLabels": GATEWAY}}], "ports": [_port(PORTS["gateway"])]}]
            + _outside_https(cfg),
        ),
        _policy(
            cfg,
            "litellm",
            GATEWAY,
            ingress=[
                {
                    # the data cluster's parse workers call the vision model for scans OCR cannot read and figures
                    "from": [
                        {"podSelector": {"matchLabels": API}},
                        {"podSelector": {"matchLabels": DAGSTER_STEP}},
                        {"podSelector": {"matchLabels": ray(DATA_CLUSTER)}},
                    ],
                    "ports": [_port(PORTS["gateway"])],
                },
                {**scrape, "ports": [_port(PORTS["gateway"])]},
            ],
            egress=[
                {
                    "to": [{"podSelector": {"matchLabels": ray(c)}} for c in MODEL_CLUSTERS],
                    "ports": [_port(PORTS["serve"])],
                }
            ]
            + _outside_https(cfg),
        ),
        _policy(
            cfg,
            "dagster-steps",
            DAGSTER_STEP,
            egress=[
                {
                    "to": [{"podSelector": {"matchLabels": ray(DATA_CLUSTER)}}],
                    "ports": [_port(PORTS["dashboard"]), _port(PORTS["client"])],
                },
                {"to": [{"podSelector": {"matchLabels": GATEWAY}}], "ports": [_port(PORTS["gateway"])]},
                # the run's Postgres (RDS) in the VPC
                {"to": [{"ipBlock": {"cidr": vpc}}], "ports": [_port(5432)]},
            ]
            + _outside_https(cfg),
        ),
    ]
    for name in (*MODEL_CLUSTERS, DATA_CLUSTER):
        ingress = [
            {"from": [{"podSelector": {"matchLabels": ray(name)}}]},  # a Ray cluster's own nodes, every port
            {
                "from": [{"namespaceSelector": _ns(KUBERAY_NAMESPACE)}],
                "ports": [_port(PORTS["dashboard"]), _port(PORTS["serve"])],
            },
            {**scrape, "ports": [_port(PORTS["metrics"])]},
        ]
        if name in MODEL_CLUSTERS:
            ingress.append({"from": [{"podSelector": {"matchLabels": GATEWAY}}], "ports": [_port(PORTS["serve"])]})
        else:
            ingress.append(
                {
                    "from": [
                        {"podSelector": {"matchLabels": DAGSTER_STEP}},
                        {"namespaceSelector": _ns(DAGSTER_NAMESPACE)},  # the run pods and the code location
                    ],
                    "ports": [_port(PORTS["dashboard"]), _port(PORTS["client"])],
                }
            )
        out.append(
            _policy(
                cfg,
                f"ray-{name}",
                ray(name),
                ingress=ingress,
                egress=[{"to": [{"podSelector": {"matchLabels": ray(name)}}]}]
                + (
                    [{"to": [{"podSelector": {"matchLabels": GATEWAY}}], "ports": [_port(PORTS["gateway"])]}]
                    if name == DATA_CLUSTER
                    else []
                )
                + _outside_https(cfg),
            )
        )
    return out


# ---- evaluation: who may reach whom under the rendered policies (NetworkPolicy semantics, the subset rendered here)


def _selects(selector: dict, labels: dict[str, str]) -> bool:
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        have = labels.get(e["key"])
        if e["operator"] == "In" and have not in e["values"]:
            return False
        if e["operator"] == "NotIn" and have in e["values"]:
            return False
        if e["operator"] == "Exists" and e["key"] not in labels:
            return False
        if e["operator"] == "DoesNotExist" and e["key"] in labels:
            return False
    return True


def _peer_matches(peer: dict, pod: dict, policy_ns: str) -> bool:
    if "ipBlock" in peer:
        ip = pod.get("ip")
        if not ip:
            return False
        block = peer["ipBlock"]
        addr = ipaddress.ip_address(ip)
        return addr in ipaddress.ip_network(block["cidr"]) and not any(
            addr in ipaddress.ip_network(x) for x in block.get("except", [])
        )
    if "namespace" not in pod:
        return False  # an endpoint outside the cluster matches ipBlocks only
    if "namespaceSelector" in peer:
        ns_ok = _selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": pod["namespace"]})
    else:
        ns_ok = pod["namespace"] == policy_ns
    return ns_ok and _selects(peer.get("podSelector", {}), pod.get("labels", {}))


def _rule_allows(rule: dict, peer_key: str, peer: dict, port: int, proto: str, ns: str) -> bool:
    ports = rule.get("ports")
    if ports and not any(p.get("port") == port and p.get("protocol", "TCP") == proto for p in ports):
        return False
    peers = rule.get(peer_key)
    return not peers or any(_peer_matches(p, peer, ns) for p in peers)


def _side_allows(policies: list[dict], pod: dict, other: dict, kind: str, port: int, proto: str) -> bool:
    key, peer_key = ("ingress", "from") if kind == "Ingress" else ("egress", "to")
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == pod["namespace"]
        and kind in p["spec"]["policyTypes"]
        and _selects(p["spec"]["podSelector"], pod.get("labels", {}))
    ]
    if not selecting:
        return True  # a pod no policy selects is not isolated
    return any(
        _rule_allows(r, peer_key, other, port, proto, p["metadata"]["namespace"])
        for p in selecting
        for r in p["spec"].get(key, [])
    )


def reachable(policies: list[dict], src: dict, dst: dict, port: int, proto: str = "TCP") -> bool:
    """May ``src`` open a connection to ``dst`` on ``port``? Pods are ``{"namespace", "labels"}`` (plus ``ip`` for
    endpoints outside the cluster, which no policy isolates). Both the source's egress and the destination's ingress
    must allow it."""
    egress = "namespace" not in src or _side_allows(policies, src, dst, "Egress", port, proto)
    ingress = "namespace" not in dst or _side_allows(policies, dst, src, "Ingress", port, proto)
    return egress and ingress
