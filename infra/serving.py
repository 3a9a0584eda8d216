"""Renders the model deployments for EKS: one KubeRay RayService with two Serve applications.

- ``llm``: vLLM through Ray Serve LLM (``ray.serve.llm:build_openai_app``), Qwen3-14B on a GPU
  worker group (the Karpenter GPU pool), OpenAI routes, autoscaling on ongoing requests.
- ``embedder``: the same ``resources.serve_apps:embedding_app`` the local profile runs, with the
  production embedding model (snowflake-arctic-embed-s, ONNX) on the Graviton/x86 CPU pool.

Validated against the RayService CRD schema and applied by the platform assets.
"""

from __future__ import annotations

IMAGE = "ghcr.io/agentic-rag/platform:0.1.0"  # built from infra/Dockerfile
RAY_VERSION = "2.60.0"


def render_rayservice(embedder_model_id: str = "snowflake-arctic-embed-s-onnx", namespace: str = "agentic",
                      llm_model_id: str = "qwen3-14b", llm_source: str = "Qwen/Qwen3-14B", gpu_replicas_max: int = 4) -> dict:
    serve_config = {
        "applications": [
            {
                "name": "llm",
                "route_prefix": "/llm",
                "import_path": "ray.serve.llm:build_openai_app",
                "args": {
                    "llm_configs": [{
                        "model_loading_config": {"model_id": llm_model_id, "model_source": llm_source},
                        "engine_kwargs": {"max_model_len": 16384, "enable_auto_tool_choice": True, "tool_call_parser": "hermes",
                                          "gpu_memory_utilization": 0.9},
                        "deployment_config": {"autoscaling_config": {"min_replicas": 1, "max_replicas": gpu_replicas_max,
                                                                     "target_ongoing_requests": 16}},
                        "accelerator_type": "L4",
                    }],
                },
            },
            {
                "name": "embedder",
                "route_prefix": "/embed",
                "import_path": "resources.serve_apps:embedding_app",
                "args": {
                    "model_id": embedder_model_id,
                    "spec": {"model_path": "/models/arctic-embed-s/model.onnx", "tokenizer_path": "/models/arctic-embed-s/tokenizer.json",
                             "dimension": 384, "max_tokens": 512, "batch_size": 32, "threads": 0,
                             "query_prefix": "Represent this sentence for searching relevant passages: ", "document_prefix": ""},
                },
                "deployments": [{"name": "embedder", "autoscaling_config": {"min_replicas": 1, "max_replicas": 8, "target_ongoing_requests": 32}}],
            },
        ]
    }
    import yaml

    worker = lambda name, pool, resources, gpus=0, maxr=4: {  # noqa: E731
        "groupName": name,
        "replicas": 1,
        "minReplicas": 1,
        "maxReplicas": maxr,
        "rayStartParams": {},
        "template": {"spec": {
            "nodeSelector": {"karpenter.sh/nodepool": pool},
            **({"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]} if gpus else {}),
            "containers": [{"name": "ray-worker", "image": IMAGE, "resources": {"limits": resources, "requests": resources}}],
        }},
    }
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": "agentic-serve", "namespace": namespace},
        "spec": {
            "serveConfigV2": yaml.safe_dump(serve_config, sort_keys=False),
            "rayClusterConfig": {
                "rayVersion": RAY_VERSION,
                "enableInTreeAutoscaling": True,
                "headGroupSpec": {
                    "rayStartParams": {"dashboard-host": "0.0.0.0", "num-cpus": "0"},
                    "template": {"spec": {"containers": [{
                        "name": "ray-head", "image": IMAGE,
                        "resources": {"limits": {"cpu": "2", "memory": "8Gi"}, "requests": {"cpu": "2", "memory": "8Gi"}},
                        "ports": [{"containerPort": 6379, "name": "gcs"}, {"containerPort": 8265, "name": "dashboard"},
                                  {"containerPort": 8000, "name": "serve"}],
                    }]}},
                },
                "workerGroupSpecs": [
                    worker("gpu-llm", "gpu", {"cpu": "8", "memory": "48Gi", "nvidia.com/gpu": "1"}, gpus=1, maxr=gpu_replicas_max),
                    worker("cpu-embed", "graviton", {"cpu": "4", "memory": "8Gi"}, maxr=8),
                ],
            },
        },
    }
