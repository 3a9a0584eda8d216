"""``benchmarks/bench_answers.py`` on two dev items through the session's real 0.5B stack, so it cannot break
silently (it once called ``passages()`` without its required ``scope`` and ``make bench`` failed)."""

from benchmarks import bench_answers, eval_sets
from tests.helpers import indexed_pmids


def test_bench_answers_runs_on_two_dev_items(answer_service, serving_stack):
    indexed = indexed_pmids(serving_stack)
    covered = [c for c in eval_sets.covered("dev") if c["pmid"] in indexed][:1]
    uncovered = eval_sets.uncovered("dev")[:1]
    assert covered and uncovered, "no dev item's article is in the session's indexed home"
    gateway = serving_stack.gateway
    out = bench_answers.run(
        answer_service, gateway.openai_client(), gateway.chat_model, covered, uncovered, [], bare_every=1
    )
    row, unc = out["covered"][0], out["uncovered"][0]
    assert row["id"] == covered[0]["id"] and row["label"] == covered[0]["label"]
    assert row["verdict"] and "model_verdict" in row and row["seconds"] > 0
    assert unc["id"] == uncovered[0]["id"] and isinstance(unc["kb_claims"], bool)
    summary = out["summary"]
    assert summary["covered"] == summary["uncovered"] == 1 and summary["latency_pairs"] == 1
    assert out["bare"][0]["bare_s"] > 0 and summary["latency_ratio_paired_median"] > 0
    # the baseline pays its own prefill (none of it from the cache the system's calls on the same sources left), and
    # both sides' tokens and the system's phases are kept, to say where the difference goes
    bare = out["bare"][0]
    assert bare["bare_cached_tokens"] == 0 and bare["bare_tokens"]["prompt"] > 0 and bare["answer_tokens"], bare
    assert row["timings_ms"]["judge"] > 0 and row["timings_ms"]["generate"] > 0 and row["tokens"]["completion"] > 0
    # a yes/no question about its own indexed article: the verdict is read from a conclusion (one more short call),
    # calibrated, and the answer is written under it (the answer call's schema allows that verdict or "not in the
    # sources", nothing else)
    assert row["route"] == "knowledge_base" and row["timings_ms"]["verdict"] > 0 and row["llm_calls"] >= 3, row
    assert row["model_verdict"] in ("supports", "refutes", "insufficient")
    assert row["calibrated_verdict"] in ("supports", "refutes", "insufficient")
    assert row["answer_call_verdict"] in (row["calibrated_verdict"], "not_in_sources"), row
    # read from a source judged to address the question (the one a failed answer's fallback keeps it for)
    assert row["verdict_source"] in row["covered_sources"], row
    for key in (
        "covered_refused",
        "uncovered_answered_with_kb_claims",
        "verdict_agreement_system",
        "verdict_agreement_calibrated",
        "opposite_model",
    ):
        assert summary[key]["n"] == 1 and len(summary[key]["ci95"]) == 2, key
    # the judge's features, the fit's input: one row per source retrieved
    features = bench_answers.features(answer_service, covered, True)
    assert features[0]["gold_id"] == f"PMID:{covered[0]['pmid']}" and features[0]["sources"]
    assert all(0.0 <= s["judge"] <= 1.0 for s in features[0]["sources"])
