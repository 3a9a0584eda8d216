"""Resources by deployment: ``local`` (the default, offline on 2 CPU cores) or ``eks``, picked by AGENTIC_PROFILE.

Each deployment is a function from settings to the same resource keys with the same interfaces, a key store and an
executor (``DEPLOYMENTS``); assets never know which one they run under.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import dagster as dg

from pipelines.settings import Settings
from resources.access import DocumentAccessResource, KeyStoreResource, LocalKeyStore, SecretsManagerKeyStore
from resources.document_store import LocalDocumentStore, S3DocumentStore
from resources.embedder import EmbedderResource
from resources.gateway import ClusterGateway, LocalGateway
from resources.lancedb_store import LanceDBVectorStore
from resources.load_test import LoadTestResource
from resources.model_serving import KubeRayServing, LocalRayServe
from resources.ocr import CachedTesseractOcr, SystemTesseractOcr, cached_tesseract_root
from resources.opensearch_store import OpenSearchVectorStore
from resources.ray_cluster import RayResource
from resources.ray_jobs import LocalRayJobRunner, RayJobsApiRunner
from resources.retrieval import RetrieverResource
from resources.state_store import LocalStateStore, S3StateStore
from resources.traces import LangfuseTraceStore, PhoenixTraceStore
from resources.vision import GatewayVision, NoVision

# Production embedding model: snowflake-arctic-embed-s (384-d, BERT vocabulary) wants this query prefix.
ARCTIC_QUERY_PREFIX = "Represent this sentence for searching relevant passages: "


def local_resources(settings: Settings) -> dict[str, Any]:
    """The local deployment: this machine's folders, Ray, llama-server behind LiteLLM, Phoenix, Tesseract."""
    embedder = EmbedderResource(tokenizer_path=str(settings.model_dir / "tokenizer.json"))
    if settings.vector_store == "opensearch":
        vector_store = OpenSearchVectorStore(hosts=settings.opensearch_url, index_prefix=settings.opensearch_index)
    else:
        vector_store = LanceDBVectorStore(uri=str(settings.index_root))
    # This home's Ray: AGENTIC_RAY_ADDRESS, else the head `agentic up` started for this home, else a new local one.
    ray = RayResource(
        address=settings.ray_address or "",
        address_file=str(settings.ray_address_file),
        loopback=True,
        token_file=str(settings.ray_token_file),
    )
    state_store = LocalStateStore(root=str(settings.state_root), shards=settings.state_shards)
    gateway = LocalGateway(
        url=f"http://127.0.0.1:{settings.gateway_port}",
        master_key=dg.EnvVar("AGENTIC_GATEWAY_KEY"),
        embedding_model=embedder.model_id,
        state_dir=str(settings.serving_root),
        structured_output="grammar",  # the local LLM is llama-server
        otlp_endpoint=settings.otlp_endpoint,
    )
    return {
        "document_store": LocalDocumentStore(root=str(settings.document_root)),
        "ray_cluster": ray,
        "ray_jobs": LocalRayJobRunner(ray_cluster=ray),
        "model_serving": LocalRayServe(
            ray_cluster=ray,
            cache_dir=str(settings.cache),
            state_dir=str(settings.serving_root),
            llm=settings.llm,
            http_port=settings.serve_port,
            speculative=settings.llm_speculative,
        ),
        "gateway": gateway,
        # no vision-language model can be had offline here: image descriptions are unavailable on local
        "vision": NoVision(),
        # this home's Phoenix, the one `agentic up` starts (its port is read when traces are)
        "traces": PhoenixTraceStore(port_file=str(settings.serving_root / "phoenix" / "phoenix.port")),
        # OCR of scans: Tesseract unpacked into the user cache by setup
        "ocr": CachedTesseractOcr(root=str(cached_tesseract_root(settings.cache))),
        "api_keys": local_key_store(settings),
        # the capacity test: AIPerf from .venv-aiperf, on loopback, against this home's stack (API on its default port)
        "load_test": LoadTestResource(
            work_dir=str(settings.serving_root / "capacity"),
            cache_dir=str(settings.cache),
            api_url="http://127.0.0.1:8000",
            api_key=dg.EnvVar("AGENTIC_API_KEY"),
        ),
        # llama-server has no tool-call parser for the orchestrator's model: it answers with a JSON action
        **_shared(settings, state_store, embedder, vector_store, "json_action", settings.platform_region),
    }


def eks_resources(settings: Settings) -> dict[str, Any]:
    """The eks deployment: S3 (+ SQS), the KubeRay cluster's Jobs API, vLLM behind the LiteLLM Deployment, Amazon
    OpenSearch with SigV4, Langfuse, Secrets Manager, the image's Tesseract."""
    embedder = EmbedderResource(
        model_id="snowflake-arctic-embed-s-onnx",
        model_path=dg.EnvVar("AGENTIC_EMBED_MODEL_PATH"),
        tokenizer_path=dg.EnvVar("AGENTIC_EMBED_TOKENIZER_PATH"),
        query_prefix=ARCTIC_QUERY_PREFIX,
    )
    # Amazon OpenSearch, signed with SigV4 by the pod identity; HNSW on lucene (the engine the local node tests).
    vector_store = OpenSearchVectorStore(
        hosts=dg.EnvVar("AGENTIC_OPENSEARCH_ENDPOINT"),
        use_sigv4=True,
        engine="lucene",
        aws_region=dg.EnvVar("AWS_REGION"),
        index_prefix=settings.opensearch_index,
    )
    gateway_url = "http://litellm.agentic:4000"
    gateway = ClusterGateway(
        url=gateway_url,
        master_key=dg.EnvVar("AGENTIC_GATEWAY_KEY"),
        embedding_model=embedder.model_id,
        state_dir=str(settings.serving_root),
        judge_backend=settings.judge_backend,
        aws_region=settings.aws_region,
        otlp_endpoint=settings.otlp_endpoint,
    )
    # every step runs in its own pod with an empty disk: state goes to the document bucket's state/ prefix, which the
    # platform's IAM scopes the pipeline's roles to
    state_store = S3StateStore(
        bucket=dg.EnvVar("AGENTIC_DOCUMENT_BUCKET"),
        prefix="state/",
        region_name=settings.aws_region,
        endpoint_url=settings.s3_endpoint_url,
        shards=settings.state_shards,
    )
    return {
        # new documents arrive as S3 event notifications through SQS (AGENTIC_DOCUMENT_QUEUE_URL); without a queue, listings
        "document_store": S3DocumentStore(
            bucket=dg.EnvVar("AGENTIC_DOCUMENT_BUCKET"),
            prefix=settings.document_prefix,
            queue_url=settings.document_queue_url,
            endpoint_url=settings.s3_endpoint_url,
        ),
        "ray_cluster": RayResource(address=dg.EnvVar("AGENTIC_RAY_ADDRESS")),
        # bulk data work: Ray jobs submitted to the KubeRay cluster's dashboard (Ray Jobs API)
        "ray_jobs": RayJobsApiRunner(address=dg.EnvVar("AGENTIC_RAY_JOBS_ADDRESS")),
        # KubeRay runs the apps (rendered here, applied by the platform assets); LiteLLM runs as a Deployment.
        "model_serving": KubeRayServing(config_path=settings.platform_config),
        "gateway": gateway,
        # the gateway's `vision` route: Qwen2.5-VL-7B on vLLM (the agentic-vision RayService)
        "vision": GatewayVision(url=gateway_url, api_key=dg.EnvVar("AGENTIC_GATEWAY_KEY")),
        # where the services' OTLP spans land (the platform's observability.langfuse_host), read back by key pair
        "traces": LangfuseTraceStore(
            host=_langfuse_host(settings),
            public_key=dg.EnvVar("LANGFUSE_PUBLIC_KEY"),
            secret_key=dg.EnvVar("LANGFUSE_SECRET_KEY"),
        ),
        "ocr": SystemTesseractOcr(),  # the image's package
        "api_keys": eks_key_store(settings),
        # the image does not ship the load tool: the capacity test runs where `scripts/setup.sh aiperf` installed it
        "load_test": LoadTestResource(
            aiperf_python="",
            work_dir=str(settings.serving_root / "capacity"),
            cache_dir=str(settings.cache),
            api_url="http://agentic-api.agentic:8000",
            api_key=dg.EnvVar("AGENTIC_API_KEY"),
            loopback_only=False,
        ),
        # vLLM parses the model's tool calls
        **_shared(
            settings,
            state_store,
            embedder,
            vector_store,
            "native",
            settings.platform_region or settings.aws_region,
        ),
    }


def _shared(
    settings: Settings, state_store, embedder, vector_store, tool_mode: str, platform_region: str
) -> dict[str, Any]:
    """The resources both deployments build the same way, around their own state store, embedder and index."""
    from agents.resource import AnswerServiceResource
    from resources.aws import AWSResource
    from resources.pricing import PriceBookResource

    aws = AWSResource(region=settings.aws_region)
    retriever = RetrieverResource(vector_store=vector_store, embedder=embedder)
    return {
        "access_policy": DocumentAccessResource(
            rules={prefix: list(groups) for prefix, groups in settings.access_rules},
            default_groups=list(settings.access_default),
        ),
        # platform (and cost) assets: render only, a live cluster (the local control plane), or EKS + AWS
        "platform": build_platform(settings, state_store, aws, platform_region),
        "aws": aws,
        "prices": PriceBookResource(state=state_store),  # a refreshed book goes to the state store
        "pipeline_state": state_store,
        "embedder": embedder,
        "vector_store": vector_store,
        "retriever": retriever,
        # the API, `agentic ask`, the evaluation assets and the benchmark build their answer service here
        "answer_service": AnswerServiceResource(
            web_search=settings.web_search,
            web_search_url=settings.web_search_url,
            tool_mode=tool_mode,
        ),
    }


def _langfuse_host(settings: Settings) -> str:
    from infra.platform.config import load_platform_config

    return load_platform_config(settings.platform_config or None).observability.langfuse_host


def local_key_store(settings: Settings) -> KeyStoreResource:
    """API keys of principals: hashed files in the home's secrets folder. AGENTIC_API_KEY is the admin principal."""
    return LocalKeyStore(root=str(settings.secrets_dir / "keys"), admin_key=dg.EnvVar("AGENTIC_API_KEY"))


def eks_key_store(settings: Settings) -> KeyStoreResource:
    """API keys of principals in Secrets Manager. AGENTIC_API_KEY is the admin principal."""
    return SecretsManagerKeyStore(region_name=settings.aws_region, admin_key=dg.EnvVar("AGENTIC_API_KEY"))


def build_platform(settings: Settings, store, aws, region: str):
    from resources.kubernetes import KubernetesResource
    from resources.platform import ClusterPlatform, EKSPlatform, RenderedPlatform

    common = {
        "config_path": settings.platform_config,
        "region": region,
        "store": store,
        "compute_mode": settings.compute_mode,
    }
    if settings.platform_target == "render":
        return RenderedPlatform(**common)
    kube = KubernetesResource(
        host=settings.kube_host,
        kubeconfig=settings.kubeconfig,
        # kwok runs no containers: a RayService never sees its dashboard (its RayCluster's readiness is awaited)
        ready_kinds_ignored=["RayService"] if settings.compute_mode == "kwok" else [],
        ready_timeout_s=180.0 if settings.compute_mode == "kwok" else 900.0,
    )
    if settings.platform_target == "cluster":
        return ClusterPlatform(kube=kube, **common)
    return EKSPlatform(kube=kube, aws=aws, **common)


def local_executor(settings: Settings):
    # One process: Ray is joined once and the model loads once per run, which matters on 2 cores.
    return dg.in_process_executor


def eks_executor(settings: Settings):
    from dagster_k8s import k8s_job_executor

    # One pod per step on the general pool; steps that need more say so with their own `dagster-k8s/config` tag
    # (see STEP_K8S_CONFIG). Embedding itself runs on the KubeRay cluster, not in the step pod.
    from infra.platform.config import load_platform_config

    cfg = load_platform_config(settings.platform_config or None)
    # in a pod: the in-cluster config; with AGENTIC_KUBECONFIG (an operator's machine, the local control plane): that
    where: dict[str, Any] = (
        {"load_incluster_config": False, "kubeconfig_file": settings.kubeconfig} if settings.kubeconfig else {}
    )
    return k8s_job_executor.configured(
        {
            **where,
            "job_image": cfg.image,  # the code location's image (infra/Dockerfile), as the Helm values deploy it
            "job_namespace": cfg.namespace,
            "max_concurrent": 8,
            "step_k8s_config": {
                "pod_spec_config": {"node_selector": {"karpenter.sh/nodepool": "general"}},
                "container_config": {
                    "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
                },
            },
        }
    )


@dataclass(frozen=True)
class Deployment:
    """What differs between the deployments, as data: the resource map, the key store and the executor, and the few
    choices the CLI makes by deployment. Nothing else reads the profile's name."""

    resources: Callable[[Settings], dict[str, Any]]
    key_store: Callable[[Settings], KeyStoreResource]
    executor: Callable[[Settings], Any]
    secrets_in_home: bool  # AGENTIC_API_KEY / AGENTIC_GATEWAY_KEY: files made in the home, or the environment only
    apply_target: str  # where `agentic platform plan|apply` goes unless told: this home's control plane, or EKS
    services_here: (
        bool  # the services the profile uses (an OpenSearch node, ...) run on this machine, started by the CLI
    )


DEPLOYMENTS: dict[str, Deployment] = {
    "local": Deployment(local_resources, local_key_store, local_executor, True, "cluster", True),
    "eks": Deployment(eks_resources, eks_key_store, eks_executor, False, "eks", False),
}


def deployment(settings: Settings) -> Deployment:
    try:
        return DEPLOYMENTS[settings.profile]
    except KeyError:
        raise ValueError(f"unknown profile {settings.profile!r}: one of {sorted(DEPLOYMENTS)}") from None


def build_resources(settings: Settings) -> dict[str, Any]:
    return deployment(settings).resources(settings)


def build_key_store(settings: Settings) -> KeyStoreResource:
    return deployment(settings).key_store(settings)


def build_executor(settings: Settings):
    return deployment(settings).executor(settings)
