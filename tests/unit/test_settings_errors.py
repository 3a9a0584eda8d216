"""A missing setting of the eks profile stops every CLI command with one line that names it, says what it is for and
how to set it (exit 2, no traceback unless --debug); the table of purposes covers every variable a profile reads."""

from __future__ import annotations

import argparse

import pytest

from pipelines.cli import build_parser, main
from pipelines.env_check import ENV_PURPOSE, required_env
from pipelines.profiles import build_resources
from pipelines.settings import load_settings

# one harmless invocation per command; a command missing here fails the test below
ARGV = {
    "setup-data": None,  # unpacks the cache before any profile's resources exist: no settings but the cache's
    "seed": ["seed", "--limit", "1"],
    "run": ["run"],
    "search": ["search", "anything"],
    "status": ["status"],
    "opensearch": ["opensearch", "status"],
    "cluster": ["cluster", "status"],
    "ui": ["ui"],
    "up": ["up"],
    "down": ["down"],
    "serve": ["serve"],
    "ask": ["ask", "anything"],
    "keys": ["keys"],
    "audit": ["audit"],
    "eval": ["eval"],
    "platform": ["platform", "render", "--out", "rendered"],
    "cost": ["cost"],
}


def _eks_env(tmp_path) -> dict[str, str]:
    env = {"AGENTIC_PROFILE": "eks", "AGENTIC_HOME": str(tmp_path / "home")}
    return env | {name: f"value-of-{name.lower()}" for name in required_env(build_resources(load_settings(env)))}


def _commands() -> set[str]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices)


@pytest.mark.unit
def test_every_variable_a_profile_reads_says_what_it_is_for(tmp_path):
    for profile in ("local", "eks"):
        settings = load_settings({"AGENTIC_PROFILE": profile, "AGENTIC_HOME": str(tmp_path)})
        names = required_env(build_resources(settings))
        assert names and names <= set(ENV_PURPOSE), names - set(ENV_PURPOSE)
    assert {"AGENTIC_DOCUMENT_BUCKET", "AGENTIC_RAY_JOBS_ADDRESS", "LANGFUSE_SECRET_KEY"} <= names


@pytest.mark.unit
def test_each_missing_eks_variable_stops_each_command_with_one_line(tmp_path, monkeypatch, capsys):
    assert _commands() == set(ARGV), _commands() ^ set(ARGV)
    monkeypatch.chdir(tmp_path)
    full = _eks_env(tmp_path)
    for name in sorted(set(full) - {"AGENTIC_PROFILE", "AGENTIC_HOME"}):
        for command, argv in ARGV.items():
            if argv is None:
                continue
            for key, value in full.items():
                monkeypatch.setenv(key, value)
            monkeypatch.delenv(name)
            assert main(argv) == 2, (name, command)
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and "Traceback" not in err, err
            assert err.startswith(f"error: {name} is not set") and ENV_PURPOSE[name] in err, err
            assert f"export {name}=" in err


@pytest.mark.unit
def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for key, value in _eks_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AGENTIC_DOCUMENT_BUCKET", "")  # empty is missing too
    with pytest.raises(ValueError, match="AGENTIC_DOCUMENT_BUCKET is not set"):
        main(["--debug", "status"])
