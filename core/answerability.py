"""Does a retrieved source address the question? Answerability per source, decided before any sentence is written.

Topicality is not coverage: every medical question finds medical abstracts with a high dense similarity, so
"What are the risk factors for type 2 diabetes?" was answered from an article on sleep and hyperuricemia. Here the
LLM reads the question and the sources together and writes one constrained "yes"/"no" per source (one call for all
of them, batched in one sequence). Its probability of "yes" at each verdict token, the share of the question's
words the source contains and the source's dense similarity are combined per source by a logistic function fitted on
the dev split of the hand-written evaluation sets, per model (``benchmarks/fit_answerability.py`` writes
``core/answerability_fit.json``). The judge's prompt shares its prefix (system message, sources, question) with the
answer's, so the serving engine's prefix cache pays the sources' prompt once. Pure functions; the call is in
``agents.service``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core import fits
from core.answering import content_words

ANSWERABILITY_VERSION = "answerability-v1-llm-yes-no+lexical+dense"
FIT_PATH = Path(__file__).with_name("answerability_fit.json")
# the titles again, right before the verdicts: a 1.5B model judged the sources no better than chance when it had to
# look back across the whole sources block for each one (tried on dev items)
JUDGE_TASK = (
    "Task: do not answer yet. Here are the sources' titles again:\n{titles}\n\nFor each, in order: is that study "
    'about the question "{question}" itself (the same condition or population, the same treatment or exposure, the '
    "same outcome)? A study of the same disease with another treatment, or of the same treatment for another "
    'disease, is not. Reply with a JSON array of one "yes" or "no" per source.'
)
ROUTES = ("covered", "partly_covered", "not_covered")
# words that name the kind of question, not its subject: they say nothing about whether a source covers it
_GENERIC = frozenset(
    """risk risks factor factors associated association treatment treated treat therapy therapies management managed
    outcome outcomes improve improves improved reduce reduces reduced increase increases increased lower higher raise
    raises raised decrease decreases decreased
    prevent prevents prevention diagnosis diagnosed cause causes caused affect affects effective efficacy benefit
    first line adults adult people children common commonly recommended best""".split()
)


def judge_schema(n_sources: int) -> dict:
    return {
        "type": "array",
        "items": {"type": "string", "enum": ["yes", "no"]},
        "minItems": n_sources,
        "maxItems": n_sources,
    }


def judge_messages(answer_messages: list[dict], question: str, titles: list[tuple[int, str]]) -> list[dict]:
    """The judge's prompt: the answer's system message and sources block, with the judge's task instead of the
    answer's (the shared prefix is what the serving engine's prefix cache reuses). ``titles``: (number, title)."""
    system, user = answer_messages[0], answer_messages[-1]
    head = user["content"].rsplit("\n\n", 1)[0]  # "Sources: ... Question: ..." without the reply instruction
    listed = "\n".join(f"[{n}] {_title(t)}" for n, t in titles)
    return [system, {"role": "user", "content": f"{head}\n\n{JUDGE_TASK.format(titles=listed, question=question)}"}]


def _word(token: str) -> str:
    return re.sub(r"[^a-z]", "", token.lower())


def yes_probabilities(content: str, logprobs: list[dict] | None, n_sources: int) -> list[float]:
    """P("yes") per source at the token that wrote its verdict (renormalised over "yes" and "no"); from the text
    (1.0 / 0.0) when the engine returned no usable log-probabilities."""
    found: list[float] = []
    for entry in logprobs or []:
        if _word(entry.get("token", "")) not in ("yes", "no"):
            continue
        mass = {"yes": 0.0, "no": 0.0}
        for alt in entry.get("top_logprobs") or []:
            w = _word(alt.get("token", ""))
            if w in mass:
                mass[w] += math.exp(alt.get("logprob", -100.0))
        total = mass["yes"] + mass["no"]
        found.append(mass["yes"] / total if total > 0 else float(_word(entry["token"]) == "yes"))
    if len(found) == n_sources:
        return found
    try:
        words = [str(v).lower() for v in json.loads(content)]
    except (ValueError, TypeError):
        words = []
    if len(words) != n_sources:
        return [0.0] * n_sources  # an unreadable judgement covers nothing: the answer says where it looked instead
    return [1.0 if w == "yes" else 0.0 for w in words]


def _stem_set(words: list[str], stem: int = 5) -> set[str]:
    return {w[:stem] for w in words}


def subject_overlap(question: str, source_text: str) -> float:
    """Share of the question's subject words (content words less the words that name the kind of question) that
    occur in the source, matched on their first five letters."""
    words = [w for w in content_words(question) if w not in _GENERIC]
    if not words:
        return 0.0
    have = _stem_set(content_words(source_text))
    return sum(1 for w in words if w[:5] in have) / len(words)


@dataclass
class Features:
    judge: float  # the LLM's P("yes")
    overlap: float  # subject_overlap
    dense: float  # the source's best dense cosine similarity
    lead: float = 0.0  # its dense similarity minus the best of the other sources' (a study that stands out)

    def vector(self) -> list[float]:
        p = min(max(self.judge, 1e-4), 1 - 1e-4)
        return [math.log(p / (1 - p)), self.overlap, self.dense, self.lead]


def leads(dense: list[float]) -> list[float]:
    """Each source's dense similarity minus the best of the others' (0 for a single source)."""
    return [d - max((o for j, o in enumerate(dense) if j != i), default=d) for i, d in enumerate(dense)]


@dataclass
class Fit:
    weights: list[float]  # bias, then one per Features.vector() entry
    threshold: float  # a source addresses the question at or above this
    related: float  # below threshold but at or above this: related, named but never cited for a claim
    version: str = ANSWERABILITY_VERSION
    fitted_on: dict = field(default_factory=dict)

    def score(self, f: Features) -> float:
        z = self.weights[0] + sum(w * x for w, x in zip(self.weights[1:], f.vector()))
        return 1.0 / (1.0 + math.exp(-z))


def load_fit(model: str = "", path: Path = FIT_PATH) -> Fit:
    """The fit for ``model`` (the judge's probabilities are the model's own, so each model is calibrated on its own);
    a model without one gets the default model's, and says so in ``fitted_on``."""
    chosen, fitted_on = fits.choose(path, model)
    return Fit(chosen["weights"], chosen["threshold"], chosen["related"], chosen.get("version", ""), fitted_on)


@dataclass
class Answerability:
    scores: dict[int, float]  # source number -> P(the source addresses the question)
    covered: list[int]  # sources an answer may use and cite
    related: list[int]  # sources about something near the question: named for the reader, never cited for a claim
    route: str  # one of ROUTES
    score: float  # the question's answerability: its best source's score
    referenced: list[int] = field(default_factory=list)  # the conversation's studies a follow-up refers back to

    def as_dict(self) -> dict:
        return asdict(self)


def with_referenced(judged: Answerability, numbers: list[int]) -> Answerability:
    """``judged`` with the sources a follow-up refers back to ("What did the control group get?" after an answer
    that cited a trial) made usable: the reference says what the question is about, which the judge, reading the
    follow-up's words against each source, cannot. The judge's scores stay as they were, for the trace."""
    if not numbers:
        return judged
    covered = list(dict.fromkeys([*numbers, *judged.covered]))
    related = [n for n in judged.related if n not in covered]
    return Answerability(dict(judged.scores), covered, related, "covered", judged.score, list(numbers))


def decide(numbers: list[int], features: list[Features], fit: Fit) -> Answerability:
    """Which sources address the question, and the route: covered (some do), partly covered (none does, some are
    near it), not covered."""
    scores = {n: round(fit.score(f), 4) for n, f in zip(numbers, features)}
    covered = [n for n in numbers if scores[n] >= fit.threshold]
    related = [n for n in numbers if fit.related <= scores[n] < fit.threshold]
    best = max(scores.values(), default=0.0)
    route = "covered" if covered else "partly_covered" if related else "not_covered"
    return Answerability(scores, covered, related, route, best)


def _title(title: str) -> str:
    return re.sub(r"\s+", " ", title or "").strip().rstrip(".") or "untitled"


def render_uncovered(route: str, nearest: list[tuple[str, str]]) -> str:
    """What the answer says when no indexed source addresses the question: that, and the nearest studies as titles
    for the reader (``nearest``: (id, title)), with no claim taken from them and no citation."""
    if route == "partly_covered":
        lead = (
            "The indexed sources do not answer this question. The closest ones study a related question, not this "
            "one, so no answer is taken from them"
        )
    else:
        lead = "The indexed sources do not cover this question, so it is not answered from them"
    if not nearest:
        return lead + "."
    listed = "; ".join(f'"{_title(t)}" ({i})' for i, t in nearest[:3])
    return f"{lead}. Nearest studies in the index, for reference: {listed}."
