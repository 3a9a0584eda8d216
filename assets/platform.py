"""The platform on EKS as assets: plan by default, apply only when asked, validate always.

eks_cluster -> node_pools -> cluster_addons -> platform_workloads (model deployments + gateway/observability)
opensearch_domain (beside the cluster)

On ``local`` they render and validate (every manifest against its schema, IAM against the least-privilege rules)
and write the results under ``<home>/platform``; AWS and Kubernetes are not called. On ``eks`` they plan against the
account and the cluster (describe / GET), and apply only with ``apply: true`` in the run config.
"""

import json

import dagster as dg
import yaml

from infra.platform import aws as awsplan
from infra.platform.config import PlatformConfig
from infra.platform.manifests import (
    HELM_CHARTS,
    grafana_dashboards,
    render_cluster_addons,
    render_dagster_values,
    render_gateway_and_observability,
    render_model_deployments,
    render_node_pools,
)
from infra.validate import validate_manifest
from resources.aws import AWSResource
from resources.gateway import render_litellm_config
from resources.kubernetes import KubernetesResource
from resources.platform import PlatformResource

GROUP = "platform"
OWNERS = ["team:platform"]


class ApplyConfig(dg.Config):
    apply: bool = False  # plan only unless asked
    compute_mode: str = "auto"  # auto (EKS Auto Mode NodeClass) | karpenter (self-managed Karpenter + EC2NodeClass)
    prune: bool = True
    wait: bool = True


def _validated(manifests: list[dict]) -> list[str]:
    return [f"{m['kind']}/{m['metadata']['name']}: {e}" for m in manifests for e in validate_manifest(m)]


def _kube_step(
    context,
    name: str,
    manifests: list[dict],
    platform: PlatformResource,
    kubernetes: KubernetesResource,
    config: ApplyConfig,
) -> dict:
    errors = _validated(manifests)
    if errors:
        raise dg.Failure(f"{name}: {len(errors)} schema error(s):\n" + "\n".join(errors[:20]))
    meta = {
        "manifests": len(manifests),
        "artifact": platform.write(name, manifests),
        "validated": True,
        "objects": dg.MetadataValue.json([f"{m['kind']}/{m['metadata']['name']}" for m in manifests]),
    }
    if not platform.live:
        meta["mode"] = "rendered (local profile: no cluster is called)"
        return meta
    plan = (
        kubernetes.apply(manifests, prune=config.prune, wait=config.wait, log=context.log.info)
        if config.apply
        else kubernetes.plan(manifests)
    )
    counts = {a: sum(1 for s in plan if s["action"] == a) for a in ("create", "update", "unchanged", "delete")}
    meta.update({"mode": "applied" if config.apply else "planned", "plan": dg.MetadataValue.json(plan), **counts})
    return meta


@dg.asset(
    group_name=GROUP,
    kinds={"eks", "iam", "vpc"},
    owners=OWNERS,
    description="EKS with Auto Mode (managed compute, block storage, load balancing) through boto3: describe, then create "
    "or update what differs; the IAM roles it and the workloads need (least privilege, Pod Identity); the VPC (existing "
    "subnets or a new one with the NAT layout the config asks for). Status, endpoint and version as metadata.",
)
def eks_cluster(
    context: dg.AssetExecutionContext, config: ApplyConfig, platform: PlatformResource, aws: AWSResource
) -> dg.MaterializeResult:
    cfg = platform.load()
    if not platform.live:
        roles = awsplan.iam_roles(cfg, "123456789012")
        request = awsplan.cluster_request(
            cfg,
            "arn:aws:iam::123456789012:role/" + f"{cfg.cluster_name}-cluster",
            "arn:aws:iam::123456789012:role/" + f"{cfg.cluster_name}-node",
            ["subnet-<private-a>", "subnet-<private-b>"],
        )
        platform.save("iam_roles.json", roles)
        request_at = platform.save("eks_cluster_request.json", request)
        layout = awsplan.subnet_layout(cfg.vpc.cidr, [f"{cfg.region}{c}" for c in "abcdef"[: cfg.vpc.azs]])
        return dg.MaterializeResult(
            metadata={
                "mode": "rendered (local profile: AWS is not called)",
                "cluster": cfg.cluster_name,
                "version": cfg.kubernetes_version,
                "roles": dg.MetadataValue.json(sorted(roles)),
                "subnets": dg.MetadataValue.json(layout),
                "nat_gateways": cfg.vpc.nat_gateways,
                "request": request_at,
            }
        )
    account = aws.account_id()
    iam, ec2, eks = aws.client("iam"), aws.client("ec2"), aws.client("eks")
    steps = awsplan.plan_iam(iam, cfg, account)
    vpc = awsplan.plan_vpc(ec2, cfg)
    plan = [*(a.as_dict() for a in steps), *(a.as_dict() for a in vpc)]
    cluster_role = f"arn:aws:iam::{account}:role/{cfg.cluster_name}-cluster"
    node_role = f"arn:aws:iam::{account}:role/{cfg.cluster_name}-node"
    if config.apply:
        awsplan.apply_iam(iam, steps)
        subnets = awsplan.apply_vpc(ec2, cfg, vpc[0])
    else:
        subnets = {"private": vpc[0].request.get("subnets", []) if vpc[0].name == "existing" else ["<planned>"]}
    request = awsplan.cluster_request(
        cfg, cluster_role, node_role, [s for s in subnets["private"] if isinstance(s, str)]
    )
    action = awsplan.plan_cluster(eks, cfg, request)
    plan.append({k: v for k, v in action.as_dict().items() if k != "request"})
    info = {}
    if config.apply:
        info = awsplan.apply_cluster(eks, action, request)
        if config.wait and info.get("status") != "ACTIVE":
            context.log.info("waiting for the cluster to become ACTIVE")
            eks.get_waiter("cluster_active").wait(name=cfg.cluster_name, WaiterConfig={"Delay": 30, "MaxAttempts": 60})
            info = eks.describe_cluster(name=cfg.cluster_name)["cluster"]
        for pia in awsplan.plan_pod_identities(eks, cfg, account):
            if pia.action == "create":
                eks.create_pod_identity_association(**pia.request)
    counts = {a: sum(1 for s in plan if s["action"] == a) for a in ("create", "update", "none")}
    return dg.MaterializeResult(
        metadata={
            "mode": "applied" if config.apply else "planned",
            "plan": dg.MetadataValue.json(plan),
            **counts,
            "status": info.get("status", action.request.get("status") or "absent"),
            "endpoint": info.get("endpoint", action.request.get("endpoint") or ""),
            "version": info.get("version", cfg.kubernetes_version),
        }
    )


@dg.asset_check(
    asset=eks_cluster,
    blocking=True,
    description="Least privilege: no wildcard action or resource, no *FullAccess or "
    "admin managed policy, Pod Identity roles scoped to the bucket, the domain, the model ids and the AMP workspace.",
)
def iam_least_privilege(platform: PlatformResource) -> dg.AssetCheckResult:
    roles = awsplan.iam_roles(platform.load(), "123456789012")
    violations = awsplan.policy_violations(roles)
    return dg.AssetCheckResult(
        passed=not violations, metadata={"roles": len(roles), "violations": dg.MetadataValue.json(violations)}
    )


@dg.asset(
    group_name=GROUP,
    kinds={"karpenter", "kubernetes"},
    owners=OWNERS,
    deps=[eks_cluster],
    description="Karpenter NodePools (Graviton CPU inference arm64 c/m/r >= gen 7, NVIDIA GPU g5/g6 tainted nvidia.com/gpu, x86 "
    "general, Inferentia inf2) with limits, disruption budgets and expiry from the config; standard labels only. With "
    "compute_mode=karpenter, an EC2NodeClass per pool.",
)
def node_pools(
    context: dg.AssetExecutionContext, config: ApplyConfig, platform: PlatformResource, kubernetes: KubernetesResource
) -> dg.MaterializeResult:
    cfg = platform.load()
    meta = _kube_step(context, "node_pools", render_node_pools(cfg, config.compute_mode), platform, kubernetes, config)
    meta["pools"] = dg.MetadataValue.md(
        "\n".join(f"- `{p.name}`: {p.arch} {'/'.join(p.instance_families)} — {p.purpose}" for p in cfg.node_pools)
    )
    return dg.MaterializeResult(metadata=meta)


@dg.asset(
    group_name=GROUP,
    kinds={"helm", "kubernetes"},
    owners=OWNERS,
    deps=[node_pools],
    description="Cluster add-ons: KubeRay operator and the Prometheus agent (AMP remote write) as pinned Helm charts, the NVIDIA "
    "and Neuron device plugins (karpenter mode; Auto Mode ships them), ServiceMonitors for Ray Serve, LiteLLM and the API.",
)
def cluster_addons(
    context: dg.AssetExecutionContext, config: ApplyConfig, platform: PlatformResource, kubernetes: KubernetesResource
) -> dg.MaterializeResult:
    cfg = platform.load()
    meta = _kube_step(
        context, "cluster_addons", render_cluster_addons(cfg, config.compute_mode), platform, kubernetes, config
    )
    platform.save("helm-charts.yaml", yaml.safe_dump(HELM_CHARTS, sort_keys=False))
    platform.save("dagster-values.yaml", yaml.safe_dump(render_dagster_values(cfg), sort_keys=False))
    meta["helm_charts"] = dg.MetadataValue.md(
        "\n".join(f"- `{c['chart']}` {c['version']} ({c['repo']})" for c in HELM_CHARTS)
    )
    return dg.MaterializeResult(metadata=meta)


@dg.asset(
    group_name=GROUP,
    kinds={"ray", "litellm", "kubernetes"},
    owners=OWNERS,
    deps=[cluster_addons, dg.AssetKey("model_gateway")],
    description="The workloads: RayServices (embedder on Graviton, vLLM Qwen3-14B tensor-parallel on the GPU pool, a Neuron "
    "variant), the Ray Data cluster, LiteLLM with the gateway config, the API with its Ingress, Grafana dashboards (agent "
    "latency, tokens, routes, ingestion throughput). Secrets only by reference.",
)
def platform_workloads(
    context: dg.AssetExecutionContext, config: ApplyConfig, platform: PlatformResource, kubernetes: KubernetesResource
) -> dg.MaterializeResult:
    cfg = platform.load()
    manifests = render_everything(cfg, config.compute_mode)["platform_workloads"]
    meta = _kube_step(context, "platform_workloads", manifests, platform, kubernetes, config)
    for name, dash in grafana_dashboards().items():
        platform.save(f"dashboards/{name}.json", dash)
    meta["dashboards"] = dg.MetadataValue.json(sorted(grafana_dashboards()))
    return dg.MaterializeResult(metadata=meta)


def _domain_request(cfg: PlatformConfig, account: str) -> tuple[dict, dict]:
    """The domain request and index template, from the config alone: the asset sends them, the check re-checks the
    same (built again in the check's own step, never read from another step's disk)."""
    principals = [
        f"arn:aws:iam::{account}:role/{cfg.cluster_name}-dagster",
        f"arn:aws:iam::{account}:role/{cfg.cluster_name}-api",
    ]
    return awsplan.domain_request(cfg, account, principals), awsplan.index_template(
        "chunks", 384, cfg.opensearch.knn_engine
    )


@dg.asset(
    group_name=GROUP,
    kinds={"opensearch", "iam"},
    owners=OWNERS,
    description="Amazon OpenSearch through boto3: a current engine, HNSW on lucene or faiss (never nmslib), encryption at rest "
    "and node to node, HTTPS only (TLS 1.2+), fine-grained access with an IAM master, an access policy naming the platform's "
    "roles only; plus the index template from the vector-store resource's own mapping.",
)
def opensearch_domain(
    context: dg.AssetExecutionContext, config: ApplyConfig, platform: PlatformResource, aws: AWSResource
) -> dg.MaterializeResult:
    cfg = platform.load()
    request, template = _domain_request(cfg, aws.account_id() if platform.live else "123456789012")
    platform.save("opensearch_domain_request.json", request)
    platform.save("opensearch_index_template.json", template)
    meta = {
        "domain": cfg.opensearch.domain_name,
        "engine_version": cfg.opensearch.engine_version,
        "knn_engine": cfg.opensearch.knn_engine,
        "instances": f"{cfg.opensearch.instance_count} x {cfg.opensearch.instance_type}",
    }
    if not platform.live:
        return dg.MaterializeResult(metadata={**meta, "mode": "rendered (local profile: AWS is not called)"})
    client = aws.client("opensearch")
    action = awsplan.plan_opensearch(client, request)
    info = awsplan.apply_opensearch(client, action, request) if config.apply else {}
    return dg.MaterializeResult(
        metadata={
            **meta,
            "mode": "applied" if config.apply else "planned",
            "action": action.action,
            "changes": dg.MetadataValue.json(action.changes),
            "endpoint": info.get("Endpoint") or (info.get("Endpoints") or {}).get("vpc", ""),
        }
    )


@dg.asset_check(
    asset=opensearch_domain,
    blocking=True,
    description="The domain request is secure: HTTPS enforced, TLS 1.2+, encryption "
    "at rest and node to node, fine-grained access on, no '*' principal, HNSW engine lucene/faiss.",
)
def opensearch_domain_secure(platform: PlatformResource, aws: AWSResource) -> dg.AssetCheckResult:
    req, template = _domain_request(platform.load(), aws.account_id() if platform.live else "123456789012")
    policy = json.loads(req["AccessPolicies"])
    principals = [
        p
        for st in policy["Statement"]
        for p in (st["Principal"]["AWS"] if isinstance(st["Principal"], dict) else [st["Principal"]])
    ]
    engine = template["template"]["mappings"]["properties"]["vector"]["method"]["engine"]
    problems = [
        why
        for ok, why in (
            (req["DomainEndpointOptions"]["EnforceHTTPS"], "HTTPS not enforced"),
            (req["DomainEndpointOptions"]["TLSSecurityPolicy"].startswith("Policy-Min-TLS-1-2"), "TLS below 1.2"),
            (req["EncryptionAtRestOptions"]["Enabled"], "no encryption at rest"),
            (req["NodeToNodeEncryptionOptions"]["Enabled"], "no node-to-node encryption"),
            (req["AdvancedSecurityOptions"]["Enabled"], "fine-grained access off"),
            ("*" not in principals and principals, "access policy open to '*'"),
            (engine in ("lucene", "faiss"), f"HNSW engine {engine}"),
        )
        if not ok
    ]
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={"problems": dg.MetadataValue.json(problems), "principals": dg.MetadataValue.json(principals)},
    )


platform_assets = [eks_cluster, node_pools, cluster_addons, platform_workloads, opensearch_domain]
platform_checks = [iam_least_privilege, opensearch_domain_secure]


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
    )


def render_everything(cfg: PlatformConfig, compute_mode: str = "auto") -> dict[str, list[dict]]:
    """Every manifest the platform declares, by file name (for ``agentic platform render`` and the assets)."""
    litellm = litellm_config(cfg)
    return {
        "node_pools": render_node_pools(cfg, compute_mode),
        "cluster_addons": render_cluster_addons(cfg, compute_mode),
        "platform_workloads": [*render_gateway_and_observability(cfg, litellm), *render_model_deployments(cfg)],
    }
