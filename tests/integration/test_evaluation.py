"""Evaluation: the golden set, metrics, the promotion gate on real index generations, and the RAGAS judge on the
real local model (0.5B) behind the real gateway."""

from __future__ import annotations

import json
import math

import dagster as dg
import numpy as np
import pyarrow as pa
import pytest

from assets.evaluation import evaluation_assets, evaluation_checks
from assets.knowledge import knowledge_assets, knowledge_checks, rebuild_index_job
from assets.knowledge.state import read_candidate, save_candidate
from core.corpus import document_key
from core.evaluation import build_golden_set, id_metrics, promotion_gate, summarize, title_as_question
from core.generations import Candidate

# ------------------------------------------------------------------ pure logic


def _doc(key, title, sections):
    return {"key": key, "title": title, "sections": json.dumps(sections)}


def test_golden_set_is_deterministic_and_takes_conclusions_as_reference():
    docs = [
        _doc(
            f"pubmed/{i}.xml",
            f"Effect of drug {i} on blood pressure in adults.",
            [
                ["BACKGROUND", "Background text."],
                ["CONCLUSIONS", f"Drug {i} lowered systolic pressure by {i} mmHg in this trial of adults."],
            ],
        )
        for i in range(20)
    ] + [
        _doc("pubmed/x.xml", "No conclusions here at all", [["", "Unstructured abstract only."]]),
        _doc(
            "pubmed/y.xml",
            "Short",
            [["CONCLUSIONS", "Too short a title for a fair question, but a long enough conclusion."]],
        ),
    ]
    a, va = build_golden_set(docs, size=10)
    b, vb = build_golden_set(list(reversed(docs)), size=10)
    assert [i.id for i in a] == [i.id for i in b] and va == vb and len(a) == 10
    assert {k for i in a for k in i.gold_doc_keys} <= {d["key"] for d in docs[:20]}
    item = a[0]
    n = item.gold_doc_keys[0].split("/")[1].split(".")[0]
    assert (
        item.reference.startswith(f"Drug {n} lowered")
        and item.question == f'What did the study "Effect of drug {n} on blood pressure in adults" find?'
    )
    assert title_as_question("Does aspirin prevent stroke?") == "Does aspirin prevent stroke?"
    # adding a document changes the version; the order of the rest is stable
    c, vc = build_golden_set(
        docs
        + [
            _doc(
                "pubmed/new.xml",
                "A brand new trial of something",
                [["CONCLUSION", "It worked well enough in most of the patients."]],
            )
        ],
        size=30,
    )
    assert vc != va and [i.id for i in c if i.id in {x.id for x in a}] == [i.id for i in a]


def test_id_metrics_and_summary_count_judge_failures_as_failures_not_zeros():
    m = id_metrics(["d2", "d1", "d1", "d3"], ["d1"])
    assert m == {"id_context_precision": pytest.approx(1 / 3), "id_context_recall": 1.0, "hit_at_k": 1.0, "mrr": 0.5}
    assert id_metrics(["d2"], ["d1"])["mrr"] == 0.0
    with pytest.raises(ValueError):
        id_metrics(["d1"], [])
    rows = [{"faithfulness": 1.0}, {"faithfulness": 0.5}, {"faithfulness_error": "timeout after 1s"}]
    s = summarize(rows, ["faithfulness"])
    assert s["faithfulness"] == 0.75 and s["faithfulness_n"] == 2 and s["faithfulness_failures"] == 1


def test_promotion_gate_tolerance_and_failure_rate():
    base = {"recall": 0.90, "mrr": 0.80}
    assert promotion_gate({"recall": 0.89, "mrr": 0.80}, base, 0.02, ["recall", "mrr"]).passed
    bad = promotion_gate({"recall": 0.70, "mrr": 0.80}, base, 0.02, ["recall", "mrr"])
    assert not bad.passed and "recall" in bad.reasons[0] and bad.compared["recall"]["delta"] == pytest.approx(-0.2)
    flaky = promotion_gate({"faith": 0.9, "faith_n": 1, "faith_failures": 3}, {"faith": 0.5}, 0.05, ["faith"])
    assert not flaky.passed and "3 of 4 judgements failed" in flaky.reasons[0]
    assert promotion_gate({"recall": 0.1}, None, 0.02, ["recall"]).passed  # no baseline: nothing to be worse than


# ------------------------------------------------------------------ the gate on real generations


def _run(resources, run_config=None, selection=None, instance=None):
    result = dg.materialize(
        [*knowledge_assets, *knowledge_checks, *evaluation_assets, *evaluation_checks],
        resources=resources,
        selection=selection,
        run_config=run_config,
        instance=instance or dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    meta = {
        e.asset_key.to_user_string(): {k: getattr(v, "value", v) for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
    }
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    return result, meta, checks


EVAL_ONLY = dg.AssetSelection.groups("evaluation")
RETRIEVAL_ONLY = {"ops": {"rag_eval_run": {"config": {"answers": 0}}}}


def test_degraded_generation_fails_the_gate_and_a_good_rebuild_is_promoted(indexed_copy, pubmed_sample, monkeypatch):
    """On a copy of the indexed home, with the gold documents of two harder-set items added to it."""
    monkeypatch.setenv("AGENTIC_GATEWAY_KEY", "unused-no-llm-in-this-test")
    res = indexed_copy.resources
    from assets.evaluation.golden_hard import load_hard_set

    _, hard = load_hard_set()
    hard_keys = {i.gold_doc_key for i in hard}
    present = {o.key for o in res["document_store"].list_objects()}
    added = [(p, d) for p, d in pubmed_sample if document_key(p) in hard_keys - present][:2]
    for pmid, data in added:
        res["document_store"].put(document_key(pmid), data)
    result, meta, _ = _run(res, selection=dg.AssetSelection.groups("knowledge"))
    assert result.success and meta["chunk_embeddings"]["embedded_this_run"] > 0
    store, state = res["vector_store"], res["pipeline_state"]
    base = store.serving_generation()
    indexed = {r["doc_key"] for r in store.scan(base, ["doc_key"]).to_pylist()}
    history_before = state.read("eval_history").num_rows

    # 1. the serving generation evaluated: nothing to promote, the gate passes
    result, meta, checks = _run(res, RETRIEVAL_ONLY, EVAL_ONLY)
    assert result.success, checks
    good = meta["rag_eval_run"]
    assert meta["eval_questions"]["questions"] >= 10 and good["evaluated"] == "serving"
    # the harder set keeps exactly its items whose gold documents are indexed
    hard_meta = meta["eval_questions_hard"]
    assert hard_meta["questions_in_set"] == len(hard) >= 150
    assert hard_meta["questions"] == sum(i.gold_doc_key in indexed for i in hard) >= 2
    assert good["hybrid_hit_at_k"] >= 0.9 and good["dense_hit_at_k"] >= 0.9, good
    assert checks["index_promotion_gate"].passed and not meta["serving_index"]["promoted_this_run"]

    # 2. a deliberately degraded candidate: the same rows with their vectors shuffled between chunks
    rows = store.scan(base)
    perm = np.random.default_rng(0).permutation(rows.num_rows)
    shuffled = rows.set_column(
        rows.schema.get_field_index("vector"), "vector", rows.column("vector").take(pa.array(perm))
    )
    bad = f"{base}_r19990101000000"
    store.create_generation(bad, res["embedder"].dimension)
    store.upsert(bad, shuffled)
    store.refresh_indexes(bad)
    save_candidate(state, Candidate(bad, "pending", "test: shuffled vectors", 0.0))
    result, meta, checks = _run(res, RETRIEVAL_ONLY, EVAL_ONLY)
    assert not result.success  # the blocking gate stopped the run before serving_index
    gate = checks["index_promotion_gate"]
    assert not gate.passed and "dense_id_context_recall" in gate.description, gate.description
    assert meta["rag_eval_run"]["evaluated"] == "candidate" and meta["rag_eval_run"]["dense_hit_at_k"] < 0.5
    assert "serving_index" not in meta and store.serving_generation() == base
    assert read_candidate(state).status == "rejected" and "dense" in read_candidate(state).reason

    # 3. a good candidate: the rebuild job (knowledge + evaluation) builds, evaluates and promotes it
    result, meta, checks = _run(res, rebuild_index_job.config)
    assert result.success, {k: (c.passed, c.description) for k, c in checks.items()}
    rebuilt = meta["vector_index"]["generation"]
    assert rebuilt not in (base, bad) and meta["rag_eval_run"]["evaluated"] == "candidate"
    assert checks["index_promotion_gate"].passed and meta["serving_index"]["promoted_this_run"]
    assert store.serving_generation() == rebuilt and read_candidate(state).status == "promoted"
    assert base in store.generations()  # the previous generation is kept for rollback

    # history: three runs, the rejected one recorded with its verdict; a trend plot as PNG
    history = state.read("eval_history").to_pylist()[history_before:]
    assert [json.loads(h["gate"])["passed"] for h in history] == [True, False, True]
    assert [h["generation"] for h in history] == [base, bad, rebuilt]
    assert meta["eval_history"]["runs"] == history_before + 3 and meta["eval_history"]["trend"].startswith(
        "![trend](data:image/png;base64,"
    )


def test_evaluation_sensor_requests_a_run_only_after_a_reembedding(indexed_copy, pubmed_sample):
    from assets.evaluation import evaluate_after_reembedding

    res = indexed_copy.resources
    for pmid, data in pubmed_sample[202:205]:  # new to the indexed home: this run embeds them
        res["document_store"].put(document_key(pmid), data)
    instance = dg.DagsterInstance.ephemeral()
    first, _, _ = _run(res, selection=dg.AssetSelection.groups("knowledge"), instance=instance)
    second, _, _ = _run(res, selection=dg.AssetSelection.groups("knowledge"), instance=instance)  # nothing changed
    for run, expect in ((first, True), (second, False)):
        ctx = dg.build_run_status_sensor_context(
            sensor_name="evaluate_after_reembedding",
            dagster_instance=instance,
            dagster_run=instance.get_run_by_id(run.run_id),
            dagster_event=run.get_run_success_event(),
        )
        out = evaluate_after_reembedding(ctx)
        assert isinstance(out, dg.RunRequest) == expect, out
        if expect:
            assert (
                out.run_key == f"eval-after-{run.run_id}"
                and out.run_config["ops"]["rag_eval_run"]["config"]["answers"] == 0
            )


# ------------------------------------------------------------------ RAGAS with the real local judge


def _eval_on_stack(stack, **config):
    run_config = {"ops": {"rag_eval_run": {"config": config}}}
    result = dg.materialize(
        [*evaluation_assets, *evaluation_checks],
        resources=stack.resources,
        instance=stack.instance,
        selection=["eval_questions", "rag_eval_run"],
        run_config=run_config,
        raise_on_error=False,
    )
    assert result.success
    return stack.resources["pipeline_state"].read("eval_results").to_pylist()


JUDGED = ("faithfulness", "answer_relevancy", "context_precision", "context_recall")


def test_ragas_judge_scores_a_real_answer_through_the_gateway(serving_stack):
    """The asset's path: one question answered by the agent and judged on all four metrics by the local model."""
    rows = _eval_on_stack(serving_stack, limit=1, answers=1, judge=True, k=3)
    answered = [r for r in rows if r["response"]]
    assert len(answered) == 1
    scored = 0
    for r in answered:
        assert json.loads(r["contexts"]) and 0.0 <= r["rouge_l"] <= 1.0
        for m in JUDGED:
            # each metric is a score in [0, 1] or a recorded failure with its reason, never both, never neither
            has_score = r[m] is not None and not math.isnan(r[m])
            assert has_score != bool(r[f"{m}_error"]), (m, r[m], r[f"{m}_error"])
            if has_score:
                assert 0.0 <= r[m] <= 1.0
                scored += 1
    assert scored >= 2, rows  # the local judge produces most verdicts through json_schema-constrained output


def test_ragas_judge_scores_a_faithful_answer_above_an_unfaithful_one(serving_stack):
    """Two answers to one question over one real abstract: its own sentences, and claims it never makes. The judge
    (the session's 0.5B model behind the gateway) must tell them apart on faithfulness."""
    from core.answering import text_sentences
    from resources.judge import RagasJudge

    vs = serving_stack.resources["vector_store"]
    chunks = vs.scan(vs.serving_generation(), ["title", "text"]).to_pylist()
    chunk = next(c for c in chunks if len(text_sentences(c["text"])) >= 3 and len(c["text"]) > 400)
    faithful = " ".join(text_sentences(chunk["text"])[:2])
    unfaithful = (
        "The study found that the treatment doubled mortality in children within one week. "
        "It was stopped early because every patient in the control group was cured."
    )
    question = f"What did the study {chunk['title']!r} find?"
    sample = {"question": question, "contexts": [chunk["text"]], "reference": faithful}
    judge = RagasJudge(serving_stack.gateway)
    good, bad = judge.score_all(
        [{**sample, "response": faithful}, {**sample, "response": unfaithful}], metrics=("faithfulness",)
    )
    assert "faithfulness" in good and "faithfulness" in bad, (good, bad)
    assert good["faithfulness"] > bad["faithfulness"], (faithful, good, bad)


def test_judge_timeouts_are_recorded_as_failures_never_as_scores(serving_stack):
    rows = _eval_on_stack(serving_stack, limit=1, answers=1, judge=True, k=3, judge_timeout_s=0.05, judge_attempts=2)
    r = rows[0]
    for m in JUDGED:
        assert r[m] is None and "timeout" in r[f"{m}_error"] and "attempt 2" in r[f"{m}_error"]
