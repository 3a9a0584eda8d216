"""What the AWS plans share: the plan's unit (an ``Action``), ARNs, and the managed policies and TLS policy the
platform pins."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

AUTO_MODE_NODE_POOLS = ["system"]  # Auto Mode's built-in pool for cluster components; workloads use our NodePools
CLUSTER_MANAGED_POLICIES = [
    "AmazonEKSClusterPolicy",
    "AmazonEKSComputePolicy",
    "AmazonEKSBlockStoragePolicy",
    "AmazonEKSLoadBalancingPolicy",
    "AmazonEKSNetworkingPolicy",
]
NODE_MANAGED_POLICIES = ["AmazonEKSWorkerNodeMinimalPolicy", "AmazonEC2ContainerRegistryPullOnly"]
TLS_POLICY = "Policy-Min-TLS-1-2-PFS-2023-10"


@dataclass
class Action:
    resource: str  # e.g. "iam_role", "eks_cluster", "opensearch_domain"
    name: str
    action: str  # create | update | none
    changes: dict[str, Any] = field(default_factory=dict)  # field -> {"have": ..., "want": ...}
    request: dict[str, Any] = field(default_factory=dict)  # the boto3 call's arguments

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def resource_arn(partition: str, service: str, region: str, account: str, resource: str) -> str:
    return f"arn:{partition}:{service}:{region}:{account}:{resource}"
