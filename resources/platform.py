"""Where the platform goes: one interface, three targets. The platform assets call it and never branch on a profile.

- ``RenderedPlatform`` (local default): render and validate only; AWS and Kubernetes are not called.
- ``ClusterPlatform``: Kubernetes is live (plan, server-side apply, prune, readiness) through a kubeconfig: the local
  control plane of ``agentic cluster up`` (compute target ``kwok``) or any cluster; AWS parts are rendered.
- ``EKSPlatform`` (eks profile): Kubernetes and AWS (IAM, VPC, EKS, OpenSearch through boto3) are both live.

Every target saves what it rendered in the pipeline state store under ``platform/`` (on eks each step is its own pod).
"""

import copy
import json

import dagster as dg
import yaml

from infra.platform import aws as awsplan
from infra.platform import preflight as preflightplan
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

    def preflight(self, cfg: PlatformConfig) -> dict:
        """Region and service quotas against the declared pools: here the region from botocore's endpoint data and
        the needs only (no account to ask)."""
        return {"mode": "rendered (AWS is not called)", **preflightplan.preflight(cfg)}

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
        self.save("kms_secrets_key_policy.json", awsplan.kms_key_policy(cfg, account))
        self.save("eks_access_entries.json", awsplan.access_entry_requests(cfg))
        layout = awsplan.subnet_layout(cfg.vpc.cidr, [f"{cfg.region}{c}" for c in "abcdef"[: cfg.vpc.azs]])
        return {
            "mode": "rendered (AWS is not called)",
            "cluster": cfg.cluster_name,
            "version": cfg.kubernetes_version,
            "roles": dg.MetadataValue.json(sorted(roles)),
            "subnets": dg.MetadataValue.json(layout),
            "nat_gateways": cfg.vpc.nat_gateways,
            "access_entries": len(cfg.security.access_entries),
            "secrets_key": request["encryptionConfig"][0]["provider"]["keyArn"],
            "request": self.save("eks_cluster_request.json", request),
        }

    def opensearch(self, request: dict, apply: bool) -> dict:
        return {"mode": "rendered (AWS is not called)"}

    def actual_spend(self, estimate_lines: list[dict]) -> dict:
        """Last month's spend per service next to the estimate (Cost Explorer, on EKS)."""
        return {"mode": "skipped (Cost Explorer is not called off AWS)"}

    def simulate(self, schedule: list[dict], step_s: float, poll_s: float, log):
        """Drive the model workers' replicas hour by hour (``schedule``: {"hour", "answers", <group>: replicas}) on a
        cluster whose Karpenter provisions for them; returns the NodeClaims' timeline (core.simulation.Timeline)."""
        raise NotImplementedError(
            "the simulation needs the local control plane: `agentic cluster up`, then AGENTIC_PLATFORM_TARGET=cluster"
        )


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

    def simulate(self, schedule: list[dict], step_s: float, poll_s: float, log):
        import time

        from kubernetes.client.exceptions import ApiException

        from core.simulation import Timeline
        from infra.platform.manifests import render_node_pools

        cfg = self.load()
        if self.compute_mode != "kwok":
            raise NotImplementedError("the simulation provisions nodes: only on the local control plane (kwok)")
        # the NodePools on the simulated clock: consolidateAfter (5m-30m) shrinks with the hour
        compressed = copy.deepcopy(cfg)
        for pool in compressed.node_pools:
            pool.consolidate_after = _compressed(pool.consolidate_after, step_s)
        self.kube.apply(render_node_pools(compressed, "kwok"), prune=False, wait=False, log=log)
        dyn = self.kube._client()
        deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
        namespaces = dyn.resources.get(api_version="v1", kind="Namespace")
        claims_api = dyn.resources.get(api_version="karpenter.sh/v1", kind="NodeClaim")
        namespaces.server_side_apply(
            body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SIM_NAMESPACE}},
            name=SIM_NAMESPACE,
            field_manager="agentic-simulation",
            force_conflicts=True,
        )
        specs = simulation_workloads(cfg)
        timeline = Timeline(step_s=step_s)
        t0 = time.monotonic()

        def observe():
            claims = [
                {
                    "name": c["metadata"]["name"],
                    "pool": c["metadata"]["labels"].get("karpenter.sh/nodepool", "?"),
                    "instance_type": c["metadata"]["labels"].get("node.kubernetes.io/instance-type", ""),
                }
                for c in claims_api.get().to_dict()["items"]
            ]
            timeline.observe(time.monotonic() - t0, claims)

        try:
            for row in schedule:
                for group, spec in specs.items():
                    body = {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "metadata": {"name": f"sim-{group}", "namespace": SIM_NAMESPACE},
                        "spec": {
                            "replicas": int(row.get(group, 0)),
                            "selector": {"matchLabels": {"agentic/sim": group}},
                            "template": {"metadata": {"labels": {"agentic/sim": group}}, "spec": spec},
                        },
                    }
                    deployments.server_side_apply(
                        body=body,
                        name=body["metadata"]["name"],
                        namespace=SIM_NAMESPACE,
                        field_manager="agentic-simulation",
                        force_conflicts=True,
                    )
                timeline.replicas.append(dict(row))
                log(f"simulated hour {row['hour']}: {row}")
                end = t0 + (len(timeline.replicas)) * step_s
                while time.monotonic() < end:
                    observe()
                    time.sleep(poll_s)
            observe()
        finally:
            try:
                namespaces.delete(name=SIM_NAMESPACE)
            except ApiException:
                pass
            self.kube.apply(render_node_pools(cfg, "kwok"), prune=False, wait=False, log=log)  # the real timings back
        return timeline


class EKSPlatform(ClusterPlatform):
    """The eks profile: Kubernetes through ``kube`` and AWS (IAM, VPC, EKS, Pod Identity, OpenSearch) through ``aws``;
    plan by default, apply only when asked."""

    aws: AWSResource

    def account_id(self) -> str:
        return self.aws.account_id()

    def preflight(self, cfg: PlatformConfig) -> dict:
        return {
            "mode": "checked with the account",
            **preflightplan.preflight(cfg, self.aws.client("ec2"), self.aws.client("service-quotas")),
        }

    def cluster(self, cfg: PlatformConfig, apply: bool, wait: bool, log) -> dict:
        account = self.account_id()
        iam, ec2, eks = self.aws.client("iam"), self.aws.client("ec2"), self.aws.client("eks")
        kms = self.aws.client("kms")
        steps = awsplan.plan_iam(iam, cfg, account)
        vpc = awsplan.plan_vpc(ec2, cfg)
        key = awsplan.plan_kms(kms, cfg, account)
        plan = [*(a.as_dict() for a in steps), *(a.as_dict() for a in vpc), key.as_dict()]
        key_arn = key.request.get("KeyArn", "")
        if apply:
            awsplan.apply_iam(iam, steps)
            subnets = awsplan.apply_vpc(ec2, cfg, vpc[0])
            key_arn = awsplan.apply_kms(kms, cfg, key)  # after IAM: its policy names the cluster role
        else:
            subnets = {"private": vpc[0].request.get("subnets", []) if vpc[0].name == "existing" else ["<planned>"]}
        request = awsplan.cluster_request(
            cfg,
            f"arn:aws:iam::{account}:role/{cfg.cluster_name}-cluster",
            f"arn:aws:iam::{account}:role/{cfg.cluster_name}-node",
            [s for s in subnets["private"] if isinstance(s, str)],
            key_arn,
        )
        action = awsplan.plan_cluster(eks, cfg, request)
        plan.append({k: v for k, v in action.as_dict().items() if k != "request"})
        entries = awsplan.plan_access_entries(eks, cfg, cluster_exists=action.action != "create")
        plan += [{k: v for k, v in a.as_dict().items() if k != "request"} for a in entries]
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
            awsplan.apply_access_entries(eks, awsplan.plan_access_entries(eks, cfg))
        return {
            "mode": "applied" if apply else "planned",
            "plan": dg.MetadataValue.json(plan),
            **_counts(plan, ("create", "update", "none")),
            "status": info.get("status", action.request.get("status") or "absent"),
            "endpoint": info.get("endpoint", action.request.get("endpoint") or ""),
            "version": info.get("version", cfg.kubernetes_version),
        }

    def actual_spend(self, estimate_lines: list[dict]) -> dict:
        from core.cost import compare_with_cost_explorer

        comparison = compare_with_cost_explorer(
            self.aws.client("ce", region="us-east-1"), estimate_lines, self.load().cluster_name
        )
        return {
            "comparison": dg.MetadataValue.json(comparison),
            "actual_total_usd": comparison["actual_total_usd"],
            "estimate_total_usd": comparison["estimate_total_usd"],
        }

    def simulate(self, schedule: list[dict], step_s: float, poll_s: float, log):
        raise NotImplementedError("the simulation provisions real nodes: never on EKS (run it on `agentic cluster up`)")

    def opensearch(self, request: dict, apply: bool) -> dict:
        client = self.aws.client("opensearch")
        action = awsplan.plan_opensearch(client, request)
        info = awsplan.apply_opensearch(client, action, request) if apply else {}
        return {
            "mode": "applied" if apply else "planned",
            "plan": dg.MetadataValue.json([{k: v for k, v in action.as_dict().items() if k != "request"}]),
            "action": action.action,
            "changes": dg.MetadataValue.json(action.changes),
            "endpoint": info.get("Endpoint") or (info.get("Endpoints") or {}).get("vpc", ""),
        }


SIM_NAMESPACE = "agentic-sim"


def _seconds(duration: str) -> float:
    """'30m' / '5m' / '720h' / '45s' / 'Never' -> seconds (inf for Never)."""
    if duration == "Never":
        return float("inf")
    units = {"s": 1, "m": 60, "h": 3600}
    return float(duration[:-1]) * units[duration[-1]]


def _compressed(duration: str, step_s: float) -> str:
    """A real duration on the simulated clock (one hour = ``step_s`` wall seconds), at least one second."""
    if duration == "Never":
        return duration
    return f"{max(1, round(_seconds(duration) * step_s / 3600))}s"


def simulation_workloads(cfg: PlatformConfig) -> dict[str, dict]:
    """The pod specs of the model workers as the platform renders them (nodeSelector, tolerations, resources), one per
    worker group: the simulation scales these, so Karpenter sees exactly what the RayServices would ask for."""
    from infra.platform.manifests import render_model_deployments

    out = {}
    for m in render_model_deployments(cfg):
        if m["kind"] != "RayService":
            continue
        for wg in m["spec"]["rayClusterConfig"].get("workerGroupSpecs", []):
            spec = wg["template"]["spec"]
            out[wg["groupName"]] = {
                k: v for k, v in spec.items() if k in ("nodeSelector", "tolerations", "affinity", "priorityClassName")
            } | {
                "containers": [
                    {"name": c["name"], "image": c["image"], "resources": c.get("resources", {})}
                    for c in spec["containers"]
                ]
            }
    return out
