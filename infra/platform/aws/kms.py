"""KMS: the key that envelope-encrypts the cluster's Kubernetes Secrets, its policy, and plan/apply."""

from __future__ import annotations

import json

from infra.platform.aws.common import (
    Action,
    resource_arn,
)
from infra.platform.config import PlatformConfig

# ------------------------------------------------------------------ KMS (envelope encryption of Kubernetes Secrets)


def secrets_key_alias(cfg: PlatformConfig) -> str:
    return f"alias/{cfg.cluster_name}-secrets"


def secrets_key_ref(cfg: PlatformConfig, account: str, partition: str = "aws") -> str:
    """The key EKS encrypts Secrets with: the configured one, else the platform's own by its alias ARN (EKS accepts
    either; apply passes the key's own ARN once it exists)."""
    return cfg.security.kms_key_arn or resource_arn(partition, "kms", cfg.region, account, secrets_key_alias(cfg))


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
