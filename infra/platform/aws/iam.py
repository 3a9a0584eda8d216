"""IAM: the platform's roles (least privilege: every statement scoped to the platform's resources), their policy
checks, and plan/apply."""

from __future__ import annotations

import json

from infra.platform.aws.common import (
    CLUSTER_MANAGED_POLICIES,
    NODE_MANAGED_POLICIES,
    Action,
    resource_arn,
)
from infra.platform.config import PlatformConfig

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
    domain = resource_arn(partition, "es", region, account, f"domain/{cfg.opensearch.domain_name}")
    models = [resource_arn(partition, "bedrock", region, "", f"foundation-model/{m}") for m in cfg.bedrock_model_ids]
    queue = resource_arn(
        partition, "sqs", region, account, f"{n}-documents"
    )  # S3 event notifications of the document bucket
    amp = resource_arn(partition, "aps", region, account, f"workspace/{n}-*")
    pods = "pods.eks.amazonaws.com"
    # principals' API keys (resources/access.py SecretsManagerKeyStore): one secret per key under this name prefix
    api_keys = resource_arn(partition, "secretsmanager", region, account, "secret:agentic/api-keys/*")
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
