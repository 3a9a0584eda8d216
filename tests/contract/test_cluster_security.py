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
from infra.validate import validate_manifest

REPO = Path(__file__).resolve().parents[2]


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
    vision = _pod(cfg, {RAY_LABEL: "agentic-vision", "ray.io/node-type": "worker"})
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
    assert r(data, gateway, 4000)  # parse workers: the vision route, for scans OCR cannot read and figures
    assert not r(llm, gateway, 4000) and not r(data, api, 8000)
    assert r(gateway, llm, 8000) and r(gateway, embed, 8000) and r(gateway, vision, 8000)
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
    assert not r(llm, vision, 8000) and not r(vision, llm, 8000)
    for src in (api, step, data, stranger, other_ns, alb):
        assert not r(src, vision, 8000), src
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
    # 2 Deployments, 4 RayServices and the Ray Data cluster (a head and a worker group each), a step Job
    assert len(templates) == 13

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


# ------------------------------------------------------------------ AWS: the Secrets key, access entries, the preflight


def _client(service: str, endpoint: str | None = None):
    import boto3

    creds = {} if endpoint else {"aws_access_key_id": "x", "aws_secret_access_key": "x"}
    return boto3.client(service, region_name="us-east-1", endpoint_url=endpoint, **creds)


def test_secrets_are_envelope_encrypted_with_the_platforms_kms_key(cfg, moto_server):
    """KMS and EKS on moto (botocore validates every request): the key is created with its policy and rotation, the
    cluster is created naming it, and a second plan finds nothing to do; a widened key policy shows as drift."""
    from infra.platform import aws as awsplan

    kms, eks = _client("kms", moto_server), _client("eks", moto_server)
    account = _client("sts", moto_server).get_caller_identity()["Account"]
    key = awsplan.plan_kms(kms, cfg, account)
    assert key.action == "create" and key.request["KeySpec"] == "SYMMETRIC_DEFAULT"
    arn = awsplan.apply_kms(kms, cfg, key)
    meta = kms.describe_key(KeyId=arn)["KeyMetadata"]
    assert meta["KeyUsage"] == "ENCRYPT_DECRYPT" and kms.get_key_rotation_status(KeyId=arn)["KeyRotationEnabled"]
    policy = json.loads(kms.get_key_policy(KeyId=arn, PolicyName="default")["Policy"])
    cluster_role = f"arn:aws:iam::{account}:role/{cfg.cluster_name}-cluster"
    use = next(st for st in policy["Statement"] if st["Sid"] == "ClusterEncryptsSecrets")
    assert use["Principal"] == {"AWS": cluster_role} and "kms:Decrypt" in use["Action"] and "kms:*" not in use["Action"]
    grant = next(st for st in policy["Statement"] if st["Sid"] == "ClusterGrantsForAwsResources")
    assert grant["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}
    assert awsplan.plan_kms(kms, cfg, account).action == "none"

    request = awsplan.cluster_request(cfg, cluster_role, f"arn:aws:iam::{account}:role/x-node", ["subnet-1"], arn)
    assert request["encryptionConfig"] == [{"resources": ["secrets"], "provider": {"keyArn": arn}}]
    awsplan.apply_cluster(eks, awsplan.plan_cluster(eks, cfg, request), request)
    have = eks.describe_cluster(name=cfg.cluster_name)["cluster"]
    assert have["encryptionConfig"][0]["provider"]["keyArn"] == arn
    assert awsplan.plan_cluster(eks, cfg, request).action == "none"

    wide = copy.deepcopy(policy)
    wide["Statement"].append(
        {"Sid": "Anyone", "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:Decrypt", "Resource": "*"}
    )
    kms.put_key_policy(KeyId=arn, PolicyName="default", Policy=json.dumps(wide))
    drift = awsplan.plan_kms(kms, cfg, account)
    assert drift.action == "update" and "policy" in drift.changes
    awsplan.apply_kms(kms, cfg, drift)
    assert awsplan.plan_kms(kms, cfg, account).action == "none"


def test_an_existing_cluster_without_secrets_encryption_gets_it_associated(cfg):
    """moto has no AssociateEncryptionConfig: botocore's Stubber checks the request against the EKS model."""
    from botocore.stub import Stubber

    from infra.platform import aws as awsplan

    eks = _client("eks")
    request = awsplan.cluster_request(
        cfg, "arn:aws:iam::123456789012:role/c", "arn:aws:iam::123456789012:role/n", ["s"]
    )
    assert (
        request["encryptionConfig"][0]["provider"]["keyArn"]
        == "arn:aws:kms:us-east-1:123456789012:alias/agentic-rag-secrets"
    )
    live = {
        "name": cfg.cluster_name,
        "version": cfg.kubernetes_version,
        "status": "ACTIVE",
        "logging": request["logging"],
    }
    with Stubber(eks) as stub:
        stub.add_response("describe_cluster", {"cluster": live}, {"name": cfg.cluster_name})
        action = awsplan.plan_cluster(eks, cfg, request)
        assert action.action == "update" and set(action.changes) == {"encryptionConfig"}
        stub.add_response(
            "associate_encryption_config",
            {"update": {"id": "u-1", "status": "InProgress"}},
            {"clusterName": cfg.cluster_name, "encryptionConfig": request["encryptionConfig"]},
        )
        stub.add_response("describe_cluster", {"cluster": live}, {"name": cfg.cluster_name})
        awsplan.apply_cluster(eks, action, request)
        stub.assert_no_pending_responses()


def test_access_entries_map_the_four_roles_to_eks_access_policies(cfg):
    """moto has no access entries: botocore's Stubber checks create-access-entry / associate-access-policy against the
    EKS model; the groups they name are the ones the rendered RBAC binds (tested on the real API server above)."""
    from botocore.stub import Stubber

    from infra.platform import aws as awsplan

    wanted = awsplan.access_entry_requests(cfg)
    assert len(wanted) == 4
    by_role = {w["entry"]["tags"]["agentic/access-role"]: w for w in wanted}
    assert {r: w["association"]["policyArn"].rsplit("/", 1)[1] for r, w in by_role.items()} == {
        "cluster-admin": "AmazonEKSClusterAdminPolicy",
        "admin": "AmazonEKSAdminPolicy",
        "edit": "AmazonEKSEditPolicy",
        "read": "AmazonEKSViewPolicy",
    }
    assert by_role["cluster-admin"]["association"]["accessScope"] == {"type": "cluster"}
    assert by_role["read"]["association"]["accessScope"] == {
        "type": "namespace",
        "namespaces": platform_namespaces(cfg),
    }
    assert by_role["edit"]["entry"]["kubernetesGroups"] == [access_group(cfg, "edit")]

    eks = _client("eks")
    reader = by_role["read"]["entry"]["principalArn"]
    with Stubber(eks) as stub:
        stub.add_response("list_access_entries", {"accessEntries": [reader]}, {"clusterName": cfg.cluster_name})
        stub.add_response(
            "list_associated_access_policies",
            {
                "clusterName": cfg.cluster_name,
                "principalArn": reader,
                "associatedAccessPolicies": [
                    {
                        "policyArn": by_role["read"]["association"]["policyArn"],
                        "accessScope": {"type": "namespace", "namespaces": [cfg.namespace]},
                    }
                ],
            },
            {"clusterName": cfg.cluster_name, "principalArn": reader},
        )
        plan = {a.name: a for a in awsplan.plan_access_entries(eks, cfg)}
        # the reader exists with too narrow a scope (dagster missing): updated, the others created
        assert plan[reader].action == "update" and {a.action for n, a in plan.items() if n != reader} == {"create"}
        for a in plan.values():
            if a.action == "create":
                stub.add_response("create_access_entry", {"accessEntry": {"principalArn": a.name}}, a.request["entry"])
            stub.add_response(
                "associate_access_policy",
                {"clusterName": cfg.cluster_name, "principalArn": a.name},
                a.request["association"],
            )
        awsplan.apply_access_entries(eks, list(plan.values()))
        stub.assert_no_pending_responses()
    # a shape EKS would refuse is refused before anything is sent
    from botocore.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        eks.associate_access_policy(**{**by_role["read"]["association"], "accessScope": {"kind": "namespace"}})


def _quota(code: str, value: float, service: str = "ec2") -> dict:
    return {"Quota": {"ServiceCode": service, "QuotaCode": code, "QuotaName": code, "Value": value}}


def _stub_quotas(stub, needs, limits: dict[str, float]) -> None:
    for n in needs:
        params = {"ServiceCode": n.service, "QuotaCode": n.code}
        if n.code in limits:
            stub.add_response("get_service_quota", _quota(n.code, limits[n.code], n.service), params)
        else:  # never adjusted: the applied value is not there, AWS's default is
            stub.add_client_error(
                "get_service_quota", "NoSuchResourceException", http_status_code=404, expected_params=params
            )
            stub.add_response("get_aws_default_service_quota", _quota(n.code, 5.0, n.service), params)


def test_the_quota_preflight_passes_a_plan_that_fits_and_refuses_one_that_does_not(cfg, moto_server):
    """Region on moto's EC2 (DescribeRegions); the VPC quotas on moto's Service Quotas; the EC2 vCPU quotas, which
    moto does not implement, through botocore's Stubber (request shapes validated either way)."""
    from botocore.stub import Stubber

    from infra.platform.preflight import look_up, preflight, quota_needs

    needs = {n.code: n for n in quota_needs(cfg)}
    # the shipped pools: graviton 128 + general 64 standard vCPU, gpu 192 G vCPU, inferentia 96 Inf vCPU
    assert needs["L-1216C47A"].need == 192 and needs["L-DB2E81BA"].need == 192 and needs["L-1945791B"].need == 96
    assert needs["L-0263D0A3"].need == cfg.vpc.nat_gateways and needs["L-FE5A380F"].need == 1
    # moto knows the VPC quotas' defaults
    vpc_needs = [n for n in needs.values() if n.service == "vpc"]
    look_up(_client("service-quotas", moto_server), vpc_needs)
    assert all(n.limit == 5.0 for n in vpc_needs) and not any(n.exceeded for n in vpc_needs)

    ec2 = _client("ec2", moto_server)
    fits = {"L-1216C47A": 256, "L-DB2E81BA": 192, "L-1945791B": 128, "L-0263D0A3": 5, "L-FE5A380F": 5, "L-F678F1CE": 5}
    quotas = _client("service-quotas")
    with Stubber(quotas) as stub:
        _stub_quotas(stub, quota_needs(cfg), fits)
        ok = preflight(cfg, ec2, quotas)
    assert ok["ok"] and ok["refusals"] == [] and ok["unchecked"] == [], ok

    tight = {**fits, "L-DB2E81BA": 64}  # a new account's GPU quota: the GPU pool's 192 vCPU do not fit
    with Stubber(quotas) as stub:
        _stub_quotas(stub, quota_needs(cfg), {k: v for k, v in tight.items() if k != "L-0263D0A3"})
        refused = preflight(cfg, ec2, quotas)
    assert not refused["ok"] and len(refused["refusals"]) == 1, refused["refusals"]
    message = refused["refusals"][0]
    for part in ("Running On-Demand G and VT instances", "L-DB2E81BA", "needs 192", "limit is 64", "gpu"):
        assert part in message, (part, message)
    # three NAT gateways need three Elastic IPs; AWS's default of 5 (from GetAWSDefaultServiceQuota) covers them
    assert next(q for q in refused["quotas"] if q["code"] == "L-0263D0A3")["limit"] == 5.0


def test_the_preflight_asset_stops_the_platform_before_anything_is_applied(tmp_path):
    import dagster as dg

    from assets.platform import platform_assets, platform_preflight
    from pipelines.profiles import build_resources
    from pipelines.settings import load_settings

    res = build_resources(load_settings({"AGENTIC_HOME": str(tmp_path / "home")}))
    ok = dg.materialize(
        [platform_preflight], resources={"platform": res["platform"]}, instance=dg.DagsterInstance.ephemeral()
    )
    assert ok.success
    eks = next(a for a in platform_assets if a.key.to_user_string() == "eks_cluster")
    assert platform_preflight.key in eks.dependency_keys  # the cluster waits for it
    from resources.platform import RenderedPlatform

    elsewhere = RenderedPlatform(store=res["pipeline_state"], region="mars-north-1")
    with pytest.raises(dg.Failure, match="region 'mars-north-1' is not one where Amazon EKS is available"):
        dg.materialize([platform_preflight], resources={"platform": elsewhere}, instance=dg.DagsterInstance.ephemeral())


pytestmark = pytest.mark.usefixtures("crds")
