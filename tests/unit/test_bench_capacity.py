"""The planner check's sampled prediction against a run: reply lengths from the kept runs, and the comparison."""

from benchmarks.bench_capacity import compare, machine_speeds, reply_lengths
from core.capacity_plan import Engine

RUNS = "capacity_check_0.5b_run6_requests.json,capacity_check_0.5b_run7.json,capacity_check_0.5b_run8.json"


def test_reply_lengths_come_from_the_kept_runs_within_the_token_limit():
    lengths = reply_lengths(RUNS, 64)
    assert len(lengths) == 60 and min(lengths) >= 1 and max(lengths) == 64
    assert all(n <= 40 for n in reply_lengths(RUNS, 40)) and len(reply_lengths(RUNS, 40)) < 60
    assert reply_lengths("", 64) == []


def test_machine_speeds_come_from_the_requests_the_kept_runs_served_alone():
    engine = Engine(base_ms=12.2, per_seq_ms=0, prefill_tokens_per_s=123.7, max_batch=2, compute_per_seq_ms=39.4)
    runs = machine_speeds(RUNS, engine)
    # one list per run: the c1 level's 10 requests, less those too short to time the machine
    assert len(runs) == 3 and all(5 < len(run) <= 10 for run in runs)
    (run9,) = machine_speeds("capacity_check_0.5b_run9.json", engine)
    assert len(run9) == 27  # run 9's 30, less three 2-token replies
    # the machine drifted around its calibration, never by half
    speeds = [s for run in runs for s in run]
    assert 0.5 < min(speeds) < 1.0 < max(speeds) < 1.5
    assert machine_speeds("", engine) == []


def test_the_sampled_comparison_is_against_the_median_and_says_whether_the_run_fell_inside():
    spread = {"median": 100.0, "p5": 90.0, "p95": 150.0}
    level = {"level": "c2", "requests_per_s": 0.1, "ttft_p95_ms": 100.0, "e2e_p95_ms": 100.0}
    level["sampled"] = {"requests_per_s": {"median": 0.1, "p5": 0.09, "p95": 0.11}, "ttft_p95_ms": spread}
    measured = [{"mode": "concurrency", "value": 2, "requests_per_s": 0.12, "ttft_p95_ms": 140.0, "e2e_p95_ms": 80.0}]
    out = compare({"levels": [level]}, measured)
    (row,) = out["sampled"]
    assert row["ttft_p95_ms"]["ratio"] == 1.4 and row["ttft_p95_ms"]["inside"] is True
    assert row["requests_per_s"]["ratio"] == 1.2 and row["requests_per_s"]["inside"] is False
    assert out["simulated"][0]["e2e_p95_ms"]["ratio"] == 0.8 and out["closed_form"] == []
