"""The model deployments: RayServices (embedder on Graviton, vLLM Qwen3-14B and Qwen2.5-VL-7B on the GPU pool, a Neuron
variant), the RayCluster of the pipeline's Ray Data embedding, with the Ray token by reference."""

from __future__ import annotations

import copy
import json
from typing import Any

import yaml

from infra.capacity import llm_target
from infra.platform.config import PlatformConfig
from infra.platform.objects import RAY_VERSION, VLLM_IMAGE_TAG, meta
from infra.platform.security import (
    CONTAINER_SECURITY,
    RAY_LABEL,
    restricted,
)


def _ray_container(name: str, image: str, resources: dict, env: list[dict] | None = None, probes: bool = False) -> dict:
    c: dict[str, Any] = {"name": name, "image": image, "resources": {"requests": resources, "limits": resources}}
    if env:
        c["env"] = env
    if probes:
        c["ports"] = [
            {"containerPort": 6379, "name": "gcs"},
            {"containerPort": 8265, "name": "dashboard"},
            {"containerPort": 8000, "name": "serve"},
            {"containerPort": 8080, "name": "metrics"},
        ]
    return c


def _worker_group(
    name: str,
    pool: str,
    image: str,
    resources: dict,
    min_r: int,
    max_r: int,
    taint: str | None = None,
    env: list[dict] | None = None,
) -> dict:
    spec: dict[str, Any] = {
        "nodeSelector": {"karpenter.sh/nodepool": pool},
        "serviceAccountName": "ray",
        "containers": [_ray_container("ray-worker", image, resources, env)],
    }
    if taint:
        spec["tolerations"] = [{"key": taint, "operator": "Exists", "effect": "NoSchedule"}]
    return {
        "groupName": name,
        "replicas": min_r,
        "minReplicas": min_r,
        "maxReplicas": max_r,
        "rayStartParams": {},
        "template": {"metadata": {"labels": {}}, "spec": restricted(spec)},  # labelled by _ray_cluster_spec
    }


def _head(image: str, cluster: str) -> dict:
    spec = {
        "nodeSelector": {"karpenter.sh/nodepool": "general"},
        "serviceAccountName": "ray",
        "containers": [_ray_container("ray-head", image, {"cpu": "2", "memory": "8Gi"}, probes=True)],
    }
    return {
        "rayStartParams": {"dashboard-host": "0.0.0.0", "num-cpus": "0", "metrics-export-port": "8080"},
        "template": {"metadata": {"labels": {RAY_LABEL: cluster}}, "spec": restricted(spec)},
    }


def ray_token_env(cfg: PlatformConfig) -> list[dict]:
    """What a pod that talks to a Ray cluster needs (Dagster steps: the Jobs API): token mode, and the token from the
    Secret KubeRay's clusters use (by reference)."""
    ref = {"secretKeyRef": {"name": cfg.security.ray_auth_secret, "key": "auth_token"}}
    return [{"name": "RAY_AUTH_MODE", "value": "token"}, {"name": "RAY_AUTH_TOKEN", "valueFrom": ref}]


def _ray_cluster_spec(cfg: PlatformConfig, name: str, image: str, workers: list[dict]) -> dict:
    """A RayCluster spec: its head, its workers labelled with the cluster's name (the NetworkPolicies select on it),
    the autoscaler sidecar KubeRay adds to the head held to the same Pod Security as the rest, and Ray's token
    authentication (KubeRay sets RAY_AUTH_MODE and RAY_AUTH_TOKEN from the Secret on every Ray container)."""
    for w in workers:
        w["template"]["metadata"]["labels"][RAY_LABEL] = name
    return {
        "rayVersion": RAY_VERSION,
        "authOptions": {"mode": "token", "secretName": cfg.security.ray_auth_secret},
        "enableInTreeAutoscaling": True,
        "autoscalerOptions": {"securityContext": copy.deepcopy(CONTAINER_SECURITY)},
        "headGroupSpec": _head(image, name),
        "workerGroupSpecs": workers,
    }


def _rayservice(cfg: PlatformConfig, name: str, serve_config: dict, workers: list[dict], image: str) -> dict:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": meta(cfg, name, "model-serving", cfg.namespace),
        "spec": {
            "serveConfigV2": yaml.safe_dump(serve_config, sort_keys=False),
            "upgradeStrategy": {"type": "NewCluster"},
            "rayClusterConfig": _ray_cluster_spec(cfg, name, image, workers),
        },
    }


def _vision_service(cfg: PlatformConfig, image: str, hf_env: list[dict]) -> list[dict]:
    """The vision-language model (Qwen2.5-VL-7B-Instruct) on vLLM: its own RayService, so that it scales, upgrades and
    is isolated apart from the reasoning LLM; one L4 per replica on the GPU pool."""
    m = cfg.models
    if not m.vision:
        return []
    app = {
        "name": "vision",
        "route_prefix": "/vision",
        "import_path": "ray.serve.llm:build_openai_app",
        "args": {
            "llm_configs": [
                {
                    "model_loading_config": {"model_id": m.vision_model_id, "model_source": m.vision_source},
                    "engine_kwargs": {
                        "tensor_parallel_size": m.vision_gpus_per_replica,
                        "max_model_len": m.vision_max_model_len,
                        # images only: vLLM sizes its memory profile for the largest allowed request, and a
                        # video slot would take KV cache the L4 does not have beside the 16.6 GB of weights
                        "limit_mm_per_prompt": {"image": m.vision_images_per_prompt, "video": 0},
                        # bounds a page scan's image tokens (Qwen2.5-VL's default allows ~16k per image)
                        "mm_processor_kwargs": {"min_pixels": 28 * 28, "max_pixels": m.vision_max_pixels},
                        "gpu_memory_utilization": 0.9,
                    },
                    "deployment_config": {
                        "autoscaling_config": {
                            "min_replicas": m.vision_min_replicas,
                            "max_replicas": m.vision_max_replicas,
                            "target_ongoing_requests": 8,
                        },
                        "health_check_period_s": 10,
                        "health_check_timeout_s": 30,
                    },
                    "accelerator_type": "L4",
                }
            ]
        },
    }
    # fits a g6.xlarge (4 vCPU, 16 GiB) after the kubelet's reserve and the device plugin: the cheapest 1-GPU type
    gpu = {"cpu": "3", "memory": "12Gi", "nvidia.com/gpu": str(m.vision_gpus_per_replica)}
    worker = _worker_group(
        "gpu-vision", "gpu", image, gpu, m.vision_min_replicas, m.vision_max_replicas, "nvidia.com/gpu", hf_env
    )
    return [_rayservice(cfg, "agentic-vision", {"applications": [app]}, [worker], image)]


LLM_ROUTER = "ray.serve.llm.request_router.PrefixCacheAffinityRouter"  # Ray Serve LLM's, as the local benchmark's


def render_model_deployments(cfg: PlatformConfig) -> list[dict]:
    m = cfg.models
    hf_env = [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": m.hf_token_secret, "key": "token"}}}]
    llm_image = f"rayproject/ray-llm:{VLLM_IMAGE_TAG}"
    llm_app = {
        "name": "llm",
        "route_prefix": "/llm",
        "import_path": "ray.serve.llm:build_openai_app",
        "args": {
            "llm_configs": [
                {
                    "model_loading_config": {"model_id": m.llm_model_id, "model_source": m.llm_source},
                    "engine_kwargs": {
                        "tensor_parallel_size": m.llm_tensor_parallel,
                        "max_model_len": m.llm_max_model_len,
                        "enable_auto_tool_choice": True,
                        "tool_call_parser": "hermes",
                        "reasoning_parser": "qwen3",
                        "gpu_memory_utilization": 0.9,
                    },
                    "deployment_config": {
                        "autoscaling_config": {
                            "min_replicas": 1,
                            "max_replicas": m.llm_max_replicas,
                            "target_ongoing_requests": llm_target(cfg),
                        },
                        # a replica takes no more than it serves within the SLO; Serve holds the rest for a free one
                        # (locally, with 16 allowed the router put pairs on one replica: docs/serving.md, autoscaling)
                        "max_ongoing_requests": llm_target(cfg),
                        # a conversation's turns go to the replica whose vLLM prefix cache holds its earlier turns,
                        # unless the queues differ by 2 or more (then the less loaded of two); docs/serving.md
                        "request_router_config": {
                            "request_router_class": LLM_ROUTER,
                            "request_router_kwargs": {"imbalanced_threshold": m.llm_router_imbalanced_threshold},
                        },
                        "health_check_period_s": 10,
                        "health_check_timeout_s": 30,
                    },
                    "accelerator_type": "L4",
                }
            ]
        },
    }
    gpu = {"cpu": "44", "memory": "170Gi", "nvidia.com/gpu": str(m.llm_gpus_per_replica)}
    out = [
        _rayservice(
            cfg,
            "agentic-llm",
            {"applications": [llm_app]},
            [_worker_group("gpu-llm", "gpu", llm_image, gpu, 1, m.llm_max_replicas, "nvidia.com/gpu", hf_env)],
            llm_image,
        ),
        _rayservice(
            cfg,
            "agentic-embed",
            {
                "applications": [
                    {
                        "name": "embedder",
                        "route_prefix": "/embed",
                        "import_path": "resources.serve_apps:embedding_app",
                        "args": {
                            "model_id": m.embedder_model_id,
                            "spec": {
                                # ONNX model baked into the image at build time: nothing compiles or downloads at pod start
                                "model_path": "/models/arctic-embed-s/model.onnx",
                                "tokenizer_path": "/models/arctic-embed-s/tokenizer.json",
                                "dimension": 384,
                                "max_tokens": 512,
                                "batch_size": 32,
                                "threads": 0,
                                "query_prefix": "Represent this sentence for searching relevant passages: ",
                                "document_prefix": "",
                            },
                        },
                        "deployments": [
                            {
                                "name": "embedder",
                                "autoscaling_config": {
                                    "min_replicas": 1,
                                    "max_replicas": m.embedder_max_replicas,
                                    "target_ongoing_requests": 32,
                                },
                            }
                        ],
                    }
                ]
            },
            [
                _worker_group(
                    "cpu-embed", "graviton", cfg.image, {"cpu": "4", "memory": "8Gi"}, 1, m.embedder_max_replicas
                )
            ],
            cfg.image,
        ),
        *_vision_service(cfg, llm_image, hf_env),
        {
            "apiVersion": "ray.io/v1",
            "kind": "RayCluster",
            "metadata": meta(cfg, "agentic-data", "ray-data", cfg.namespace),
            "spec": _ray_cluster_spec(
                cfg,
                "agentic-data",
                cfg.image,
                [
                    _worker_group(
                        "cpu-data",
                        "graviton",
                        cfg.image,
                        {"cpu": "8", "memory": "16Gi"},
                        0,
                        16,
                        # parse workers call the gateway's vision route (scans OCR cannot read, figures)
                        env=[
                            {
                                "name": "AGENTIC_GATEWAY_KEY",
                                "valueFrom": {"secretKeyRef": {"name": "litellm-master-key", "key": "key"}},
                            }
                        ],
                    )
                ],
            ),
        },
    ]
    if m.inferentia:
        neuron_app = json.loads(json.dumps(llm_app))
        cfg_llm = neuron_app["args"]["llm_configs"][0]
        cfg_llm["model_loading_config"] = {"model_id": m.inferentia_model_id, "model_source": m.inferentia_source}
        cfg_llm["engine_kwargs"] = {
            "device": "neuron",
            "tensor_parallel_size": 2,
            "max_model_len": 8192,
            "max_num_seqs": 8,
            "enable_auto_tool_choice": True,
            "tool_call_parser": "hermes",
        }
        cfg_llm.pop("accelerator_type")
        # no capacity source for Qwen3 on Inferentia2 (infra/capacity/sources.json): its engine's batch limit bounds it
        auto = cfg_llm["deployment_config"]["autoscaling_config"]
        auto["target_ongoing_requests"] = cfg_llm["engine_kwargs"]["max_num_seqs"]
        cfg_llm["deployment_config"]["max_ongoing_requests"] = cfg_llm["engine_kwargs"]["max_num_seqs"]
        neuron = {"cpu": "3", "memory": "12Gi", "aws.amazon.com/neuron": "1"}
        out.append(
            _rayservice(
                cfg,
                "agentic-llm-neuron",
                {"applications": [neuron_app]},
                [
                    _worker_group(
                        "neuron-llm", "inferentia", f"{cfg.image}-neuron", neuron, 1, 2, "aws.amazon.com/neuron", hf_env
                    )
                ],
                cfg.image,
            )
        )
    return out
