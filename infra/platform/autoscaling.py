"""KEDA ScaledObjects for the gateway (LiteLLM) and the API: each scales on its request load and on a p95 latency
guardrail, both read from the in-cluster Prometheus (kube-prometheus-stack), as the EKS user guide's KEDA recipe for
vLLM does. The thresholds come from the capacity plan (``infra.capacity``), not from a guess:

- *queue*: the API's requests in flight (``agentic_requests_in_flight``), at most the deployed LLM variant's
  concurrency at the SLO per replica: more in flight than one LLM replica serves within the SLO means queueing;
- *p95 guardrail*: p95 end-to-end latency over two minutes against the SLO's end-to-end p95; above it the HPA adds
  replicas in proportion (``metricType: Value``);
- the gateway: the same queue (the answers in flight are what it relays) and its own p95
  (``litellm_request_total_latency_metric``) against the same SLO.

Validated against KEDA's CRD (``infra/crds/keda.sh_scaledobjects.yaml``) and applied to the local control plane with
the rest of ``platform_workloads``."""

from __future__ import annotations

from infra.capacity import DEFAULT_SLO, llm_target
from infra.platform.config import PlatformConfig
from infra.platform.objects import meta
from infra.platform.observability import PROMETHEUS_RELEASE

KEDA_API = "keda.sh/v1alpha1"
# kube-prometheus-stack names its Prometheus service <release>-kube-prom-prometheus (its fullname, cut at 26 chars)
PROMETHEUS_URL = f"http://{(PROMETHEUS_RELEASE + '-kube-prom')[:26]}-prometheus.monitoring.svc:9090"
ANSWER_PATHS = "/query|/v1/chat/completions"


def _trigger(name: str, query: str, threshold: float, metric_type: str = "AverageValue") -> dict:
    return {
        "type": "prometheus",
        "name": name,
        "metricType": metric_type,
        "metadata": {"serverAddress": PROMETHEUS_URL, "query": query, "threshold": f"{threshold:g}"},
    }


def _scaled_object(cfg: PlatformConfig, target: str, lo: int, hi: int, triggers: list[dict]) -> dict:
    return {
        "apiVersion": KEDA_API,
        "kind": "ScaledObject",
        "metadata": meta(cfg, target, "gateway", cfg.namespace),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "minReplicaCount": lo,
            "maxReplicaCount": hi,
            "pollingInterval": 15,
            "cooldownPeriod": 300,
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    # scale up at once on a breach; come down slowly (5 min) so a burst does not flap
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}}
                }
            },
            "triggers": triggers,
        },
    }


def render_scaled_objects(cfg: PlatformConfig) -> list[dict]:
    """The API's and the gateway's ScaledObjects (min 2 each: the Deployments' own replica count)."""
    per_replica = llm_target(cfg)  # requests one LLM replica serves within the SLO (or the pinned target)
    e2e_s = DEFAULT_SLO.e2e_p95_ms / 1000
    api_p95 = (
        f'histogram_quantile(0.95, sum by (le) (rate(agentic_request_seconds_bucket{{path=~"{ANSWER_PATHS}"}}[2m])))'
    )
    gw_p95 = "histogram_quantile(0.95, sum by (le) (rate(litellm_request_total_latency_metric_bucket[2m])))"
    most = 2 * max(2, cfg.models.llm_max_replicas)
    queue = _trigger("requests-in-flight", "sum(agentic_requests_in_flight)", per_replica)
    return [
        _scaled_object(cfg, target, 2, most, [queue, _trigger("p95-guardrail", p95, e2e_s, "Value")])
        for target, p95 in (("agentic-api", api_p95), ("litellm", gw_p95))
    ]
