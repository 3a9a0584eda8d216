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


def _allow(sid: str, actions: list[str], resources: list[str]) -> dict:
    return {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources}


def _pod_role(namespace: str, service_account: str, *statements: dict) -> dict:
    """A role a pod assumes through EKS Pod Identity, with its inline policy."""
    return {
        "trust": _trust("pods.eks.amazonaws.com"),
        "managed": [],
        "service_account": (namespace, service_account),
        "inline": {"Version": "2012-10-17", "Statement": list(statements)},
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
    # principals' API keys (resources/access.py SecretsManagerKeyStore): one secret per key under this name prefix
    api_keys = resource_arn(partition, "secretsmanager", region, account, "secret:agentic/api-keys/*")
    es_rw = ["es:ESHttpGet", "es:ESHttpHead", "es:ESHttpPost", "es:ESHttpPut", "es:ESHttpDelete"]
    return {
        f"{n}-cluster": {"trust": _trust("eks.amazonaws.com"), "managed": CLUSTER_MANAGED_POLICIES, "inline": None},
        f"{n}-node": {
            "trust": _trust("ec2.amazonaws.com", tag_session=False),
            "managed": NODE_MANAGED_POLICIES,
            "inline": None,
        },
        f"{n}-dagster": _pod_role(
            "dagster",
            "dagster",
            _allow("Documents", ["s3:ListBucket"], [bucket]),
            _allow("DocumentObjects", ["s3:GetObject", "s3:PutObject"], [f"{bucket}/*"]),
            # pipeline state (state/): a step replaces a shard object and deletes the one it superseded
            _allow("PipelineState", ["s3:DeleteObject"], [f"{bucket}/state/*"]),
            _allow("DocumentEvents", ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"], [queue]),
            _allow("Index", es_rw, [f"{domain}/*"]),
            _allow("Domain", ["es:DescribeDomain"], [domain]),
            # api_keys_inventory reads the keys' hashed records (never a token: none is stored)
            _allow("ApiKeys", ["secretsmanager:GetSecretValue"], [api_keys]),
            _allow("ListApiKeys", ["secretsmanager:ListSecrets"], ["*"]),
        ),
        f"{n}-ray": _pod_role(
            cfg.namespace,
            "ray",
            _allow("ReadDocuments", ["s3:GetObject"], [f"{bucket}/*"]),
            # the knowledge data path runs here: it reads and writes pipeline state shards
            _allow("PipelineState", ["s3:PutObject", "s3:DeleteObject"], [f"{bucket}/state/*"]),
            _allow("ListState", ["s3:ListBucket"], [bucket]),
        ),
        f"{n}-litellm": _pod_role(
            cfg.namespace,
            "litellm",
            _allow("JudgeModels", ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"], models),
        ),
        f"{n}-api": _pod_role(
            cfg.namespace,
            "agentic-api",
            _allow("Search", ["es:ESHttpGet", "es:ESHttpPost", "es:ESHttpHead"], [f"{domain}/*"]),
            # authenticating a principal: one GetSecretValue by key id (cached a few seconds)
            _allow("ApiKeys", ["secretsmanager:GetSecretValue"], [api_keys]),
            # answers, feedback, conversations and the audit trail go to the state store; lineage is read
            _allow(
                "AnswerRecords",
                ["s3:GetObject", "s3:PutObject"],
                [
                    f"{bucket}/state/answers/*",
                    f"{bucket}/state/feedback/*",
                    f"{bucket}/state/conversations/*",
                    f"{bucket}/state/audit/*",
                ],
            ),
            _allow("Lineage", ["s3:GetObject"], [f"{bucket}/state/index/*"]),
        ),
        f"{n}-prometheus": _pod_role("monitoring", "prometheus-amp", _allow("RemoteWrite", ["aps:RemoteWrite"], [amp])),
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
