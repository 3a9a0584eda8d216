"""The verdict read from a conclusion before the answer (core.verdict): its prompt, the probabilities read from the
first token, the calibrated decision and its committed fit.

The classifier's LLM call runs on the real 0.5B stack in ``tests/integration/test_serving_agents.py``.
"""

import math

from benchmarks import eval_sets, fit_verdict
from core import verdict


def _alts(**logprobs: float) -> list[dict]:
    return [{"token": t, "logprob": lp} for t, lp in logprobs.items()]


def test_probabilities_come_from_the_first_tokens_alternatives_renormalised_over_the_three_words():
    alts = [
        {"token": "Yes", "logprob": math.log(0.6)},
        {"token": "yes", "logprob": math.log(0.1)},
        {"token": "No", "logprob": math.log(0.2)},
        {"token": "unc", "logprob": math.log(0.05)},
        {"token": "The", "logprob": math.log(0.05)},  # not a choice: left out of the mass
    ]
    p = verdict.choice_probabilities(alts)
    assert abs(p["yes"] - 0.7 / 0.95) < 1e-9 and abs(p["no"] - 0.2 / 0.95) < 1e-9
    assert abs(p["uncertain"] - 0.05 / 0.95) < 1e-9
    # "n" alone is not "no", and "u" is not "uncertain": one-letter tokens count only when they are the word
    assert verdict.choice_probabilities(_alts(n=-0.1, u=-0.2), said="no") == {"yes": 0.0, "no": 1.0, "uncertain": 0.0}


def test_a_calibrated_threshold_turns_a_yes_leaning_word_into_no():
    # the model's word is "yes" (0.55), but its calibration needs a stronger "yes" than that for "supports"
    fit = verdict.Fit([-2.0, 1.0])
    leaning = {"yes": 0.55, "no": 0.4, "uncertain": 0.05}
    d = verdict.decide(leaning, fit)
    assert d.said == "supports" and d.verdict == "refutes" and d.p_supports < 0.5
    # no and uncertain: whichever the model found likelier
    assert verdict.decide({"yes": 0.5, "no": 0.1, "uncertain": 0.4}, fit).verdict == "insufficient"
    strong = verdict.decide({"yes": 0.97, "no": 0.02, "uncertain": 0.01}, fit, source=3)
    assert strong.as_dict()["source"] == 3
    assert strong.verdict == "supports" and strong.as_dict()["said"] == "supports"


def test_the_prompt_puts_the_examples_first_and_the_question_last():
    m = verdict.messages("Does X reduce Y?", "  X reduced Y. ")
    assert m[0]["role"] == "system" and m[-1] == {
        "role": "user",
        "content": "Study conclusion: X reduced Y.\nQuestion: Does X reduce Y?",
    }
    assert len(m) == 2 + 2 * len(verdict.SHOTS)
    # the examples are the same for every question: the prefix a serving engine's cache keeps
    assert m[:-1] == verdict.messages("Another?", "Other.")[:-1]


def test_no_example_is_taken_from_the_evaluation_sets():
    written = {q.lower() for q, _, _ in verdict.SHOTS} | {c.lower() for _, c, _ in verdict.SHOTS}
    for split in eval_sets.SPLITS:
        for item in eval_sets.covered(split):
            assert item["question"].lower() not in written and item["evidence"].lower() not in written


def test_the_committed_fit_is_the_fitting_codes_output_on_dev_and_a_model_without_one_says_so():
    fit = verdict.load_fit("qwen2.5-coder-1.5b-instruct")
    assert fit.fitted_on["split"] == "dev" and fit.version == verdict.VERDICT_VERSION and len(fit.weights) == 2
    assert fit.fitted_on["questions"] == len(eval_sets.covered("dev"))
    # refitting from the saved dev probabilities gives the committed weights (the fitting code is what made them)
    import json
    from pathlib import Path

    rows = json.loads((Path(fit_verdict.__file__).parent / "results" / "verdict_dev_1.5b.json").read_text())["rows"]
    again = fit_verdict.fit_rows(rows, "qwen2.5-coder-1.5b-instruct", leave_one_out=False)
    assert again["weights"] == fit.weights
    other = verdict.load_fit("some-other-model")
    assert other.weights == verdict.load_fit("").weights and "no fit for some-other-model" in other.fitted_on["note"]


def test_the_classifier_reads_the_conclusions_or_the_end_of_an_unlabelled_source():
    # labelled conclusions are read whole, from their label when their chunk begins with the end of RESULTS
    chunk = "RESULTS: 40 of 80 improved. CONCLUSIONS: The drug reduced pain. " + "More was seen. " * 60
    assert verdict.reading(chunk, "ignored").startswith("CONCLUSIONS: The drug reduced pain.")
    assert len(verdict.reading(chunk, "ignored")) > verdict.TAIL_CHARS
    # an unstructured abstract: from its inline label, else its last sentences within the limit
    inline = "Objective: To compare A and B. Results: A and B were similar. Conclusion: A is not better than B."
    assert verdict.reading("", inline) == "Conclusion: A is not better than B."
    background = "We studied many people in many places over many years. " * 20
    abstract = background + "Drug A did not lower mortality compared with placebo."
    read = verdict.reading("", abstract)
    assert read.endswith("Drug A did not lower mortality compared with placebo.")
    assert len(read) <= verdict.TAIL_CHARS and read.startswith("We studied")
    assert verdict.reading("", "x" * 900) == "x" * 900  # one sentence longer than the limit is kept whole


def test_the_verdict_benchmark_scores_the_models_word_and_the_calibrated_verdict_apart():
    from benchmarks.bench_answers import score_verdicts

    fit = verdict.Fit([-2.0, 1.0])  # supports only above log-odds 2 (p(yes) > 0.88)
    rows = [
        {"label": "supports", "p": {"yes": 0.95, "no": 0.03, "uncertain": 0.02}},  # both right
        {"label": "refutes", "p": {"yes": 0.7, "no": 0.2, "uncertain": 0.1}},  # the word is opposite, calibrated right
        {"label": "supports", "p": {"yes": 0.6, "no": 0.3, "uncertain": 0.1}},  # calibrated opposite
        {"label": "insufficient", "p": {"yes": 0.2, "no": 0.3, "uncertain": 0.5}},  # both right
    ]
    summary = score_verdicts(rows, fit)
    assert [r["calibrated_verdict"] for r in rows] == ["supports", "refutes", "refutes", "insufficient"]
    assert summary["agrees_model"]["rate"] == 0.75 and summary["agrees_calibrated"]["rate"] == 0.75
    assert summary["opposite_model"]["rate"] == 0.25 and summary["opposite_calibrated"]["rate"] == 0.25
    assert summary["opposite_calibrated"]["n"] == 4 and len(summary["opposite_calibrated"]["ci95"]) == 2


def test_the_answer_and_its_corrections_are_written_under_the_decided_verdict():
    from agents.answers import Plan
    from agents.sources import Source

    sources = [Source(n, f"PMID:{n}", "t", "x", "knowledge_base") for n in (1, 2, 3)]
    plan = Plan("Does X help?", sources, 0.9, "knowledge_base", [], "", None, yes_no=True, allowed=[2])
    p = {"yes": 0.3, "no": 0.6, "uncertain": 0.1}
    plan.decision = verdict.decide(p, verdict.Fit([0.0, 1.0]), source=2)
    schema = plan.answer_schema(1, 3)
    assert schema["properties"]["verdict"]["enum"] == ["refutes", "not_in_sources"]
    assert schema["properties"]["evidence"]["items"]["properties"]["source"]["enum"] == [2]
    plan.decision = None  # no verdict decided before (an open question, a web answer): any verdict of its kind
    assert "supports" in plan.answer_schema(1, 3)["properties"]["verdict"]["enum"]


def test_the_dev_explorations_scores_come_from_their_rows_and_each_reading_changes_one_part_of_the_prompt():
    """``benchmarks/explore_verdict.py``: the scores its committed results report (docs/benchmarks.md) are what its
    scoring gives on their saved rows (in sample and AUROC; leave-one-out takes 77 refits per combination), and each
    reading differs from the product's prompt only where it says."""
    import json
    from pathlib import Path

    from benchmarks import explore_verdict

    files = sorted((Path(fit_verdict.__file__).parent / "results").glob("verdict_explore_*.json"))
    assert len(files) >= 2
    for path in files:
        data = json.loads(path.read_text())
        assert data["split"] == "dev" and {r["id"] for r in data["rows"]} == {r["id"] for r in eval_sets.covered("dev")}
        for combo, reported in data["scores"].items():
            again = explore_verdict.score(data["rows"], tuple(combo.split("+")), leave_one_out=False)
            assert (again["auroc"], again["in_sample"]) == (reported["auroc"], reported["in_sample"]), (path, combo)

    item = {
        "question": "Does X reduce Y?",
        "conclusion": "CONCLUSIONS: X reduced Y. However, results varied.",
        "labelled": True,
    }
    product = verdict.messages(item["question"], item["conclusion"])
    readings = {name: make(item) for name, make in explore_verdict.VARIANTS.items()}
    assert readings["base"] == product
    assert readings["reversed_shots"][0] == product[0] and readings["reversed_shots"][-1] == product[-1]
    assert readings["reversed_shots"][1]["content"] == product[-3]["content"]  # the last example comes first
    assert readings["inverted"][0]["content"] == explore_verdict.INVERTED_SYSTEM
    assert [m["content"] for m in readings["inverted"][2:-1:2]] == ["no", "yes", "yes", "no", "no", "yes"]
    assert (
        readings["first_sentence"][-1]["content"]
        == "Study conclusion: CONCLUSIONS: X reduced Y.\nQuestion: Does X reduce Y?"
    )
    assert explore_verdict.first_sentence({**item, "labelled": False}) == item["conclusion"]
