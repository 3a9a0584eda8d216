"""AWS side of the platform through boto3: IAM (least privilege), VPC, the EKS Auto Mode cluster, Pod Identity,
and the Amazon OpenSearch domain. Every function plans first (describe, then compare what the config declares with
what exists) and applies only a plan it is given, so nothing is created or changed by surprise.

Requests are plain dicts in the boto3 shapes, so botocore validates them before anything is sent (in tests against
moto, or with botocore's Stubber where moto lacks the API).
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from infra.platform.config import ACCESS_ROLES, PlatformConfig

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


def _arn(partition: str, service: str, region: str, account: str, resource: str) -> str:
    return f"arn:{partition}:{service}:{region}:{account}:{resource}"


# ------------------------------------------------------------------ IAM


def _trust(service: str, tag_session: bool = True) -> dict:
    actions = ["sts:AssumeRole", "sts:TagSession"] if tag_session else ["sts:AssumeRole"]
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": actions}],
    }


def iam_roles(cfg: PlatformConfig, account: str, partition: str = "aws") -> dict[str, dict]:
    """Every role the platform needs: trust policy, AWS managed policies (never *FullAccess), inline least-privilege
    policy scoped to the bucket, the OpenSearch domain, the Bedrock model ids and the AMP workspace."""
    n, region = cfg.cluster_name, cfg.region
    bucket = f"arn:{partition}:s3:::{cfg.document_bucket}"
    domain = _arn(partition, "es", region, account, f"domain/{cfg.opensearch.domain_name}")
    models = [_arn(partition, "bedrock", region, "", f"foundation-model/{m}") for m in cfg.bedrock_model_ids]
    queue = _arn(partition, "sqs", region, account, f"{n}-documents")  # S3 event notifications of the document bucket
    amp = _arn(partition, "aps", region, account, f"workspace/{n}-*")
    pods = "pods.eks.amazonaws.com"
    # principals' API keys (resources/access.py SecretsManagerKeyStore): one secret per key under this name prefix
    api_keys = _arn(partition, "secretsmanager", region, account, "secret:agentic/api-keys/*")
    es_rw = ["es:ESHttpGet", "es:ESHttpHead", "es:ESHttpPost", "es:ESHttpPut", "es:ESHttpDelete"]

    def policy(*statements: dict) -> dict:
        return {"Version": "2012-10-17", "Statement": list(statements)}

    return {
        f"{n}-cluster": {"trust": _trust("eks.amazonaws.com"), "managed": CLUSTER_MANAGED_POLICIES, "inline": None},
        f"{n}-node": {
            "trust": _trust("ec2.amazonaws.com", tag_session=False),
            "managed": NODE_MANAGED_POLICIES,
            "inline": None,
        },
        f"{n}-dagster": {
            "trust": _trust(pods),
            "managed": [],
            "service_account": ("dagster", "dagster"),
            "inline": policy(
                {"Sid": "Documents", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [bucket]},
                {
                    "Sid": "DocumentObjects",
                    "Effect": "Allow",
                    "Action": ["s3:GetObject", "s3:PutObject"],
                    "Resource": [f"{bucket}/*"],
                },
                # pipeline state (state/): a step replaces a shard object and deletes the one it superseded
                {
                    "Sid": "PipelineState",
                    "Effect": "Allow",
                    "Action": ["s3:DeleteObject"],
                    "Resource": [f"{bucket}/state/*"],
                },
                {
                    "Sid": "DocumentEvents",
                    "Effect": "Allow",
                    "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
                    "Resource": [queue],
                },
                {"Sid": "Index", "Effect": "Allow", "Action": es_rw, "Resource": [f"{domain}/*"]},
                {"Sid": "Domain", "Effect": "Allow", "Action": ["es:DescribeDomain"], "Resource": [domain]},
                # api_keys_inventory reads the keys' hashed records (never a token: none is stored)
                {
                    "Sid": "ApiKeys",
                    "Effect": "Allow",
                    "Action": ["secretsmanager:GetSecretValue"],
                    "Resource": [api_keys],
                },
                {"Sid": "ListApiKeys", "Effect": "Allow", "Action": ["secretsmanager:ListSecrets"], "Resource": ["*"]},
            ),
        },
        f"{n}-ray": {
            "trust": _trust(pods),
            "managed": [],
            "service_account": (cfg.namespace, "ray"),
            "inline": policy(
                {"Sid": "ReadDocuments", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [f"{bucket}/*"]},
                # the knowledge data path runs here: it reads and writes pipeline state shards
                {
                    "Sid": "PipelineState",
                    "Effect": "Allow",
                    "Action": ["s3:PutObject", "s3:DeleteObject"],
                    "Resource": [f"{bucket}/state/*"],
                },
                {"Sid": "ListState", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [bucket]},
            ),
        },
        f"{n}-litellm": {
            "trust": _trust(pods),
            "managed": [],
            "service_account": (cfg.namespace, "litellm"),
            "inline": policy(
                {
                    "Sid": "JudgeModels",
                    "Effect": "Allow",
                    "Action": ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"],
                    "Resource": models,
                },
            ),
        },
        f"{n}-api": {
            "trust": _trust(pods),
            "managed": [],
            "service_account": (cfg.namespace, "agentic-api"),
            "inline": policy(
                {
                    "Sid": "Search",
                    "Effect": "Allow",
                    "Action": ["es:ESHttpGet", "es:ESHttpPost", "es:ESHttpHead"],
                    "Resource": [f"{domain}/*"],
                },
                # authenticating a principal: one GetSecretValue by key id (cached a few seconds)
                {
                    "Sid": "ApiKeys",
                    "Effect": "Allow",
                    "Action": ["secretsmanager:GetSecretValue"],
                    "Resource": [api_keys],
                },
                # answers, feedback, conversations and the audit trail go to the state store; lineage is read
                {
                    "Sid": "AnswerRecords",
                    "Effect": "Allow",
                    "Action": ["s3:GetObject", "s3:PutObject"],
                    "Resource": [
                        f"{bucket}/state/answers/*",
                        f"{bucket}/state/feedback/*",
                        f"{bucket}/state/conversations/*",
                        f"{bucket}/state/audit/*",
                    ],
                },
                {
                    "Sid": "Lineage",
                    "Effect": "Allow",
                    "Action": ["s3:GetObject"],
                    "Resource": [f"{bucket}/state/index/*"],
                },
            ),
        },
        f"{n}-prometheus": {
            "trust": _trust(pods),
            "managed": [],
            "service_account": ("monitoring", "prometheus-amp"),
            "inline": policy(
                {"Sid": "RemoteWrite", "Effect": "Allow", "Action": ["aps:RemoteWrite"], "Resource": [amp]},
            ),
        },
    }


# Actions AWS defines without resource-level permissions: their only possible Resource is "*".
UNSCOPABLE_ACTIONS = {"secretsmanager:ListSecrets"}


def policy_violations(roles: dict[str, dict]) -> list[str]:
    """Least-privilege rules the generated IAM must keep: no wildcard action or resource (but for a statement made
    only of actions that cannot be scoped), no *FullAccess policy."""
    out = []
    for name, role in roles.items():
        for p in role["managed"]:
            if "FullAccess" in p or p in ("AdministratorAccess", "PowerUserAccess"):
                out.append(f"{name}: broad managed policy {p}")
        for st in (role["inline"] or {}).get("Statement", []):
            for a in st["Action"]:
                if a == "*" or a.endswith(":*"):
                    out.append(f"{name}/{st.get('Sid')}: wildcard action {a}")
            if set(st["Action"]) <= UNSCOPABLE_ACTIONS:
                continue
            for r in st["Resource"]:
                if r == "*" or r.endswith(":*"):
                    out.append(f"{name}/{st.get('Sid')}: wildcard resource {r}")
    return out


def plan_iam(iam, cfg: PlatformConfig, account: str) -> list[Action]:
    actions = []
    for name, role in iam_roles(cfg, account).items():
        try:
            have = iam.get_role(RoleName=name)["Role"]
        except iam.exceptions.NoSuchEntityException:
            actions.append(
                Action(
                    "iam_role",
                    name,
                    "create",
                    request={
                        "RoleName": name,
                        "AssumeRolePolicyDocument": json.dumps(role["trust"]),
                        "Tags": [{"Key": "agentic/cluster", "Value": cfg.cluster_name}],
                    },
                )
            )
            have = None
        changes = {}
        if have is not None:
            trust = have["AssumeRolePolicyDocument"]
            trust = json.loads(trust) if isinstance(trust, str) else trust
            if trust != role["trust"]:
                changes["trust"] = {"have": trust, "want": role["trust"]}
            attached = {p["PolicyName"] for p in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]}
            if attached != set(role["managed"]):
                changes["managed"] = {"have": sorted(attached), "want": sorted(role["managed"])}
            inline = None
            if "agentic" in iam.list_role_policies(RoleName=name)["PolicyNames"]:
                doc = iam.get_role_policy(RoleName=name, PolicyName="agentic")["PolicyDocument"]
                inline = json.loads(doc) if isinstance(doc, str) else doc
            if inline != role["inline"]:
                changes["inline"] = {"have": inline, "want": role["inline"]}
            actions.append(Action("iam_role", name, "update" if changes else "none", changes))
        actions[-1].request.update({"_role": role})
    return actions


def apply_iam(iam, actions: list[Action], partition: str = "aws") -> None:
    for a in actions:
        if a.resource != "iam_role" or a.action == "none":
            continue
        role = a.request["_role"]
        if a.action == "create":
            iam.create_role(**{k: v for k, v in a.request.items() if not k.startswith("_")})
        elif "trust" in a.changes:
            iam.update_assume_role_policy(RoleName=a.name, PolicyDocument=json.dumps(role["trust"]))
        have = {p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=a.name)["AttachedPolicies"]}
        want = {f"arn:{partition}:iam::aws:policy/{p}" for p in role["managed"]}
        for arn in sorted(want - have):
            iam.attach_role_policy(RoleName=a.name, PolicyArn=arn)
        for arn in sorted(have - want):
            iam.detach_role_policy(RoleName=a.name, PolicyArn=arn)
        if role["inline"]:
            iam.put_role_policy(RoleName=a.name, PolicyName="agentic", PolicyDocument=json.dumps(role["inline"]))


# ------------------------------------------------------------------ VPC


def subnet_layout(cidr: str, azs: list[str]) -> list[dict]:
    """One public (/20) and one private (/18) subnet per AZ, carved deterministically from the VPC CIDR."""
    net = ipaddress.ip_network(cidr)
    private = list(net.subnets(new_prefix=18))
    public = list(private[-1].subnets(new_prefix=20))
    out = []
    for i, az in enumerate(azs):
        out.append({"az": az, "tier": "private", "cidr": str(private[i])})
        out.append({"az": az, "tier": "public", "cidr": str(public[i])})
    return out


def plan_vpc(ec2, cfg: PlatformConfig) -> list[Action]:
    if cfg.vpc.existing_subnet_ids:
        found = ec2.describe_subnets(SubnetIds=cfg.vpc.existing_subnet_ids)["Subnets"]
        return [Action("vpc", "existing", "none", request={"subnets": [s["SubnetId"] for s in found]})]
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "tag:agentic/cluster", "Values": [cfg.cluster_name]}])["Vpcs"]
    azs = [
        z["ZoneName"]
        for z in ec2.describe_availability_zones(Filters=[{"Name": "state", "Values": ["available"]}])[
            "AvailabilityZones"
        ]
    ][: cfg.vpc.azs]
    layout = subnet_layout(cfg.vpc.cidr, azs)
    if not vpcs:
        return [
            Action(
                "vpc",
                cfg.cluster_name,
                "create",
                request={"cidr": cfg.vpc.cidr, "subnets": layout, "nat_gateways": cfg.vpc.nat_gateways},
            )
        ]
    vpc_id = vpcs[0]["VpcId"]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]
    nats = [
        n
        for n in ec2.describe_nat_gateways(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["NatGateways"]
        if n["State"] not in ("deleted", "deleting")
    ]
    changes = {}
    if {s["CidrBlock"] for s in subnets} != {s["cidr"] for s in layout}:
        changes["subnets"] = {
            "have": sorted(s["CidrBlock"] for s in subnets),
            "want": sorted(s["cidr"] for s in layout),
        }
    if len(nats) != cfg.vpc.nat_gateways:
        changes["nat_gateways"] = {"have": len(nats), "want": cfg.vpc.nat_gateways}
    return [
        Action(
            "vpc",
            vpc_id,
            "update" if changes else "none",
            changes,
            {"subnets": layout, "nat_gateways": cfg.vpc.nat_gateways},
        )
    ]


def apply_vpc(ec2, cfg: PlatformConfig, action: Action) -> dict[str, list[str]]:
    """Creates the VPC (public subnets with an internet gateway, private subnets behind NAT) and returns subnet ids
    by tier. Updates to an existing VPC's layout are reported by the plan and left to an operator."""

    def spec(kind: str, name: str) -> list[dict]:
        return [
            {
                "ResourceType": kind,
                "Tags": [{"Key": "agentic/cluster", "Value": cfg.cluster_name}, {"Key": "Name", "Value": name}],
            }
        ]

    if action.action == "none" and action.name == "existing":
        return {"private": action.request["subnets"], "public": []}
    if action.action != "create":
        vpc_id = action.name
        subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]
        tier = lambda s: next((t["Value"] for t in s.get("Tags", []) if t["Key"] == "agentic/tier"), "private")  # noqa: E731
        return {
            "private": [s["SubnetId"] for s in subnets if tier(s) == "private"],
            "public": [s["SubnetId"] for s in subnets if tier(s) == "public"],
        }
    vpc_id = ec2.create_vpc(CidrBlock=cfg.vpc.cidr, TagSpecifications=spec("vpc", cfg.cluster_name))["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsHostnames={"Value": True})
    igw = ec2.create_internet_gateway(TagSpecifications=spec("internet-gateway", cfg.cluster_name))["InternetGateway"][
        "InternetGatewayId"
    ]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc_id)
    public_rt = ec2.create_route_table(
        VpcId=vpc_id, TagSpecifications=spec("route-table", f"{cfg.cluster_name}-public")
    )["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=public_rt, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    ids: dict[str, list[str]] = {"private": [], "public": []}
    by_az: dict[str, dict[str, str]] = {}
    for s in action.request["subnets"]:
        t = spec("subnet", f"{cfg.cluster_name}-{s['tier']}-{s['az']}")
        t[0]["Tags"] += [
            {"Key": "agentic/tier", "Value": s["tier"]},
            {
                "Key": "kubernetes.io/role/elb" if s["tier"] == "public" else "kubernetes.io/role/internal-elb",
                "Value": "1",
            },
            {"Key": "karpenter.sh/discovery", "Value": cfg.cluster_name},
        ]
        sid = ec2.create_subnet(VpcId=vpc_id, CidrBlock=s["cidr"], AvailabilityZone=s["az"], TagSpecifications=t)[
            "Subnet"
        ]["SubnetId"]
        ids[s["tier"]].append(sid)
        by_az.setdefault(s["az"], {})[s["tier"]] = sid
        if s["tier"] == "public":
            ec2.associate_route_table(RouteTableId=public_rt, SubnetId=sid)
    nat_ids = []
    for az in list(by_az)[: action.request["nat_gateways"]]:
        eip = ec2.allocate_address(Domain="vpc", TagSpecifications=spec("elastic-ip", f"{cfg.cluster_name}-nat-{az}"))[
            "AllocationId"
        ]
        nat_ids.append(
            (
                az,
                ec2.create_nat_gateway(
                    SubnetId=by_az[az]["public"],
                    AllocationId=eip,
                    TagSpecifications=spec("natgateway", f"{cfg.cluster_name}-{az}"),
                )["NatGateway"]["NatGatewayId"],
            )
        )
    for i, (az, subnets) in enumerate(by_az.items()):
        rt = ec2.create_route_table(
            VpcId=vpc_id, TagSpecifications=spec("route-table", f"{cfg.cluster_name}-private-{az}")
        )["RouteTable"]["RouteTableId"]
        if nat_ids:
            nat = next((n for a, n in nat_ids if a == az), nat_ids[0][1])  # one NAT per AZ, or all share the one
            ec2.create_route(RouteTableId=rt, DestinationCidrBlock="0.0.0.0/0", NatGatewayId=nat)
        ec2.associate_route_table(RouteTableId=rt, SubnetId=subnets["private"])
    return ids


# ------------------------------------------------------------------ EKS (Auto Mode)


# ------------------------------------------------------------------ KMS (envelope encryption of Kubernetes Secrets)


def secrets_key_alias(cfg: PlatformConfig) -> str:
    return f"alias/{cfg.cluster_name}-secrets"


def secrets_key_ref(cfg: PlatformConfig, account: str, partition: str = "aws") -> str:
    """The key EKS encrypts Secrets with: the configured one, else the platform's own by its alias ARN (EKS accepts
    either; apply passes the key's own ARN once it exists)."""
    return cfg.security.kms_key_arn or _arn(partition, "kms", cfg.region, account, secrets_key_alias(cfg))


def kms_key_policy(cfg: PlatformConfig, account: str, partition: str = "aws") -> dict:
    """The key's policy: the account (so IAM policies can delegate, as AWS's default key policy does), the named key
    administrators (manage, never use), and the cluster role (use for EKS, grants only for AWS resources)."""
    root = f"arn:{partition}:iam::{account}:root"
    cluster_role = f"arn:{partition}:iam::{account}:role/{cfg.cluster_name}-cluster"
    statements: list[dict] = [
        {"Sid": "AccountRoot", "Effect": "Allow", "Principal": {"AWS": root}, "Action": "kms:*", "Resource": "*"},
        {
            "Sid": "ClusterEncryptsSecrets",
            "Effect": "Allow",
            "Principal": {"AWS": cluster_role},
            "Action": ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey", "kms:ListGrants"],
            "Resource": "*",
        },
        {
            "Sid": "ClusterGrantsForAwsResources",
            "Effect": "Allow",
            "Principal": {"AWS": cluster_role},
            "Action": ["kms:CreateGrant"],
            "Resource": "*",
            "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}},
        },
    ]
    if cfg.security.key_admin_arns:
        statements.append(
            {
                "Sid": "KeyAdministrators",
                "Effect": "Allow",
                "Principal": {"AWS": list(cfg.security.key_admin_arns)},
                "Action": [
                    "kms:Create*",
                    "kms:Describe*",
                    "kms:Enable*",
                    "kms:List*",
                    "kms:Put*",
                    "kms:Update*",
                    "kms:Revoke*",
                    "kms:Disable*",
                    "kms:Get*",
                    "kms:Delete*",
                    "kms:TagResource",
                    "kms:UntagResource",
                    "kms:ScheduleKeyDeletion",
                    "kms:CancelKeyDeletion",
                ],
                "Resource": "*",
            }
        )
    return {"Version": "2012-10-17", "Id": f"{cfg.cluster_name}-secrets", "Statement": statements}


def plan_kms(kms, cfg: PlatformConfig, account: str) -> Action:
    """The Secrets key: none to create when the config names one; else found by its alias (policy and rotation
    compared) or created."""
    if cfg.security.kms_key_arn:
        return Action("kms_key", cfg.security.kms_key_arn, "none", request={"KeyArn": cfg.security.kms_key_arn})
    alias, policy = secrets_key_alias(cfg), kms_key_policy(cfg, account)
    found = [
        a for page in kms.get_paginator("list_aliases").paginate() for a in page["Aliases"] if a["AliasName"] == alias
    ]
    if not found:
        return Action(
            "kms_key",
            alias,
            "create",
            request={
                "Description": f"Envelope encryption of the {cfg.cluster_name} cluster's Kubernetes Secrets",
                "KeyUsage": "ENCRYPT_DECRYPT",
                "KeySpec": "SYMMETRIC_DEFAULT",
                "Policy": json.dumps(policy),
                "Tags": [{"TagKey": "agentic/cluster", "TagValue": cfg.cluster_name}],
            },
        )
    key_id = found[0]["TargetKeyId"]
    arn = kms.describe_key(KeyId=key_id)["KeyMetadata"]["Arn"]
    changes = {}
    have = json.loads(kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"])
    if have != policy:
        changes["policy"] = {"have": have, "want": policy}
    if not kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"]:
        changes["rotation"] = {"have": False, "want": True}
    return Action("kms_key", alias, "update" if changes else "none", changes, {"KeyArn": arn, "KeyId": key_id})


def apply_kms(kms, cfg: PlatformConfig, action: Action) -> str:
    """Creates or fixes the key; returns its ARN."""
    if action.action == "create":
        key = kms.create_key(**action.request)["KeyMetadata"]
        kms.create_alias(AliasName=secrets_key_alias(cfg), TargetKeyId=key["KeyId"])
        kms.enable_key_rotation(KeyId=key["KeyId"])
        return key["Arn"]
    if action.action == "update":
        if "policy" in action.changes:
            kms.put_key_policy(
                KeyId=action.request["KeyId"], PolicyName="default", Policy=json.dumps(action.changes["policy"]["want"])
            )
        if "rotation" in action.changes:
            kms.enable_key_rotation(KeyId=action.request["KeyId"])
    return action.request["KeyArn"]


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


# ------------------------------------------------------------------ OpenSearch


def domain_request(
    cfg: PlatformConfig,
    account: str,
    principals: list[str],
    subnet_ids: list[str] | None = None,
    security_group_ids: list[str] | None = None,
) -> dict:
    o = cfg.opensearch
    if not principals or any(p == "*" for p in principals):
        raise ValueError("the OpenSearch access policy must name the platform's roles, never '*'")
    domain_arn = _arn("aws", "es", cfg.region, account, f"domain/{o.domain_name}")
    access = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": principals},
                "Action": ["es:ESHttpGet", "es:ESHttpHead", "es:ESHttpPost", "es:ESHttpPut", "es:ESHttpDelete"],
                "Resource": f"{domain_arn}/*",
            }
        ],
    }
    req: dict[str, Any] = {
        "DomainName": o.domain_name,
        "EngineVersion": o.engine_version,
        "ClusterConfig": {
            "InstanceType": o.instance_type,
            "InstanceCount": o.instance_count,
            "DedicatedMasterEnabled": False,
            "ZoneAwarenessEnabled": o.zone_awareness,
            **(
                {"ZoneAwarenessConfig": {"AvailabilityZoneCount": min(3, o.instance_count)}} if o.zone_awareness else {}
            ),
        },
        "EBSOptions": {"EBSEnabled": True, "VolumeType": "gp3", "VolumeSize": o.volume_gi},
        "EncryptionAtRestOptions": {"Enabled": True},
        "NodeToNodeEncryptionOptions": {"Enabled": True},
        "DomainEndpointOptions": {"EnforceHTTPS": True, "TLSSecurityPolicy": TLS_POLICY},
        "AdvancedSecurityOptions": {
            "Enabled": True,
            "InternalUserDatabaseEnabled": False,
            "MasterUserOptions": {"MasterUserARN": principals[0]},
        },
        "AccessPolicies": json.dumps(access),
        "TagList": [{"Key": "agentic/cluster", "Value": cfg.cluster_name}],
    }
    if subnet_ids:
        req["VPCOptions"] = {
            "SubnetIds": subnet_ids[: min(3, o.instance_count)],
            "SecurityGroupIds": security_group_ids or [],
        }
    return req


def plan_opensearch(client, request: dict) -> Action:
    name = request["DomainName"]
    try:
        have = client.describe_domain(DomainName=name)["DomainStatus"]
    except client.exceptions.ResourceNotFoundException:
        return Action("opensearch_domain", name, "create", request=request)
    changes = {}
    if have.get("EngineVersion") != request["EngineVersion"]:
        changes["EngineVersion"] = {"have": have.get("EngineVersion"), "want": request["EngineVersion"]}
    cc = have.get("ClusterConfig", {})
    for k in ("InstanceType", "InstanceCount"):
        if cc.get(k) != request["ClusterConfig"][k]:
            changes[f"ClusterConfig.{k}"] = {"have": cc.get(k), "want": request["ClusterConfig"][k]}
    for k in ("EncryptionAtRestOptions", "NodeToNodeEncryptionOptions"):
        if k in have and not have[k].get("Enabled"):
            changes[k] = {"have": have[k], "want": request[k]}
    if "DomainEndpointOptions" in have and not have["DomainEndpointOptions"].get("EnforceHTTPS"):
        changes["DomainEndpointOptions"] = {
            "have": have["DomainEndpointOptions"],
            "want": request["DomainEndpointOptions"],
        }
    if have.get("AccessPolicies") and json.loads(have["AccessPolicies"]) != json.loads(request["AccessPolicies"]):
        changes["AccessPolicies"] = {
            "have": json.loads(have["AccessPolicies"]),
            "want": json.loads(request["AccessPolicies"]),
        }
    return Action(
        "opensearch_domain",
        name,
        "update" if changes else "none",
        changes,
        {"endpoint": have.get("Endpoint") or (have.get("Endpoints") or {}).get("vpc"), "arn": have.get("ARN")},
    )


def apply_opensearch(client, action: Action, request: dict) -> dict:
    if action.action == "create":
        return client.create_domain(**request)["DomainStatus"]
    if action.action == "update":
        if "EngineVersion" in action.changes:
            client.upgrade_domain(DomainName=request["DomainName"], TargetVersion=request["EngineVersion"])
        keys = (
            "ClusterConfig",
            "EBSOptions",
            "EncryptionAtRestOptions",
            "NodeToNodeEncryptionOptions",
            "DomainEndpointOptions",
            "AdvancedSecurityOptions",
            "AccessPolicies",
        )
        client.update_domain_config(DomainName=request["DomainName"], **{k: request[k] for k in keys})
    return client.describe_domain(DomainName=request["DomainName"])["DomainStatus"]


def index_template(prefix: str, dimension: int, engine: str, shards: int = 2, replicas: int = 1) -> dict:
    """The composable index template every generation's index gets (``<prefix>__*``), from the index schema the
    vector-store resource maps too (core/index_schema.py), so the domain and the resource cannot disagree."""
    from core.index_schema import index_body

    body = index_body(dimension, engine=engine, shards=shards, replicas=replicas)
    return {
        "index_patterns": [f"{prefix}__*"],
        "template": {"settings": body["settings"], "mappings": body["mappings"]},
        "priority": 100,
    }
