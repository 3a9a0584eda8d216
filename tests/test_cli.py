"""End-to-end through the `agentic` console script, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.corpus import ARTICLE_TABLE, load_sample
from core.documents import parse_document
from tests.conftest import REPO

AGENTIC = str(Path(sys.executable).parent / "agentic")


def agentic(*args, env, check=True):
    proc = subprocess.run([AGENTIC, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"agentic {' '.join(args)} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory, ray_address, base_settings):
    env = {
        **os.environ,
        "AGENTIC_HOME": str(tmp_path_factory.mktemp("cli-home")),
        "AGENTIC_CORPUS_LIMIT": "40",
        "AGENTIC_RAY_ADDRESS": ray_address,
    }
    env["AGENTIC_CACHE"] = str(base_settings.cache)
    return env


@pytest.mark.e2e
def test_search_before_any_run_says_what_to_do(cli_env):
    proc = agentic("search", "anything", env=cli_env, check=False)
    assert proc.returncode == 2
    assert "agentic run" in proc.stderr


@pytest.mark.e2e
def test_run_then_search(cli_env, base_settings):
    proc = agentic("run", env=cli_env)
    assert "seed: 40 PubMed articles" in proc.stdout
    assert "knowledge_job run" in proc.stdout and "succeeded" in proc.stdout
    assert "check index_vectors_valid" in proc.stdout and "FAILED" not in proc.stdout

    sample = load_sample(base_settings.pubmed_dir / ARTICLE_TABLE, 40)
    pmid, data = sample[7]
    title = parse_document(pmid, data).title
    for mode in ("dense", "hybrid"):
        out = json.loads(agentic("search", title, "--k", "3", "--mode", mode, "--json", env=cli_env).stdout)
        assert out["mode"] == mode and len(out["hits"]) == 3
        assert pmid in [h["doc_id"] for h in out["hits"]], (mode, title, out["hits"])
    text = agentic("search", title, "--k", "2", env=cli_env).stdout
    assert f"[{pmid}]" in text

    # a second run is incremental: nothing to embed
    proc = agentic("run", env=cli_env)
    assert '"embedded_this_run": 0' in proc.stdout
    status = json.loads(agentic("status", env=cli_env).stdout)
    assert status["documents"] == 40 and status["serving_generation"] in status["generations"]


@pytest.mark.e2e
def test_bad_settings_are_reported(cli_env):
    proc = agentic("status", env={**cli_env, "AGENTIC_PROFILE": "staging"}, check=False)
    assert proc.returncode == 2 and "AGENTIC_PROFILE" in proc.stderr


@pytest.mark.e2e
def test_run_and_search_on_opensearch(cli_env, opensearch_url, tmp_path, base_settings):
    """`AGENTIC_VECTOR_STORE=opensearch make run`: the CLI finds the node already answering on its port and indexes into it."""
    port = opensearch_url.rsplit(":", 1)[1]
    env = {
        **cli_env,
        "AGENTIC_HOME": str(tmp_path / "home"),
        "AGENTIC_VECTOR_STORE": "opensearch",
        "AGENTIC_OPENSEARCH_PORT": port,
        "AGENTIC_CORPUS_LIMIT": "15",
    }
    proc = agentic("run", env=env)
    assert "succeeded" in proc.stdout and "FAILED" not in proc.stdout
    assert "starting OpenSearch" not in proc.stdout  # reused the running node
    pmid, data = load_sample(base_settings.pubmed_dir / ARTICLE_TABLE, 15)[4]
    out = json.loads(agentic("search", parse_document(pmid, data).title, "--k", "3", "--json", env=env).stdout)
    assert pmid in [h["doc_id"] for h in out["hits"]]
    status = json.loads(agentic("opensearch", "status", env=env).stdout)
    assert status["healthy"] and status["url"] == opensearch_url
