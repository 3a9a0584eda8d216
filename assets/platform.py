"""The platform on EKS as assets: plan by default, apply only when asked, validate always.

eks_cluster -> node_pools -> cluster_addons -> platform_workloads (model deployments + gateway, and the dashboards and
alerts of the observability stage's monitoring_config)
opensearch_domain (beside the cluster)

Every manifest is validated against its schema and IAM against the least-privilege rules, and the renders are saved
in the state store under ``platform/``. What happens next is the ``platform`` resource's target (see
``resources/platform.py``): rendered only (local default), a live Kubernetes cluster (the local control plane of
``agentic cluster up``), or EKS with AWS. The assets never branch on it.
"""

import json

import dagster as dg
import yaml

from infra.platform import aws as awsplan
from infra.platform.config import PlatformConfig
from infra.platform.dashboards import grafana_dashboards
from infra.platform.manifests import (
    HELM_CHARTS,
    render_cluster_addons,
    render_dagster_values,
    render_everything,
    render_node_pools,
)
from infra.validate import validate_manifest
from resources.platform import PlatformResource

GROUP = "platform"
OWNERS = ["team:platform"]


class ApplyConfig(dg.Config):
    apply: bool = False  # plan only unless asked
    prune: bool = True
    wait: bool = True


def _validated(manifests: list[dict]) -> list[str]:
    return [f"{m['kind']}/{m['metadata']['name']}: {e}" for m in manifests for e in validate_manifest(m)]


def _kube_step(context, name: str, manifests: list[dict], platform: PlatformResource, config: ApplyConfig) -> dict:
    errors = _validated(manifests)
    if errors:
        raise dg.Failure(f"{name}: {len(errors)} schema error(s):\n" + "\n".join(errors[:20]))
    meta = {
        "manifests": len(manifests),
        "artifact": platform.write(name, manifests),
        "validated": True,
        "compute_mode": platform.compute_mode,
        "objects": dg.MetadataValue.json([f"{m['kind']}/{m['metadata']['name']}" for m in manifests]),
    }
    meta.update(platform.kubernetes(name, manifests, config.apply, config.prune, config.wait, context.log.info))
    return meta


@dg.asset(
    group_name=GROUP,
    kinds={"aws", "eks"},
    owners=OWNERS,
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


@dg.asset(
    group_name=GROUP,
    kinds={"eks", "iam", "vpc"},
    owners=OWNERS,
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
    context: dg.AssetExecutionContext, config: ApplyConfig, platform: PlatformResource
) -> dg.MaterializeResult:
    cfg = platform.load()
    meta = _kube_step(context, "node_pools", render_node_pools(cfg, platform.compute_mode), platform, config)
    meta["pools"] = dg.MetadataValue.md(
        "\n".join(f"- `{p.name}`: {p.arch} {'/'.join(p.instance_families)} — {p.purpose}" for p in cfg.node_pools)
    )
    return dg.MaterializeResult(metadata=meta)


@dg.asset(
    group_name=GROUP,
    kinds={"helm", "kubernetes"},
    owners=OWNERS,
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
    meta = _kube_step(context, "cluster_addons", render_cluster_addons(cfg, platform.compute_mode), platform, config)
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
    meta = _kube_step(context, "platform_workloads", manifests, platform, config)
    meta["dashboards"] = dg.MetadataValue.json(sorted(grafana_dashboards()))  # saved by monitoring_config
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
    context: dg.AssetExecutionContext, config: ApplyConfig, platform: PlatformResource
) -> dg.MaterializeResult:
    cfg = platform.load()
    request, template = _domain_request(cfg, platform.account_id())
    platform.save("opensearch_domain_request.json", request)
    platform.save("opensearch_index_template.json", template)
    meta = {
        "domain": cfg.opensearch.domain_name,
        "engine_version": cfg.opensearch.engine_version,
        "knn_engine": cfg.opensearch.knn_engine,
        "instances": f"{cfg.opensearch.instance_count} x {cfg.opensearch.instance_type}",
    }
    return dg.MaterializeResult(metadata={**meta, **platform.opensearch(request, config.apply)})


@dg.asset_check(
    asset=opensearch_domain,
    blocking=True,
    description="The domain request is secure: HTTPS enforced, TLS 1.2+, encryption "
    "at rest and node to node, fine-grained access on, no '*' principal, HNSW engine lucene/faiss.",
)
def opensearch_domain_secure(platform: PlatformResource) -> dg.AssetCheckResult:
    req, template = _domain_request(platform.load(), platform.account_id())
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


platform_assets = [platform_preflight, eks_cluster, node_pools, cluster_addons, platform_workloads, opensearch_domain]
platform_checks = [iam_least_privilege, opensearch_domain_secure]

platform_job = dg.define_asset_job(
    "platform_job",
    selection=dg.AssetSelection.groups("platform", "observability"),
    description="Plan the platform (EKS Auto Mode, IAM, VPC, node pools, add-ons, workloads, OpenSearch). local: render and "
    "validate only. eks: plan against the account and cluster; apply only with `apply: true` in each asset's config.",
)
platform_defs = dg.Definitions(assets=platform_assets, asset_checks=platform_checks, jobs=[platform_job])
