"""The index generation lifecycle: one pure state machine."""

from __future__ import annotations

import pytest

from core.generations import Candidate, TransitionError, on_build, rebuild_name, target_generation, transition

BASE = "minilm__abc"


def test_first_generation_and_a_new_lineage_serve_at_once():
    d = on_build(BASE, BASE, None, None)
    assert d.promote_now and d.candidate is None
    pending = Candidate(f"{BASE}_r1", "pending", "", 0)
    d = on_build("arctic__def", "arctic__def", BASE, pending)
    assert d.promote_now and d.candidate.status == "superseded" and d.candidate.generation == f"{BASE}_r1"


def test_a_rebuild_is_a_candidate_until_the_gate_decides():
    rebuilt = rebuild_name(BASE, now=0)
    d = on_build(rebuilt, BASE, BASE, None)
    assert not d.promote_now and d.candidate.status == "pending" and d.candidate.generation == rebuilt
    # maintained again: still the same pending candidate, no new record
    assert on_build(rebuilt, BASE, BASE, d.candidate).candidate is None
    assert target_generation(BASE, BASE, d.candidate, lambda g: True) == rebuilt
    assert target_generation(BASE, BASE, d.candidate, lambda g: False) == BASE  # its index is gone
    promoted = transition(d.candidate, "promoted", "gate passed")
    assert promoted.status == "promoted"
    with pytest.raises(TransitionError):
        transition(promoted, "rejected", "too late")
    assert on_build(BASE, BASE, BASE, None).candidate is None and not on_build(BASE, BASE, BASE, None).promote_now
