"""Where the platform goes: one interface, three targets. The platform assets call it and never branch on a profile.

- ``RenderedPlatform`` (local default): render and validate only; AWS and Kubernetes are not called.
- ``ClusterPlatform``: Kubernetes is live (plan, server-side apply, prune, readiness) through a kubeconfig: the local
  control plane of ``agentic cluster up`` (compute target ``kwok``) or any cluster; AWS parts are rendered.
- ``EKSPlatform`` (eks profile): Kubernetes and AWS (IAM, VPC, EKS, OpenSearch through boto3) are both live.

Every target saves what it rendered in the pipeline state store under ``platform/`` (on eks each step is its own pod).
"""

import json

import dagster as dg
import yaml

from infra.platform import aws as awsplan
from infra.platform.config import PlatformConfig, load_platform_config
from infra.platform.manifests import PRUNE_KINDS
from resources.aws import AWSResource
from resources.kubernetes import KubernetesResource
from resources.state_store import PipelineStateStore

PLACEHOLDER_ACCOUNT = "123456789012"  # rendered requests name this account; live targets use the caller's


def _counts(plan: list[dict], actions: tuple[str, ...]) -> dict:
    return {a: sum(1 for s in plan if s["action"] == a) for a in actions}


class PlatformResource(dg.ConfigurableResource):
    """The declared platform (``infra/platform.yaml``), where rendered artifacts go, and the compute target of the node
    pools: ``auto`` (EKS Auto Mode), ``karpenter`` (self-managed, EC2NodeClasses) or ``kwok`` (local control plane)."""

    store: PipelineStateStore
    config_path: str = ""
    region: str = ""
    compute_mode: str = "auto"

    def load(self) -> PlatformConfig:
        return load_platform_config(self.config_path or None, {"region": self.region} if self.region else None)

    def write(self, name: str, manifests: list[dict]) -> str:
        """Rendered manifests as ``platform/<name>.yaml`` in the state store; returns where they are."""
        return self.save(f"{name}.yaml", yaml.safe_dump_all(manifests, sort_keys=False))

    def save(self, name: str, content: str | dict | list) -> str:
        """One rendered artifact (text, or JSON for a dict/list) as ``platform/<name>``; returns where it is."""
        text = content if isinstance(content, str) else json.dumps(content, indent=1)
        self.store.put_bytes(f"platform/{name}", text.encode())
        return f"{self.store.describe().rstrip('/')}/platform/{name}"

    # ---- what a target does with what was rendered
    def account_id(self) -> str:
        return PLACEHOLDER_ACCOUNT

    def kubernetes(self, step: str, manifests: list[dict], apply: bool, prune: bool, wait: bool, log) -> dict:
        """Plan (or apply) one step's manifests on the target's cluster; metadata for the asset."""
        return {"mode": "rendered (no cluster is called)"}

    def cluster(self, cfg: PlatformConfig, apply: bool, wait: bool, log) -> dict:
        """IAM roles, VPC and the EKS cluster: rendered here, planned/applied on EKS."""
        account = self.account_id()
        roles = awsplan.iam_roles(cfg, account)
        request = awsplan.cluster_request(
            cfg,
            f"arn:aws:iam::{account}:role/{cfg.cluster_name}-cluster",
            f"arn:aws:iam::{account}:role/{cfg.cluster_name}-node",
            ["subnet-<private-a>", "subnet-<private-b>"],
        )
        self.save("iam_roles.json", roles)
        layout = awsplan.subnet_layout(cfg.vpc.cidr, [f"{cfg.region}{c}" for c in "abcdef"[: cfg.vpc.azs]])
        return {
            "mode": "rendered (AWS is not called)",
            "cluster": cfg.cluster_name,
            "version": cfg.kubernetes_version,
            "roles": dg.MetadataValue.json(sorted(roles)),
            "subnets": dg.MetadataValue.json(layout),
            "nat_gateways": cfg.vpc.nat_gateways,
            "request": self.save("eks_cluster_request.json", request),
        }

    def opensearch(self, request: dict, apply: bool) -> dict:
        return {"mode": "rendered (AWS is not called)"}


class RenderedPlatform(PlatformResource):
    """Render and validate only (the local profile's default)."""


class ClusterPlatform(PlatformResource):
    """Kubernetes live through ``kubernetes`` (a kubeconfig: the local control plane, or a cluster of yours); AWS
    parts rendered. The local control plane uses ``compute_mode="kwok"``: the same manifests but the node class."""

    kube: KubernetesResource

    def kubernetes(self, step: str, manifests: list[dict], apply: bool, prune: bool, wait: bool, log) -> dict:
        kinds = PRUNE_KINDS.get(step, set())
        plan = (
            self.kube.apply(manifests, prune=prune, wait=wait, prune_kinds=kinds, log=log)
            if apply
            else self.kube.plan(manifests, prune_kinds=kinds)
        )
        return {
            "mode": "applied" if apply else "planned",
            "plan": dg.MetadataValue.json(plan),
            **_counts(plan, ("create", "update", "unchanged", "delete")),
        }


class EKSPlatform(ClusterPlatform):
    """The eks profile: Kubernetes through ``kube`` and AWS (IAM, VPC, EKS, Pod Identity, OpenSearch) through ``aws``;
    plan by default, apply only when asked."""

    aws: AWSResource

    def account_id(self) -> str:
        return self.aws.account_id()

    def cluster(self, cfg: PlatformConfig, apply: bool, wait: bool, log) -> dict:
        account = self.account_id()
        iam, ec2, eks = self.aws.client("iam"), self.aws.client("ec2"), self.aws.client("eks")
        steps = awsplan.plan_iam(iam, cfg, account)
        vpc = awsplan.plan_vpc(ec2, cfg)
        plan = [*(a.as_dict() for a in steps), *(a.as_dict() for a in vpc)]
        if apply:
            awsplan.apply_iam(iam, steps)
            subnets = awsplan.apply_vpc(ec2, cfg, vpc[0])
        else:
            subnets = {"private": vpc[0].request.get("subnets", []) if vpc[0].name == "existing" else ["<planned>"]}
        request = awsplan.cluster_request(
            cfg,
            f"arn:aws:iam::{account}:role/{cfg.cluster_name}-cluster",
            f"arn:aws:iam::{account}:role/{cfg.cluster_name}-node",
            [s for s in subnets["private"] if isinstance(s, str)],
        )
        action = awsplan.plan_cluster(eks, cfg, request)
        plan.append({k: v for k, v in action.as_dict().items() if k != "request"})
        info: dict = {}
        if apply:
            info = awsplan.apply_cluster(eks, action, request)
            if wait and info.get("status") != "ACTIVE":
                log("waiting for the cluster to become ACTIVE")
                eks.get_waiter("cluster_active").wait(
                    name=cfg.cluster_name, WaiterConfig={"Delay": 30, "MaxAttempts": 60}
                )
                info = eks.describe_cluster(name=cfg.cluster_name)["cluster"]
            for pia in awsplan.plan_pod_identities(eks, cfg, account):
                if pia.action == "create":
                    eks.create_pod_identity_association(**pia.request)
        return {
            "mode": "applied" if apply else "planned",
            "plan": dg.MetadataValue.json(plan),
            **_counts(plan, ("create", "update", "none")),
            "status": info.get("status", action.request.get("status") or "absent"),
            "endpoint": info.get("endpoint", action.request.get("endpoint") or ""),
            "version": info.get("version", cfg.kubernetes_version),
        }

    def opensearch(self, request: dict, apply: bool) -> dict:
        client = self.aws.client("opensearch")
        action = awsplan.plan_opensearch(client, request)
        info = awsplan.apply_opensearch(client, action, request) if apply else {}
        return {
            "mode": "applied" if apply else "planned",
            "action": action.action,
            "changes": dg.MetadataValue.json(action.changes),
            "endpoint": info.get("Endpoint") or (info.get("Endpoints") or {}).get("vpc", ""),
        }
