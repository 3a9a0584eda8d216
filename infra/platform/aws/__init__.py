"""AWS side of the platform through boto3: IAM (least privilege), VPC, the EKS Auto Mode cluster, Pod Identity,
and the Amazon OpenSearch domain. Every function plans first (describe, then compare what the config declares with
what exists) and applies only a plan it is given, so nothing is created or changed by surprise.

Requests are plain dicts in the boto3 shapes, so botocore validates them before anything is sent (in tests against
moto, or with botocore's Stubber where moto lacks the API).
"""

from infra.platform.aws.common import (
    AUTO_MODE_NODE_POOLS,
    CLUSTER_MANAGED_POLICIES,
    NODE_MANAGED_POLICIES,
    TLS_POLICY,
    Action,
)
from infra.platform.aws.eks import (
    access_entry_requests,
    apply_access_entries,
    apply_cluster,
    cluster_request,
    plan_access_entries,
    plan_cluster,
    plan_pod_identities,
)
from infra.platform.aws.iam import apply_iam, iam_roles, plan_iam, policy_violations
from infra.platform.aws.kms import apply_kms, kms_key_policy, plan_kms, secrets_key_alias, secrets_key_ref
from infra.platform.aws.opensearch import apply_opensearch, domain_request, index_template, plan_opensearch
from infra.platform.aws.vpc import apply_vpc, plan_vpc, subnet_layout

__all__ = [
    "AUTO_MODE_NODE_POOLS",
    "CLUSTER_MANAGED_POLICIES",
    "NODE_MANAGED_POLICIES",
    "TLS_POLICY",
    "Action",
    "access_entry_requests",
    "apply_access_entries",
    "apply_cluster",
    "apply_iam",
    "apply_kms",
    "apply_opensearch",
    "apply_vpc",
    "cluster_request",
    "domain_request",
    "iam_roles",
    "index_template",
    "kms_key_policy",
    "plan_access_entries",
    "plan_cluster",
    "plan_iam",
    "plan_kms",
    "plan_opensearch",
    "plan_pod_identities",
    "plan_vpc",
    "policy_violations",
    "secrets_key_alias",
    "secrets_key_ref",
    "subnet_layout",
]
