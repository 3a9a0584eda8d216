"""The Amazon OpenSearch domain (its request, plan/apply) and the index template every generation's index gets."""

from __future__ import annotations

import json
from typing import Any

from infra.platform.aws.common import (
    TLS_POLICY,
    Action,
    resource_arn,
)
from infra.platform.config import PlatformConfig

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
    domain_arn = resource_arn("aws", "es", cfg.region, account, f"domain/{o.domain_name}")
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
