"""Amazon OpenSearch beside the cluster: the domain request and index template, and the check that they are secure."""

import json

import dagster as dg

from assets.platform.state import ApplyConfig, asset
from infra.platform import aws as awsplan
from infra.platform.config import PlatformConfig
from resources.platform import PlatformResource


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


@asset(
    kinds={"opensearch", "iam"},
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
