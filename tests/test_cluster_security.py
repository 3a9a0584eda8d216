"""The cluster side of "who may see what": Pod Security Standards, RBAC for the four access roles, NetworkPolicies and
the API's ingress. Admission and authorization are decided by the real kube-apiserver v1.34 of the local control plane
(its PodSecurity admission plugin and RBAC authorizer); the allow graph of the NetworkPolicies is checked by a pure
evaluator (the local control plane runs no CNI to enforce them)."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import pytest
import yaml

from infra.platform.config import ACCESS_ROLES, load_platform_config
from infra.platform.manifests import render_dagster_values, render_everything
from infra.platform.security import (
    DAGSTER_NAMESPACE,
    NODE_NAMESPACE,
    RAY_LABEL,
    access_group,
    platform_namespaces,
    reachable,
    render_network_policies,
)
from infra.validate import crd_dir, validate_manifest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cfg():
    return load_platform_config()


# ------------------------------------------------------------------ pure: config, ingress, the allow graph


def _write(tmp_path, security: dict) -> Path:
    data = yaml.safe_load((REPO / "infra" / "platform.yaml").read_text())
    data["security"] = {**data.get("security", {}), **security}
    path = tmp_path / "platform.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _ingress(cfg) -> dict:
    return next(m for m in render_everything(cfg)["platform_workloads"] if m["kind"] == "Ingress")


def test_the_api_ingress_is_internal_by_default_with_the_configured_ranges(cfg, tmp_path):
    ann = _ingress(cfg)["metadata"]["annotations"]
    assert ann["alb.ingress.kubernetes.io/scheme"] == "internal"
    assert ann["alb.ingress.kubernetes.io/inbound-cidrs"] == ",".join(cfg.security.ingress_allowed_cidrs)
    # no certificate: plain HTTP inside the VPC, and no listener that would need one
    assert "certificate-arn" not in json.dumps(ann) and "HTTPS" not in ann["alb.ingress.kubernetes.io/listen-ports"]

    cert = "arn:aws:acm:us-east-1:123456789012:certificate/0b9f7e4e-1111-2222-3333-444455556666"
    public = load_platform_config(
        _write(
            tmp_path,
            {
                "ingress_scheme": "internet-facing",
                "certificate_arn": cert,
                "ingress_allowed_cidrs": ["198.51.100.0/24"],
            },
        )
    )
    ann = _ingress(public)["metadata"]["annotations"]
    assert ann["alb.ingress.kubernetes.io/scheme"] == "internet-facing"
    assert ann["alb.ingress.kubernetes.io/certificate-arn"] == cert
    assert ann["alb.ingress.kubernetes.io/inbound-cidrs"] == "198.51.100.0/24"
    assert json.loads(ann["alb.ingress.kubernetes.io/listen-ports"]) == [{"HTTP": 80}, {"HTTPS": 443}]
    assert ann["alb.ingress.kubernetes.io/ssl-redirect"] == "443"
    assert validate_manifest(_ingress(public)) == []


def test_a_config_asking_for_an_internet_facing_api_without_a_certificate_is_refused(tmp_path):
    with pytest.raises(ValueError, match="internet-facing but security.certificate_arn is empty"):
        load_platform_config(_write(tmp_path, {"ingress_scheme": "internet-facing", "certificate_arn": ""}))
    with pytest.raises(ValueError, match="not an ACM certificate ARN"):
        load_platform_config(_write(tmp_path, {"certificate_arn": "arn:aws:iam::123456789012:server-certificate/x"}))
    with pytest.raises(ValueError, match="never 0.0.0.0/0"):
        load_platform_config(
            _write(
                tmp_path,
                {
                    "ingress_scheme": "internet-facing",
                    "certificate_arn": "arn:aws:acm:us-east-1:123456789012:certificate/abc",
                    "ingress_allowed_cidrs": ["0.0.0.0/0"],
                },
            )
        )
    with pytest.raises(ValueError, match="role 'owner'"):
        load_platform_config(
            _write(tmp_path, {"access_entries": [{"principal_arn": "arn:aws:iam::1:role/x", "role": "owner"}]})
        )


def _pod(cfg, labels: dict, ns: str | None = None, ip: str = "10.42.1.9") -> dict:
    # in-cluster pods get a VPC address, as with the VPC CNI: an ipBlock on the VPC range matches them too
    return {"namespace": ns or cfg.namespace, "labels": labels, "ip": ip}


def test_the_network_policies_allow_the_graph_and_nothing_else_reaches_the_models(cfg):
    policies = render_network_policies(cfg)
    for p in policies:
        assert validate_manifest(p) == [], (p["metadata"]["name"], validate_manifest(p))
    api = _pod(cfg, {"app.kubernetes.io/name": "agentic-api"})
    gateway = _pod(cfg, {"app.kubernetes.io/name": "litellm"})
    step = _pod(cfg, {"app.kubernetes.io/name": "dagster", "app.kubernetes.io/component": "step_worker"})
    llm = _pod(cfg, {RAY_LABEL: "agentic-llm", "ray.io/node-type": "worker"})
    llm_head = _pod(cfg, {RAY_LABEL: "agentic-llm", "ray.io/node-type": "head"})
    embed = _pod(cfg, {RAY_LABEL: "agentic-embed", "ray.io/node-type": "worker"})
    data = _pod(cfg, {RAY_LABEL: "agentic-data", "ray.io/node-type": "head"})
    stranger = _pod(cfg, {"app": "debug-shell"})
    other_ns = _pod(cfg, {"app.kubernetes.io/name": "agentic-api"}, ns="default")
    prometheus = _pod(cfg, {"app.kubernetes.io/name": "prometheus"}, ns="monitoring")
    kuberay = _pod(cfg, {"app.kubernetes.io/name": "kuberay-operator"}, ns="kuberay-system")
    dns = _pod(cfg, {"k8s-app": "kube-dns"}, ns="kube-system")
    alb = {"ip": "10.42.200.17"}  # the ALB's address in a VPC subnet (outside the cluster's pods)
    internet = {"ip": "52.94.0.10"}
    r = lambda a, b, port, proto="TCP": reachable(policies, a, b, port, proto)  # noqa: E731

    # the graph: ALB -> API -> gateway -> models; Dagster -> Ray Data and the gateway; DNS; Prometheus scrapes
    assert r(alb, api, 8000)
    assert r(api, gateway, 4000) and r(step, gateway, 4000)
    assert r(gateway, llm, 8000) and r(gateway, embed, 8000)
    assert r(step, data, 8265) and r(step, data, 10001)
    assert r(llm_head, llm, 6379) and r(llm, llm_head, 6379)  # a Ray cluster's own nodes talk on any port
    assert r(kuberay, llm_head, 8265)
    assert all(r(p, dns, 53, "UDP") for p in (api, gateway, step, llm, stranger))
    assert r(prometheus, gateway, 4000) and r(prometheus, llm_head, 8080) and r(prometheus, api, 8000)
    assert r(gateway, internet, 443) and r(data, internet, 443)  # Bedrock; S3
    # nothing else reaches the models: not the API, the steps, the data cluster, another model, a stranger, a pod
    # from another namespace, nor the ALB
    for src in (api, step, data, embed, stranger, other_ns, alb, prometheus):
        assert not r(src, llm, 8000), src
    assert not r(prometheus, llm, 8000)  # scrape port only
    assert not r(llm, data, 8265) and not r(llm, embed, 8000)  # no lateral moves between Ray clusters
    assert not r(stranger, gateway, 4000) and not r(other_ns, gateway, 4000) and not r(alb, gateway, 4000)
    assert not r(api, data, 8265) and not r(stranger, data, 10001)
    assert not r(api, internet, 80) and not r(stranger, internet, 443)  # default deny out, HTTPS only where needed
    assert not r(gateway, api, 8000)  # the graph has a direction

    # the evaluator can say yes only because a policy allows it: drop the gateway's ingress rule and it says no
    cut = copy.deepcopy(policies)
    next(p for p in cut if p["metadata"]["name"] == "litellm")["spec"]["ingress"] = []
    assert not reachable(cut, api, gateway, 4000)


# ------------------------------------------------------------------ on the real API server


def _api(cluster, impersonate: tuple[str, str] | None = None):
    from kubernetes import config

    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    if impersonate:  # what `kubectl --as=USER --as-group=GROUP` sends
        api.default_headers["Impersonate-User"] = impersonate[0]
        api.default_headers["Impersonate-Group"] = impersonate[1]
    return api


def _k8s(cluster):
    from resources.kubernetes import KubernetesResource

    return KubernetesResource(kubeconfig=str(cluster.kubeconfig), cluster="agentic-rag")


def _pod_templates(manifests: list[dict]) -> list[tuple[str, str, dict]]:
    """(what, namespace, pod template) of every rendered workload: Deployments, DaemonSets, and the head and worker
    groups of every RayService / RayCluster."""
    out = []
    for m in manifests:
        ns, name = m["metadata"].get("namespace", ""), f"{m['kind']}/{m['metadata']['name']}"
        if m["kind"] in ("Deployment", "DaemonSet", "Job"):
            out.append((name, ns, m["spec"]["template"]))
        elif m["kind"] in ("RayService", "RayCluster"):
            spec = m["spec"]["rayClusterConfig"] if m["kind"] == "RayService" else m["spec"]
            out.append((f"{name}/head", ns, spec["headGroupSpec"]["template"]))
            out += [(f"{name}/{w['groupName']}", ns, w["template"]) for w in spec["workerGroupSpecs"]]
    return out


def _step_job(cfg) -> dict:
    """The Job dagster-k8s's executor builds for a step on the eks profile: the run launcher's config from the
    rendered Helm values (as the chart passes it to the instance), merged with a step's own tag, through dagster-k8s's
    own code."""
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import DagsterK8sJobConfig, UserDefinedDagsterK8sConfig, construct_dagster_k8s_job
    from kubernetes.client import ApiClient

    from assets.knowledge import chunk_embeddings

    rk = render_dagster_values(cfg)["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]
    launcher = K8sContainerContext(
        namespace=cfg.namespace,
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(
            {"pod_spec_config": rk["podSpecConfig"], "container_config": rk["containerConfig"]}
        ),
    )
    tag = chunk_embeddings.op.tags["dagster-k8s/config"]
    tag = json.loads(tag) if isinstance(tag, str) else tag
    ctx = launcher.merge(K8sContainerContext(run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(tag)))
    job = construct_dagster_k8s_job(
        job_config=DagsterK8sJobConfig(
            job_image=cfg.image, dagster_home="/opt/dagster/dagster_home", service_account_name="dagster"
        ),
        args=["dagster", "api", "execute_step"],
        job_name="dagster-step-pss-check",
        component="step_worker",
        user_defined_k8s_config=ctx.run_k8s_config,
        labels={"dagster/op": "chunk_embeddings"},
    )
    body = ApiClient().sanitize_for_serialization(job)
    body["metadata"]["namespace"] = cfg.namespace
    return body


@pytest.fixture(scope="module")
def secured(kube_cluster, cfg):
    """The namespaces (with their Pod Security labels), the access roles' bindings and the ServiceAccounts, applied;
    removed afterwards (the next module plans on an empty cluster)."""
    from kubernetes import client

    groups = render_everything(cfg, "kwok")
    addons = [m for m in groups["cluster_addons"] if m["kind"] != "DaemonSet"]
    accounts = [m for m in groups["platform_workloads"] if m["kind"] == "ServiceAccount"]
    dagster_sa = copy.deepcopy(accounts[0])
    dagster_sa["metadata"].update({"name": "dagster", "namespace": DAGSTER_NAMESPACE})
    _k8s(kube_cluster).apply([*addons, *accounts, dagster_sa], prune=False, wait=False)
    yield groups
    api = _api(kube_cluster)
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    for m in groups["cluster_addons"]:
        if m["kind"] == "ClusterRoleBinding":
            rbac.delete_cluster_role_binding(m["metadata"]["name"])
    names = [m["metadata"]["name"] for m in groups["cluster_addons"] if m["kind"] == "Namespace"]
    for ns in names:
        core.delete_namespace(ns)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and {n.metadata.name for n in core.list_namespace().items} & set(names):
        time.sleep(1)


def _dry_run_pod(api, ns: str, name: str, template: dict) -> tuple[int, str]:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": (template.get("metadata") or {}).get("labels", {})},
        "spec": template["spec"],
    }
    try:
        client.CoreV1Api(api).create_namespaced_pod(ns, pod, dry_run="All")
        return 201, ""
    except ApiException as exc:
        return exc.status, json.loads(exc.body).get("message", "")


def _dry_run_warnings(api, m: dict) -> str:
    """Server-side dry run of a workload; the Warning headers PodSecurity adds for a template that breaks the
    namespace's `warn` level (enforce applies to the Pods a controller makes from it)."""
    from kubernetes import client

    ns = m["metadata"]["namespace"]
    create = {
        "Deployment": client.AppsV1Api(api).create_namespaced_deployment,
        "DaemonSet": client.AppsV1Api(api).create_namespaced_daemon_set,
        "Job": client.BatchV1Api(api).create_namespaced_job,
    }[m["kind"]]
    resp = create(ns, m, dry_run="All", _preload_content=False)
    assert resp.status == 201, resp.status
    return resp.headers.get("Warning", "")


def test_the_api_server_runs_pod_security_admission(kube_cluster):
    """PodSecurity is on by default since v1.25: the control plane must not turn it off (the tests below then show it
    deciding)."""
    pid = int(kube_cluster._pidfile("kube-apiserver").read_text())
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    assert Path(argv[0]).name == "kube-apiserver"
    disabled = [a for a in argv if a.startswith("--disable-admission-plugins")]
    assert not any("PodSecurity" in a for a in disabled), disabled
    assert "--authorization-mode=RBAC" in argv


def test_every_rendered_workload_is_admitted_under_restricted(kube_cluster, cfg, secured):
    from kubernetes import client

    api = _api(kube_cluster)
    core = client.CoreV1Api(api)
    for ns in platform_namespaces(cfg):
        labels = core.read_namespace(ns).metadata.labels
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted", labels
    workloads = [m for m in secured["platform_workloads"] if m["metadata"].get("namespace") == cfg.namespace]
    step_job = _step_job(cfg)
    templates = _pod_templates([*workloads, step_job])
    kinds = {what.split("/")[0] for what, _, _ in templates}
    assert kinds == {"Deployment", "RayService", "RayCluster", "Job"}, kinds
    refused = {}
    for i, (what, ns, template) in enumerate(templates):
        status, message = _dry_run_pod(api, ns, f"pss-check-{i}", template)
        if status != 201:
            refused[what] = message
    assert not refused, refused
    # the workloads themselves: no PodSecurity warning for any template (warn=restricted on the namespace)
    for m in [*workloads, step_job]:
        if m["kind"] in ("Deployment", "Job"):
            assert _dry_run_warnings(api, m) == "", m["metadata"]["name"]
    print(f"\nPSS restricted: {len(templates)} pod templates admitted ({sorted(what for what, _, _ in templates)})")
    # 2 Deployments, 3 RayServices and the Ray Data cluster (a head and a worker group each), a step Job
    assert len(templates) == 11

    # the Dagster chart's pods (webserver, daemon, user code, their init containers) get these contexts in `dagster`
    values = render_dagster_values(cfg)
    chart_pod = {
        "spec": {
            "securityContext": values["dagsterWebserver"]["podSecurityContext"],
            "initContainers": [
                {
                    "name": "check-db-ready",
                    "image": "postgres:14.6",
                    "securityContext": values["dagsterWebserver"]["securityContext"],
                }
            ],
            "containers": [
                {"name": "dagster", "image": cfg.image, "securityContext": values["dagsterDaemon"]["securityContext"]}
            ],
            "serviceAccountName": "dagster",
        }
    }
    assert _dry_run_pod(api, DAGSTER_NAMESPACE, "chart-pod", chart_pod) == (201, "")


def test_kuberay_makes_the_ray_pods_in_the_restricted_namespace(kube_cluster, cfg, secured):
    """Enforcement applies to the Pods KubeRay creates, autoscaler sidecar included (KubeRay adds it to the head)."""
    from kubernetes import client

    data = next(m for m in secured["platform_workloads"] if m["kind"] == "RayCluster")
    _k8s(kube_cluster).apply([data], prune=False, wait=False)
    core = client.CoreV1Api(_api(kube_cluster))
    deadline, pods = time.monotonic() + 90, []
    while time.monotonic() < deadline:
        pods = core.list_namespaced_pod(cfg.namespace, label_selector="ray.io/cluster=agentic-data").items
        if pods:
            break
        time.sleep(1)
    events = [
        e.message
        for e in core.list_namespaced_event(cfg.namespace).items
        if "PodSecurity" in (e.message or "") or "forbidden" in (e.message or "")
    ]
    assert pods, f"KubeRay made no pod for the Ray Data cluster; events: {events[-3:]}"
    head = next(p for p in pods if p.metadata.labels.get("ray.io/node-type") == "head")
    names = [c.name for c in head.spec.containers]
    assert "autoscaler" in names, names  # the sidecar got past admission too
    for c in head.spec.containers:
        assert c.security_context.allow_privilege_escalation is False and c.security_context.capabilities.drop == [
            "ALL"
        ]
    assert head.metadata.labels[RAY_LABEL] == "agentic-data"  # what the NetworkPolicies select on
    client.CustomObjectsApi(_api(kube_cluster)).delete_namespaced_custom_object(
        "ray.io", "v1", cfg.namespace, "rayclusters", "agentic-data"
    )


def test_a_privileged_pod_is_refused_by_the_api_server(kube_cluster, cfg, secured):
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(_api(kube_cluster))
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "privileged"},
        "spec": {
            "serviceAccountName": "dagster",
            "containers": [{"name": "shell", "image": "busybox:1.36", "securityContext": {"privileged": True}}],
        },
    }
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(cfg.namespace, pod)  # not a dry run: the real create
    message = json.loads(refused.value.body)["message"]
    assert refused.value.status == 403
    assert 'violates PodSecurity "restricted:latest"' in message and "privileged" in message, message
    # a pod that merely says nothing about security is refused too, with every missing control named
    bare = copy.deepcopy(pod)
    bare["spec"]["containers"][0].pop("securityContext")
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(DAGSTER_NAMESPACE, bare)
    message = json.loads(refused.value.body)["message"]
    for control in (
        "allowPrivilegeEscalation != false",
        "unrestricted capabilities",
        "runAsNonRoot != true",
        "seccompProfile",
    ):
        assert control in message, (control, message)
    assert not core.list_namespaced_pod(cfg.namespace, field_selector="metadata.name=privileged").items


def test_the_device_plugins_need_their_own_privileged_namespace(kube_cluster, cfg, secured):
    """The NVIDIA / Neuron device plugins (without Auto Mode) mount the kubelet's device-plugin directory: the only
    workloads not restricted, in a namespace of their own that enforces `privileged` and warns at `restricted`."""
    from kubernetes import client

    api = _api(kube_cluster)
    plugins = [m for m in secured["cluster_addons"] if m["kind"] == "DaemonSet"]
    assert {m["metadata"]["namespace"] for m in plugins} == {NODE_NAMESPACE} and len(plugins) == 2
    labels = client.CoreV1Api(api).read_namespace(NODE_NAMESPACE).metadata.labels
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"
    for m in plugins:
        assert "hostPath" in _dry_run_warnings(api, m)  # admitted, and the exemption is visible
        template = _pod_templates([m])[0][2]
        status, message = _dry_run_pod(api, cfg.namespace, "device-plugin", template)
        assert status == 403 and "hostPath" in message, message  # what restricted would say


# ------------------------------------------------------------------ RBAC on the real authorizer


def _can(api, user: str, group: str, verb: str, resource: str, ns: str | None, group_name: str = "") -> bool:
    from kubernetes import client

    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user=user,
            groups=[group],
            resource_attributes=client.V1ResourceAttributes(
                verb=verb, resource=resource, namespace=ns, group=group_name
            ),
        )
    )
    return client.AuthorizationV1Api(api).create_subject_access_review(review).status.allowed


def test_the_access_roles_can_do_what_their_eks_policies_grant_and_no_more(kube_cluster, cfg, secured):
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = _api(kube_cluster)
    ns = cfg.namespace
    client.CoreV1Api(api).create_namespaced_secret(
        ns, {"metadata": {"name": "rbac-probe"}, "stringData": {"key": "not-a-real-secret"}}
    )
    rbac = "rbac.authorization.k8s.io"

    def can(role: str, verb: str, res: str, where: str | None = ns, g: str = "") -> bool:
        return _can(api, f"{role}-user", access_group(cfg, role), verb, res, where, g)

    assert set(ACCESS_ROLES) == {"cluster-admin", "admin", "edit", "read"}

    # read: sees the workloads, never a secret, changes nothing
    assert can("read", "list", "pods") and can("read", "get", "deployments", g="apps")
    assert not can("read", "get", "secrets") and not can("read", "list", "secrets")
    assert not can("read", "create", "secrets") and not can("read", "create", "deployments", g="apps")
    # edit: changes workloads, but not who may do what
    assert can("edit", "create", "deployments", g="apps") and can("edit", "get", "secrets")
    assert not can("edit", "create", "rolebindings", g=rbac) and not can("edit", "create", "roles", g=rbac)
    assert not can("edit", "update", "rolebindings", g=rbac)
    # admin: all of that in the platform's namespaces, RBAC included, but nothing cluster-wide or elsewhere
    assert can("admin", "create", "rolebindings", g=rbac) and can("admin", "create", "roles", g=rbac)
    assert can("admin", "create", "rolebindings", DAGSTER_NAMESPACE, rbac)
    assert not can("admin", "create", "clusterrolebindings", None, rbac)
    assert not can("admin", "get", "secrets", "kube-system")
    # cluster-admin: everything
    assert can("cluster-admin", "create", "clusterrolebindings", None, rbac)
    assert can("cluster-admin", "get", "secrets", "kube-system")
    # a principal in no group: nothing
    assert not _can(api, "nobody", "agentic-rag:unknown", "list", "pods", ns)

    # and through impersonation (what `kubectl --as --as-group` does), the real request is refused
    reader = client.CoreV1Api(_api(kube_cluster, ("read-user", access_group(cfg, "read"))))
    assert reader.list_namespaced_pod(ns) is not None
    with pytest.raises(ApiException) as denied:
        reader.read_namespaced_secret("rbac-probe", ns)
    assert denied.value.status == 403 and 'cannot get resource "secrets"' in json.loads(denied.value.body)["message"]
    editor = client.RbacAuthorizationV1Api(_api(kube_cluster, ("edit-user", access_group(cfg, "edit"))))
    binding = {
        "metadata": {"name": "self-promotion"},
        "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": "admin"},
        "subjects": [{"apiGroup": rbac, "kind": "User", "name": "edit-user"}],
    }
    with pytest.raises(ApiException) as denied:
        editor.create_namespaced_role_binding(ns, binding)
    assert denied.value.status == 403
    admin = client.RbacAuthorizationV1Api(_api(kube_cluster, ("admin-user", access_group(cfg, "admin"))))
    admin.create_namespaced_role_binding(ns, binding, dry_run="All")  # admin may grant admin within the namespace


def test_network_policies_are_accepted_by_the_api_server(kube_cluster, cfg, secured):
    from kubernetes import client

    policies = [m for m in secured["platform_workloads"] if m["kind"] == "NetworkPolicy"]
    k8s = _k8s(kube_cluster)
    k8s.apply(policies, prune=False, wait=False)
    replan = k8s.plan(policies)
    assert {s["action"] for s in replan} == {"unchanged"}, [(s["name"], s["changes"]) for s in replan if s["changes"]]
    live = client.NetworkingV1Api(_api(kube_cluster)).list_namespaced_network_policy(cfg.namespace).items
    assert {p.metadata.name for p in live} == {p["metadata"]["name"] for p in policies}
    deny = next(p for p in live if p.metadata.name == "default-deny")
    assert deny.spec.pod_selector.match_labels is None and set(deny.spec.policy_types) == {"Ingress", "Egress"}


pytestmark = pytest.mark.skipif(
    not crd_dir().is_dir(), reason=f"CRD schemas not found at {crd_dir()} (set AGENTIC_CRD_DIR)"
)
