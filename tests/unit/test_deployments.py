"""Resources by deployment (``pipelines.profiles.DEPLOYMENTS``): both deployments build the same keys, each an
implementation of one interface; the few per-deployment choices are data; web search and the gateway are chosen as
implementations, never by a mode checked inside them."""

from __future__ import annotations

import dataclasses

import dagster as dg
import pytest
import yaml

from agents.web_search import HttpWebSearch, NoWebSearch, StdioWebSearch, web_search_for
from pipelines.profiles import DEPLOYMENTS, build_resources, deployment
from pipelines.settings import PROFILES, load_settings
from resources.gateway import ClusterGateway, LocalGateway
from resources.retrieval import RetrieverResource


def _resources(profile: str, home) -> dict:
    return build_resources(load_settings({"AGENTIC_PROFILE": profile, "AGENTIC_HOME": str(home)}))


def test_each_deployment_builds_the_same_keys_each_an_implementation_of_one_interface(tmp_path):
    assert set(DEPLOYMENTS) == set(PROFILES)
    local, eks = _resources("local", tmp_path), _resources("eks", tmp_path)
    assert set(local) == set(eks)
    for key in local:
        shared = [c for c in type(local[key]).__mro__ if c in type(eks[key]).__mro__]
        assert shared[0] is not dg.ConfigurableResource, f"{key}: {type(local[key])} and {type(eks[key])}"
    assert isinstance(local["gateway"], LocalGateway) and isinstance(eks["gateway"], ClusterGateway)


def test_an_unknown_deployment_is_named_in_the_error(tmp_path):
    settings = dataclasses.replace(load_settings({"AGENTIC_HOME": str(tmp_path)}), profile="gke")
    with pytest.raises(ValueError, match="unknown profile 'gke'"):
        deployment(settings)


def test_web_search_is_picked_as_an_implementation():
    off = web_search_for("off")
    assert isinstance(off, NoWebSearch) and off.search("anything")["available"] is False
    assert isinstance(web_search_for("http", "http://127.0.0.1:9/mcp"), HttpWebSearch)
    assert isinstance(web_search_for("stdio"), StdioWebSearch)  # nothing starts before the first search
    with pytest.raises(ValueError, match="needs the MCP server's URL"):
        web_search_for("http")
    with pytest.raises(ValueError, match="unknown web search 'tavily'"):
        web_search_for("tavily")


def test_the_cluster_gateway_writes_its_config_and_starts_nothing(tmp_path):
    gateway = ClusterGateway(
        url="http://litellm.agentic:4000", master_key="sk-not-in-the-file", state_dir=str(tmp_path)
    )
    config = {"model_list": [], "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"}}
    deployed = gateway.deploy(config)
    assert deployed["mode"] == "rendered" and "url" not in deployed
    written = (tmp_path / "gateway" / "litellm.yaml").read_text()
    assert deployed["config"] == str(tmp_path / "gateway" / "litellm.yaml") and yaml.safe_load(written) == config
    assert "sk-not-in-the-file" not in written
    assert not (tmp_path / "gateway" / "litellm.pid").exists()
    gateway.stop()  # `agentic down` on any deployment: nothing of its runs here


def test_the_answer_service_is_built_over_the_retriever_and_gateway_it_is_given(tmp_path):
    local, eks = _resources("local", tmp_path), _resources("eks", tmp_path)
    # llama-server answers the orchestrator with a JSON action; vLLM parses tool calls
    assert local["answer_service"].config().tool_mode == "json_action"
    assert eks["answer_service"].config(k=8).tool_mode == "native" and eks["answer_service"].config(k=8).k == 8
    # a deployment that swaps its retriever (as the pod-per-step test does) gets answers over the swapped one
    swapped = RetrieverResource(vector_store=local["vector_store"], embedder=local["embedder"])
    answers = local["answer_service"]
    service = answers.build(swapped, local["gateway"], local["pipeline_state"], answers.config(web_search="off"))
    try:
        assert service.retriever is swapped and service.gateway is local["gateway"]
        assert isinstance(service.web, NoWebSearch) and service.state == local["pipeline_state"]
    finally:
        service.close()
