"""KEDA ScaledObjects for the gateway and the API (infra/platform/autoscaling.py): valid against KEDA's CRD, scaling
the Deployments the platform renders, on the API's queue and a p95 guardrail whose thresholds come from the capacity
plan; and the queue metric itself (agentic_requests_in_flight) counts the keyed requests in flight."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("crds")]


def test_scaled_objects_validate_and_scale_the_rendered_deployments_on_the_plans_thresholds():
    from infra.capacity import DEFAULT_SLO, slo_concurrency
    from infra.platform.autoscaling import PROMETHEUS_URL, render_scaled_objects
    from infra.platform.config import load_platform_config
    from infra.platform.manifests import PRUNE_KINDS, render_everything
    from infra.validate import validate_manifest

    cfg = load_platform_config()
    workloads = render_everything(cfg, "karpenter")["platform_workloads"]
    scaled = [m for m in workloads if m["kind"] == "ScaledObject"]
    assert scaled == render_scaled_objects(cfg) and len(scaled) == 2
    assert ("keda.sh/v1alpha1", "ScaledObject") in PRUNE_KINDS["platform_workloads"]
    deployments = {m["metadata"]["name"]: m for m in workloads if m["kind"] == "Deployment"}
    for so in scaled:
        assert validate_manifest(so) == [], so["metadata"]["name"]
        target = deployments[so["spec"]["scaleTargetRef"]["name"]]
        assert "replicas" not in target["spec"]  # the HPA owns the count; an apply would reset it
        assert so["spec"]["minReplicaCount"] == 2 <= so["spec"]["maxReplicaCount"]
        triggers = {t["name"]: t for t in so["spec"]["triggers"]}
        queue, p95 = triggers["requests-in-flight"], triggers["p95-guardrail"]
        assert queue["metadata"]["query"] == "sum(agentic_requests_in_flight)"
        assert float(queue["metadata"]["threshold"]) == slo_concurrency(cfg)  # one LLM replica's batch at the SLO
        assert p95["metricType"] == "Value" and "histogram_quantile(0.95" in p95["metadata"]["query"]
        assert float(p95["metadata"]["threshold"]) == DEFAULT_SLO.e2e_p95_ms / 1000
        assert all(t["metadata"]["serverAddress"] == PROMETHEUS_URL for t in triggers.values())
    assert PROMETHEUS_URL == "http://prometheus-agent-kube-prom-prometheus.monitoring.svc:9090"
    # a pinned LLM target moves the queue threshold with it: the RayService and KEDA scale at the same number
    pinned = load_platform_config(overrides={"models": {**vars(cfg.models), "llm_target_ongoing_requests": 5}})
    assert {t["metadata"]["threshold"] for so in render_scaled_objects(pinned) for t in so["spec"]["triggers"]
            if t["name"] == "requests-in-flight"} == {"5"}  # fmt: skip
    # what the API server would refuse, KEDA's schema refuses here
    bad = {**scaled[0], "spec": {**scaled[0]["spec"], "minReplicaCount": "two"}}
    assert validate_manifest(bad)


def test_the_in_flight_gauge_counts_keyed_requests_in_flight():
    from prometheus_client import generate_latest

    from agents.admission import Admission
    from agents.api import Metrics

    metrics = Metrics()
    admission = Admission(lambda token: None, None, metrics)
    assert "agentic_requests_in_flight 0.0" in generate_latest(metrics.registry).decode()
    assert admission.inflight.acquire("key-a", 4) and admission.inflight.acquire("key-a", 4)
    assert admission.inflight.acquire("key-b", 4)
    assert "agentic_requests_in_flight 3.0" in generate_latest(metrics.registry).decode()
    admission.inflight.release("key-a")
    assert "agentic_requests_in_flight 2.0" in generate_latest(metrics.registry).decode()


def test_the_vision_model_scales_to_zero_when_its_minimum_is_zero():
    import yaml

    from infra.platform.config import load_platform_config
    from infra.platform.ray_services import render_model_deployments
    from infra.validate import validate_manifest

    cfg = load_platform_config()
    zero = load_platform_config(overrides={"models": {**vars(cfg.models), "vision_min_replicas": 0}})
    vision = next(m for m in render_model_deployments(zero) if m["metadata"]["name"] == "agentic-vision")
    assert validate_manifest(vision) == []
    app = yaml.safe_load(vision["spec"]["serveConfigV2"])["applications"][0]
    assert app["args"]["llm_configs"][0]["deployment_config"]["autoscaling_config"]["min_replicas"] == 0
    group = vision["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    assert group["minReplicas"] == 0  # Karpenter can take the GPU node away
