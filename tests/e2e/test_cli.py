"""End-to-end through the `agentic` console script, as a user runs it."""

from __future__ import annotations

import json
import re

import pytest

from core.corpus import ARTICLE_TABLE, load_sample
from core.documents import parse_document
from tests.e2e.conftest import CORPUS
from tests.helpers import agentic, cli_env


@pytest.fixture(scope="module")
def empty_home_env(tmp_path_factory, ray_address, base_settings):
    return cli_env(
        tmp_path_factory.mktemp("empty-home"), corpus_limit=40, ray_address=ray_address, cache=base_settings.cache
    )


@pytest.mark.e2e
def test_search_before_any_run_says_what_to_do(empty_home_env):
    proc = agentic("search", "anything", env=empty_home_env, check=False)
    assert proc.returncode == 2
    assert "agentic run" in proc.stderr


@pytest.mark.e2e
def test_run_then_search(cli_home, base_settings):
    """The shared home's first `agentic run` (from scratch, in a terminal), then searches as a user types them."""
    first, cli_env = cli_home.first_run, cli_home.env
    assert "seed: 40 PubMed articles" in first
    assert "knowledge_job run" in first and "succeeded" in first
    assert "check index_vectors_valid" in first and "FAILED" not in first

    sample = load_sample(base_settings.pubmed_dir / ARTICLE_TABLE, 40)
    pmid, data = sample[7]
    title = parse_document(pmid, data).title
    for mode in ("dense", "hybrid"):
        out = json.loads(agentic("search", title, "--k", "3", "--mode", mode, "--json", env=cli_env).stdout)
        assert out["mode"] == mode and len(out["hits"]) == 3
        assert pmid in [h["doc_id"] for h in out["hits"]], (mode, title, out["hits"])
    text = agentic("search", title, "--k", "2", env=cli_env).stdout
    assert f"[{pmid}]" in text

    status = json.loads(agentic("status", env=cli_env).stdout)
    assert status["documents"] == 40 and status["serving_generation"] in status["generations"]


@pytest.mark.e2e
def test_bad_settings_are_reported(empty_home_env):
    proc = agentic("status", env={**empty_home_env, "AGENTIC_PROFILE": "staging"}, check=False)
    assert proc.returncode == 2 and "AGENTIC_PROFILE" in proc.stderr
    # the eks profile without its bucket: one line naming it, not Dagster's 76-line traceback
    env = {k: v for k, v in empty_home_env.items() if k != "AGENTIC_DOCUMENT_BUCKET"} | {"AGENTIC_PROFILE": "eks"}
    proc = agentic("platform", "render", "--out", "rendered", env=env, check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: ") and "is not set" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.e2e
def test_run_and_search_on_opensearch(cli_home, opensearch_url, tmp_path, base_settings):
    """`AGENTIC_VECTOR_STORE=opensearch make run` on a copy of the shared home: the CLI finds the node already answering
    on its port and builds its index there from the vectors the home already has."""
    import shutil

    home = tmp_path / "home"
    for part in ("documents", "state", "index"):
        shutil.copytree(cli_home.home / part, home / part)
    port = opensearch_url.rsplit(":", 1)[1]
    env = {
        **cli_home.env,
        "AGENTIC_HOME": str(home),
        "AGENTIC_VECTOR_STORE": "opensearch",
        "AGENTIC_OPENSEARCH_PORT": port,
    }
    proc = agentic("run", "--sample-query", "", env=env)
    assert "succeeded" in proc.stdout and "FAILED" not in proc.stdout
    assert "starting OpenSearch" not in proc.stdout  # reused the running node
    assert '"embedded_this_run": 0' in proc.stdout
    pmid, data = load_sample(base_settings.pubmed_dir / ARTICLE_TABLE, CORPUS)[4]
    out = json.loads(agentic("search", parse_document(pmid, data).title, "--k", "3", "--json", env=env).stdout)
    assert pmid in [h["doc_id"] for h in out["hits"]]
    status = json.loads(agentic("opensearch", "status", env=env).stdout)
    assert status["healthy"] and status["url"] == opensearch_url


@pytest.mark.e2e
def test_agentic_run_shows_a_bar_on_a_terminal_and_lines_in_a_pipe(cli_home):
    out = cli_home.first_run  # the shared home's first run, in a pseudo-terminal
    frames = re.findall(r"\r(\[[#-]{20}\] (\d+)/(\d+) steps[^\r\n\x1b]*)\x1b\[K", out)
    total = int(frames[0][2])
    assert total >= 8 and len(frames) >= total  # redrawn in place as steps start, progress and finish
    assert [int(f[1]) for f in frames] == sorted(int(f[1]) for f in frames)  # steps done only go up
    assert any(re.search(r"parsed_documents: parsing: \d+/\d+ shards", f[0]) for f in frames)
    assert any("chunk_embeddings: embedding: " in f[0] and "chunks/s" in f[0] for f in frames)
    assert re.search(rf"\r\[#{{20}}\] {total}/{total} steps, succeeded in \d+ s\x1b\[K\r?\n", out)
    assert "knowledge_job run" in out and "succeeded" in out

    # in a pipe (CI logs): one plain line per finished step, no carriage returns; a second run embeds nothing
    proc = agentic("run", "--sample-query", "", env=cli_home.env, timeout=300)
    assert "\r" not in proc.stdout and "\x1b" not in proc.stdout
    steps = re.findall(rf"^\[(\d+)/{total}\] (\w+) (done|skipped) in \d+ s", proc.stdout, re.M)
    assert [int(n) for n, _, _ in steps] == list(range(1, total + 1))
    assert {"parsed_documents", "chunk_embeddings", "vector_index"} <= {s for _, s, _ in steps}
    assert re.search(rf"^{total}/{total} steps, succeeded in \d+ s$", proc.stdout, re.M)
    assert '"embedded_this_run": 0' in proc.stdout
