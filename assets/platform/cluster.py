"""The cluster side: preflight (region and quotas), EKS with IAM, VPC and KMS, the node pools, the add-ons and the
workloads (model deployments, the gateway, the API, the observability stage's dashboards and alerts)."""

import dagster as dg
import yaml

from assets.platform.state import ApplyConfig, asset, kube_step
from infra.platform import aws as awsplan
from infra.platform.manifests import (
    HELM_CHARTS,
    render_cluster_addons,
    render_dagster_values,
    render_everything,
    render_node_pools,
)
from resources.platform import PlatformResource


@asset(
    kinds={"aws", "eks"},
    description="Before anything is applied: the region is one EKS serves and the account has enabled, and the account's "
    "service quotas (EC2 vCPU per instance class for the node pools' limits, Elastic IPs, NAT gateways per AZ, VPCs) cover "
    "the declared platform. A plan that exceeds a quota fails here, naming the quota, its code, the need and the limit.",
)
def platform_preflight(config: ApplyConfig, platform: PlatformResource) -> dg.MaterializeResult:
    # `config` is the one every platform step gets (the CLI sends it to all); the preflight reads only, plan or apply
    result = platform.preflight(platform.load())
    if not result["ok"]:
        raise dg.Failure(
            description="the platform does not fit this account:\n" + "\n".join(result["refusals"]),
            metadata={"quotas": dg.MetadataValue.json(result["quotas"])},
        )
    return dg.MaterializeResult(
        metadata={
            "mode": result["mode"],
            "region": result["region"],
            "quotas_checked": len(result["quotas"]) - len(result["unchecked"]),
            "quotas_unchecked": dg.MetadataValue.json(result["unchecked"]),
            "quotas": dg.MetadataValue.json(result["quotas"]),
            # one row per quota in the shape the CLI prints plans in
            "plan": dg.MetadataValue.json(
                [
                    {
                        "resource": "service_quota",
                        "name": f"{q['code']} {q['name']}",
                        "action": "unchecked" if q["limit"] is None else "covered",
                        "changes": [
                            f"need {q['need']:g}",
                            f"limit {q['limit']:g}" if q["limit"] is not None else q["note"],
                        ],
                    }
                    for q in result["quotas"]
                ]
            ),
        }
    )


@asset(
    kinds={"eks", "iam", "vpc"},
    deps=[platform_preflight],
    description="EKS with Auto Mode (managed compute, block storage, load balancing) through boto3: describe, then create "
    "or update what differs; the IAM roles it and the workloads need (least privilege, Pod Identity); the VPC (existing "
    "subnets or a new one with the NAT layout the config asks for); the KMS key that envelope-encrypts its Secrets; "
    "access entries for the cluster-admin / admin / edit / read principals of the config. Status, endpoint and version "
    "as metadata.",
)
def eks_cluster(
    context: dg.AssetExecutionContext, config: ApplyConfig, platform: PlatformResource
) -> dg.MaterializeResult:
    meta = platform.cluster(platform.load(), config.apply, config.wait, context.log.info)
    return dg.MaterializeResult(metadata=meta)


@dg.asset_check(
    asset=eks_cluster,
    blocking=True,
    description="Least privilege: no wildcard action or resource, no *FullAccess or "
    "admin managed policy, Pod Identity roles scoped to the bucket, the domain, the model ids and the AMP workspace.",
)
def iam_least_privilege(platform: PlatformResource) -> dg.AssetCheckResult:
    roles = awsplan.iam_roles(platform.load(), platform.account_id())
    violations = awsplan.policy_violations(roles)
    return dg.AssetCheckResult(
        passed=not violations, metadata={"roles": len(roles), "violations": dg.MetadataValue.json(violations)}
    )


@asset(
    kinds={"karpenter", "kubernetes"},
    deps=[eks_cluster],
    description="Karpenter NodePools (Graviton CPU inference arm64 c/m/r >= gen 7, NVIDIA GPU g5/g6 tainted nvidia.com/gpu, x86 "
    "general, Inferentia inf2) with limits, disruption budgets and expiry from the config; standard labels only. With "
    "compute_mode=karpenter, an EC2NodeClass per pool.",
)
def node_pools(
    context: dg.AssetExecutionContext, config: ApplyConfig, platform: PlatformResource
) -> dg.MaterializeResult:
    cfg = platform.load()
    meta = kube_step(context, "node_pools", render_node_pools(cfg, platform.compute_mode), platform, config)
    meta["pools"] = dg.MetadataValue.md(
        "\n".join(f"- `{p.name}`: {p.arch} {'/'.join(p.instance_families)} — {p.purpose}" for p in cfg.node_pools)
    )
    return dg.MaterializeResult(metadata=meta)


@asset(
    kinds={"helm", "kubernetes"},
    deps=[node_pools],
    description="Cluster add-ons: the platform's namespaces (Pod Security `restricted` enforced), the access roles' RBAC "
    "bindings, KubeRay operator and the Prometheus agent (AMP remote write) as pinned Helm charts, the NVIDIA and Neuron "
    "device plugins (karpenter mode, in their own privileged namespace; Auto Mode ships them), ServiceMonitors for Ray "
    "Serve, LiteLLM and the API.",
)
def cluster_addons(
    context: dg.AssetExecutionContext, config: ApplyConfig, platform: PlatformResource
) -> dg.MaterializeResult:
    cfg = platform.load()
    meta = kube_step(context, "cluster_addons", render_cluster_addons(cfg, platform.compute_mode), platform, config)
    platform.save("helm-charts.yaml", yaml.safe_dump(HELM_CHARTS, sort_keys=False))
    platform.save("dagster-values.yaml", yaml.safe_dump(render_dagster_values(cfg), sort_keys=False))
    meta["helm_charts"] = dg.MetadataValue.md(
        "\n".join(f"- `{c['chart']}` {c['version']} ({c['repo']})" for c in HELM_CHARTS)
    )
    return dg.MaterializeResult(metadata=meta)


@asset(
    kinds={"ray", "litellm", "kubernetes"},
    deps=[cluster_addons, dg.AssetKey("model_gateway"), dg.AssetKey("monitoring_config")],
    description="The workloads: RayServices (embedder on Graviton, vLLM Qwen3-14B tensor-parallel on the GPU pool, a Neuron "
    "variant), the Ray Data cluster, LiteLLM with the gateway config, the API with its Ingress, Grafana dashboards (agent "
    "latency, tokens, routes, ingestion throughput), default-deny NetworkPolicies with the graph's allows. Secrets only by "
    "reference; the API's ALB internal unless the config asks for internet-facing (with its ACM certificate).",
)
def platform_workloads(
    context: dg.AssetExecutionContext, config: ApplyConfig, platform: PlatformResource
) -> dg.MaterializeResult:
    cfg = platform.load()
    manifests = render_everything(cfg, platform.compute_mode)["platform_workloads"]
    meta = kube_step(context, "platform_workloads", manifests, platform, config)
    return dg.MaterializeResult(metadata=meta)
