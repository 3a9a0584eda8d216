"""The platform on a real Kubernetes control plane (etcd, kube-apiserver, controller manager and scheduler v1.34,
kwok nodes, Karpenter's kwok provider, the KubeRay operator), through the same code path as EKS: only the kubeconfig
and the node class (KWOKNodeClass instead of EKS's NodeClass) differ. kwok runs no containers: pods are scheduled and
marked Running, nothing executes in them."""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path

import pytest

from infra.platform.config import load_platform_config
from infra.platform.manifests import PRUNE_KINDS, render_everything

REPO = Path(__file__).resolve().parents[1]
STEPS = ("node_pools", "cluster_addons", "platform_workloads")


@pytest.fixture(scope="module")
def cfg():
    return load_platform_config()


def _k8s(cluster, **kw):
    from resources.kubernetes import KubernetesResource

    return KubernetesResource(
        kubeconfig=str(cluster.kubeconfig), cluster="agentic-rag", ready_kinds_ignored=["RayService"], **kw
    )


def _core(cluster):
    from kubernetes import client, config

    return client.CoreV1Api(config.new_client_from_config(config_file=str(cluster.kubeconfig)))


def _custom(cluster):
    from kubernetes import client, config

    return client.CustomObjectsApi(config.new_client_from_config(config_file=str(cluster.kubeconfig)))


def _wait(what: str, ok, timeout: float = 90.0, poll: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = ok()
        if last:
            return last
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def test_cluster_status_listens_on_loopback_only(kube_cluster):
    st = kube_cluster.status()
    assert st["healthy"] and all(st["components"].values()), st
    assert st["server"].startswith("https://127.0.0.1:")
    # every TCP listener of the control plane's processes is on 127.0.0.1
    pids = {int(kube_cluster._pidfile(n).read_text()) for n in st["components"]}
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    listeners = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            parts = line.split()
            if parts[3] == "0A" and parts[9] in inodes:  # LISTEN
                listeners.append(parts[1])
    assert listeners, "found no listening sockets of the control plane"
    loopback = ("0100007F:", "00000000000000000000000001000000:")
    assert all(addr.startswith(loopback) for addr in listeners), listeners


def test_plan_apply_replan_drift_prune_and_rejection(kube_cluster, cfg):
    from resources.kubernetes import KubernetesApplyError

    k8s = _k8s(kube_cluster)
    groups = render_everything(cfg, "kwok")
    # each step prunes the kinds it owns: every rendered kind has one owner step, never two
    for step in STEPS:
        assert {(m["apiVersion"], m["kind"]) for m in groups[step]} <= PRUNE_KINDS[step]
    owners = [k for kinds in PRUNE_KINDS.values() for k in kinds]
    assert len(owners) == len(set(owners))
    for step in STEPS:
        plan = k8s.plan(groups[step])
        assert {s["action"] for s in plan} == {"create"}, [s for s in plan if s["action"] != "create"]
        k8s.apply(groups[step], wait=False)
    for step in STEPS:
        plan = k8s.plan(groups[step])
        assert {s["action"] for s in plan} == {"unchanged"}, [s for s in plan if s["action"] != "unchanged"]

    # a hand edit (another field manager, as `kubectl edit` would) shows as drift, and apply takes it back
    custom = _custom(kube_cluster)
    custom.patch_cluster_custom_object("karpenter.sh", "v1", "nodepools", "gpu", {"spec": {"limits": {"cpu": "999"}}})
    drift = {(s["kind"], s["name"]): s for s in k8s.plan(groups["node_pools"])}
    assert drift[("NodePool", "gpu")]["action"] == "update"
    assert drift[("NodePool", "gpu")]["changes"] == ["spec.limits.cpu"]
    k8s.apply(groups["node_pools"], wait=False)
    assert custom.get_cluster_custom_object("karpenter.sh", "v1", "nodepools", "gpu")["spec"]["limits"]["cpu"] == "192"

    # an undeclared object with the platform's labels is pruned; someone else's is not
    core = _core(kube_cluster)
    owned = copy.deepcopy(next(m for m in groups["platform_workloads"] if m["kind"] == "ConfigMap"))
    owned["metadata"]["name"] = "left-over"
    k8s.apply([*groups["platform_workloads"], owned], wait=False, prune=False)
    core.create_namespaced_config_map(
        cfg.namespace, {"metadata": {"name": "someone-elses", "labels": {"team": "other"}}, "data": {"a": "b"}}
    )
    plan = {(s["kind"], s["name"]): s["action"] for s in k8s.plan(groups["platform_workloads"])}
    assert plan[("ConfigMap", "left-over")] == "delete" and ("ConfigMap", "someone-elses") not in plan
    k8s.apply(groups["platform_workloads"], wait=False)
    names = {c.metadata.name for c in core.list_namespaced_config_map(cfg.namespace).items}
    assert "left-over" not in names and "someone-elses" in names

    # what the API server rejects fails with the server's own message
    pool = copy.deepcopy(next(m for m in groups["node_pools"] if m["kind"] == "NodePool"))
    cel = copy.deepcopy(pool)
    cel["spec"]["template"]["spec"]["requirements"].append(
        {"key": "karpenter.k8s.aws/instance-bogus", "operator": "In", "values": ["x"]}
    )
    with pytest.raises(KubernetesApplyError, match='label domain \\\\"karpenter.k8s.aws\\\\" is restricted|restricted'):
        k8s.apply([cel], wait=False, prune=False)
    enum = copy.deepcopy(pool)
    enum["spec"]["disruption"]["consolidationPolicy"] = "Sometimes"
    with pytest.raises(KubernetesApplyError, match="Unsupported value.*Sometimes"):
        k8s.apply([enum], wait=False, prune=False)
    unknown = copy.deepcopy(pool)
    unknown["spec"]["template"]["spec"]["nodeClassRefs"] = unknown["spec"]["template"]["spec"]["nodeClassRef"]
    with pytest.raises(KubernetesApplyError, match="nodeClassRefs: field not declared in schema"):
        k8s.apply([unknown], wait=False, prune=False)
    # manifests without the ownership labels are refused before anything is sent
    stray = copy.deepcopy(pool)
    stray["metadata"]["labels"] = {}
    with pytest.raises(ValueError, match="ownership labels"):
        k8s.apply([stray], wait=False)


def _pods(cluster, ns: str) -> list:
    return _core(cluster).list_namespaced_pod(ns).items


def _nodes(cluster) -> dict[str, dict]:
    return {n.metadata.name: n.metadata.labels for n in _core(cluster).list_node().items}


def _nodeclaims(cluster) -> list[dict]:
    return _custom(cluster).list_cluster_custom_object("karpenter.sh", "v1", "nodeclaims")["items"]


def test_karpenter_provisions_the_pools_the_workloads_ask_for_and_consolidates(kube_cluster, cfg):
    fast = copy.deepcopy(cfg)
    for pool in fast.node_pools:
        pool.consolidate_after = "5s"  # the real values (5m-30m) would make this test wait that long
    k8s = _k8s(kube_cluster, ready_timeout_s=180, poll_s=1)
    groups = render_everything(fast, "kwok")
    for step in STEPS:
        k8s.apply(groups[step], wait=step == "platform_workloads")  # Deployments available, RayClusters ready

    # the NodePools changed (consolidateAfter), so Karpenter may replace nodes the previous test left: wait until no
    # pod of any workload is Pending (this fails if a nodeSelector or toleration matches no pool)
    def settled():
        pods = _pods(kube_cluster, cfg.namespace) + _pods(kube_cluster, "kube-system")
        pending = [p.metadata.name for p in pods if p.status.phase != "Running" or not p.spec.node_name]
        workers = [p for p in pods if (p.metadata.labels or {}).get("ray.io/node-type") == "worker"]
        return pods if pods and not pending and len(workers) >= 3 else pending

    pods = _wait(
        "every pod scheduled and Running",
        lambda: (lambda r: r if r and not isinstance(r[0], str) else None)(settled()),
        timeout=180,
        poll=1,
    )
    nodes = _nodes(kube_cluster)

    def where(pod) -> tuple[str, str, str]:
        labels = nodes[pod.spec.node_name]
        return (
            labels["karpenter.sh/nodepool"],
            labels["node.kubernetes.io/instance-type"],
            labels["kubernetes.io/arch"],
        )

    workers = {}
    for p in pods:
        if (p.metadata.labels or {}).get("ray.io/node-type") == "worker":
            workers.setdefault(p.metadata.labels["ray.io/group"], set()).add(where(p))
    # vLLM (tensor parallel 4) gets the GPU pool's 4-GPU type, cheapest first; the embedder lands on Graviton
    assert workers["gpu-llm"] == {("gpu", "g6.12xlarge", "amd64")}, workers
    assert {pool for pool, _, arch in workers["cpu-embed"]} == {"graviton"}
    assert {arch for _, _, arch in workers["cpu-embed"]} == {"arm64"}
    assert {pool for pool, _, _ in workers["neuron-llm"]} == {"inferentia"}
    for p in pods:
        if (p.metadata.labels or {}).get("app.kubernetes.io/name") in ("litellm", "agentic-api"):
            assert where(p)[0] == "general"
    claims = _nodeclaims(kube_cluster)
    assert {c["metadata"]["labels"]["karpenter.sh/nodepool"] for c in claims} == {
        "general",
        "gpu",
        "graviton",
        "inferentia",
    }

    # RayService -> the RayCluster KubeRay creates for it (owned by it), ready; the RayService itself never reports
    # Running here: KubeRay polls the Ray dashboard through cluster DNS and kwok runs no Ray
    custom = _custom(kube_cluster)
    clusters = custom.list_namespaced_custom_object("ray.io", "v1", cfg.namespace, "rayclusters")["items"]
    owners = {
        o["name"]: c["status"].get("state")
        for c in clusters
        for o in c["metadata"].get("ownerReferences", [])
        if o["kind"] == "RayService"
    }
    assert owners == {"agentic-llm": "ready", "agentic-embed": "ready", "agentic-llm-neuron": "ready"}
    for svc in custom.list_namespaced_custom_object("ray.io", "v1", cfg.namespace, "rayservices")["items"]:
        assert svc.get("status", {}).get("serviceStatus") != "Running"

    # scale to zero: the Ray workloads leave the declaration, apply prunes them, Karpenter consolidates their nodes
    without_ray = [m for m in groups["platform_workloads"] if m["kind"] not in ("RayService", "RayCluster")]
    k8s.apply(without_ray, wait=False, prune_kinds=PRUNE_KINDS["platform_workloads"])
    left = _wait(
        "Karpenter to remove the GPU, Graviton and Inferentia nodes",
        lambda: (lambda pools: pools if pools <= {"general"} else None)(
            {c["metadata"]["labels"]["karpenter.sh/nodepool"] for c in _nodeclaims(kube_cluster)}
        ),
        timeout=150,
        poll=2,
    )
    assert left == {"general"}
    k8s.apply(groups["platform_workloads"], wait=False)  # put them back for the tests after this one
