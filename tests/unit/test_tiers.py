"""The tiers guard themselves: a unit test may not start a process (tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess

import pytest


def test_a_unit_test_that_starts_a_process_fails_naming_its_tier():
    with pytest.raises(AssertionError, match="is in the unit tier but starts .*mark it contract or e2e"):
        subprocess.run(["true"], check=False)
    with pytest.raises(AssertionError, match="is in the unit tier"):
        os.system("true")


@pytest.mark.contract
def test_another_tier_may_start_one():
    assert subprocess.run(["true"], check=False).returncode == 0


def test_make_tests_two_lanes_split_by_module_and_guard_a_side_module_that_takes_a_stack_fixture():
    from types import SimpleNamespace

    from tests.conftest import _check_lanes, lane_of

    assert (
        lane_of("tests/unit/test_cost.py::test_x") == lane_of("tests/contract/test_kube_cluster.py::test_y") == "side"
    )
    assert lane_of("tests/integration/test_serving_agents.py::test_z") == "stack"
    assert lane_of("tests/e2e/test_cli.py::test_run_then_search") == "side"
    side = SimpleNamespace(nodeid="tests/e2e/test_cli.py::test_new", fixturenames=["cli_home", "serving_stack"])
    with pytest.raises(pytest.UsageError, match="move tests/e2e/test_cli.py out of SIDE_MODULES"):
        _check_lanes([side])
    _check_lanes([SimpleNamespace(nodeid="tests/integration/test_retrieval.py::t", fixturenames=["indexed_home"])])


@pytest.mark.contract
def test_with_lanes_each_lane_runs_whole_on_one_worker():
    """`make test`'s scheduler, for real: two workers over pure tests from two stack and two side modules. Without it
    xdist spreads both lanes over both workers (and the heavy fixtures would be built twice)."""
    import re
    import sys

    from tests.conftest import REPO, lane_of

    modules = ["tests/integration/test_evaluation.py", "tests/integration/test_progress.py"]  # stack
    modules += ["tests/integration/test_s3_intake.py", "tests/integration/test_ray_jobs.py"]  # side
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}  # not the outer run's junit file
    args = [sys.executable, "-m", "pytest", "-n", "2", "--lanes", "-m", "unit", "-v", "-p", "no:cacheprovider"]
    out = subprocess.run(args + modules, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    ran = re.findall(r"\[(gw\d)\] .*?PASSED (tests/\S+)", out.stdout)
    workers = {lane: {w for w, t in ran if lane_of(t) == lane} for lane in ("stack", "side")}
    assert len(ran) >= 8 and {len(w) for w in workers.values()} == {1}, ran
    assert workers["stack"] != workers["side"], ran


def test_the_llm_usage_report_reads_llama_servers_counters_and_survives_a_replaced_server():
    from tests.llm_usage import GENERATED, PROMPT, delta, parse, summary

    text = (
        "# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.\n"
        "# TYPE llamacpp:prompt_tokens_total counter\n"
        "llamacpp:prompt_tokens_total 1864\n"
        "llamacpp:prompt_seconds_total 13.9\n"
        "llamacpp:tokens_predicted_total 2.4e+02\n"
        "llamacpp:requests_processing 1\n"
    )
    assert parse(text) == {PROMPT: 1864, GENERATED: 240}
    assert delta({PROMPT: 1000, GENERATED: 100}, {PROMPT: 1864, GENERATED: 240}) == {PROMPT: 864, GENERATED: 140}
    # the server was killed and replaced during the test: what the new one counted, never a negative number
    assert delta({PROMPT: 5000, GENERATED: 900}, {PROMPT: 700, GENERATED: 60}) == {PROMPT: 700, GENERATED: 60}
    lines = summary({"a::t1": {PROMPT: 10, GENERATED: 2}, "b::t2": {PROMPT: 900, GENERATED: 50}}, top=1)
    assert lines[0].startswith("the served LLM's tokens: 910 prompt") and "b::t2" in lines[1] and len(lines) == 2
    assert summary({}) == []
