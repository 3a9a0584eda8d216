"""The pure logic of faithful answers, relevance, conversations and the harder golden set (no model needed).

The LLM side of the same mechanics runs on the real 0.5B stack in ``test_serving_agents.py``.
"""

import json
from types import SimpleNamespace

import pytest

from core import answer_text, answerability, answering, conversation, hard_set
from core.conversation import Turn
from core.relevance import auroc, relevance_evidence

SRC = {
    1: "Conclusion: Simethicone added to bowel preparation improved bowel cleanliness but did not improve the adenoma "
    "detection rate.\nExcerpt: 2,000 patients in 8 trials were included.",
    2: "Conclusion: Metformin reduced HbA1c by 1.1% compared with placebo in adults with type 2 diabetes.",
}


def two_turns(question: str, answer: str) -> list[Turn]:
    return [Turn("user", question), Turn("assistant", answer)]


# the service's rendered lead of a "yes" answer, and a follow-up that refers back to its subject
RENDERED_YES = 'Yes: the cited sources support this [1]. Source [1] concludes: "..." [1].'
WHICH_PATIENTS = "Which patients were studied in it?"


def quoted_answer(source: int, quote: str, verdict: str, sentence: str) -> dict:
    """A model answer with one quote from ``source`` and one sentence citing it."""
    return {
        "evidence": [{"source": source, "quote": quote}],
        "verdict": verdict,
        "answer": [{"sentence": sentence, "sources": [source]}],
    }


def test_quotes_are_checked_against_the_source_text():
    assert answering.quote_support("did not improve the adenoma detection rate", SRC[1]) == 1.0
    # case and punctuation do not matter; invented words do
    assert answering.quote_support("Simethicone added to bowel ... improved bowel cleanliness!", SRC[1]) == 1.0
    assert answering.quote_support("simethicone significantly improved adenoma detection", SRC[1]) < 0.85


def test_a_yes_over_a_negative_conclusion_is_caught_and_rendered_honestly():
    obj = quoted_answer(
        1, "did not improve the adenoma detection rate", "supports", "Yes, simethicone improves adenoma detection."
    )
    checked = answering.check_answer(obj, SRC, yes_no=True)
    assert not checked.ok and any("contradicts the quoted evidence" in p for p in checked.problems)
    fixed = dict(obj, verdict="refutes", answer=[{"sentence": "Adenoma detection was not improved.", "sources": [1]}])
    checked = answering.check_answer(fixed, SRC, yes_no=True)
    assert checked.ok, checked.problems
    text, cited = answer_text.render(checked)
    assert text.startswith("No: the cited sources do not support this [1].") and cited == [1]
    assert text.endswith("Adenoma detection was not improved [1].")


def test_unsupported_and_uncited_sentences_are_dropped_and_invented_quotes_rejected():
    obj = {
        "evidence": [
            {"source": 2, "quote": "Metformin reduced HbA1c by 1.1% compared with placebo"},
            {"source": 1, "quote": "Simethicone cures colon cancer in most patients"},
            {"source": 7, "quote": "a source that does not exist at all"},
        ],
        "verdict": "supports",
        "answer": [
            {"sentence": "Metformin lowered HbA1c compared with placebo in type 2 diabetes.", "sources": [2]},
            {"sentence": "The capital of France is Paris.", "sources": [2]},
            {"sentence": "Metformin reduced HbA1c.", "sources": []},
        ],
    }
    checked = answering.check_answer(obj, SRC, yes_no=True)
    assert [q["source"] for q in checked.quotes] == [2]
    assert [s["sentence"] for s in checked.sentences] == [
        "Metformin lowered HbA1c compared with placebo in type 2 diabetes."
    ]
    assert any("Paris" in p for p in checked.problems)  # named, so the correction call can fix it
    text, cited = answer_text.render(checked)
    assert all(s.rstrip(".").endswith("]") for s in answering.text_sentences(text)) and cited == [2]
    assert answer_text.supported_share(text, SRC) == 1.0


def test_not_in_sources_renders_no_citations_and_the_quote_fallback_is_verbatim():
    checked = answering.check_answer({"evidence": [], "verdict": "not_in_sources", "answer": []}, SRC, yes_no=False)
    assert checked.ok and answer_text.render(checked) == (answer_text.NOT_IN_SOURCES, [])
    # on the knowledge-base route the service says where it looked instead
    text, cited = answer_text.render_closest(3, "Ramadan  fasting and gliclazide.\n")
    assert text == 'The sources found do not state this. The closest source is "Ramadan fasting and gliclazide" [3].'
    assert cited == [3]
    bad = answering.check_answer(
        {"evidence": [{"source": 2, "quote": "Metformin reduced HbA1c by 1.1%"}], "verdict": "answered", "answer": []},
        SRC,
        yes_no=False,
    )
    assert not bad.ok
    text, cited = answer_text.render_quotes(bad)
    assert text == 'Source [2] states: "Metformin reduced HbA1c by 1.1%." [2]' and cited == [2]


def test_answer_schema_orders_evidence_before_verdict_and_bounds_sources():
    schema = answering.answer_schema(3, yes_no=True)
    assert list(schema["properties"]) == ["evidence", "verdict", "answer"]
    assert schema["properties"]["verdict"]["enum"] == list(answering.YES_NO_VERDICTS)
    src = schema["properties"]["evidence"]["items"]["properties"]["source"]
    assert (src["minimum"], src["maximum"]) == (1, 3)
    assert answering.answer_schema(3, yes_no=False)["properties"]["verdict"]["enum"] == ["answered", "not_in_sources"]
    assert answering.is_yes_no("Is there good evidence that ivermectin works against COVID-19?")
    assert answering.is_yes_no("Does simethicone improve adenoma detection?")
    assert not answering.is_yes_no("What are the risk factors for type 2 diabetes?")
    # a framing phrase before the auxiliary (the form of 16 of the 77 covered dev questions)
    assert answering.is_yes_no("In children on ECMO, is impaired cerebral autoregulation associated with events?")
    assert answering.is_yes_no("Among adults hospitalized with pneumonia, is RSV linked to higher mortality?")
    assert not answering.is_yes_no("In adults with asthma, what reduces exacerbations?")
    assert not answering.is_yes_no("How is hypertension treated in older adults, and is salt restriction enough?")
    # an alternative question about the study already named offers its answers: not yes/no ("or not" still is)
    assert not answering.is_yes_no("Was it a prospective or a retrospective study? (about: Is X or Y linked to Z?)")
    assert not answering.is_yes_no("Was that a randomized trial, or some other kind of study?")
    assert not answering.is_yes_no("Was the trial randomized or observational?")
    assert answering.is_yes_no("Was it safe or not?")
    assert answering.is_yes_no("Do surgical or FFP2 face masks reduce maximal exercise performance in athletes?")
    assert answering.is_yes_no("Is the drug effective? Or is it the placebo effect?")


def test_free_text_check_finds_uncited_and_unsupported_sentences():
    text = "Metformin reduced HbA1c compared with placebo [2]. Paris is the capital of France [1]. It works well."
    problems = answer_text.check_text_answer(text, SRC)
    assert len(problems) == 2 and "Paris" in problems[0] and "without a citation" in problems[1]


def test_relevance_evidence_separates_on_and_off_topic():
    on = relevance_evidence(
        "Does metformin lower HbA1c in type 2 diabetes?",
        [("a", 0.71), ("b", 0.55), ("c", 0.5)],
        ["a", "c", "x"],
        ["Metformin in type 2 diabetes " + SRC[2]],
    )
    off = relevance_evidence(
        "What is the capital of France?",
        [("p", 0.16), ("q", 0.15), ("r", 0.14)],
        ["s", "t", "u"],
        ["Obesity in French adults: a cohort study"],
    )
    assert on.score > 0.8 > 0.2 > off.score
    assert on.agreement == pytest.approx(2 / 3) and off.agreement == 0.0
    assert auroc([0.9, 0.8, 0.4], [0.1, 0.4]) == pytest.approx((2 + 2 + 1.5) / 6)


def test_follow_ups_are_detected_and_history_is_cut_to_a_budget():
    history = [Turn("user", "Is gliclazide safe during Ramadan fasting?"), Turn("assistant", "x " * 2000)]
    assert conversation.needs_rewrite("Which regions were studied in it?", history)
    assert conversation.needs_rewrite("And adults?", history)  # almost no content of its own
    assert not conversation.needs_rewrite("Does metformin lower HbA1c in type 2 diabetes?", history)
    assert not conversation.needs_rewrite("Which regions were studied in it?", [])  # nothing to refer back to
    window = conversation.history_window(history * 10, budget_tokens=300)
    assert sum(conversation.approx_tokens(t.content) for t in window) <= 300 + 150
    assert window[-1] == Turn("assistant", window[-1].content) and window[-1].content.endswith("...")
    msgs = conversation.rewrite_messages("Which regions were studied in it?", window)
    assert "gliclazide" in msgs[1]["content"] or len(window) == 1
    assert conversation.accept_rewrite("In it?", "", history).endswith(
        "(about: Is gliclazide safe during Ramadan fasting?)"
    )


def test_a_rewrite_that_leaves_the_subject_unresolved_gets_the_last_question_attached():
    history = two_turns(
        "Does adding fitness to the pooled cohort ASCVD risk improve the accuracy of the model?",
        "Yes: the cited sources support this [1].",
    )
    follow = "How long was the follow-up in it?"
    # what the 1.5B model wrote for 6 of 30 follow-ups: "it" became "the study", the subject is still missing
    unresolved = conversation.accept_rewrite(follow, "How long was the follow-up in the study?", history)
    assert unresolved == f"{follow} (about: {history[0].content})"
    named = "How long was the follow-up in the study of fitness and the pooled cohort ASCVD risk model?"
    assert conversation.accept_rewrite(follow, named, history) == named
    assert not conversation.names_subject(follow, "How long was the follow-up of the patients?", history)


def test_a_follow_up_that_refers_back_and_found_nothing_is_asked_again_with_the_subject():
    """A follow-up with a definite description but words of its own ("the control group") is not rewritten, and
    alone it retrieves other studies; asked again with the conversation's question attached it can find its own."""
    first = "Does a brief skin-cleaning intervention reduce emergency department visits among people who inject drugs?"
    history = [Turn("user", first), Turn("assistant", "No: the cited sources do not support this [1].")]
    follow = "What did the control group get?"
    assert not conversation.needs_rewrite(follow, history)
    again = conversation.retry_with_subject(follow, follow, history)
    assert again == f"{follow} (about: {first})"
    assert conversation.retry_with_subject("How was the trial designed?", "How was X designed?", history)
    assert conversation.retry_with_subject("Were they older?", "Were they older?", history)
    # a new question with its own subject stays its own; asked once already with the subject: not again
    assert conversation.retry_with_subject("How is hypertension treated in older adults?", "-", history) is None
    assert conversation.retry_with_subject(follow, again, history) is None
    assert conversation.retry_with_subject(follow, follow, []) is None  # no conversation


def test_a_follow_up_that_refers_back_is_about_the_studies_the_last_answer_cited():
    first = "Does a brief skin-cleaning intervention reduce emergency department visits among people who inject drugs?"
    cited = ("PMID:32830383", "PMID:1", "PMID:2")
    history = [Turn("user", first), Turn("assistant", "No: the cited sources do not support this [1].", cited)]
    assert conversation.conversation_studies("What did the control group get?", history) == list(cited[:2])
    assert conversation.conversation_studies("How was that trial designed?", history, limit=1) == ["PMID:32830383"]
    # a new question with its own subject; a last answer that cited nothing; no conversation
    assert conversation.conversation_studies("How is hypertension treated in older adults?", history) == []
    uncited = [*history, Turn("user", "Is it safe?"), Turn("assistant", "The indexed sources do not cover this.")]
    assert conversation.conversation_studies("What did the control group get?", uncited) == []
    assert conversation.conversation_studies("What did the control group get?", []) == []
    # the history window keeps what each turn cited
    assert conversation.history_window(history)[-1].cited == cited


def test_an_answers_citations_come_back_as_what_its_turn_cited():
    from agents.answers import MAX_CITED, turns_of
    from agents.sources import doc_key_of, source_id

    kb = [{"n": i, "id": f"PMID:{i}", "origin": "knowledge_base"} for i in range(1, 9)]
    web = {"n": 9, "id": "https://example.org/a", "origin": "web"}
    turns = turns_of(
        [
            {"role": "user", "content": "Q?", "citations": kb},  # a user turn cites nothing
            {"role": "assistant", "content": "A [1].", "citations": [web, kb[1], kb[1], {"id": ""}, "x"]},
            {"role": "assistant", "content": "B [1].", "citations": kb},
            {"role": "assistant", "content": "C.", "citations": "PMID:1"},
        ]
    )
    assert [t.cited for t in turns] == [(), ("PMID:2",), tuple(f"PMID:{i}" for i in range(1, 1 + MAX_CITED)), ()]
    hit = SimpleNamespace(doc_key="pubmed/32830383.xml", doc_id="d")
    assert doc_key_of(source_id(hit)) == hit.doc_key and doc_key_of("scans/a.pdf") == "scans/a.pdf"


def test_a_referenced_study_is_usable_whatever_the_judge_said():
    judged = answerability.Answerability({1: 0.1, 2: 0.3, 3: 0.9}, [3], [2], "covered", 0.9)
    both = answerability.with_referenced(judged, [2])
    assert both.covered == [2, 3] and both.related == [] and both.referenced == [2] and both.scores == judged.scores
    alone = answerability.with_referenced(answerability.Answerability({1: 0.1}, [], [], "not_covered", 0.1), [1])
    assert alone.route == "covered" and alone.covered == [1] and alone.score == 0.1
    assert answerability.with_referenced(judged, []) is judged


def test_hard_set_polarity_rules_and_question_filters():
    assert hard_set.polarity_of("RIPC did not prevent rheologic alterations in erythrocytes.") == "refutes"
    assert hard_set.polarity_of("There were no significant differences in mortality between groups.") == "refutes"
    assert hard_set.polarity_of("The evidence is insufficient to recommend ivermectin for COVID-19.") == "insufficient"
    assert hard_set.polarity_of("Exercise significantly improved walking distance in older adults.") == "supports"
    assert hard_set.polarity_of("X did not reduce pain but significantly improved function.") is None  # mixed: skip
    title = "Simethicone for bowel preparation and adenoma detection: a meta-analysis"
    assert (
        hard_set.question_problems("Does adding an antifoaming agent raise polyp finding at colonoscopy?", title) == []
    )
    assert "reuses the title" in " ".join(
        hard_set.question_problems("Does simethicone for bowel preparation help adenoma detection?", title)
    )
    assert any(
        "negated" in p for p in hard_set.question_problems("Does simethicone not help at colonoscopy screening?", title)
    )
    assert any(
        "yes/no" in p for p in hard_set.question_problems("What does simethicone do at colonoscopy screening?", title)
    )
    claim = "Simethicone did not improve adenoma detection at colonoscopy."
    assert hard_set.claim_of("Simethicone significantly improved bowel cleanliness. " + claim) is None  # mixed: skipped
    assert hard_set.claim_of("Patients were followed for a year. " + claim) == (claim, "refutes")
    assert any(
        "not about the claim" in p for p in hard_set.question_problems("Does zinc shorten a cold?", title, claim)
    )


def test_committed_hard_set_is_versioned_and_meets_its_composition():
    from assets.evaluation.golden_hard import HARD_SET_FILE, load_hard_set

    header, items = load_hard_set()
    assert len(items) >= 150 and header["version"].startswith(hard_set.HARD_SET_VERSION)
    mix = hard_set.composition(items)
    assert (mix["refutes"] + mix["insufficient"]) * 3 >= len(items), mix
    for item in items:
        assert hard_set.question_problems(item.question, item.title, item.claim, item.polarity) == [], item
        assert hard_set.claim_of(item.conclusion) == (item.claim, item.polarity)
    # tampering with an item breaks the recorded version
    lines = HARD_SET_FILE.read_text().splitlines()
    row = json.loads(lines[1])
    row["polarity"] = "supports" if row["polarity"] != "supports" else "refutes"
    tampered = HARD_SET_FILE.parent / "tampered.jsonl"
    try:
        tampered.write_text("\n".join([lines[0], json.dumps(row), *lines[2:]]) + "\n")
        with pytest.raises(ValueError, match="do not match"):
            load_hard_set(tampered)
    finally:
        tampered.unlink(missing_ok=True)


def test_not_in_sources_over_an_on_topic_quote_is_a_contradiction():
    obj = quoted_answer(
        2, "Metformin reduced HbA1c by 1.1% compared with placebo", "not_in_sources", "No source answers this."
    )
    question = "Does metformin reduce HbA1c compared with placebo?"
    checked = answering.check_answer(obj, SRC, yes_no=True, question=question)
    assert not checked.ok and "source [2] is" in checked.problems[0]
    off = answering.check_answer(obj, SRC, yes_no=True, question="Is yoga good for back pain in runners?")
    assert off.ok and answer_text.render(off) == (answer_text.NOT_IN_SOURCES, [])


def test_supports_over_a_negative_conclusion_of_a_relied_on_source_is_caught():
    # The model quotes a side sentence; the source's conclusion about the question says "did not change".
    src = {
        1: "Conclusion: SARS-CoV-2/HBV coinfection did not change the severity and outcome of COVID-19. However, "
        "the patients with coinfection should be closely monitored for liver complications.\nExcerpt: 105 patients."
    }
    obj = quoted_answer(
        1,
        "patients with coinfection should be closely monitored for liver complications",
        "supports",
        "Coinfection patients should be monitored for liver complications.",
    )
    question = "Does SARS-CoV-2/HBV coinfection increase the severity of COVID-19?"
    checked = answering.check_answer(obj, src, yes_no=True, question=question)
    assert not checked.ok and "did not change the severity" in checked.problems[0]
    # a negative side finding about something else is not a contradiction
    other = "Does monitoring for liver complications help coinfected patients?"
    assert answering.negative_claims(other, src[1]) == []
    assert answering.has_negative_finding("Low-certainty evidence suggests a benefit.")


def test_a_supports_verdict_against_the_sources_conclusion_is_repaired_without_another_call():
    obj = quoted_answer(
        1,
        "Simethicone added to bowel preparation improved bowel cleanliness",
        "supports",
        "Simethicone improves adenoma detection and bowel cleanliness.",
    )
    question = "Does simethicone improve the adenoma detection rate?"
    checked = answering.check_answer(obj, SRC, yes_no=True, question=question)
    assert not checked.ok and checked.conflict["source"] == 1
    fixed = answering.repair(checked)
    assert fixed.ok and fixed.verdict == "refutes" and "supports -> refutes" in fixed.repaired
    text, cited = answer_text.render(fixed)
    # the model's sentence (written under the wrong verdict) is gone; the source's own conclusion is quoted
    assert text.startswith("No: the cited sources do not support this [1].") and cited == [1]
    assert "did not improve the adenoma detection rate" in text and "improves adenoma detection" not in text
    assert fixed.quotes[0]["quote"] in SRC[1]
    # no conflict (a failed quote, not a verdict against the evidence): nothing to repair, the model is asked again
    bad_quote = dict(
        obj, evidence=[{"source": 2, "quote": "metformin cured diabetes in every patient"}], verdict="refutes"
    )
    assert answering.repair(answering.check_answer(bad_quote, SRC, yes_no=True, question=question)) is None


def test_refutes_over_a_conclusion_that_cannot_decide_becomes_insufficient():
    src = {
        1: "Conclusion: The evidence is insufficient to recommend ivermectin with doxycycline for COVID-19.\n"
        "Excerpt: Four small trials were included.",
        2: "Conclusion: Ivermectin did not reduce mortality in hospitalised COVID-19 patients; further trials are needed.",
    }
    question = "Does ivermectin with doxycycline work against COVID-19?"
    obj = quoted_answer(
        1,
        "The evidence is insufficient to recommend ivermectin with doxycycline",
        "refutes",
        "The evidence is insufficient to recommend ivermectin with doxycycline.",
    )
    checked = answering.check_answer(obj, src, yes_no=True, question=question)
    assert checked.ok and checked.verdict == "insufficient" and checked.repaired
    assert answer_text.render(checked)[0].startswith("The cited sources do not give enough evidence")
    # a plain "did not reduce" stays refutes ("further trials are needed" alone does not make it undecided)
    obj2 = quoted_answer(
        2,
        "Ivermectin did not reduce mortality in hospitalised COVID-19 patients",
        "refutes",
        "Ivermectin did not reduce mortality in hospitalised patients.",
    )
    checked = answering.check_answer(obj2, src, yes_no=True, question="Does ivermectin reduce COVID-19 mortality?")
    assert checked.ok and checked.verdict == "refutes" and not checked.repaired


METFORMIN_Q = "Does metformin reduce HbA1c compared with placebo?"


def _failed_answer(verdict: str, quote: str = "Metformin reduced HbA1c by 1.1% compared with placebo"):
    """An answer whose quote is (or is not) in source 2 and whose sentence no source supports: it fails the checks."""
    obj = quoted_answer(2, quote, verdict, "It also cured neuropathy in most elderly people.")
    return answering.check_answer(obj, SRC, yes_no=True, question=METFORMIN_Q)


def test_the_fallback_never_shows_the_failed_answers_verdict():
    # bench_answers: keeping a verdict no check disputed after two failed attempts answered "Yes" on an
    # insufficient-evidence item; without a verdict read from a conclusion, the fallback is the verified quotes alone
    checked = _failed_answer("supports")
    assert not checked.ok
    text, cited = answer_text.render_quotes(checked)
    assert answer_text.fallback_verdict(checked) == "quotes_only" and cited == [2]
    assert text.startswith("Source [2] states:") and "Yes" not in text and "neuropathy" not in text
    unverified = _failed_answer("supports", "metformin cured diabetes in every single patient")
    assert answer_text.fallback_verdict(unverified) == "unanswered"


def test_the_fallback_keeps_the_verdict_read_from_the_quoted_sources_conclusion():
    # bench_answers on dev: two answers written under the calibrated "refutes" failed the support check twice and
    # fell back to the quotes with no verdict, although the verdict came from the quoted source's conclusion
    checked = _failed_answer("refutes")
    assert not checked.ok
    verdict = answer_text.fallback_verdict(checked, ("supports", 2))
    text, cited = answer_text.render_quotes(checked, verdict)
    assert verdict == "supports" and cited == [2]
    assert text.startswith("Yes: the cited sources support this [2]. Source [2] states:") and "neuropathy" not in text
    # read from another source's conclusion, or not a verdict the lead sentences know: the quotes alone
    assert answer_text.fallback_verdict(checked, ("supports", 1)) == "quotes_only"
    # and the steps say which: a verdict was kept only when it was (not "under the calibrated verdict quotes_only")
    assert answer_text.fallback_step("supports").endswith("the verified quotes under the calibrated verdict supports")
    assert answer_text.fallback_step("quotes_only") == "failed the checks after correction: quotes_only"
    assert answer_text.fallback_verdict(checked, ("not_in_sources", 2)) == "quotes_only"
    assert answer_text.render_quotes(checked, "quotes_only")[0].startswith("Source [2] states:")
    unverified = _failed_answer("refutes", "metformin cured diabetes in every single patient")
    assert answer_text.fallback_verdict(unverified, ("supports", 2)) == "unanswered"


def test_refutes_over_a_conclusion_that_reports_the_effect_is_caught():
    # the 1.5B model answered "No" here (bench_answers, golden-hard-v3): the safety sentence is not a negative finding
    src = {
        1: "Conclusion: In patients previously receiving a stable dose of NSAIDs, tanezumab resulted in more joint "
        "safety events than continued NSAIDs. Pain and physical function improved with both doses of tanezumab "
        "compared to NSAIDs, reaching statistical significance with tanezumab 5 mg at 16 weeks."
    }
    question = "Does tanezumab improve pain and physical function compared to NSAIDs?"
    obj = quoted_answer(
        1,
        "tanezumab resulted in more joint safety events than continued NSAIDs",
        "refutes",
        "Tanezumab resulted in more joint safety events than NSAIDs.",
    )
    checked = answering.check_answer(obj, src, yes_no=True, question=question)
    assert not checked.ok and "which the verdict 'refutes' contradicts" in checked.problems[0]
    assert answering.repair(checked) is None  # positive cues are weaker: the model is asked again, no code fix
    # a conclusion with a negative finding about the question is never read as positive
    mixed = {1: "Conclusion: X reduced pain scores. X did not improve physical function compared to NSAIDs."}
    assert answering.positive_claims("Does X improve physical function compared to NSAIDs?", mixed[1]) == []


def test_a_mixed_conclusion_is_read_by_the_clause_the_question_asks_about():
    # the code repair once turned this "supports" into "refutes" (bench_answers): the sentence says yes about pain
    src = (
        "Conclusion: Tanezumab 5 mg significantly improved pain and physical function but did not improve PtGA at "
        "week 16 when compared to NSAIDs; joint safety events were more frequent."
    )
    assert answering.negative_claims("Does tanezumab improve pain and physical function compared to NSAIDs?", src) == []
    assert answering.negative_claims("Does tanezumab improve PtGA at week 16 compared to NSAIDs?", src)
    # asked about the negative clause, the simethicone sentence still counts
    assert answering.negative_claims("Does simethicone improve the adenoma detection rate?", SRC[1])
    assert answering.negative_claims("Does simethicone improve bowel cleanliness?", SRC[1]) == []


def test_a_quoteless_not_in_sources_on_the_knowledge_base_route_is_questioned_once():
    obj = {"evidence": [], "verdict": "not_in_sources", "answer": []}
    question = "Which patients were studied in the metformin trial?"
    assert answering.check_answer(obj, SRC, yes_no=False, question=question).ok  # e.g. on the web route
    checked = answering.check_answer(obj, SRC, yes_no=False, question=question, on_topic=True)
    assert not checked.ok and "the search found sources about it" in checked.problems[0]
    assert answer_text.fallback_verdict(checked) == "unanswered"  # insisting twice: "do not clearly answer"


def test_the_answers_own_framing_is_not_a_conversation_subject():
    history = two_turns(
        "Are maternal and fetal factors associated with non-cephalic malpresentation at term?", RENDERED_YES
    )
    # "it" became "the cited sources", words of the answer's lead sentence, not of the subject
    out = conversation.accept_rewrite(WHICH_PATIENTS, "Which patients were studied in the cited sources?", history)
    assert out.startswith(WHICH_PATIENTS + " (about: Are maternal and fetal factors")


def test_a_rewrite_that_appends_an_invented_answer_keeps_only_its_question():
    # bench_answers: the 1.5B model answered its own rewrite, and "hypertension" pulled in hypertension papers
    history = two_turns("Is it true that patient-centered activities lead to improved health outcomes?", RENDERED_YES)
    rewritten = (
        "Which patients were studied in the cited sources? The study involved patients with a specific disease, "
        "such as hypertension, and found that patient-centered activities led to improved health outcomes."
    )
    out = conversation.accept_rewrite(WHICH_PATIENTS, rewritten, history)
    assert "hypertension" not in out
    assert out.startswith(WHICH_PATIENTS + " (about: Is it true that patient-centered")
    named = "Which patients were studied in the trial of patient-centered activities? Patients with diabetes."
    assert conversation.accept_rewrite(WHICH_PATIENTS, named, history) == named.split("? ")[0] + "?"


def test_a_quoted_negative_side_finding_does_not_refute_the_question():
    # the code repair turned this "yes" into "no" in bench_answers: the quote is about the 2.5 mg dose, not the question
    conclusion = (
        "Tanezumab 5 mg significantly improved pain and physical function but did not improve PtGA at week 16 when "
        "compared to NSAIDs; corresponding differences between the tanezumab 2.5 mg and NSAID groups were not "
        "statistically significant."
    )
    side = "corresponding differences between the tanezumab 2.5 mg and NSAID groups were not statistically significant"
    obj = quoted_answer(1, side, "supports", "Tanezumab 5 mg significantly improved pain and physical function.")
    question = "Does tanezumab improve pain and physical function compared to NSAIDs?"
    checked = answering.check_answer(obj, {1: "Conclusion: " + conclusion}, yes_no=True, question=question)
    assert checked.ok and checked.verdict == "supports", checked.problems
    # the same quote answers a question about the 2.5 mg dose: then it is the conclusion, and "supports" is caught
    dose = "Were there significant differences between tanezumab 2.5 mg and NSAID groups?"
    assert answering.check_answer(obj, {1: "Conclusion: " + conclusion}, yes_no=True, question=dose).conflict


def test_compact_grammar_covers_the_answer_schemas_and_refuses_what_it_cannot_enforce():
    import pytest

    from core.grammar import schema_to_gbnf

    g = schema_to_gbnf(answering.answer_schema(3, yes_no=True, max_quotes=2, max_sentences=3))
    rules = dict(line.split(" ::= ", 1) for line in g.strip().splitlines())
    # fields in the schema's order (evidence before the verdict), no whitespace rule anywhere
    assert rules["root"].index('"\\"evidence\\":"') < rules["root"].index('",\\"verdict\\":"')
    assert "space ::=" not in g and '"\\n"' not in g
    assert rules["root-evidence"].endswith('("," root-evidence-item){0,1} "]"')  # 1 or 2 quotes
    assert rules["root-evidence-item-source"] == '"1" | "2" | "3"'
    one = dict(line.split(" ::= ", 1) for line in schema_to_gbnf(answering.answer_schema(3, yes_no=True)).splitlines())
    assert one["root-evidence"] == '"[" root-evidence-item "]"'  # the default: exactly one quote
    assert '"\\"refutes\\""' in rules["root-verdict"]
    assert "char{5,300}" in schema_to_gbnf(conversation.REWRITE_SCHEMA)
    for bad in (
        {"type": "object", "properties": {"a": {"type": "string"}}},  # optional property
        {"type": "number"},
        {"type": "integer", "minimum": 0},  # unbounded
    ):
        with pytest.raises(ValueError):
            schema_to_gbnf(bad)


def test_a_long_conclusion_chunk_keeps_its_conclusions_and_the_check_reads_them():
    # bench_answers: the chunk began with RESULTS, the 700-character cut left "... did no", the model said "Yes"
    # (opposite) and no check could see the negative conclusion
    chunk = (
        "RESULTS: A total of 222 women were enrolled (113 in the experimental arm and 109 in the control arm). No "
        "significant differences between the two arms were found in composite measures of maternal (23.9% in the "
        "experimental group vs 22.9% in the control group, odds ratio 1.055, 95% CI 0.567-1.964) or neonatal "
        "morbidity (9.7% in the experimental group vs 6.4% in the control group, odds ratio 1.571, 95% CI "
        "0.586-4.215), nor in any of the individual outcomes. CONCLUSIONS: In this small randomized controlled trial "
        "that was stopped for futility before reaching the required sample size, transabdominal and transperineal "
        "ultrasound performed just before instrumental vaginal delivery did not reduce the incidence of adverse "
        "maternal and neonatal outcomes, when compared with routine clinical care."
    )
    question = (
        "Does transabdominal and transperineal ultrasound performed just before instrumental vaginal delivery "
        "reduce the incidence of adverse maternal and neonatal outcomes?"
    )
    assert not answering.negative_claims(question, "Conclusion: " + chunk[:688])  # the old cut
    fitted = answering.fit_conclusion(chunk, 688)
    assert len(fitted) <= 688 and fitted.endswith("routine clinical care.")
    assert fitted.startswith("RESULTS: A total of 222 women were enrolled") and " ... CONCLUSIONS: In this" in fitted
    assert answering.negative_claims(question, "Conclusion: " + fitted)
    # the passage the model and the checks read is built with it
    from agents.prompts import passage_text

    assert answering.negative_claims(question, passage_text(chunk, chunk, 700))
    assert answering.fit_conclusion(chunk, 2000) == chunk
    # conclusions longer than the limit on their own: cut at the end, as before
    assert answering.fit_conclusion(chunk, 200) == chunk[chunk.index("CONCLUSIONS:") :][:200]


def test_an_open_question_reads_its_top_document_whole():
    # bench_answers: "How large was that study?" got "not in the sources" over the right abstract, whose "n = 7,439"
    # is in METHODS, which neither the conclusions nor the best-matching chunk showed the model
    from agents.prompts import passage_text

    methods = "METHODS: We followed a national sample of older adults (n = 7,439) annually from 2011 to 2016."
    conclusion = "CONCLUSIONS: Frailty is associated with lower levels and steeper declines in cognitive function."
    document = f"BACKGROUND: Frail older adults may be more vulnerable to stressors. {methods} {conclusion}"
    short = passage_text(conclusion, conclusion, 700)
    assert "7,439" not in short
    whole = passage_text(conclusion, conclusion, 700, document, 2400)
    assert whole.startswith(f"Conclusion: {conclusion}\nExcerpt: BACKGROUND: Frail") and "(n = 7,439)" in whole
    assert whole.count("steeper declines") == 1  # the conclusions are not repeated after themselves
    assert answering.conclusion_part(whole) == conclusion  # the checks still read the conclusions
    assert len(passage_text(conclusion, conclusion, 700, document * 40, 2400)) == 2400


def test_no_significant_relationship_is_a_negative_conclusion():
    # bench_answers (run at 10a342b): "Does ... poor sleep quality during pregnancy ... associated with preterm birth?"
    # got "Yes" over a source concluding "no significant relationship was found"; "relationship" was not a cue
    source = (
        "Conclusion: RESULTS: With each unit increase in the Petersburg Sleep Quality Index score in the second and "
        "third trimesters, preterm birth increased by 42% and 28%, respectively, but the p-values of these factors "
        "were not significant. CONCLUSIONS: Although a significant percentage of pregnant women had poor sleep "
        "quality, no significant relationship was found between sleep quality during pregnancy and preterm birth."
    )
    question = "Does the evidence suggest that poor sleep quality during pregnancy is associated with preterm birth?"
    obj = quoted_answer(
        1,
        "preterm birth increased by 42% and 28%, respectively",
        "supports",
        "Poor sleep quality during pregnancy increased preterm birth.",
    )
    checked = answering.check_answer(obj, {1: source}, yes_no=True, question=question)
    assert not checked.ok and checked.conflict and checked.conflict["source"] == 1
    fixed = answering.repair(checked)
    assert fixed.verdict == "refutes" and "no significant relationship" in answer_text.render(fixed)[0]
    for cue in ("no correlation", "no significant link", "no clear relationship"):
        assert answering.has_negative_finding(f"There was {cue} between A and B.")
    # a safety clause is not a negative finding about the question
    assert not answering.has_negative_finding("Drug A reduced pain with no increase in complications.")
