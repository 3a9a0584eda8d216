"""Every Kubernetes object the platform declares, rendered from ``PlatformConfig``.

Groups (each a list of manifests, each labelled ``app.kubernetes.io/managed-by: agentic-platform`` so that apply can
prune what is no longer declared):

- ``node_pools``: Karpenter ``NodePool`` per pool; with ``compute_mode="karpenter"`` also an ``EC2NodeClass`` per pool.
  With EKS Auto Mode (the default) the pools reference Auto Mode's built-in ``eks.amazonaws.com`` NodeClass.
- ``cluster_addons``: pinned Helm charts (KubeRay operator, kube-prometheus-stack: Prometheus evaluating the alert
  rules and remote-writing to AMP, Alertmanager) as data, the NVIDIA and Neuron device plugins (karpenter mode; Auto
  Mode ships both), the DCGM exporter and Neuron monitor (not on kwok), ServiceMonitors (observability.py).
- ``model_deployments``: RayServices (embedder on Graviton, vLLM Qwen3-14B and vLLM Qwen2.5-VL-7B on the GPU pool, a
  Neuron variant), the RayCluster that runs the pipeline's Ray Data embedding, their Secrets as references.
- ``gateway_and_observability``: LiteLLM (ConfigMap from ``model_gateway``'s config, Deployment, Service), the API
  (Deployment, Service, Ingress), the GPU exporters' Services, the SLO PrometheusRule, Grafana dashboards as
  ConfigMaps (what is scraped, charted and alerted on is defined once, in ``observability.py``).

Labels are the standard ones (``kubernetes.io/arch``, ``karpenter.sh/nodepool``), not custom node labels.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import yaml

from infra.platform.config import MANAGED_BY, NodePoolConfig, PlatformConfig
from infra.platform.gateway import AUTH_MODULE, render_litellm_config
from infra.platform.observability import (
    PROMETHEUS_RELEASE,
    exporter_services,
    gpu_exporters,
    grafana_dashboards,
    prometheus_rule,
    service_monitors,
)
from infra.platform.security import (
    CONTAINER_SECURITY,
    NODE_AGENT_SECURITY,
    NODE_NAMESPACE,
    POD_SECURITY,
    RAY_LABEL,
    ingress_annotations,
    render_namespaces,
    render_network_policies,
    render_rbac,
    restricted,
)

RAY_VERSION = "2.60.0"
VLLM_IMAGE_TAG = "2.60.0-py311-cu128"  # rayproject/ray-llm: Ray Serve LLM with vLLM, matching the Ray version
LITELLM_IMAGE = (
    "ghcr.io/berriai/litellm:v1.76.1-stable"  # the proxy image; the local twin runs litellm 1.106 (infra/gateway)
)

HELM_CHARTS = [
    {
        "name": "kuberay-operator",
        "repo": "https://ray-project.github.io/kuberay-helm/",
        "chart": "kuberay-operator",
        "version": "1.7.0",
        "namespace": "kuberay-system",
        "values": {"batchScheduler": {"enabled": False}},
    },
    {
        # Prometheus in server mode (an agent evaluates no rules): short local retention for rules and alerts, every
        # sample still remote-written to AMP. The release keeps its name: a new one would install a second stack.
        "name": PROMETHEUS_RELEASE,
        "repo": "https://prometheus-community.github.io/helm-charts",
        "chart": "kube-prometheus-stack",
        "version": "75.15.1",
        "namespace": "monitoring",
        "values": {
            "grafana": {"enabled": False},
            # receivers (Slack, PagerDuty, SNS...) come from the Secret alertmanager-receivers (key alertmanager.yaml),
            # created out of band: no webhook URL or key lives in this repository
            "alertmanager": {
                "enabled": True,
                "alertmanagerSpec": {"useExistingSecret": True, "configSecret": "alertmanager-receivers"},
            },
            "prometheus": {
                "agentMode": False,
                "serviceAccount": {"name": "prometheus-amp"},
                "prometheusSpec": {
                    "serviceMonitorSelectorNilUsesHelmValues": False,
                    "ruleSelectorNilUsesHelmValues": False,  # every PrometheusRule, not only the release's own
                    "retention": "2d",  # AMP keeps the history; locally only what rules and alerts look back on
                    "retentionSize": "8GB",
                    "remoteWrite": [{"url": "${AMP_REMOTE_WRITE_URL}", "sigv4": {"region": "${AWS_REGION}"}}],
                },
            },
        },
    },
    {
        "name": "dagster",
        "repo": "https://dagster-io.github.io/helm",
        "chart": "dagster",
        "version": "1.13.27",
        "namespace": "dagster",
        "values_file": "dagster-values.yaml",
    },
]


def labels(cfg: PlatformConfig, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": cfg.cluster_name,
        "app.kubernetes.io/component": component,
    }


def _meta(
    cfg: PlatformConfig, name: str, component: str, namespace: str | None = None, extra: dict | None = None
) -> dict:
    m: dict[str, Any] = {"name": name, "labels": {**labels(cfg, component), **(extra or {})}}
    if namespace:
        m["namespace"] = namespace
    return m


# ------------------------------------------------------------------ node pools


COMPUTE_MODES = ("auto", "karpenter", "kwok")
# The kinds each platform step owns, whatever its render holds today: prune looks at all of them, so an object whose
# kind left the render entirely (every RayService scaled away, EC2NodeClasses after a switch to Auto Mode) still goes.
# No kind belongs to two steps (each step would prune the other's objects).
PRUNE_KINDS: dict[str, set[tuple[str, str]]] = {
    "node_pools": {
        ("karpenter.sh/v1", "NodePool"),
        ("karpenter.k8s.aws/v1", "EC2NodeClass"),
        ("karpenter.kwok.sh/v1alpha1", "KWOKNodeClass"),
    },
    "cluster_addons": {
        ("v1", "Namespace"),
        ("apps/v1", "DaemonSet"),
        ("monitoring.coreos.com/v1", "ServiceMonitor"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding"),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    },
    "platform_workloads": {
        ("v1", "ServiceAccount"),
        ("v1", "ConfigMap"),
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("networking.k8s.io/v1", "Ingress"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
        ("ray.io/v1", "RayService"),
        ("ray.io/v1", "RayCluster"),
        ("monitoring.coreos.com/v1", "PrometheusRule"),
    },
}
# Where instance labels live and which node class a pool references, per compute target: EKS Auto Mode, self-managed
# Karpenter on EC2, or Karpenter's kwok provider on the local control plane (the only differences between them).
LABEL_DOMAIN = {"auto": "eks.amazonaws.com", "karpenter": "karpenter.k8s.aws", "kwok": "karpenter.kwok.sh"}


def _generation(family: str) -> int:
    digits = "".join(c for c in family if c.isdigit())
    return int(digits) if digits else 0


def _requirements(pool: NodePoolConfig, compute_mode: str) -> list[dict]:
    prefix = LABEL_DOMAIN[compute_mode]
    reqs = [
        {"key": "kubernetes.io/arch", "operator": "In", "values": [pool.arch]},
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": list(pool.capacity_types)},
        {"key": f"{prefix}/instance-family", "operator": "In", "values": list(pool.instance_families)},
    ]
    if pool.min_generation and compute_mode != "kwok":
        reqs.append(
            {"key": f"{prefix}/instance-generation", "operator": "Gt", "values": [str(pool.min_generation - 1)]}
        )
    elif pool.min_generation:
        # kwok labels no generation: the family list must already honour it
        old = [f for f in pool.instance_families if _generation(f) < pool.min_generation]
        if old:
            raise ValueError(f"pool {pool.name}: families {old} are older than min_generation {pool.min_generation}")
    return reqs


def _node_class_ref(pool: NodePoolConfig, compute_mode: str) -> dict:
    if compute_mode == "auto":
        return {"group": "eks.amazonaws.com", "kind": "NodeClass", "name": "default"}
    if compute_mode == "kwok":
        return {"group": "karpenter.kwok.sh", "kind": "KWOKNodeClass", "name": pool.name}
    return {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": pool.name}


def render_node_pools(cfg: PlatformConfig, compute_mode: str = "auto") -> list[dict]:
    if compute_mode not in COMPUTE_MODES:
        raise ValueError(
            "compute_mode must be auto (EKS Auto Mode), karpenter (self-managed Karpenter) or kwok (local control plane)"
        )
    out = []
    for pool in cfg.node_pools:
        limits: dict[str, Any] = {"cpu": str(pool.cpu_limit), "memory": f"{pool.memory_limit_gi}Gi"}
        if pool.gpu_limit:
            limits["nvidia.com/gpu"] = str(pool.gpu_limit)
        if pool.neuron_limit:
            limits["aws.amazon.com/neuron"] = str(pool.neuron_limit)
        node_class_ref = _node_class_ref(pool, compute_mode)
        spec_template: dict[str, Any] = {
            "nodeClassRef": node_class_ref,
            "requirements": _requirements(pool, compute_mode),
            "expireAfter": pool.expire_after,
        }
        if pool.taints:
            spec_template["taints"] = [dict(t) for t in pool.taints]
        out.append(
            {
                "apiVersion": "karpenter.sh/v1",
                "kind": "NodePool",
                "metadata": _meta(cfg, pool.name, "node-pool"),
                "spec": {
                    "template": {"spec": spec_template},
                    "limits": limits,
                    "disruption": {
                        "consolidationPolicy": "WhenEmptyOrUnderutilized",
                        "consolidateAfter": pool.consolidate_after,
                        "budgets": [{"nodes": pool.disruption_budget}],
                    },
                },
            }
        )
        if compute_mode == "kwok":
            out.append(
                {
                    "apiVersion": "karpenter.kwok.sh/v1alpha1",
                    "kind": "KWOKNodeClass",
                    "metadata": _meta(cfg, pool.name, "node-class"),
                    "spec": {},
                }
            )
        if compute_mode == "karpenter":
            out.append(
                {
                    "apiVersion": "karpenter.k8s.aws/v1",
                    "kind": "EC2NodeClass",
                    "metadata": _meta(cfg, pool.name, "node-class"),
                    "spec": {
                        "role": f"{cfg.cluster_name}-node",
                        "amiSelectorTerms": [
                            {"alias": "al2023@latest"}
                        ],  # Karpenter picks the NVIDIA / Neuron AL2023 variants
                        "subnetSelectorTerms": [{"tags": {"karpenter.sh/discovery": cfg.cluster_name}}],
                        "securityGroupSelectorTerms": [{"tags": {"karpenter.sh/discovery": cfg.cluster_name}}],
                        "blockDeviceMappings": [
                            {
                                "deviceName": "/dev/xvda",
                                "ebs": {
                                    "volumeSize": f"{pool.volume_gi}Gi",
                                    "volumeType": "gp3",
                                    "encrypted": True,
                                    "deleteOnTermination": True,
                                },
                            }
                        ],
                        "metadataOptions": {
                            "httpEndpoint": "enabled",
                            "httpTokens": "required",
                            "httpPutResponseHopLimit": 1,
                        },
                        "tags": {"agentic/cluster": cfg.cluster_name, "agentic/pool": pool.name},
                    },
                }
            )
    return out


# ------------------------------------------------------------------ add-ons


def _daemonset(
    cfg: PlatformConfig, name: str, image: str, toleration: str, resource_key: str, args: list[str] | None = None
) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": _meta(cfg, name, "device-plugin", NODE_NAMESPACE),
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": name}},
                "spec": {
                    "priorityClassName": "system-node-critical",
                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                    "tolerations": [{"key": toleration, "operator": "Exists", "effect": "NoSchedule"}],
                    "affinity": {
                        "nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {
                                "nodeSelectorTerms": [
                                    {
                                        "matchExpressions": [
                                            {
                                                "key": "karpenter.sh/nodepool",
                                                "operator": "In",
                                                "values": ["gpu" if resource_key == "nvidia.com/gpu" else "inferentia"],
                                            }
                                        ]
                                    }
                                ]
                            }
                        }
                    },
                    "containers": [
                        {
                            "name": name,
                            "image": image,
                            **({"args": args} if args else {}),
                            "securityContext": copy.deepcopy(NODE_AGENT_SECURITY),
                            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
                            "volumeMounts": [{"name": "device-plugin", "mountPath": "/var/lib/kubelet/device-plugins"}],
                        }
                    ],
                    "volumes": [{"name": "device-plugin", "hostPath": {"path": "/var/lib/kubelet/device-plugins"}}],
                },
            },
        },
    }


def render_cluster_addons(cfg: PlatformConfig, compute_mode: str = "auto") -> list[dict]:
    # the namespaces come first (the ServiceMonitors here and every workload after live in them), with their Pod
    # Security labels, then the access roles' bindings in them
    # the node namespace in every mode: Auto Mode brings its own device plugins, not the GPU / Neuron exporters
    out: list[dict] = [*render_namespaces(cfg, node_agents=True), *render_rbac(cfg)]
    if compute_mode != "auto":  # Auto Mode nodes come with the NVIDIA and Neuron device plugins
        out.append(
            _daemonset(
                cfg,
                "nvidia-device-plugin",
                "nvcr.io/nvidia/k8s-device-plugin:v0.17.1",
                "nvidia.com/gpu",
                "nvidia.com/gpu",
                ["--fail-on-init-error=false"],
            )
        )
        out.append(
            _daemonset(
                cfg,
                "neuron-device-plugin",
                "public.ecr.aws/neuron/neuron-device-plugin:2.24.23.0",
                "aws.amazon.com/neuron",
                "aws.amazon.com/neuron",
            )
        )
    if compute_mode != "kwok":  # kwok's nodes have no GPU or Neuron device to read; Auto Mode ships no exporters
        out += gpu_exporters(cfg)
    out += service_monitors(cfg)  # last: they select Services the later steps create
    return out


# ------------------------------------------------------------------ model deployments


def _probe(path: str, port: int, delay: int) -> dict:
    return {
        "httpGet": {"path": path, "port": port},
        "initialDelaySeconds": delay,
        "periodSeconds": 15,
        "timeoutSeconds": 5,
        "failureThreshold": 6,
    }


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
        "metadata": _meta(cfg, name, "model-serving", cfg.namespace),
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
                            "target_ongoing_requests": 32,
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
            "metadata": _meta(cfg, "agentic-data", "ray-data", cfg.namespace),
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


# ------------------------------------------------------------------ gateway, API, observability


def _deployment(
    cfg: PlatformConfig,
    name: str,
    image: str,
    port: int,
    env: list[dict],
    args: list[str] | None = None,
    volumes: list[dict] | None = None,
    mounts: list[dict] | None = None,
    sa: str | None = None,
    resources: dict | None = None,
    health: str = "/health",
) -> list[dict]:
    sel = {"app.kubernetes.io/name": name}
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "ports": [{"containerPort": port, "name": "http"}],
        "env": env,
        "resources": resources or {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
        "readinessProbe": _probe(health, port, 10),
        "livenessProbe": _probe(health, port, 30),
    }
    if args:
        container["args"] = args
    if mounts:
        container["volumeMounts"] = mounts
    pod: dict[str, Any] = {"nodeSelector": {"karpenter.sh/nodepool": "general"}, "containers": [container]}
    restricted(pod)
    if sa:
        pod["serviceAccountName"] = sa
    if volumes:
        pod["volumes"] = volumes
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta(cfg, name, "gateway", cfg.namespace, sel),
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": sel},
                "template": {"metadata": {"labels": sel}, "spec": pod},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(cfg, name, "gateway", cfg.namespace, sel),
            "spec": {"selector": sel, "ports": [{"name": "http", "port": port, "targetPort": port}]},
        },
    ]


def render_gateway_and_observability(cfg: PlatformConfig, litellm_config: dict) -> list[dict]:
    if "master_key" in json.dumps(litellm_config.get("general_settings", {})) and "os.environ/" not in json.dumps(
        litellm_config.get("general_settings", {})
    ):
        raise ValueError("the LiteLLM master key must be an environment reference, never a literal")
    ns = cfg.namespace
    out: list[dict] = [
        *[
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(cfg, sa, "identity", ns)}
            for sa in ("dagster", "litellm", "ray", "agentic-api")
        ],
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta(cfg, "litellm-config", "gateway", ns),
            # the proxy loads its key check (general_settings.custom_auth) from beside config.yaml
            "data": {
                "config.yaml": yaml.safe_dump(litellm_config, sort_keys=False),
                AUTH_MODULE.name: AUTH_MODULE.read_text(),
            },
        },
    ]
    secret_env = lambda name, secret, key: {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}  # noqa: E731
    out += _deployment(
        cfg,
        "litellm",
        LITELLM_IMAGE,
        4000,
        env=[
            secret_env("LITELLM_MASTER_KEY", "litellm-master-key", "key"),
            secret_env("AGENTIC_UPSTREAM_KEY", "litellm-master-key", "upstream"),
            {"name": "AWS_REGION", "value": cfg.region},
            {"name": "LITELLM_LOCAL_MODEL_COST_MAP", "value": "True"},
            # the otel callback's exporter: Langfuse's OTLP endpoint, its key pair from the Secret as headers
            {"name": "OTEL_EXPORTER", "value": "otlp_http"},
            {"name": "OTEL_SERVICE_NAME", "value": "litellm"},
            {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": f"{cfg.observability.langfuse_host}/api/public/otel"},
            secret_env("OTEL_EXPORTER_OTLP_HEADERS", cfg.observability.langfuse_secret, "otlp_headers"),
        ],
        args=["--config", "/etc/litellm/config.yaml", "--port", "4000"],
        volumes=[{"name": "config", "configMap": {"name": "litellm-config"}}],
        mounts=[{"name": "config", "mountPath": "/etc/litellm"}],
        sa="litellm",
        health="/health/liveliness",
    )
    out += _deployment(
        cfg,
        "agentic-api",
        cfg.image,
        8000,
        env=[
            {"name": "AGENTIC_PROFILE", "value": "eks"},
            secret_env("AGENTIC_API_KEY", "agentic-api-key", "key"),
            secret_env("AGENTIC_GATEWAY_KEY", "litellm-master-key", "key"),
            {"name": "AGENTIC_WEB_SEARCH", "value": "http"},
            {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": f"{cfg.observability.langfuse_host}/api/public/otel"},
            secret_env("OTEL_EXPORTER_OTLP_HEADERS", cfg.observability.langfuse_secret, "otlp_headers"),
        ],
        args=["agentic", "serve", "--host", "0.0.0.0", "--port", "8000"],
        sa="agentic-api",
    )
    out.append(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {
                **_meta(cfg, "agentic-api", "gateway", ns),
                "annotations": ingress_annotations(cfg),
            },
            "spec": {
                "ingressClassName": "alb",
                "rules": [
                    {
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": "agentic-api", "port": {"number": 8000}}},
                                }
                            ]
                        }
                    }
                ],
            },
        }
    )
    out += exporter_services(cfg)  # Services are this step's kind; their DaemonSets are cluster add-ons
    out.append(prometheus_rule(cfg))
    for name, dash in grafana_dashboards().items():
        out.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": _meta(cfg, f"dashboard-{name}", "observability", ns, {"grafana_dashboard": "1"}),
                "data": {f"{name}.json": json.dumps(dash, indent=1)},
            }
        )
    return out


def render_dagster_values(cfg: PlatformConfig) -> dict:
    """Values for the official Dagster Helm chart: this code location as a user deployment, the K8sRunLauncher,
    Postgres (RDS via a Secret reference in production; the chart's Postgres is off)."""
    repo, tag = cfg.image.rsplit(":", 1)
    env = [
        {"name": "AGENTIC_PROFILE", "value": "eks"},
        {"name": "AWS_REGION", "value": cfg.region},
        {"name": "AGENTIC_DOCUMENT_BUCKET", "value": cfg.document_bucket},
        {"name": "AGENTIC_RAY_ADDRESS", "value": f"ray://agentic-data-head-svc.{cfg.namespace}:10001"},
        # bulk data work goes to the data RayCluster as Ray jobs (its dashboard's Jobs API), state to S3 (state/)
        {"name": "AGENTIC_RAY_JOBS_ADDRESS", "value": f"http://agentic-data-head-svc.{cfg.namespace}:8265"},
        *ray_token_env(cfg),  # the Jobs API and the GCS refuse a client without the cluster's token
        {
            "name": "AGENTIC_DOCUMENT_QUEUE_URL",
            "value": f"https://sqs.{cfg.region}.amazonaws.com/${{AWS_ACCOUNT_ID}}/{cfg.cluster_name}-documents",
        },
    ]
    return {
        "global": {"serviceAccountName": "dagster", "postgresqlSecretName": "dagster-postgresql-secret"},
        "dagster-user-deployments": {
            "enabled": True,
            "deployments": [
                {
                    "name": "agentic",
                    "image": {"repository": repo, "tag": tag, "pullPolicy": "IfNotPresent"},
                    "dagsterApiGrpcArgs": ["-m", "pipelines.definitions"],
                    "port": 3030,
                    "env": env,
                    "envSecrets": [{"name": "agentic-secrets"}, {"name": cfg.observability.langfuse_secret}],
                    "includeConfigInLaunchedRuns": {"enabled": True},
                    "nodeSelector": {"karpenter.sh/nodepool": "general"},
                    "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
                    "podSecurityContext": copy.deepcopy(POD_SECURITY),
                    "securityContext": copy.deepcopy(CONTAINER_SECURITY),
                }
            ],
        },
        "runLauncher": {
            "type": "K8sRunLauncher",
            "config": {
                "k8sRunLauncher": {
                    "jobNamespace": "dagster",
                    "envSecrets": [{"name": "agentic-secrets"}, {"name": cfg.observability.langfuse_secret}],
                    # run pods, and through the run launcher every step pod dagster-k8s makes, pass PSS restricted
                    "runK8sConfig": {
                        "podSpecConfig": {
                            "nodeSelector": {"karpenter.sh/nodepool": "general"},
                            "securityContext": copy.deepcopy(POD_SECURITY),
                        },
                        "containerConfig": {
                            "securityContext": copy.deepcopy(CONTAINER_SECURITY),
                            "env": ray_token_env(cfg),  # step pods submit Ray jobs to the token-guarded cluster
                        },
                    },
                }
            },
        },
        "postgresql": {
            "enabled": False,
            "postgresqlHost": "${RDS_ENDPOINT}",
            "postgresqlUsername": "dagster",
            "postgresqlDatabase": "dagster",
        },
        "generatePostgresqlPasswordSecret": False,
        # the chart gives each Deployment's init containers the same securityContext as its main container
        "dagsterWebserver": {
            "nodeSelector": {"karpenter.sh/nodepool": "general"},
            "service": {"type": "ClusterIP"},
            "podSecurityContext": copy.deepcopy(POD_SECURITY),
            "securityContext": copy.deepcopy(CONTAINER_SECURITY),
        },
        "dagsterDaemon": {
            "enabled": True,
            "nodeSelector": {"karpenter.sh/nodepool": "general"},
            "podSecurityContext": copy.deepcopy(POD_SECURITY),
            "securityContext": copy.deepcopy(CONTAINER_SECURITY),
            "runCoordinator": {
                "enabled": True,
                "type": "QueuedRunCoordinator",
                "config": {"queuedRunCoordinator": {"maxConcurrentRuns": 10}},
            },
        },
    }


def render_all(cfg: PlatformConfig, litellm_config: dict, compute_mode: str = "auto") -> dict[str, list[dict]]:
    return {
        "node_pools": render_node_pools(cfg, compute_mode),
        "cluster_addons": render_cluster_addons(cfg, compute_mode),
        "model_deployments": render_model_deployments(cfg),
        "gateway_and_observability": render_gateway_and_observability(cfg, litellm_config),
        "network_policies": render_network_policies(cfg),
    }


def litellm_config(cfg: PlatformConfig) -> dict:
    """The gateway config for the cluster: the RayServices' Serve endpoints, the judge on Bedrock, the key by reference."""
    ns = cfg.namespace
    return render_litellm_config(
        cfg.models.llm_model_id,
        f"http://agentic-llm-serve-svc.{ns}:8000/llm/v1",
        cfg.models.embedder_model_id,
        f"http://agentic-embed-serve-svc.{ns}:8000/embed/v1",
        judge_name="judge",
        judge_backend=f"bedrock/{cfg.bedrock_model_ids[0]}",
        aws_region=cfg.region,
        vision_name=cfg.models.vision_model_id if cfg.models.vision else "",
        vision_api_base=vision_endpoint(cfg),
        callbacks=("prometheus", "otel"),  # /metrics/ for the ServiceMonitor; spans to Langfuse, in the API's traces
    )


def vision_endpoint(cfg: PlatformConfig) -> str:
    """The vision RayService's OpenAI base URL inside the cluster (KubeRay names its Serve service <name>-serve-svc),
    or "" when the platform declares no vision model."""
    return f"http://agentic-vision-serve-svc.{cfg.namespace}:8000/vision/v1" if cfg.models.vision else ""


def render_everything(cfg: PlatformConfig, compute_mode: str = "auto") -> dict[str, list[dict]]:
    """Every manifest the platform declares, by file name (for ``agentic platform render`` and the assets)."""
    litellm = litellm_config(cfg)
    return {
        "node_pools": render_node_pools(cfg, compute_mode),
        "cluster_addons": render_cluster_addons(cfg, compute_mode),
        "platform_workloads": [
            *render_network_policies(cfg),  # before the pods they isolate
            *render_gateway_and_observability(cfg, litellm),
            *render_model_deployments(cfg),
        ],
    }
