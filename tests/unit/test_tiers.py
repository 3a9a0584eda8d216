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
