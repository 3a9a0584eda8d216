"""EKS (Auto Mode): the cluster request, its access entries and Pod Identity associations; plan/apply."""

from __future__ import annotations

from typing import Any

from infra.platform.aws.common import (
    AUTO_MODE_NODE_POOLS,
    Action,
)
from infra.platform.aws.iam import iam_roles
from infra.platform.aws.kms import secrets_key_ref
from infra.platform.config import ACCESS_ROLES, PlatformConfig

# ------------------------------------------------------------------ EKS access entries


def access_entry_requests(cfg: PlatformConfig, partition: str = "aws") -> list[dict]:
    """Per configured principal: the access entry (its Kubernetes group, which the rendered RBAC binds too) and the
    access policy association (cluster-wide for cluster-admin, else the platform's namespaces or those named)."""
    from infra.platform.security import access_group, platform_namespaces

    out = []
    for e in cfg.security.access_entries:
        scope: dict[str, Any] = (
            {"type": "cluster"}
            if e.role == "cluster-admin"
            else {"type": "namespace", "namespaces": list(e.namespaces) or platform_namespaces(cfg)}
        )
        out.append(
            {
                "entry": {
                    "clusterName": cfg.cluster_name,
                    "principalArn": e.principal_arn,
                    "kubernetesGroups": [access_group(cfg, e.role)],
                    "type": "STANDARD",
                    "tags": {"agentic/cluster": cfg.cluster_name, "agentic/access-role": e.role},
                },
                "association": {
                    "clusterName": cfg.cluster_name,
                    "principalArn": e.principal_arn,
                    "policyArn": f"arn:{partition}:eks::aws:cluster-access-policy/{ACCESS_ROLES[e.role]['policy']}",
                    "accessScope": scope,
                },
            }
        )
    return out


def plan_access_entries(eks, cfg: PlatformConfig, cluster_exists: bool = True) -> list[Action]:
    wanted = access_entry_requests(cfg)
    if not cluster_exists:  # nothing to list yet: every entry is created with the cluster
        return [Action("access_entry", w["entry"]["principalArn"], "create", request=w) for w in wanted]
    have = set(eks.list_access_entries(clusterName=cfg.cluster_name).get("accessEntries", []))
    out = []
    for w in wanted:
        principal = w["entry"]["principalArn"]
        if principal not in have:
            out.append(Action("access_entry", principal, "create", request=w))
            continue
        assoc = eks.list_associated_access_policies(clusterName=cfg.cluster_name, principalArn=principal)
        policies = {p["policyArn"]: p.get("accessScope", {}) for p in assoc.get("associatedAccessPolicies", [])}
        want = w["association"]
        changes = {}
        if policies.get(want["policyArn"]) is None or sorted(
            policies[want["policyArn"]].get("namespaces", [])
        ) != sorted(want["accessScope"].get("namespaces", [])):
            changes["policy"] = {"have": policies, "want": {want["policyArn"]: want["accessScope"]}}
        out.append(Action("access_entry", principal, "update" if changes else "none", changes, w))
    return out


def apply_access_entries(eks, actions: list[Action]) -> None:
    for a in actions:
        if a.action == "create":
            eks.create_access_entry(**a.request["entry"])
        if a.action in ("create", "update"):
            eks.associate_access_policy(**a.request["association"])


def cluster_request(
    cfg: PlatformConfig,
    cluster_role_arn: str,
    node_role_arn: str,
    subnet_ids: list[str],
    secrets_key_arn: str = "",
) -> dict:
    account = cluster_role_arn.split(":")[4]
    return {
        "name": cfg.cluster_name,
        "version": cfg.kubernetes_version,
        "roleArn": cluster_role_arn,
        "resourcesVpcConfig": {
            "subnetIds": subnet_ids,
            "endpointPublicAccess": True,
            "endpointPrivateAccess": True,
            "publicAccessCidrs": list(cfg.endpoint_public_access_cidrs),
        },
        "kubernetesNetworkConfig": {"elasticLoadBalancing": {"enabled": True}},
        "computeConfig": {"enabled": True, "nodePools": AUTO_MODE_NODE_POOLS, "nodeRoleArn": node_role_arn},
        "storageConfig": {"blockStorage": {"enabled": True}},
        "accessConfig": {"authenticationMode": "API", "bootstrapClusterCreatorAdminPermissions": True},
        "bootstrapSelfManagedAddons": False,  # Auto Mode manages networking, storage and load balancing itself
        "logging": {"clusterLogging": [{"types": ["api", "audit", "authenticator"], "enabled": True}]},
        # a customer-managed KMS layer over EKS's default envelope encryption of the Secrets in etcd
        "encryptionConfig": [
            {"resources": ["secrets"], "provider": {"keyArn": secrets_key_arn or secrets_key_ref(cfg, account)}}
        ],
        "upgradePolicy": {"supportType": "STANDARD"},
        "tags": {"agentic/cluster": cfg.cluster_name},
    }


def _enabled_log_types(cluster: dict) -> list[str]:
    return sorted(
        t
        for entry in cluster.get("logging", {}).get("clusterLogging", [])
        if entry.get("enabled")
        for t in entry.get("types", [])
    )


def plan_cluster(eks, cfg: PlatformConfig, request: dict) -> Action:
    try:
        have = eks.describe_cluster(name=cfg.cluster_name)["cluster"]
    except eks.exceptions.ResourceNotFoundException:
        return Action("eks_cluster", cfg.cluster_name, "create", request=request)
    changes = {}
    if have.get("version") != request["version"]:
        changes["version"] = {"have": have.get("version"), "want": request["version"]}
    want_logs = sorted(request["logging"]["clusterLogging"][0]["types"])
    if _enabled_log_types(have) != want_logs:
        changes["logging"] = {"have": _enabled_log_types(have), "want": want_logs}
    vpc = have.get("resourcesVpcConfig", {})
    if "publicAccessCidrs" in vpc and sorted(vpc["publicAccessCidrs"]) != sorted(
        request["resourcesVpcConfig"]["publicAccessCidrs"]
    ):
        changes["publicAccessCidrs"] = {
            "have": vpc["publicAccessCidrs"],
            "want": request["resourcesVpcConfig"]["publicAccessCidrs"],
        }
    # Secrets encryption can be added to a cluster, never removed or changed
    if not any("secrets" in e.get("resources", []) for e in have.get("encryptionConfig") or []):
        changes["encryptionConfig"] = {"have": have.get("encryptionConfig") or [], "want": request["encryptionConfig"]}
    # compared only where the API reports them (EKS does; emulators may not)
    for key in ("computeConfig", "storageConfig"):
        if (
            key in have
            and have[key]
            and bool(have[key].get("enabled", have[key].get("blockStorage", {}).get("enabled"))) is False
        ):
            changes[key] = {"have": have[key], "want": request[key]}
    return Action(
        "eks_cluster",
        cfg.cluster_name,
        "update" if changes else "none",
        changes,
        {"status": have.get("status"), "endpoint": have.get("endpoint"), "arn": have.get("arn")},
    )


def apply_cluster(eks, action: Action, request: dict) -> dict:
    if action.action == "create":
        return eks.create_cluster(**request)["cluster"]
    if action.action == "update":
        if "version" in action.changes:  # version upgrades are their own API call, one minor at a time
            eks.update_cluster_version(name=request["name"], version=request["version"])
        update: dict[str, Any] = {}
        if "logging" in action.changes:
            update["logging"] = request["logging"]
        if "publicAccessCidrs" in action.changes:
            update["resourcesVpcConfig"] = {"publicAccessCidrs": request["resourcesVpcConfig"]["publicAccessCidrs"]}
        if "computeConfig" in action.changes or "storageConfig" in action.changes:
            update.update({k: request[k] for k in ("computeConfig", "storageConfig", "kubernetesNetworkConfig")})
        if update:
            eks.update_cluster_config(name=request["name"], **update)
        if "encryptionConfig" in action.changes:
            eks.associate_encryption_config(clusterName=request["name"], encryptionConfig=request["encryptionConfig"])
    return eks.describe_cluster(name=request["name"])["cluster"]


def plan_pod_identities(eks, cfg: PlatformConfig, account: str) -> list[Action]:
    roles = {name: r for name, r in iam_roles(cfg, account).items() if r.get("service_account")}
    have = {
        (a["namespace"], a["serviceAccount"]): a
        for a in eks.list_pod_identity_associations(clusterName=cfg.cluster_name).get("associations", [])
    }
    out = []
    for name, role in roles.items():
        ns, sa = role["service_account"]
        req = {
            "clusterName": cfg.cluster_name,
            "namespace": ns,
            "serviceAccount": sa,
            "roleArn": f"arn:aws:iam::{account}:role/{name}",
        }
        out.append(Action("pod_identity", f"{ns}/{sa}", "none" if (ns, sa) in have else "create", request=req))
    return out
