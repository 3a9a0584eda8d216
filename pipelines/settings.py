"""The one place that reads the process environment.

Everything else receives a :class:`Settings` (or resources built from it by
``pipelines.profiles``), so there is no scattered ``os.getenv`` in assets or resources.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

PROFILES = ("local", "eks")
VECTOR_STORES = ("lancedb", "opensearch")
LLMS = ("0.5b", "1.5b")
PLATFORM_TARGETS = ("render", "cluster", "eks")  # resources/platform.py: RenderedPlatform, ClusterPlatform, EKSPlatform
COMPUTE_MODES = ("auto", "karpenter", "kwok")  # infra/platform/manifests.py


def _port(env, name: str, default: int) -> int:
    raw = env.get(name, str(default))
    try:
        port = int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a port number, got {raw!r}") from exc
    if not 0 < port < 65536:
        raise ValueError(f"{name} must be a port number, got {raw!r}")
    return port


def _nonnegative(env, name: str, default: int) -> int:
    raw = env.get(name, str(default)).strip() or str(default)
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer >= 0, got {raw!r}") from exc
    if value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {raw!r}")
    return value


def _positive(env, name: str, default: int) -> int:
    raw = env.get(name, str(default)).strip() or str(default)
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a positive integer, got {raw!r}") from exc
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {raw!r}")
    return value


@dataclass(frozen=True)
class Settings:
    profile: str
    home: Path  # all local state: document store, index, pipeline state, Dagster home
    cache: Path  # downloads shared across checkouts: wheels, corpus, model files
    corpus_limit: int
    ray_address: str | None
    vector_store: str = "lancedb"  # local profile: lancedb (default) or a local OpenSearch node
    opensearch_port: int = 9200
    opensearch_index: str = "chunks"  # AGENTIC_OPENSEARCH_INDEX: the alias (and index prefix), for one domain shared
    llm: str = "1.5b"  # local LLM (core.gguf.LLM_CATALOG): 1.5b for make run, 0.5b in tests
    llm_speculative: str = ""  # llama-server's speculative decoding: "ngram" or "" (none, the default)
    serve_port: int = 8001  # Ray Serve HTTP proxy (model deployments)
    gateway_port: int = 4000  # LiteLLM proxy
    otlp_endpoint: str = ""  # OTEL_EXPORTER_OTLP_ENDPOINT: traces go there when set
    otlp_headers: str = ""  # OTEL_EXPORTER_OTLP_HEADERS (k=v,k2=v2), e.g. Langfuse's basic auth
    web_search: str = "stdio"  # AGENTIC_WEB_SEARCH: stdio | http | off
    web_search_url: str = ""  # AGENTIC_WEB_SEARCH_URL (http mode)
    judge_backend: str = ""  # AGENTIC_JUDGE_MODEL: "" = the deployed LLM; eks: a Bedrock model id for LiteLLM
    aws_region: str = "us-east-1"  # AWS_REGION (eks profile, platform and cost assets)
    kube_host: str = ""  # AGENTIC_KUBE_HOST: the cluster API (else kubeconfig / in-cluster)
    platform_region: str = (
        ""  # AGENTIC_PLATFORM_REGION: price/plan the platform there (default: eks AWS_REGION, else the config's)
    )
    platform_config: str = ""  # AGENTIC_PLATFORM_CONFIG: the platform YAML (default infra/platform.yaml)
    platform_target: str = "render"  # AGENTIC_PLATFORM_TARGET: render | cluster | eks (see resources/platform.py)
    kubeconfig: str = ""  # AGENTIC_KUBECONFIG: the cluster target's kubeconfig (default: this home's local cluster)
    compute_mode: str = "auto"  # AGENTIC_COMPUTE_MODE: auto | karpenter | kwok (default kwok on the local cluster)
    state_shards: int = 32  # AGENTIC_STATE_SHARDS: shards of the pipeline state, fixed when a store is created
    document_queue_url: str = ""  # AGENTIC_DOCUMENT_QUEUE_URL (eks): the SQS queue of the bucket's event notifications
    # AWS_ENDPOINT_URL_S3 (eks): an S3-compatible endpoint (a VPC endpoint; a moto server in tests). boto3 reads it
    # in this process; the stores also carry it in the specs Ray jobs open them from, whose environment may lack it
    s3_endpoint_url: str = ""
    document_prefix: str = "incoming/"  # AGENTIC_DOCUMENT_PREFIX (eks): where in the bucket documents arrive
    # AGENTIC_ACCESS_RULES: JSON {"<key prefix>": ["<group>", ...]} for documents that declare no groups
    access_rules: tuple[tuple[str, tuple[str, ...]], ...] = ()
    access_default: tuple[str, ...] = ("public",)  # AGENTIC_ACCESS_DEFAULT (comma-separated): when no rule matches
    api_rate_per_minute: int = 60  # AGENTIC_API_RATE: requests per minute per key (0 = unlimited), bursts of 2x
    api_concurrency: int = 4  # AGENTIC_API_CONCURRENCY: requests in flight per key (0 = unlimited)
    audit_retention_days: int = 90  # AGENTIC_AUDIT_RETENTION_DAYS: the audit_trail asset drops older days

    @property
    def secrets_dir(self) -> Path:
        return self.home / "secrets"

    @property
    def ray_token_file(self) -> Path:
        """This home's Ray token: every local Ray head, driver, worker and job of the home authenticates with it."""
        return self.secrets_dir / "ray.token"

    @property
    def serving_root(self) -> Path:
        return self.home / "serving"

    @property
    def opensearch_url(self) -> str:
        return f"http://127.0.0.1:{self.opensearch_port}"

    @property
    def opensearch_data(self) -> Path:
        return self.home / "opensearch"

    @property
    def document_root(self) -> Path:
        return self.home / "documents"

    @property
    def state_root(self) -> Path:
        return self.home / "state"

    @property
    def index_root(self) -> Path:
        return self.home / "index"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def ray_root(self) -> Path:
        return self.home / "ray"

    @property
    def ray_address_file(self) -> Path:
        """The GCS address of this home's persistent Ray head (written by ``agentic up``, services.ensure_ray_head)."""
        return self.serving_root / "run" / "ray.address"

    @property
    def pubmed_dir(self) -> Path:
        return self.cache / "pubmed"

    @property
    def model_dir(self) -> Path:
        return self.cache / "models" / "all-MiniLM-L6-v2"


def _prefix(prefix: str) -> str:
    if prefix and (not prefix.endswith("/") or prefix.startswith("/") or prefix.startswith("state/")):
        raise ValueError(f"AGENTIC_DOCUMENT_PREFIX must be a key prefix ending in '/', not state/, got {prefix!r}")
    return prefix


def _index_name(name: str) -> str:
    import re

    # OpenSearch index names: lowercase, no leading '_', '-' or '+', none of \ / * ? " < > | , # : or space
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,100}", name):
        raise ValueError(f"AGENTIC_OPENSEARCH_INDEX must be a lowercase OpenSearch index name, got {name!r}")
    return name


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    profile = env.get("AGENTIC_PROFILE", "local").strip() or "local"
    if profile not in PROFILES:
        raise ValueError(f"AGENTIC_PROFILE must be one of {PROFILES}, got {profile!r}")
    home = Path(env.get("AGENTIC_HOME", ".agentic")).expanduser().resolve()
    cache = Path(env.get("AGENTIC_CACHE", str(Path.home() / ".cache" / "agentic"))).expanduser().resolve()
    raw_limit = env.get("AGENTIC_CORPUS_LIMIT", "2000").strip()
    try:
        limit = int(raw_limit)
    except ValueError as exc:
        raise ValueError(f"AGENTIC_CORPUS_LIMIT must be an integer (0 = all), got {raw_limit!r}") from exc
    if limit < 0:
        raise ValueError("AGENTIC_CORPUS_LIMIT must be >= 0 (0 = all)")
    store = env.get("AGENTIC_VECTOR_STORE", "lancedb").strip() or "lancedb"
    if store not in VECTOR_STORES:
        raise ValueError(f"AGENTIC_VECTOR_STORE must be one of {VECTOR_STORES}, got {store!r}")
    try:
        port = int(env.get("AGENTIC_OPENSEARCH_PORT", "9200"))
    except ValueError as exc:
        raise ValueError("AGENTIC_OPENSEARCH_PORT must be a port number") from exc
    llm = env.get("AGENTIC_LLM", "1.5b").strip() or "1.5b"
    if llm not in LLMS:
        raise ValueError(f"AGENTIC_LLM must be one of {LLMS}, got {llm!r}")
    speculative = env.get("AGENTIC_LLM_SPECULATIVE", "none").strip()
    if speculative not in ("ngram", "", "none"):
        raise ValueError(f"AGENTIC_LLM_SPECULATIVE must be ngram or none, got {speculative!r}")
    target = env.get("AGENTIC_PLATFORM_TARGET", "").strip() or ("eks" if profile == "eks" else "render")
    if target not in PLATFORM_TARGETS:
        raise ValueError(f"AGENTIC_PLATFORM_TARGET must be one of {PLATFORM_TARGETS}, got {target!r}")
    compute = env.get("AGENTIC_COMPUTE_MODE", "").strip() or (
        "kwok" if target == "cluster" and profile == "local" else "auto"
    )
    if compute not in COMPUTE_MODES:
        raise ValueError(f"AGENTIC_COMPUTE_MODE must be one of {COMPUTE_MODES}, got {compute!r}")
    web = env.get("AGENTIC_WEB_SEARCH", "stdio").strip() or "stdio"
    if web not in ("stdio", "http", "off"):
        raise ValueError(f"AGENTIC_WEB_SEARCH must be stdio, http or off, got {web!r}")
    try:
        rules = json.loads(env.get("AGENTIC_ACCESS_RULES", "") or "{}")
        if not isinstance(rules, dict) or not all(
            isinstance(v, list) and all(isinstance(g, str) for g in v) for v in rules.values()
        ):
            raise ValueError("not an object of lists of strings")
    except ValueError as exc:
        raise ValueError(f'AGENTIC_ACCESS_RULES must be JSON like {{"internal/": ["staff"]}}: {exc}') from exc
    default_groups = tuple(g.strip() for g in env.get("AGENTIC_ACCESS_DEFAULT", "public").split(",") if g.strip())
    return Settings(
        access_rules=tuple(sorted((k, tuple(v)) for k, v in rules.items())),
        access_default=default_groups,
        api_rate_per_minute=_nonnegative(env, "AGENTIC_API_RATE", 60),
        api_concurrency=_nonnegative(env, "AGENTIC_API_CONCURRENCY", 4),
        audit_retention_days=_positive(env, "AGENTIC_AUDIT_RETENTION_DAYS", 90),
        llm=llm,
        llm_speculative="" if speculative == "none" else speculative,
        serve_port=_port(env, "AGENTIC_SERVE_PORT", 8001),
        gateway_port=_port(env, "AGENTIC_GATEWAY_PORT", 4000),
        otlp_endpoint=env.get("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
        otlp_headers=env.get("OTEL_EXPORTER_OTLP_HEADERS", ""),
        web_search=web,
        web_search_url=env.get("AGENTIC_WEB_SEARCH_URL", ""),
        judge_backend=env.get(
            "AGENTIC_JUDGE_MODEL", "bedrock/anthropic.claude-3-5-haiku-20241022-v1:0" if profile == "eks" else ""
        ),
        aws_region=env.get("AWS_REGION", "us-east-1").strip() or "us-east-1",
        kube_host=env.get("AGENTIC_KUBE_HOST", ""),
        platform_config=env.get("AGENTIC_PLATFORM_CONFIG", ""),
        platform_region=env.get("AGENTIC_PLATFORM_REGION", "").strip(),
        state_shards=_positive(env, "AGENTIC_STATE_SHARDS", 32),
        platform_target=target,
        kubeconfig=env.get("AGENTIC_KUBECONFIG", "").strip()
        or (str(home / "kube" / "kubeconfig") if target == "cluster" else ""),
        compute_mode=compute,
        document_queue_url=env.get("AGENTIC_DOCUMENT_QUEUE_URL", "").strip(),
        s3_endpoint_url=env.get("AWS_ENDPOINT_URL_S3", "").strip(),
        document_prefix=_prefix(env.get("AGENTIC_DOCUMENT_PREFIX", "incoming/").strip()),
        vector_store=store,
        opensearch_port=port,
        opensearch_index=_index_name(env.get("AGENTIC_OPENSEARCH_INDEX", "chunks").strip() or "chunks"),
        profile=profile,
        home=home,
        cache=cache,
        corpus_limit=limit,
        ray_address=env.get("AGENTIC_RAY_ADDRESS") or None,
    )
