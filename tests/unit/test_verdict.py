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
