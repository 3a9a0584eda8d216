"""How the embedding stage groups dirty shards into calls (resources.data_path.shards_per_call): about CALL_CHUNKS
chunks a call, and never one call for a whole run, so a run killed mid-embedding keeps what finished."""

from __future__ import annotations

from resources.data_path import CALL_CHUNKS, CALLS_PER_ACTOR, shards_per_call


def test_a_small_run_is_at_least_two_calls_per_actor():
    # 16 shards of ~20 new chunks on one actor: was one call of all 16; now two of 8
    assert shards_per_call([20] * 16, actors=1) == 8
    assert shards_per_call([20] * 16, actors=2) == 16 // (2 * CALLS_PER_ACTOR)
    assert shards_per_call([5], actors=1) == 1


def test_a_large_run_is_bounded_by_chunks_per_call():
    rows = [250] * 32
    per_call = shards_per_call(rows, actors=1)
    assert per_call == CALL_CHUNKS // 250 and per_call * 250 <= CALL_CHUNKS
