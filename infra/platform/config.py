"""The platform's declared shape: one typed config, loaded from ``infra/platform.yaml``.

Everything the platform assets render, plan and apply (cluster, VPC, node pools, model deployments, OpenSearch,
gateway, observability) and everything the cost assets price comes from here, so the bill of materials and the
manifests cannot drift apart.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_FILE = Path(__file__).resolve().parents[1] / "platform.yaml"
MANAGED_BY = "agentic-platform"  # value of app.kubernetes.io/managed-by on everything the platform owns


@dataclass
class VpcConfig:
    existing_subnet_ids: list[str] = field(default_factory=list)  # use these instead of creating a VPC
    cidr: str = "10.42.0.0/16"
    azs: int = 3
    nat_gateways: int = 3  # 1 (cheap, one AZ's NAT is a single point of failure) or one per AZ


@dataclass
class NodePoolConfig:
    name: str
    purpose: str
    arch: str  # amd64 | arm64
    instance_families: list[str]
    min_generation: int = 0
    capacity_types: list[str] = field(default_factory=lambda: ["on-demand"])
    taints: list[dict] = field(default_factory=list)
    cpu_limit: int = 64
    memory_limit_gi: int = 256
    gpu_limit: int = 0
    neuron_limit: int = 0
    disruption_budget: str = "10%"
    consolidate_after: str = "5m"
    expire_after: str = "720h"
    volume_gi: int = 100
    # for the bill of materials: the instance type Karpenter is expected to pick, how many, hours per day
    expected_instance: str = ""
    expected_count: float = 1.0
    hours_per_day: float = 24.0


@dataclass
class ModelDeploymentConfig:
    llm_model_id: str = "qwen3-14b"
    llm_source: str = "Qwen/Qwen3-14B"
    llm_tensor_parallel: int = 4  # Qwen3-14B bf16 (~28 GB weights) over 4 x L4 (24 GB each) on g6.12xlarge
    llm_gpus_per_replica: int = 4
    llm_max_replicas: int = 2
    # Ray Serve's target_ongoing_requests per LLM replica; 0: the capacity plan's concurrency at the SLO for the
    # deployed variant (infra/capacity), never a guess
    llm_target_ongoing_requests: int = 0
    llm_router_imbalanced_threshold: float = 2.0  # prefix-affinity routing while replica queues differ by less
    llm_max_model_len: int = 16384
    hf_token_secret: str = "hf-token"  # K8s Secret (synced from Secrets Manager); never a literal token
    embedder_model_id: str = "snowflake-arctic-embed-s-onnx"
    embedder_max_replicas: int = 8
    inferentia: bool = True  # render the Neuron (inf2) variant of the LLM app
    inferentia_model_id: str = "qwen3-8b-neuron"
    inferentia_source: str = "Qwen/Qwen3-8B"
    # the vision-language model (the gateway's `vision` route): its own RayService on the GPU pool
    vision: bool = True
    vision_model_id: str = "qwen2.5-vl-7b"
    vision_source: str = "Qwen/Qwen2.5-VL-7B-Instruct"
    vision_gpus_per_replica: int = 1  # bf16 weights ~16.6 GB on one 24 GB L4 (tensor parallel = this)
    vision_min_replicas: int = 1  # 0 lets the GPU node go outside working hours
    vision_max_replicas: int = 2
    vision_max_model_len: int = 8192
    vision_images_per_prompt: int = 2  # vLLM limit_mm_per_prompt: what the KV cache is sized for
    vision_max_pixels: int = 1280 * 28 * 28  # Qwen2.5-VL: at most 1,280 image tokens per image
    vision_instance: str = "g6.xlarge"  # 1 x L4: what Karpenter picks for a replica, priced in the bill of materials


@dataclass
class OpenSearchConfig:
    domain_name: str = "agentic-rag"
    engine_version: str = "OpenSearch_2.19"
    instance_type: str = "r7g.large.search"
    instance_count: int = 3
    zone_awareness: bool = True
    volume_gi: int = 100
    knn_engine: str = "lucene"  # lucene or faiss; never nmslib (deprecated)


@dataclass
class ObservabilityConfig:
    prometheus: str = "amp"  # Amazon Managed Prometheus workspace (remote write) scraped by ServiceMonitors
    grafana: str = "amg"
    langfuse_host: str = "https://cloud.langfuse.com"
    langfuse_secret: str = "langfuse-keys"  # K8s Secret with LANGFUSE_PUBLIC_KEY / LANGFUSE_SECRET_KEY


# the four cluster roles: the EKS access policy each maps to and the built-in ClusterRole that policy grants (EKS maps
# AmazonEKSClusterAdminPolicy -> cluster-admin, AmazonEKSAdminPolicy -> admin, AmazonEKSEditPolicy -> edit,
# AmazonEKSViewPolicy -> view); the Kubernetes group is what the rendered RBAC bindings name
ACCESS_ROLES: dict[str, dict[str, str]] = {
    "cluster-admin": {"policy": "AmazonEKSClusterAdminPolicy", "cluster_role": "cluster-admin"},
    "admin": {"policy": "AmazonEKSAdminPolicy", "cluster_role": "admin"},
    "edit": {"policy": "AmazonEKSEditPolicy", "cluster_role": "edit"},
    "read": {"policy": "AmazonEKSViewPolicy", "cluster_role": "view"},
}
INGRESS_SCHEMES = ("internal", "internet-facing")


@dataclass
class AccessEntryConfig:
    principal_arn: str  # an IAM role or user
    role: str  # cluster-admin | admin | edit | read
    namespaces: list[str] = field(
        default_factory=list
    )  # empty: the platform's namespaces (cluster-admin: cluster-wide)


@dataclass
class SecurityConfig:
    # envelope encryption of Kubernetes Secrets: an existing key, or empty for the platform's own (alias/<cluster>-secrets)
    kms_key_arn: str = ""
    key_admin_arns: list[str] = field(default_factory=list)  # who may administer the key besides the account root
    access_entries: list[AccessEntryConfig] = field(default_factory=list)
    ingress_scheme: str = "internal"  # the API's ALB; internet-facing needs certificate_arn
    certificate_arn: str = ""  # ACM certificate for the API's HTTPS listener
    ingress_allowed_cidrs: list[str] = field(default_factory=list)  # empty: the VPC's CIDR
    pod_security: str = "restricted"  # Pod Security Standard enforced on the platform's namespaces
    # Ray token authentication: the K8s Secret (key auth_token, synced from Secrets Manager) that KubeRay hands to
    # every Ray container (namespace `namespace`) and the Dagster step pods (namespace dagster) read: one copy in each
    # namespace, like agentic-secrets; never a literal token in a manifest
    ray_auth_secret: str = "agentic-ray-auth"
    allow_external_https: bool = True  # pods that need it (Bedrock, S3, Langfuse, web search) may reach :443 outside


@dataclass
class PlatformConfig:
    cluster_name: str = "agentic-rag"
    region: str = "us-east-1"
    kubernetes_version: str = "1.33"
    namespace: str = "agentic"
    image: str = "ghcr.io/agentic-rag/platform:0.1.0"
    document_bucket: str = "agentic-rag-documents"
    bedrock_model_ids: list[str] = field(default_factory=lambda: ["anthropic.claude-3-5-haiku-20241022-v1:0"])
    endpoint_public_access_cidrs: list[str] = field(default_factory=lambda: ["203.0.113.0/24"])  # the operators' range
    vpc: VpcConfig = field(default_factory=VpcConfig)
    node_pools: list[NodePoolConfig] = field(default_factory=list)
    models: ModelDeploymentConfig = field(default_factory=ModelDeploymentConfig)
    opensearch: OpenSearchConfig = field(default_factory=OpenSearchConfig)
    observability: ObservabilityConfig = field(default_factory=ObservabilityConfig)
    load_balancers: int = 2  # ALBs: the API and the Dagster UI (internal)
    security: SecurityConfig = field(default_factory=SecurityConfig)

    def pool(self, name: str) -> NodePoolConfig:
        for p in self.node_pools:
            if p.name == name:
                return p
        raise KeyError(f"no node pool named {name!r}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _build(cls, data: dict):
    kwargs = {}
    names = {f.name: f for f in fields(cls)}
    for key, value in (data or {}).items():
        if key not in names:
            raise ValueError(f"unknown platform setting {cls.__name__}.{key}")
        f = names[key]
        sub = {
            "vpc": VpcConfig,
            "models": ModelDeploymentConfig,
            "opensearch": OpenSearchConfig,
            "observability": ObservabilityConfig,
            "security": SecurityConfig,
        }.get(key)
        if sub is not None:
            value = _build(sub, value)
        elif key == "node_pools":
            value = [_build(NodePoolConfig, p) for p in value]
        elif key == "access_entries":
            value = [_build(AccessEntryConfig, e) for e in value]
        kwargs[f.name] = value
    return cls(**kwargs)


def load_platform_config(path: str | Path | None = None, overrides: dict | None = None) -> PlatformConfig:
    data = yaml.safe_load(Path(path or DEFAULT_FILE).read_text()) or {}
    for k, v in (overrides or {}).items():
        data[k] = v
    cfg = _build(PlatformConfig, data)
    if not cfg.node_pools:
        raise ValueError("the platform declares no node pools")
    if cfg.opensearch.knn_engine not in ("lucene", "faiss"):
        raise ValueError("opensearch.knn_engine must be lucene or faiss (nmslib is deprecated)")
    if cfg.vpc.nat_gateways not in (0, 1, cfg.vpc.azs):
        raise ValueError(f"vpc.nat_gateways must be 1 or one per AZ ({cfg.vpc.azs})")
    check_gpu_pool(cfg)
    check_security(cfg)
    return cfg


def check_gpu_pool(cfg: PlatformConfig) -> None:
    """The GPU pool's limit must hold every GPU model at its max replicas, or Karpenter stops short of the max."""
    m = cfg.models
    need = m.llm_gpus_per_replica * m.llm_max_replicas
    if m.vision:
        if m.vision_gpus_per_replica < 1 or not 0 <= m.vision_min_replicas <= m.vision_max_replicas:
            raise ValueError("models: vision needs >= 1 GPU per replica and 0 <= vision_min_replicas <= max_replicas")
        need += m.vision_gpus_per_replica * m.vision_max_replicas
    gpu = next((p for p in cfg.node_pools if p.name == "gpu"), None)
    if gpu is not None and gpu.gpu_limit and gpu.gpu_limit < need:
        raise ValueError(
            f"node pool gpu: gpu_limit {gpu.gpu_limit} is below what the models need at their max replicas ({need}: "
            f"the LLM {m.llm_max_replicas} x {m.llm_gpus_per_replica}"
            + (f", the vision model {m.vision_max_replicas} x {m.vision_gpus_per_replica}" if m.vision else "")
            + ")"
        )


def check_security(cfg: PlatformConfig) -> None:
    """Refuse a security section the cluster could not honour (raised at load, before anything renders)."""
    sec = cfg.security
    if sec.ingress_scheme not in INGRESS_SCHEMES:
        raise ValueError(f"security.ingress_scheme must be one of {INGRESS_SCHEMES}, not {sec.ingress_scheme!r}")
    if sec.ingress_scheme == "internet-facing" and not sec.certificate_arn:
        raise ValueError(
            "security.ingress_scheme is internet-facing but security.certificate_arn is empty: an internet-facing API "
            "serves HTTPS only, and the load balancer controller needs an ACM certificate ARN for that listener"
        )
    if sec.certificate_arn and not (sec.certificate_arn.startswith("arn:aws") and ":acm:" in sec.certificate_arn):
        raise ValueError(f"security.certificate_arn is not an ACM certificate ARN: {sec.certificate_arn!r}")
    if sec.ingress_scheme == "internet-facing" and "0.0.0.0/0" in sec.ingress_allowed_cidrs:
        raise ValueError("security.ingress_allowed_cidrs: name the callers' ranges, never 0.0.0.0/0")
    for cidr in sec.ingress_allowed_cidrs:
        ipaddress.ip_network(cidr)  # raises on a malformed range
    if sec.pod_security not in ("restricted", "baseline"):
        raise ValueError("security.pod_security must be restricted (or baseline while a workload is fixed)")
    for e in sec.access_entries:
        if e.role not in ACCESS_ROLES:
            raise ValueError(f"security.access_entries: role {e.role!r} is not one of {sorted(ACCESS_ROLES)}")
        if not e.principal_arn.startswith("arn:aws") or ":iam::" not in e.principal_arn:
            raise ValueError(f"security.access_entries: {e.principal_arn!r} is not an IAM principal ARN")
        if e.role == "cluster-admin" and e.namespaces:
            raise ValueError("security.access_entries: cluster-admin is cluster-wide, it takes no namespaces")


def to_plain(obj):
    return asdict(obj) if is_dataclass(obj) else obj


def k8s_step(cpu: str, memory: str, limit: str) -> dict:
    """An asset's ``dagster-k8s/config`` op tag: the pod size of its step under the eks profile's k8s_job_executor
    (ignored by the local in-process executor)."""
    return {
        "dagster-k8s/config": {
            "container_config": {
                "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": limit}}
            },
            "pod_spec_config": {"node_selector": {"karpenter.sh/nodepool": "general"}},
        }
    }
