"""Answerability per source (core.answerability), its fit, and the hand-written evaluation sets' data contract.

The judge's LLM call runs on the real 0.5B stack in ``tests/integration/test_serving_agents.py``.
"""

import json
import math
import re

import pytest

from agents.answers import AgentConfig
from benchmarks import eval_sets, fit_answerability
from core import answerability, answering
from core.answerability import Features, Fit
from core.grammar import schema_to_gbnf


@pytest.fixture(scope="module")
def pubmed_articles(base_settings) -> dict[str, str]:
    """Title and abstract (sections as "LABEL: text" lines) of every article the evaluation sets are about."""
    import xml.etree.ElementTree as ET

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from core.corpus import ARTICLE_TABLE

    wanted = pa.array(eval_sets.articles(), pa.string())
    table = pq.read_table(base_settings.pubmed_dir / ARTICLE_TABLE, filters=pc.is_in(pc.field("pmid"), wanted))
    out = {}
    for row in table.to_pylist():
        article = ET.fromstring(row["xml"]).find(".//MedlineCitation/Article")
        parts = [
            (f"{a.get('Label')}: " if a.get("Label") else "") + "".join(a.itertext()).strip()
            for a in article.findall("Abstract/AbstractText")
        ]
        out[row["pmid"]] = "".join(article.find("ArticleTitle").itertext()) + "\n" + "\n".join(parts)
    return out


def _lp(token: str, yes: float, no: float) -> dict:
    return {
        "token": token,
        "top_logprobs": [{"token": "yes", "logprob": math.log(yes)}, {"token": "no", "logprob": math.log(no)}],
    }


def test_the_judges_probability_of_yes_is_read_at_each_verdict_token():
    entries = [{"token": '["', "top_logprobs": []}, _lp("yes", 0.6, 0.2), {"token": '","', "top_logprobs": []}]
    entries.append(_lp("no", 0.1, 0.7))
    probs = answerability.yes_probabilities('["yes","no"]', entries, 2)
    assert probs == pytest.approx([0.75, 0.125])
    # no usable log-probabilities: the text decides; an unreadable judgement covers nothing
    assert answerability.yes_probabilities('["no","yes"]', None, 2) == [0.0, 1.0]
    assert answerability.yes_probabilities("garbage", None, 2) == [0.0, 0.0]


def test_the_judge_reads_the_answers_prompt_up_to_the_question_so_the_prefix_cache_is_shared():
    from agents.prompts import answer_messages
    from agents.sources import Source

    sources = [Source(1, "PMID:1", "Metformin in type 2 diabetes", "Conclusion: metformin lowered HbA1c.", "kb")]
    answer = answer_messages("Does metformin lower HbA1c?", sources, True, 1)
    judge = answerability.judge_messages(answer, "Does metformin lower HbA1c?", [(1, "Metformin in type 2 diabetes.")])
    assert judge[0] == answer[0]
    head = answer[1]["content"].rsplit("\n\n", 1)[0]
    task = judge[1]["content"][len(head) :]
    assert judge[1]["content"].startswith(head + "\n\n") and "[1] Metformin in type 2 diabetes\n" in task
    assert '"Does metformin lower HbA1c?"' in task and task.endswith('one "yes" or "no" per source.')
    # the answer may use only the sources judged to address the question: the prompt says so, the schema enforces it
    two = [*sources, Source(2, "PMID:2", "Sleep and uric acid", "Conclusion: short sleep raised uric acid.", "kb")]
    restricted = answer_messages("Does metformin lower HbA1c?", two, True, 1, allowed=[1])
    assert restricted[1]["content"].startswith(
        answer_messages("Does metformin lower HbA1c?", two, True, 1)[1]["content"].rsplit("\n\n", 1)[0]
    )
    assert "Use only source [1]" in restricted[1]["content"]
    schema = answering.answer_schema(2, True, allowed=[1])
    grammar = schema_to_gbnf(schema)
    assert re.search(r'::= "1"\n', grammar) and '"2"' not in grammar


def test_subject_overlap_ignores_the_words_that_only_name_the_kind_of_question():
    sleep = "Short sleep duration increases the risk of hyperuricemia among Chinese adults. Risk factors were adjusted."
    assert answerability.subject_overlap("What are the risk factors for type 2 diabetes?", sleep) == 0.0
    assert answerability.subject_overlap("Does short sleep raise the risk of hyperuricemia?", sleep) == 1.0


def test_a_sources_lead_is_its_dense_similarity_over_the_best_other_one():
    assert answerability.leads([0.9, 0.6, 0.5]) == pytest.approx([0.3, -0.3, -0.4])
    assert answerability.leads([0.7]) == [0.0]


def test_routes_follow_the_per_source_scores():
    fit = Fit([0.0, 1.0, 0.0, 0.0, 0.0], threshold=0.5, related=0.25)
    yes, maybe, no = Features(0.9, 0, 0), Features(0.3, 0, 0), Features(0.05, 0, 0)
    decided = answerability.decide([1, 2, 3], [yes, maybe, no], fit)
    assert decided.route == "covered" and decided.covered == [1] and decided.related == [2]
    assert answerability.decide([1, 2], [maybe, no], fit).route == "partly_covered"
    assert answerability.decide([1, 2], [no, no], fit).route == "not_covered"
    assert answerability.decide([], [], fit).route == "not_covered"


def test_an_uncovered_answer_names_the_nearest_studies_without_citing_or_claiming_anything():
    text = answerability.render_uncovered("not_covered", [("PMID:34091320", "Short sleep and hyperuricemia.")])
    assert "do not cover this question" in text and '"Short sleep and hyperuricemia" (PMID:34091320)' in text
    assert not re.search(r"\[\d+\]", text)
    assert "related question" in answerability.render_uncovered("partly_covered", [])


def test_each_committed_fit_was_made_by_the_fit_script_on_dev():
    data = json.loads(answerability.FIT_PATH.read_text())
    assert data["default"] in data["fits"]
    for model, fitted in data["fits"].items():
        assert fitted["fitted_on"]["split"] == "dev" and fitted["version"] == answerability.ANSWERABILITY_VERSION
        fit = answerability.load_fit(model)
        assert len(fit.weights) == 1 + len(Features(0.5, 0, 0).vector()) and 0 < fit.related < fit.threshold < 1
    # a model nobody calibrated gets the default model's fit, and the answer's lineage says so
    assert "no fit for vllm-qwen3" in answerability.load_fit("vllm-qwen3").fitted_on["note"]


def test_each_committed_fit_is_reproduced_from_dev_features_alone():
    """Every fitted number has its fitting code: the fit script, run on the committed dev features of each model,
    gives the committed weights and threshold, and those features hold every dev item and no test item. Features
    collected with another number of sources (``--k``) reproduce the candidate fit made from them instead."""
    fits = json.loads(answerability.FIT_PATH.read_text())["fits"]
    dev = {r["id"] for r in eval_sets.covered("dev") + eval_sets.uncovered("dev")}
    reproduced = set()
    for path in sorted(fit_answerability.RESULTS.glob("answerability_features_dev_*.json")):
        data = json.loads(path.read_text())
        assert data["split"] == "dev" and {r["id"] for r in data["rows"]} == dev, path.name
        w = fit_answerability.logistic(*fit_answerability.examples(data["rows"]))
        threshold = fit_answerability.threshold_for(fit_answerability.question_scores(data["rows"], Fit(w, 0.5, 0.25)))
        k = data.get("k", AgentConfig().k)
        candidate = fit_answerability.RESULTS / f"answerability_fit_k{k}_candidate.json"
        target = fits if k == AgentConfig().k else json.loads(candidate.read_text())["fits"]
        fitted = target[data["model"]]
        assert [round(v, 4) for v in w] == fitted["weights"] and round(threshold, 4) == fitted["threshold"], path.name
        if target is fits:
            reproduced.add(data["model"])
    assert reproduced == set(fits)


def test_the_threshold_keeps_at_most_five_percent_of_covered_dev_questions_refused():
    scored = [(1, s / 100) for s in range(40, 100)] + [(0, s / 100) for s in range(0, 60)]
    t = fit_answerability.threshold_for(scored)
    refused = sum(1 for c, s in scored if c and s < t) / 60
    assert refused <= fit_answerability.MAX_REFUSED and t > 0.40


def test_the_evaluation_sets_meet_their_sizes_and_split_by_article():
    covered = eval_sets.covered("dev") + eval_sets.covered("test")
    negatives = [c for c in covered if c["label"] != "supports"]
    assert len(covered) >= 120 and len(negatives) >= 40
    assert sum(1 for c in negatives if not c["negation_word"]) >= 10
    assert len(eval_sets.uncovered("dev") + eval_sets.uncovered("test")) >= 80
    assert len(eval_sets.conversations("dev") + eval_sets.conversations("test")) >= 30
    for split in eval_sets.SPLITS:
        assert len(eval_sets.covered(split)) >= 40 and len(eval_sets.uncovered(split)) >= 25
    dev_articles = {c["pmid"] for c in eval_sets.covered("dev") + eval_sets.conversations("dev")}
    test_articles = {c["pmid"] for c in eval_sets.covered("test") + eval_sets.conversations("test")}
    assert not dev_articles & test_articles


def test_every_label_quotes_its_article_verbatim(pubmed_articles):
    """The labels were written from the articles: each one's deciding sentence is in its article's abstract."""
    sets = eval_sets.covered("dev") + eval_sets.covered("test") + eval_sets.conversations("dev")
    sets += eval_sets.conversations("test")
    missing = [r["id"] for r in sets if r["evidence"] not in pubmed_articles.get(r["pmid"], "")]
    assert not missing
