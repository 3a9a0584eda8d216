"""The platform on EKS as assets: plan by default, apply only when asked, validate always.

eks_cluster -> node_pools -> cluster_addons -> platform_workloads (model deployments + gateway, and the dashboards and
alerts of the observability stage's monitoring_config)
opensearch_domain (beside the cluster)

Every manifest is validated against its schema and IAM against the least-privilege rules, and the renders are saved
in the state store under ``platform/``. What happens next is the ``platform`` resource's target (see
``resources/platform.py``): rendered only (local default), a live Kubernetes cluster (the local control plane of
``agentic cluster up``), or EKS with AWS. The assets never branch on it.
"""

import dagster as dg

from assets.platform.cluster import (
    cluster_addons,
    eks_cluster,
    iam_least_privilege,
    node_pools,
    platform_preflight,
    platform_workloads,
)
from assets.platform.opensearch import opensearch_domain, opensearch_domain_secure
from assets.platform.state import ApplyConfig

platform_assets = [platform_preflight, eks_cluster, node_pools, cluster_addons, platform_workloads, opensearch_domain]
platform_checks = [iam_least_privilege, opensearch_domain_secure]

platform_job = dg.define_asset_job(
    "platform_job",
    selection=dg.AssetSelection.groups("platform", "observability"),
    description="Plan the platform (EKS Auto Mode, IAM, VPC, node pools, add-ons, workloads, OpenSearch). local: render and "
    "validate only. eks: plan against the account and cluster; apply only with `apply: true` in each asset's config.",
)
platform_defs = dg.Definitions(assets=platform_assets, asset_checks=platform_checks, jobs=[platform_job])

__all__ = [
    "ApplyConfig",
    "cluster_addons",
    "eks_cluster",
    "iam_least_privilege",
    "node_pools",
    "opensearch_domain",
    "opensearch_domain_secure",
    "platform_assets",
    "platform_checks",
    "platform_defs",
    "platform_job",
    "platform_preflight",
    "platform_workloads",
]
