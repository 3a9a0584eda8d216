"""core.capacity_sim: llama-server's scheduler driven by the planner's engine, on cases whose timings follow by hand."""

import pytest

from core.capacity_plan import Engine
from core.capacity_sim import LAUNCH_S, measured_like, sampled, simulate, speed_of, spread

# 100 prompt tokens/s, a decode step of 40 ms per sequence in it (compute-bound, as on this CPU), two slots
ENGINE = Engine(base_ms=10, per_seq_ms=0, prefill_tokens_per_s=100, max_batch=2, compute_per_seq_ms=40)
EXACT = {"turnaround_s": 0.0, "launch_s": 0.0}  # no client or launch time: timings by hand


def test_a_lone_request_prefills_then_decodes_one_token_per_step():
    (r,) = simulate(ENGINE, [[500]], output=11, concurrency=1, **EXACT)
    assert r.first - r.arrival == pytest.approx(5.0)  # 500 tokens at 100/s; the first token comes from that batch
    assert r.end - r.first == pytest.approx(10 * 0.040)


def test_prompts_that_arrive_together_are_prefilled_as_one_batch():
    a, b = simulate(ENGINE, [[300], [500]], output=2, concurrency=2, **EXACT)
    assert a.first == b.first == pytest.approx(8.0)  # both wait for the whole batch of 800 tokens
    assert a.end == b.end == pytest.approx(8.0 + 0.080)  # then decode together, 2 x 40 ms a step


def test_a_prompt_stalls_the_slot_that_is_decoding_and_they_finish_in_lockstep():
    # the second session opens 2 s in, during the first's prefill; its 400-token prompt (with the first's one decode
    # token) takes 4.01 s, which stalls the first; then they decode side by side and end one step apart
    a, b = simulate(ENGINE, [[500], [400]], output=51, concurrency=2, ramp_s=2.0, **EXACT)
    assert (a.first, b.arrival) == (pytest.approx(5.0), 2.0)
    assert b.first == pytest.approx(5.0 + 4.01)
    assert a.end == pytest.approx(b.first + 49 * 0.080)
    assert b.end - a.end == pytest.approx(0.040)  # not the 2 s they started apart


def test_replies_that_end_one_batch_apart_send_prompts_that_are_prefilled_together():
    # as above, the first session is one token ahead, so its reply ends one decode step before the second's: its next
    # prompt reaches the server during that step, and the second's arrives while the server launches the first's
    a, b, a2, b2 = sorted(simulate(ENGINE, [[500, 50], [400, 300]], 51, 2, ramp_s=2.0), key=lambda r: r.arrival)
    assert b.end - a.end == pytest.approx(0.040)
    assert a2.first == b2.first == pytest.approx(b.end + LAUNCH_S + 350 / 100)
    # with no time between a send and the queue, the first prompt goes with the other's last decode step instead
    a, b, a2, b2 = sorted(
        simulate(ENGINE, [[500, 50], [400, 300]], 51, 2, ramp_s=2.0, **EXACT), key=lambda r: r.arrival
    )
    assert a2.first == pytest.approx(b.end)
    assert b2.first > a2.first + 1


def test_sessions_send_conversations_in_order_and_a_follow_up_after_its_reply():
    done = simulate(ENGINE, [[200, 20], [300], [100, 10, 10]], output=3, concurrency=2, **EXACT)
    assert len(done) == 6
    by_session = {}
    for r in sorted(done, key=lambda r: r.arrival):
        by_session.setdefault(r.session, []).append(r)
    for reqs in by_session.values():
        for before, after in zip(reqs, reqs[1:]):
            assert after.arrival == pytest.approx(before.end)  # a closed loop: the next turn when the reply is done
    # never more than the concurrency in flight
    events = sorted([(r.arrival, 1) for r in done] + [(r.end, -1) for r in done], key=lambda e: (e[0], e[1]))
    live = peak = 0
    for _, d in events:
        live += d
        peak = max(peak, live)
    assert peak <= 2


def test_more_sessions_than_slots_wait_for_a_free_slot():
    one_slot = Engine(base_ms=10, per_seq_ms=0, prefill_tokens_per_s=100, max_batch=1, compute_per_seq_ms=40)
    a, b = simulate(one_slot, [[100], [100]], output=2, concurrency=2, **EXACT)
    assert a.end == pytest.approx(1.04)
    assert b.first == pytest.approx(a.end + 1.0)  # its prompt starts when the first slot frees


def test_what_the_load_tool_reports():
    done = simulate(ENGINE, [[100]] * 4, output=5, concurrency=1, **EXACT)
    m = measured_like(done)
    e2e = 1.0 + 4 * 0.040
    assert m["requests_per_s"] == pytest.approx(4 / (4 * e2e))
    assert m["ttft_p95_ms"] == pytest.approx(1000.0)
    assert m["e2e_p95_ms"] == pytest.approx(1000 * e2e)
    assert m["output_tokens_per_s"] == pytest.approx(5 * m["requests_per_s"])


def test_a_prompt_wholly_in_the_cache_still_gets_its_first_token():
    # llama-server evaluates at least the last prompt token; without that, a zero-token prompt never got one
    (r,) = simulate(ENGINE, [[0]], output=3, concurrency=1, **EXACT)
    assert r.first == pytest.approx(1 / 100) and r.end == pytest.approx(0.01 + 2 * 0.040)


def test_each_reply_is_as_long_as_its_draw():
    lengths = iter([3, 11])
    a, b = simulate(ENGINE, [[100, 100]], output=lambda: next(lengths), concurrency=1, **EXACT)
    assert (a.tokens, b.tokens) == (3, 11)
    assert a.end - a.first == pytest.approx(2 * 0.040) and b.end - b.first == pytest.approx(10 * 0.040)
    assert measured_like([a, b])["output_tokens_per_s"] == pytest.approx(14 / (b.end - a.arrival))


def test_sampled_loads_draw_reply_lengths_and_the_launch_race():
    convs = [[500, 50], [400, 300]]
    # one length and the race always won: every draw is the deterministic simulation
    fixed = sampled(ENGINE, convs, [51], 2, ramp_s=2.0, draws=5, race=1.0)
    assert all(s == measured_like(simulate(ENGINE, convs, 51, 2, ramp_s=2.0)) for s in fixed)
    # the race lost: the late prompt waits for the next batch, so the first one gets its first token sooner
    lost = sampled(ENGINE, convs, [51], 2, ramp_s=2.0, draws=1, race=0.0)[0]
    assert lost["ttft_p50_ms"] < fixed[0]["ttft_p50_ms"]
    # lengths drawn from a mix: the outcomes spread, and the same seed gives the same draws
    mixed = sampled(ENGINE, convs, [5, 51], 2, ramp_s=2.0, draws=40, seed=3)
    e2e = spread(mixed, "e2e_p95_ms")
    assert e2e["p5"] < e2e["median"] <= e2e["p95"] and e2e["p5"] < e2e["p95"]
    assert mixed == sampled(ENGINE, convs, [5, 51], 2, ramp_s=2.0, draws=40, seed=3)


def test_the_machines_speed_is_drawn_request_by_request():
    # a request served alone at half the speed takes twice as long, and speed_of reads that back
    for speed in (0.5, 1.0):
        r = simulate(ENGINE, [[500]], 51, 1, speed=lambda s=speed: s)[0]
        assert speed_of(ENGINE, 500, 51, r.end - r.arrival) == pytest.approx(speed, rel=0.01)
    # at c1 with the race fixed nothing else varies: drawn speeds widen an interval reply lengths alone leave a point
    convs = [[500], [500], [500]]
    still = spread(sampled(ENGINE, convs, [51], 1, draws=30, race=1.0), "ttft_p95_ms")
    drift = spread(sampled(ENGINE, convs, [51], 1, draws=30, race=1.0, speeds=[[0.8, 1.0, 1.0]]), "ttft_p95_ms")
    assert still["p5"] == still["p95"] == drift["p5"]
    assert drift["p95"] == pytest.approx(still["p95"] / 0.8, rel=0.01)
    # each simulated load replays one run's speeds: a slow run and a fast one span the interval between them
    runs = spread(sampled(ENGINE, convs, [51], 1, draws=40, race=1.0, speeds=[[0.5], [1.0]]), "ttft_p95_ms")
    assert runs["p5"] == pytest.approx(still["p5"]) and runs["p95"] == pytest.approx(still["p95"] / 0.5, rel=0.01)
