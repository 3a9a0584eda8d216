"""The EKS platform: every manifest validated offline, IAM least privilege, AWS plan/apply against moto (botocore checks
every request's shape), and the CLI end to end through the platform job (Kubernetes on the real local control plane;
its own tests are in test_kube_cluster.py)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import yaml

from infra.platform import aws as awsplan
from infra.platform.config import MANAGED_BY, load_platform_config
from infra.platform.manifests import render_all
from infra.validate import validate_manifest

REPO = Path(__file__).resolve().parents[2]
LITELLM = {"model_list": [], "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"}}

pytestmark = pytest.mark.usefixtures("crds")


@pytest.fixture(scope="module")
def cfg():
    return load_platform_config()


# ------------------------------------------------------------------ rendering and validation


@pytest.mark.parametrize("mode", ["auto", "karpenter", "kwok"])
def test_every_rendered_manifest_validates_against_its_schema(cfg, mode):
    groups = render_all(cfg, LITELLM, mode)
    manifests = [m for ms in groups.values() for m in ms]
    kinds = {m["kind"] for m in manifests}
    assert {
        "NodePool",
        "RayService",
        "RayCluster",
        "ServiceMonitor",
        "Deployment",
        "Service",
        "Ingress",
        "ConfigMap",
        "Namespace",
    } <= kinds
    if mode == "karpenter":
        assert {"EC2NodeClass", "DaemonSet"} <= kinds  # node classes and the NVIDIA / Neuron device plugins
    if mode == "kwok":  # the local control plane: the same manifests, Karpenter-kwok's node class
        assert "KWOKNodeClass" in kinds and "EC2NodeClass" not in kinds
    for m in manifests:
        assert validate_manifest(m) == [], (m["kind"], m["metadata"]["name"], validate_manifest(m))
        assert m["metadata"]["labels"]["app.kubernetes.io/managed-by"] == MANAGED_BY  # apply prunes by this label


def test_validation_rejects_what_the_api_server_would_reject_or_prune(cfg):
    groups = render_all(cfg, LITELLM, "karpenter")
    pool = copy.deepcopy(groups["node_pools"][0])
    pool["spec"]["template"]["spec"]["nodeClasRef"] = {}
    pool["spec"]["disruption"]["consolidationPolicy"] = "Sometimes"
    errors = validate_manifest(pool)
    assert any("nodeClasRef: unknown field" in e for e in errors) and any("Sometimes" in e for e in errors)
    deploy = copy.deepcopy(next(m for m in groups["gateway_and_observability"] if m["kind"] == "Deployment"))
    deploy["spec"]["replicas"] = "two"
    assert any("replicas" in e for e in validate_manifest(deploy))
    monitor = copy.deepcopy(groups["cluster_addons"][-1])
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    assert any("intervall: unknown field" in e for e in validate_manifest(monitor))


def test_node_pools_and_deployments_match(cfg):
    groups = render_all(cfg, LITELLM, "auto")
    pools = {p["metadata"]["name"]: p for p in groups["node_pools"]}
    reqs = lambda p: {r["key"]: r for r in p["spec"]["template"]["spec"]["requirements"]}  # noqa: E731
    grav = reqs(pools["graviton"])
    assert grav["kubernetes.io/arch"]["values"] == ["arm64"] and set(
        grav["eks.amazonaws.com/instance-family"]["values"]
    ) <= {"c7g", "m7g", "r7g", "c8g", "m8g", "r8g"}
    assert grav["eks.amazonaws.com/instance-generation"] == {
        "key": "eks.amazonaws.com/instance-generation",
        "operator": "Gt",
        "values": ["6"],
    }
    assert (
        pools["gpu"]["spec"]["template"]["spec"]["taints"][0]["key"] == "nvidia.com/gpu"
        and pools["gpu"]["spec"]["limits"]["nvidia.com/gpu"] == "10"  # the LLM's 2 x 4, the vision model's 2 x 1
    )
    assert set(reqs(pools["gpu"])["eks.amazonaws.com/instance-family"]["values"]) == {"g5", "g6"}
    assert pools["inferentia"]["spec"]["limits"]["aws.amazon.com/neuron"] == "12"
    for p in pools.values():  # standard labels, no custom node labels; budgets and expiry from the config
        assert (
            "metadata" not in p["spec"]["template"]
            and p["spec"]["disruption"]["budgets"]
            and p["spec"]["template"]["spec"]["expireAfter"] == "720h"
        )
    services = {m["metadata"]["name"]: m for m in groups["model_deployments"] if m["kind"] == "RayService"}
    llm = services["agentic-llm"]
    worker = llm["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]
    assert (
        worker["nodeSelector"] == {"karpenter.sh/nodepool": "gpu"}
        and worker["tolerations"][0]["key"] == "nvidia.com/gpu"
    )
    container = worker["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert (
        container["env"][0]["valueFrom"]["secretKeyRef"]["name"] == cfg.models.hf_token_secret
    )  # HF token by reference
    engine = yaml.safe_load(llm["spec"]["serveConfigV2"])["applications"][0]["args"]["llm_configs"][0]["engine_kwargs"]
    assert (
        engine["tensor_parallel_size"] == 4
        and engine["enable_auto_tool_choice"]
        and engine["tool_call_parser"] == "hermes"
    )
    embed = services["agentic-embed"]["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]
    assert embed["nodeSelector"] == {"karpenter.sh/nodepool": "graviton"}
    # the vision model: Qwen2.5-VL on vLLM, one GPU per replica on the GPU pool, images bounded per prompt
    vision = services["agentic-vision"]
    assert validate_manifest(vision) == []
    group = vision["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    assert (group["groupName"], group["minReplicas"], group["maxReplicas"]) == ("gpu-vision", 1, 2)
    vworker = group["template"]["spec"]
    assert vworker["nodeSelector"] == {"karpenter.sh/nodepool": "gpu"}
    assert vworker["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert vworker["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert vworker["containers"][0]["image"].startswith("rayproject/ray-llm:")
    assert vworker["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]["name"] == cfg.models.hf_token_secret
    app = yaml.safe_load(vision["spec"]["serveConfigV2"])["applications"][0]
    assert (app["name"], app["route_prefix"], app["import_path"]) == (
        "vision",
        "/vision",
        "ray.serve.llm:build_openai_app",
    )
    vcfg = app["args"]["llm_configs"][0]
    assert vcfg["model_loading_config"] == {"model_id": "qwen2.5-vl-7b", "model_source": "Qwen/Qwen2.5-VL-7B-Instruct"}
    assert vcfg["accelerator_type"] == "L4" and vcfg["engine_kwargs"]["tensor_parallel_size"] == 1
    assert vcfg["engine_kwargs"]["limit_mm_per_prompt"] == {"image": 2, "video": 0}
    assert vcfg["engine_kwargs"]["max_model_len"] == 8192
    assert vcfg["deployment_config"]["autoscaling_config"]["max_replicas"] == 2
    neuron = services["agentic-llm-neuron"]["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]
    assert (
        neuron["nodeSelector"] == {"karpenter.sh/nodepool": "inferentia"}
        and neuron["containers"][0]["resources"]["limits"]["aws.amazon.com/neuron"] == "1"
    )
    # no literal secret anywhere: every secret-looking env var comes from a Secret
    for m in [x for ms in groups.values() for x in ms]:
        for c in json.loads(json.dumps(m)).get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            for e in c.get("env", []):
                if any(s in e["name"] for s in ("KEY", "TOKEN", "SECRET", "HEADERS")):
                    assert "valueFrom" in e, (m["metadata"]["name"], e)


def test_the_gateway_routes_vision_and_the_vision_switch_removes_it_everywhere(cfg):
    from core.cost import UsageAssumptions, load_price_book, platform_lines
    from infra.platform.manifests import litellm_config, render_everything
    from infra.platform.security import reachable, render_network_policies

    routes = {m["model_name"]: m for m in litellm_config(cfg)["model_list"]}
    for name in ("vision", "qwen2.5-vl-7b"):  # OpenAI-compatible: a chat completion with image_url parts goes through
        params = routes[name]["litellm_params"]
        assert params["model"] == "openai/qwen2.5-vl-7b"
        assert params["api_base"] == "http://agentic-vision-serve-svc.agentic:8000/vision/v1"
        assert params["api_key"] == "os.environ/AGENTIC_UPSTREAM_KEY"
        assert routes[name]["model_info"] == {"mode": "chat", "supports_vision": True}
    # the gateway (and only it) reaches the vision RayService's Serve port
    policies = render_network_policies(cfg)
    gateway = {"namespace": "agentic", "labels": {"app.kubernetes.io/name": "litellm"}}
    api = {"namespace": "agentic", "labels": {"app.kubernetes.io/name": "agentic-api"}}
    worker = {"namespace": "agentic", "labels": {"agentic/ray": "agentic-vision", "ray.io/node-type": "worker"}}
    assert reachable(policies, gateway, worker, 8000) and not reachable(policies, api, worker, 8000)

    off = load_platform_config(overrides={"models": {**cfg.as_dict()["models"], "vision": False}})
    names = {m["metadata"]["name"] for m in render_everything(off)["platform_workloads"]}
    assert "agentic-vision" not in names and "agentic-llm" in names
    assert "vision" not in {m["model_name"] for m in litellm_config(off)["model_list"]}
    book = load_price_book("us-east-1")
    assert not [x for x in platform_lines(off, UsageAssumptions(), book) if "vision" in x["dimension"]]

    # a GPU pool too small for the models at their max replicas is refused when the config loads
    pools = [dict(p.__dict__, gpu_limit=8 if p.name == "gpu" else p.gpu_limit) for p in cfg.node_pools]
    with pytest.raises(ValueError, match=r"gpu_limit 8 is below .* \(10: the LLM 2 x 4, the vision model 2 x 1\)"):
        load_platform_config(overrides={"node_pools": pools})
    assert load_platform_config(overrides={"node_pools": pools, "models": off.as_dict()["models"]})


# ------------------------------------------------------------------ IAM


def test_iam_is_least_privilege_and_the_rule_bites(cfg):
    roles = awsplan.iam_roles(cfg, "123456789012")
    assert awsplan.policy_violations(roles) == []
    litellm = roles["agentic-rag-litellm"]["inline"]["Statement"][0]
    assert litellm["Resource"] == [f"arn:aws:bedrock:us-east-1::foundation-model/{m}" for m in cfg.bedrock_model_ids]
    dagster = {s["Sid"]: s for s in roles["agentic-rag-dagster"]["inline"]["Statement"]}
    assert dagster["DocumentObjects"]["Resource"] == [f"arn:aws:s3:::{cfg.document_bucket}/*"]
    assert dagster["Index"]["Resource"] == ["arn:aws:es:us-east-1:123456789012:domain/agentic-rag/*"]
    # the API authenticates principals from their hashed key records only, and writes its records under state/
    api = {s["Sid"]: s for s in roles["agentic-rag-api"]["inline"]["Statement"]}
    assert api["ApiKeys"] == {
        "Sid": "ApiKeys",
        "Effect": "Allow",
        "Action": ["secretsmanager:GetSecretValue"],
        "Resource": ["arn:aws:secretsmanager:us-east-1:123456789012:secret:agentic/api-keys/*"],
    }
    assert all(r.startswith(f"arn:aws:s3:::{cfg.document_bucket}/state/") for r in api["AnswerRecords"]["Resource"])
    bad = copy.deepcopy(roles)
    bad["agentic-rag-ray"]["inline"]["Statement"][0]["Action"] = ["s3:*"]
    bad["agentic-rag-node"]["managed"] = ["AmazonS3FullAccess"]
    # "*" is allowed only for a statement of actions that cannot be scoped (ListSecrets), never smuggled beside one
    listing = next(st for st in bad["agentic-rag-dagster"]["inline"]["Statement"] if st["Sid"] == "ListApiKeys")
    listing["Action"] = ["secretsmanager:ListSecrets", "secretsmanager:GetSecretValue"]
    assert len(awsplan.policy_violations(bad)) == 3


# ------------------------------------------------------------------ AWS against moto


def test_aws_plan_then_apply_then_nothing_to_do(cfg, moto_server):
    clients = {
        s: boto3.client(s, region_name="us-east-1", endpoint_url=moto_server)
        for s in ("iam", "ec2", "eks", "opensearch", "sts")
    }
    account = clients["sts"].get_caller_identity()["Account"]
    iam_plan = awsplan.plan_iam(clients["iam"], cfg, account)
    assert {a.action for a in iam_plan} == {"create"} and len(iam_plan) == 7
    vpc_plan = awsplan.plan_vpc(clients["ec2"], cfg)
    assert vpc_plan[0].action == "create" and len(vpc_plan[0].request["subnets"]) == 6

    awsplan.apply_iam(clients["iam"], iam_plan)
    subnets = awsplan.apply_vpc(clients["ec2"], cfg, vpc_plan[0])
    assert len(subnets["private"]) == 3 and len(subnets["public"]) == 3
    nats = clients["ec2"].describe_nat_gateways()["NatGateways"]
    assert len(nats) == cfg.vpc.nat_gateways
    request = awsplan.cluster_request(
        cfg,
        f"arn:aws:iam::{account}:role/agentic-rag-cluster",
        f"arn:aws:iam::{account}:role/agentic-rag-node",
        subnets["private"],
    )
    assert awsplan.plan_cluster(clients["eks"], cfg, request).action == "create"
    cluster = awsplan.apply_cluster(
        clients["eks"], awsplan.plan_cluster(clients["eks"], cfg, request), request
    )  # botocore validated computeConfig & co
    assert cluster["name"] == "agentic-rag" and cluster["version"] == cfg.kubernetes_version
    principals = [f"arn:aws:iam::{account}:role/agentic-rag-dagster", f"arn:aws:iam::{account}:role/agentic-rag-api"]
    dreq = awsplan.domain_request(cfg, account, principals)
    assert awsplan.plan_opensearch(clients["opensearch"], dreq).action == "create"
    awsplan.apply_opensearch(clients["opensearch"], awsplan.plan_opensearch(clients["opensearch"], dreq), dreq)

    # idempotent: planning again finds nothing to do
    assert {a.action for a in awsplan.plan_iam(clients["iam"], cfg, account)} == {"none"}
    assert awsplan.plan_vpc(clients["ec2"], cfg)[0].action == "none"
    assert awsplan.plan_cluster(clients["eks"], cfg, request).action == "none"
    assert awsplan.plan_opensearch(clients["opensearch"], dreq).action == "none"
    # drift is planned, not applied: a role's inline policy widened by hand and a version bump in the config
    clients["iam"].put_role_policy(
        RoleName="agentic-rag-ray",
        PolicyName="agentic",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:*"], "Resource": ["*"]}]}
        ),
    )
    drift = {a.name: a for a in awsplan.plan_iam(clients["iam"], cfg, account)}
    assert drift["agentic-rag-ray"].action == "update" and "inline" in drift["agentic-rag-ray"].changes
    newer = copy.deepcopy(request)
    newer["version"] = "1.34"
    assert awsplan.plan_cluster(clients["eks"], cfg, newer).changes["version"] == {
        "have": cfg.kubernetes_version,
        "want": "1.34",
    }
    with pytest.raises(ValueError):
        awsplan.domain_request(cfg, account, ["*"])


def test_pod_identity_requests_have_the_shapes_eks_accepts(cfg):
    """moto has no Pod Identity API: botocore's Stubber checks the requests against the EKS service model."""
    from botocore.stub import Stubber

    eks = boto3.client("eks", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(eks) as stub:
        stub.add_response(
            "list_pod_identity_associations",
            {
                "associations": [
                    {
                        "clusterName": "agentic-rag",
                        "namespace": "dagster",
                        "serviceAccount": "dagster",
                        "associationId": "a-1",
                        "associationArn": "arn:x",
                    }
                ]
            },
            {"clusterName": "agentic-rag"},
        )
        plan = awsplan.plan_pod_identities(eks, cfg, "123456789012")
        todo = [p for p in plan if p.action == "create"]
        assert {p.name for p in plan if p.action == "none"} == {"dagster/dagster"} and len(todo) == 4
        for p in todo:
            stub.add_response(
                "create_pod_identity_association", {"association": {"clusterName": "agentic-rag"}}, p.request
            )
            eks.create_pod_identity_association(**p.request)


# ------------------------------------------------------------------ the CLI runs the platform job


def _cli(args: list[str], env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_cli_platform_render_plan_and_apply_run_the_job(tmp_path, moto_server, kube_cluster):
    """render (the job on the rendered target, artifacts copied out of the state store); plan on the EKS target (AWS on
    moto, Kubernetes on the real local control plane); apply on the cluster target (re-plans with nothing to do are
    tested in test_kube_cluster)."""
    env = {
        **os.environ,
        "AGENTIC_HOME": str(tmp_path / "home"),
        "AWS_ENDPOINT_URL": moto_server,
        "AGENTIC_KUBECONFIG": str(kube_cluster.kubeconfig),
        "AGENTIC_COMPUTE_MODE": "kwok",
    }
    out = tmp_path / "rendered"
    r = _cli(["platform", "render", "--out", str(out)], env)
    assert r.returncode == 0, r.stderr
    assert "platform_job run" in r.stdout
    docs = [
        d
        for f in ("node_pools", "cluster_addons", "platform_workloads")
        for d in yaml.safe_load_all((out / f"{f}.yaml").read_text())
    ]
    assert docs and all(validate_manifest(d) == [] for d in docs)
    assert {d["kind"] for d in docs} >= {"NodePool", "KWOKNodeClass", "RayService", "Deployment"}
    assert (out / "dagster-values.yaml").exists() and len(list((out / "dashboards").glob("*.json"))) == 4
    assert (out / "iam_roles.json").exists()

    r = _cli(["platform", "plan", "--target", "eks", "--json"], env)
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout[r.stdout.index("{") :])
    assert plan["target"] == "eks"
    aws = {(a["resource"], a["action"]) for a in plan["plans"]["eks_cluster"] + plan["plans"]["opensearch_domain"]}
    assert aws >= {
        ("iam_role", "create"),
        ("vpc", "create"),
        ("eks_cluster", "create"),
        ("opensearch_domain", "create"),
    }
    assert plan["plans"]["node_pools"] and all(k["kind"] for k in plan["plans"]["node_pools"])

    r = _cli(["platform", "apply", "--target", "cluster", "--no-wait", "--json"], env)  # readiness: test_kube_cluster
    assert r.returncode == 0, r.stderr + r.stdout
    applied = json.loads(r.stdout[r.stdout.index("{") :])["plans"]
    # the plan apply acted on: what it created or found unchanged, nothing it could not place
    kube = [s for step in ("node_pools", "cluster_addons", "platform_workloads") for s in applied[step]]
    assert kube and {s["action"] for s in kube} <= {"create", "unchanged", "update"}
    assert {s["kind"] for s in kube} >= {"NodePool", "KWOKNodeClass", "RayService", "Deployment", "ServiceMonitor"}


def test_eks_profile_uses_the_k8s_executor_and_per_step_pod_sizes():
    from assets.evaluation import rag_eval_run
    from assets.knowledge import chunk_embeddings, specialty_classifier
    from pipelines.profiles import build_executor
    from pipelines.settings import load_settings

    executor = build_executor(load_settings({"AGENTIC_PROFILE": "eks"}))
    assert executor.name == "k8s"
    for asset in (chunk_embeddings, specialty_classifier, rag_eval_run):
        tags = asset.op.tags["dagster-k8s/config"]
        tags = json.loads(tags) if isinstance(tags, str) else tags
        assert tags["container_config"]["resources"]["requests"]["memory"]
    from infra.platform.manifests import render_dagster_values

    values = yaml.safe_load((REPO / "infra" / "helm" / "dagster-values.yaml").read_text())
    assert values == render_dagster_values(load_platform_config())  # the committed values file is the rendered one
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert (
        deployment["dagsterApiGrpcArgs"] == ["-m", "pipelines.definitions"]
        and values["runLauncher"]["type"] == "K8sRunLauncher"
    )
    assert (REPO / "infra" / "Dockerfile").exists() and "pipelines.definitions" in (
        REPO / "infra" / "Dockerfile"
    ).read_text()


def test_platform_assets_render_into_the_state_store(tmp_path):
    """On the local profile the platform group renders and validates; its artifacts go to the state store (on eks
    each step is its own pod), none to the step's disk."""
    import dagster as dg

    from assets.platform import platform_assets, platform_checks
    from pipelines.profiles import build_resources
    from pipelines.settings import load_settings

    res = build_resources(load_settings({"AGENTIC_HOME": str(tmp_path / "home")}))
    before = {p for p in tmp_path.rglob("*") if p.is_file()}
    result = dg.materialize(
        [*platform_assets, *platform_checks],
        resources={"platform": res["platform"]},
        instance=dg.DagsterInstance.ephemeral(),
        selection=[a.key for a in platform_assets if a.key.to_user_string() != "platform_workloads"],
    )
    assert result.success
    state = res["pipeline_state"]
    keys = set(state.list_keys("platform/"))
    assert {
        "platform/iam_roles.json",
        "platform/eks_cluster_request.json",
        "platform/node_pools.yaml",
        "platform/cluster_addons.yaml",
        "platform/helm-charts.yaml",
        "platform/dagster-values.yaml",
        "platform/opensearch_domain_request.json",
        "platform/opensearch_index_template.json",
    } <= keys
    pools = list(yaml.safe_load_all(state.get_bytes("platform/node_pools.yaml").decode()))
    assert pools and all(validate_manifest(d) == [] for d in pools)
    written = {p for p in tmp_path.rglob("*") if p.is_file()} - before
    assert all(str(p).startswith(state.describe()) for p in written), sorted(map(str, written))[:5]


def test_every_ray_cluster_runs_with_a_token_from_a_secret_and_the_steps_carry_it(cfg):
    """KubeRay's authOptions on the RayCluster and every RayService (schema-valid for KubeRay's CRD), the Dagster code
    location and its step pods given RAY_AUTH_MODE=token and the token by Secret reference; no token in any manifest."""
    import json

    from infra.platform.manifests import render_dagster_values

    groups = render_all(cfg, LITELLM, "auto")
    clusters = [
        m["spec"].get("rayClusterConfig", m["spec"])
        for ms in groups.values()
        for m in ms
        if m["kind"] in ("RayCluster", "RayService")
    ]
    assert len(clusters) >= 3
    for spec in clusters:
        assert spec["authOptions"] == {"mode": "token", "secretName": cfg.security.ray_auth_secret}
    values = render_dagster_values(cfg)
    ref = {"secretKeyRef": {"name": cfg.security.ray_auth_secret, "key": "auth_token"}}
    want = [{"name": "RAY_AUTH_MODE", "value": "token"}, {"name": "RAY_AUTH_TOKEN", "valueFrom": ref}]
    code_location = values["dagster-user-deployments"]["deployments"][0]["env"]
    steps = values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]["containerConfig"]["env"]
    for env in (code_location, steps):
        assert [e for e in env if e["name"].startswith("RAY_AUTH")] == want
    everything = json.dumps([groups, values])
    assert '"RAY_AUTH_TOKEN", "value"' not in everything and 'auth_token": "' not in everything


@pytest.mark.unit
def test_the_gateway_configmap_carries_its_key_check_beside_the_config(cfg):
    """On eks LiteLLM loads general_settings.custom_auth from beside /etc/litellm/config.yaml: the module is a second
    key of the same ConfigMap, mounted whole (a wrong key then gets 401, not LiteLLM's 400 "No connected db")."""
    from infra.platform.manifests import litellm_config

    groups = render_all(cfg, litellm_config(cfg), "auto")
    cm = next(m for m in groups["gateway_and_observability"] if m["metadata"]["name"] == "litellm-config")
    config = yaml.safe_load(cm["data"]["config.yaml"])
    module, _, fn = config["general_settings"]["custom_auth"].partition(".")
    assert fn == "user_api_key_auth" and f"async def {fn}(" in cm["data"][f"{module}.py"]
    litellm = next(
        m
        for m in groups["gateway_and_observability"]
        if m["kind"] == "Deployment" and "litellm" in m["metadata"]["name"]
    )
    pod = litellm["spec"]["template"]["spec"]
    mount = pod["containers"][0]["volumeMounts"][0]
    assert mount["mountPath"] == "/etc/litellm" and "subPath" not in mount
    assert pod["volumes"][0]["configMap"]["name"] == "litellm-config"
