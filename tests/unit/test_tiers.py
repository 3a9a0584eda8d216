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
