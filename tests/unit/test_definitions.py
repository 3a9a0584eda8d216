"""The code location loads, for both profiles, and every asset is documented."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from pipelines.definitions import build_definitions
from pipelines.profiles import build_resources
from pipelines.settings import load_settings
from tests.conftest import REPO


@pytest.mark.parametrize("profile", ["local", "eks"])
def test_definitions_load(profile, tmp_path):
    defs = build_definitions(load_settings({"AGENTIC_PROFILE": profile, "AGENTIC_HOME": str(tmp_path)}))
    repo = defs.get_repository_def()
    job = defs.resolve_job_def("knowledge_job")
    assert {n.name for n in job.nodes_in_topological_order} >= {"document_inventory", "document_access", "vector_index"}
    graph = defs.resolve_asset_graph()
    knowledge = [k for k in graph.get_all_asset_keys() if graph.get(k).group_name == "knowledge"]
    assert len(knowledge) == 8  # document_access among them
    for key in knowledge:
        node = graph.get(key)
        assert node.description and node.kinds and node.owners, key
    assert len(list(graph.asset_check_keys)) >= 3
    assert repo.get_top_level_resources()["vector_store"]
    # image descriptions: the gateway's vision route on eks; none can be had offline on local
    vision = defs.resources["vision"]
    assert type(vision).__name__ == {"local": "NoVision", "eks": "GatewayVision"}[profile]
    assert vision.available is (profile == "eks")
    # answers' traces are read back from this home's Phoenix (local) or Langfuse (eks)
    assert (
        type(defs.resources["traces"]).__name__ == {"local": "PhoenixTraceStore", "eks": "LangfuseTraceStore"}[profile]
    )
    assert defs.resolve_sensor_def("new_documents_sensor").job_name == "knowledge_job"


def test_executor_follows_profile(tmp_path):
    local = build_definitions(load_settings({"AGENTIC_HOME": str(tmp_path)}))
    eks = build_definitions(load_settings({"AGENTIC_PROFILE": "eks", "AGENTIC_HOME": str(tmp_path)}))
    assert local.resolve_job_def("knowledge_job").executor_def.name == "in_process"
    assert eks.resolve_job_def("knowledge_job").executor_def.name == "k8s"


def test_settings_validation():
    with pytest.raises(ValueError, match="AGENTIC_PROFILE"):
        load_settings({"AGENTIC_PROFILE": "prod"})
    with pytest.raises(ValueError, match="AGENTIC_CORPUS_LIMIT"):
        load_settings({"AGENTIC_CORPUS_LIMIT": "lots"})
    s = load_settings({})
    assert s.profile == "local" and s.corpus_limit == 2000 and s.home == Path(".agentic").resolve()
    with pytest.raises(ValueError, match="AGENTIC_LLM_SPECULATIVE"):
        load_settings({"AGENTIC_LLM_SPECULATIVE": "eagle"})
    assert s.llm_speculative == "" and load_settings({"AGENTIC_LLM_SPECULATIVE": "ngram"}).llm_speculative == "ngram"
    serving = build_resources(load_settings({"AGENTIC_LLM_SPECULATIVE": "ngram"}))["model_serving"]
    assert serving.speculative == "ngram" and build_resources(s)["model_serving"].speculative == ""


@pytest.mark.e2e
def test_workspace_loads_with_dagster_cli(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "AGENTIC_HOME": str(tmp_path / "home")}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_serving_group_is_documented_and_has_its_job(tmp_path):
    defs = build_definitions(load_settings({"AGENTIC_HOME": str(tmp_path)}))
    graph = defs.resolve_asset_graph()
    serving = {k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).group_name == "serving"}
    assert serving == {"model_artifacts", "model_deployments", "model_gateway", "serving_capacity", "capacity_plan"}
    for key in serving:
        node = graph.get(dg.AssetKey(key))
        assert node.description and node.kinds and node.owners
    job = defs.resolve_job_def("serving_job")
    order = [n.name for n in job.nodes_in_topological_order if n.name in serving]
    assert order == ["model_artifacts", "model_deployments", "model_gateway"]  # `agentic up` never runs a load test
    assert [n.name for n in defs.resolve_job_def("capacity_job").nodes_in_topological_order] == ["serving_capacity"]


@pytest.mark.usefixtures("crds")
def test_eks_profile_renders_valid_model_deployments_and_gateway_config(tmp_path, monkeypatch):
    """On eks the serving assets render (no cluster here): RayServices and the RayCluster validate against KubeRay's CRDs."""
    import yaml

    from assets.serving import serving_assets, serving_checks
    from infra.validate import validate_manifest
    from pipelines.profiles import build_resources
    from resources.state_store import LocalStateStore

    monkeypatch.setenv("AGENTIC_GATEWAY_KEY", "k" * 32)
    monkeypatch.setenv(
        "AGENTIC_RAY_ADDRESS", "ray://agentic-data-head-svc.agentic:10001"
    )  # never dialled: kuberay renders
    monkeypatch.setenv("AGENTIC_EMBED_MODEL_PATH", "/models/arctic-embed-s/model.onnx")
    monkeypatch.setenv("AGENTIC_EMBED_TOKENIZER_PATH", "/models/arctic-embed-s/tokenizer.json")
    res = build_resources(load_settings({"AGENTIC_PROFILE": "eks", "AGENTIC_HOME": str(tmp_path)}))
    result = dg.materialize(
        [*serving_assets, *serving_checks],
        # the eks state store is a bucket; this test renders only, so a folder stands in for it
        resources={
            **{k: res[k] for k in ("model_serving", "gateway", "embedder")},
            "pipeline_state": LocalStateStore(root=str(tmp_path / "state")),
        },
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    # no cluster here: both checks send their real requests to the in-cluster names and fail, saying so
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert set(checks) == {"endpoints_answer", "gateway_routes_models"}
    for check in checks.values():
        assert not check.passed and check.metadata["chat"].value["unreachable"].startswith("http://"), check.metadata
    from assets.serving import MANIFEST_KEY

    state = LocalStateStore(root=str(tmp_path / "state"))
    manifests = list(yaml.safe_load_all(state.get_bytes(MANIFEST_KEY).decode()))
    assert {m["kind"] for m in manifests} == {"RayService", "RayCluster"}
    assert all(validate_manifest(m) == [] for m in manifests)
    apps = {
        m["metadata"]["name"]: yaml.safe_load(m["spec"]["serveConfigV2"])["applications"][0]
        for m in manifests
        if m["kind"] == "RayService"
    }
    assert apps["agentic-llm"]["import_path"] == "ray.serve.llm:build_openai_app"
    assert apps["agentic-embed"]["import_path"] == "resources.serve_apps:embedding_app"
    vision_args = apps["agentic-vision"]["args"]["llm_configs"][0]
    assert apps["agentic-vision"]["import_path"] == "ray.serve.llm:build_openai_app"
    assert vision_args["model_loading_config"]["model_source"] == "Qwen/Qwen2.5-VL-7B-Instruct"
    gateway = yaml.safe_load((tmp_path / "serving" / "gateway" / "litellm.yaml").read_text())
    assert gateway["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"
    # the key check LiteLLM loads from beside its config (a wrong key: 401, not 400), there on disk too
    assert gateway["general_settings"]["custom_auth"] == "agentic_auth.user_api_key_auth"
    assert (tmp_path / "serving" / "gateway" / "agentic_auth.py").read_text().count("compare_digest") == 1
    assert {m["model_name"] for m in gateway["model_list"]} >= {"chat", "judge", "vision"}
    vision_route = next(m for m in gateway["model_list"] if m["model_name"] == "vision")
    assert vision_route["litellm_params"]["api_base"] == "http://agentic-vision-serve-svc.agentic:8000/vision/v1"
    judge = next(m for m in gateway["model_list"] if m["model_name"] == "judge")
    assert judge["litellm_params"]["model"].startswith("bedrock/")  # eks: the judge is a Bedrock model through LiteLLM
    assert "k" * 32 not in (tmp_path / "serving" / "gateway" / "litellm.yaml").read_text()


def test_every_group_is_documented_and_wired(tmp_path):
    defs = build_definitions(load_settings({"AGENTIC_HOME": str(tmp_path)}))
    graph = defs.resolve_asset_graph()
    groups: dict[str, set[str]] = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        groups.setdefault(node.group_name, set()).add(key.to_user_string())
        assert node.description and node.kinds and node.owners, key
    assert groups["evaluation"] == {
        "eval_questions",
        "eval_questions_hard",
        "rag_eval_run",
        "eval_history",
        "serving_index",
        "feedback_candidates",
    }
    evaluation = {n.name for n in defs.resolve_job_def("evaluation_job").nodes_in_topological_order}
    assert "feedback_candidates" in evaluation and "eval_history" in evaluation
    assert groups["platform"] == {
        "platform_preflight",
        "eks_cluster",
        "node_pools",
        "cluster_addons",
        "platform_workloads",
        "opensearch_domain",
    }
    assert groups["cost"] == {
        "price_book",
        "bill_of_materials",
        "monthly_cost_report",
        "unit_economics",
        "actual_spend",
        "simulated_month",
        "answer_costs",
    }
    # the simulation needs a live cluster, answer_costs the services' trace store: never in the monthly cost_job
    cost_nodes = {n.name for n in defs.resolve_job_def("cost_job").nodes_in_topological_order}
    assert {"simulated_month", "answer_costs"}.isdisjoint(cost_nodes) and {
        "monthly_cost_report",
        "capacity_plan",
    } <= cost_nodes
    simulation = [n.name for n in defs.resolve_job_def("simulation_job").nodes_in_topological_order]
    assert simulation == ["capacity_plan", "simulated_month"]  # the month's LLM workers are sized by the plan
    checks = {k.name: k for k in graph.asset_check_keys}
    assert {"index_promotion_gate", "eval_quality_floors", "iam_least_privilege", "opensearch_domain_secure"} <= set(
        checks
    )
    assert groups["governance"] == {"audit_trail", "api_keys_inventory"}
    assert groups["observability"] == {"monitoring_config"} and "alerts_have_runbooks" in checks
    platform = {n.name for n in defs.resolve_job_def("platform_job").nodes_in_topological_order}
    assert {"monitoring_config", "platform_workloads"} <= platform  # `agentic platform render` ships the dashboards
    assert defs.resolve_schedule_def("daily_governance").job_name == "governance_job"
    assert defs.resolve_schedule_def("weekly_evaluation").job_name == "evaluation_job"
    assert defs.resolve_schedule_def("monthly_cost_report").job_name == "cost_job"
    assert defs.resolve_sensor_def("evaluate_after_reembedding").job_name == "evaluation_job"
    rebuild = {n.name for n in defs.resolve_job_def("rebuild_index_job").nodes_in_topological_order}
    assert {"vector_index", "rag_eval_run", "serving_index"} <= rebuild
    assert "feedback_candidates" not in rebuild  # user feedback is not part of an index rebuild
