"""The profile switch: ``local`` (embedded default, offline on 2 CPU cores) or ``eks``.

A profile is a set of resources (and an executor) with the same interfaces; assets never
know which profile they run under.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from pipelines.settings import Settings
from resources.access import DocumentAccessResource, KeyStoreResource, LocalKeyStore, SecretsManagerKeyStore
from resources.document_store import LocalDocumentStore, S3DocumentStore
from resources.embedder import EmbedderResource
from resources.gateway import LLMGatewayResource
from resources.lancedb_store import LanceDBVectorStore
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


def build_resources(settings: Settings) -> dict[str, Any]:
    if settings.profile == "local":
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
        resources: dict[str, Any] = {
            "document_store": LocalDocumentStore(root=str(settings.document_root)),
            "ray_cluster": ray,
            "ray_jobs": LocalRayJobRunner(ray_cluster=ray),
            "model_serving": LocalRayServe(
                ray_cluster=ray,
                cache_dir=str(settings.cache),
                state_dir=str(settings.serving_root),
                llm=settings.llm,
                http_port=settings.serve_port,
            ),
            "gateway": LLMGatewayResource(
                url=f"http://127.0.0.1:{settings.gateway_port}",
                master_key=dg.EnvVar("AGENTIC_GATEWAY_KEY"),
                embedding_model=embedder.model_id,
                state_dir=str(settings.serving_root),
                structured_output="grammar",  # the local LLM is llama-server
                otlp_endpoint=settings.otlp_endpoint,
            ),
            # no vision-language model can be had offline here: image descriptions are unavailable on local
            "vision": NoVision(),
            # this home's Phoenix, the one `agentic up` starts (its port is read when traces are)
            "traces": PhoenixTraceStore(port_file=str(settings.serving_root / "phoenix" / "phoenix.port")),
        }
    else:
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
        ray = RayResource(address=dg.EnvVar("AGENTIC_RAY_ADDRESS"))
        gateway_url = "http://litellm.agentic:4000"
        resources = {
            # new documents arrive as S3 event notifications through SQS (AGENTIC_DOCUMENT_QUEUE_URL); without a queue, listings
            "document_store": S3DocumentStore(
                bucket=dg.EnvVar("AGENTIC_DOCUMENT_BUCKET"),
                prefix=settings.document_prefix,
                queue_url=settings.document_queue_url,
                endpoint_url=settings.s3_endpoint_url,
            ),
            "ray_cluster": ray,
            # bulk data work: Ray jobs submitted to the KubeRay cluster's dashboard (Ray Jobs API)
            "ray_jobs": RayJobsApiRunner(address=dg.EnvVar("AGENTIC_RAY_JOBS_ADDRESS")),
            # KubeRay runs the apps (rendered here, applied by the platform assets); LiteLLM runs as a Deployment.
            "model_serving": KubeRayServing(config_path=settings.platform_config),
            "gateway": LLMGatewayResource(
                url=gateway_url,
                master_key=dg.EnvVar("AGENTIC_GATEWAY_KEY"),
                embedding_model=embedder.model_id,
                state_dir=str(settings.serving_root),
                judge_backend=settings.judge_backend,
                aws_region=settings.aws_region,
                otlp_endpoint=settings.otlp_endpoint,
            ),
            # the gateway's `vision` route: Qwen2.5-VL-7B on vLLM (the agentic-vision RayService)
            "vision": GatewayVision(url=gateway_url, api_key=dg.EnvVar("AGENTIC_GATEWAY_KEY")),
            # where the services' OTLP spans land (the platform's observability.langfuse_host), read back by key pair
            "traces": LangfuseTraceStore(
                host=_langfuse_host(settings),
                public_key=dg.EnvVar("LANGFUSE_PUBLIC_KEY"),
                secret_key=dg.EnvVar("LANGFUSE_SECRET_KEY"),
            ),
        }
    # Pipeline state: a folder on local; on eks a bucket, since every step runs in its own pod with an empty disk.
    if settings.profile == "local":
        state_store = LocalStateStore(root=str(settings.state_root), shards=settings.state_shards)
    else:
        # the document bucket's state/ prefix: the platform's IAM scopes the pipeline's roles to it
        state_store = S3StateStore(
            bucket=dg.EnvVar("AGENTIC_DOCUMENT_BUCKET"),
            prefix="state/",
            region_name=settings.aws_region,
            endpoint_url=settings.s3_endpoint_url,
            shards=settings.state_shards,
        )
    from resources.aws import AWSResource
    from resources.pricing import PriceBookResource

    aws = AWSResource(region=settings.aws_region)
    resources.update(
        {
            "access_policy": DocumentAccessResource(
                rules={prefix: list(groups) for prefix, groups in settings.access_rules},
                default_groups=list(settings.access_default),
            ),
            "api_keys": build_key_store(settings),
            # OCR of scans: Tesseract unpacked into the user cache by setup (local), the image's package (eks)
            "ocr": CachedTesseractOcr(root=str(cached_tesseract_root(settings.cache)))
            if settings.profile == "local"
            else SystemTesseractOcr(),
            # platform (and cost) assets: render only, a live cluster (the local control plane), or EKS + AWS
            "platform": build_platform(settings, state_store, aws),
            "aws": aws,
            "prices": PriceBookResource(state=state_store),  # a refreshed book goes to the state store
            "pipeline_state": state_store,
            "embedder": embedder,
            "vector_store": vector_store,
            "retriever": RetrieverResource(vector_store=vector_store, embedder=embedder),
        }
    )
    return resources


def _langfuse_host(settings: Settings) -> str:
    from infra.platform.config import load_platform_config

    return load_platform_config(settings.platform_config or None).observability.langfuse_host


def build_key_store(settings: Settings) -> KeyStoreResource:
    """API keys of principals: hashed files in the home's secrets folder (local), Secrets Manager (eks). The
    deployment's AGENTIC_API_KEY is the admin principal on both."""
    if settings.profile == "local":
        return LocalKeyStore(root=str(settings.secrets_dir / "keys"), admin_key=dg.EnvVar("AGENTIC_API_KEY"))
    return SecretsManagerKeyStore(region_name=settings.aws_region, admin_key=dg.EnvVar("AGENTIC_API_KEY"))


def build_platform(settings: Settings, store, aws):
    from resources.kubernetes import KubernetesResource
    from resources.platform import ClusterPlatform, EKSPlatform, RenderedPlatform

    common = {
        "config_path": settings.platform_config,
        "region": settings.platform_region or (settings.aws_region if settings.profile == "eks" else ""),
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


def build_executor(settings: Settings):
    if settings.profile == "local":
        # One process: Ray is joined once and the model loads once per run, which matters on 2 cores.
        return dg.in_process_executor
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
