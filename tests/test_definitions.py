"""The code location loads, for both profiles, and every asset is documented."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.definitions import build_definitions
from pipelines.settings import load_settings
from tests.conftest import REPO


@pytest.mark.parametrize("profile", ["local", "eks"])
def test_definitions_load(profile, tmp_path):
    defs = build_definitions(load_settings({"AGENTIC_PROFILE": profile, "AGENTIC_HOME": str(tmp_path)}))
    repo = defs.get_repository_def()
    job = defs.resolve_job_def("knowledge_job")
    assert {n.name for n in job.nodes_in_topological_order} >= {"document_inventory", "vector_index"}
    graph = defs.resolve_asset_graph()
    knowledge = [k for k in graph.get_all_asset_keys() if graph.get(k).group_name == "knowledge"]
    assert len(knowledge) == 5
    for key in knowledge:
        node = graph.get(key)
        assert node.description and node.kinds and node.owners, key
    assert len(list(graph.asset_check_keys)) >= 3
    assert repo.get_top_level_resources()["vector_store"]
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


def test_workspace_loads_with_dagster_cli(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "AGENTIC_HOME": str(tmp_path / "home")}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
