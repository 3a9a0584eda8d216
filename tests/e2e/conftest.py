"""The end-to-end tier's shared home: one `agentic run` from scratch, in a terminal as a user runs it, that the CLI,
progress-bar and Dagster UI tests read (each of them used to run its own)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.helpers import AGENTIC, cli_env, run_in_pty

CORPUS = 40


@pytest.fixture(scope="session")
def cli_home(tmp_path_factory, ray_address, base_settings):
    """A home after its first `agentic run` (40 articles) in a pseudo-terminal: its env and what the terminal showed."""
    home = tmp_path_factory.mktemp("cli-home")
    env = cli_env(home, corpus_limit=CORPUS, ray_address=ray_address, cache=base_settings.cache)
    env["COLUMNS"] = "120"
    rc, out = run_in_pty([AGENTIC, "run", "--sample-query", ""], env, timeout=600)
    assert rc == 0, out[-3000:]
    return SimpleNamespace(home=home, env=env, first_run=out)
