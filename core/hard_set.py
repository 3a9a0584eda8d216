"""The harder golden set: paraphrased yes/no questions with the polarity of the source's conclusion.

The first golden set asks 'What did the study "<title>" find?': retrieval gets the title for free and any answer
"agrees". Here each item starts from an abstract's CONCLUSIONS section:

- its polarity is decided by code from phrase-level cues (:func:`polarity_of`): ``refutes`` (no effect, no
  difference, not associated), ``insufficient`` (evidence insufficient, inconclusive, unclear) or ``supports``;
  conclusions with cues of more than one kind are skipped, not guessed;
- an LLM writes one yes/no question about the claim, always in its positive form ("Does X reduce Y?") so that a
  ``refutes`` item's right answer is "no", and in other words than the title's;
- code rejects questions that reuse the title (:func:`title_overlap`), are not yes/no, or carry a negation.

Pure functions; ``benchmarks/build_hard_set.py`` makes the LLM calls and writes the versioned file.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass

from core.answering import content_words, is_yes_no, sentence_support

HARD_SET_VERSION = "golden-hard-v3"
POLARITIES = ("supports", "refutes", "insufficient")

_REFUTES = re.compile(
    r"\b(did not (?:significantly )?(?:improve|reduce|increase|decrease|affect|change|differ|show|alter|lower|prevent|"
    r"predict|influence)|does not (?:significantly )?(?:improve|reduce|increase|decrease|affect|change|alter|lower|"
    r"prevent|predict|influence)|do not (?:significantly )?(?:improve|reduce|increase|decrease|affect|differ)|"
    r"no (?:statistically )?(?:significant )?(?:difference|differences|effect|effects|association|benefit|improvement|"
    r"reduction|correlation|relationship|impact)|(?:was|were|is|are) not (?:significantly )?(?:associated|related|"
    r"correlated|different|effective|superior|improved|reduced)|not superior|failed to|no evidence (?:of|that|for))\b",
    re.I,
)
_INSUFFICIENT = re.compile(
    r"\b(insufficient (?:evidence|data)|evidence (?:is|was|remains) (?:insufficient|limited|inconclusive|weak|"
    r"lacking|scarce|not sufficient)|inconclusive|remains? (?:unclear|uncertain|unknown|controversial)|"
    r"unclear whether|uncertain whether|not (?:possible|able) to (?:draw|conclude|determine)|no (?:firm |definitive )?"
    r"conclusions? (?:can|could) be drawn|low[- ](?:quality|certainty) evidence|lack of (?:high[- ]quality )?evidence|"
    r"limited evidence|cannot be (?:recommended|determined|concluded))\b",
    re.I,
)
_SUPPORTS = re.compile(
    r"\b(significantly (?:improved|reduced|increased|decreased|lowered|better|associated|higher|lower)|"
    r"(?:was|were|is|are) (?:significantly |independently |strongly )?associated with|(?:is|was|are|were) effective|"
    r"effective (?:in|for)|improves?d?|reduces?d?|(?:is|are) (?:safe and )?(?:effective|beneficial|feasible|superior)|"
    r"resulted in (?:a )?(?:significant|marked)|led to (?:a )?(?:significant|marked)|is a (?:useful|valuable|"
    r"reliable|promising))\b",
    re.I,
)
_NEGATION_IN_QUESTION = re.compile(r"\b(not|no|never|n't|fail|fails|failed|without|lack|insufficient)\b", re.I)


@dataclass(frozen=True)
class HardItem:
    id: str
    question: str
    polarity: str  # supports | refutes | insufficient: what the gold document's conclusion says about the question
    gold_doc_key: str
    title: str
    conclusion: str
    claim: str  # the conclusion's sentence the question asks about (the one that carries the polarity cue)
    title_overlap: float

    def as_row(self) -> dict:
        return asdict(self)


def polarity_of(conclusion: str) -> str | None:
    """The conclusion's polarity from unambiguous cues; None when there are none or cues of more than one kind."""
    found = {name for name, rx in (("refutes", _REFUTES), ("insufficient", _INSUFFICIENT)) if rx.search(conclusion)}
    # "did not improve" must not count as "improve": look for positive cues only outside the negative phrases
    if _SUPPORTS.search(_INSUFFICIENT.sub(" ", _REFUTES.sub(" ", conclusion))):
        found.add("supports")
    if found == {"refutes", "supports"}:
        return None  # "X did not reduce A but improved B": which claim the question asks about decides; skip
    if "insufficient" in found:
        return "insufficient" if "supports" not in found else None
    return found.pop() if len(found) == 1 else None


def claim_of(conclusion: str) -> tuple[str, str] | None:
    """(claim sentence, polarity): the conclusion's first sentence with a polarity cue, when the conclusion as a
    whole is not mixed; the question is written from this sentence alone, so it asks what the label is about."""
    from core.chunking import split_sentences

    whole = polarity_of(conclusion)
    if whole is None:
        return None
    for sentence in split_sentences(conclusion):
        p = polarity_of(sentence)
        if p is not None:
            return (sentence, p) if p == whole else None
    return None


def claim_overlap(question: str, claim: str) -> float:
    """Share of the question's content words (or their 5-letter stems) found in the claim: the question is about it."""
    return sentence_support(question, claim, stem=5)


def title_overlap(question: str, title: str) -> float:
    """Share of the title's content words the question reuses (0 = a full paraphrase)."""
    t = set(content_words(title))
    if not t:
        return 0.0
    return len(t & set(content_words(question))) / len(t)


def longest_title_run(question: str, title: str) -> int:
    """The longest run of consecutive title words (all words) that the question repeats."""
    q = re.findall(r"[a-z0-9]+", question.lower())
    t = re.findall(r"[a-z0-9]+", title.lower())
    best = 0
    for i in range(len(q)):
        for j in range(len(t)):
            n = 0
            while i + n < len(q) and j + n < len(t) and q[i + n] == t[j + n]:
                n += 1
            best = max(best, n)
    return best


_SAMENESS = re.compile(r"\b(similar|same|comparable|equivalent|equal|as (?:good|effective|safe) as)\b", re.I)


def question_problems(
    question: str,
    title: str,
    claim: str = "",
    polarity: str = "",
    max_overlap: float = 0.6,
    max_run: int = 4,
    min_claim: float = 0.5,
) -> list[str]:
    q = question.strip()
    problems = []
    if polarity == "refutes" and _SAMENESS.search(q):
        # "Do older adults have similar outcomes?" over "no difference in outcomes" is answered yes: the label
        # would be inverted
        problems.append("asks about sameness, which a 'no difference' finding answers with yes")
    if claim and claim_overlap(q, claim) < min_claim:
        problems.append(f"not about the claim ({claim_overlap(q, claim):.2f} of its words are in it)")
    if "<" in q or ">" in q:
        problems.append("copied the example's placeholders")
    if not q.endswith("?"):
        problems.append("not a question")
    if not is_yes_no(q):
        problems.append("not a yes/no question")
    if _NEGATION_IN_QUESTION.search(q):
        problems.append("negated (the claim must be asked in its positive form)")
    if re.search(r"\b(this|the) (study|trial|paper|article|review|authors|conclusion|findings?)\b", q, re.I):
        problems.append("refers to 'the study' (it must stand alone)")
    if title_overlap(q, title) > max_overlap:
        problems.append(f"reuses the title ({title_overlap(q, title):.2f} of its words)")
    if longest_title_run(q, title) > max_run:
        problems.append("repeats a phrase of the title")
    if not (25 <= len(q) <= 220):
        problems.append("too short or too long")
    return problems


QUESTION_SCHEMA = {
    "type": "object",
    "properties": {"question": {"type": "string", "minLength": 20, "maxLength": 200}},
    "required": ["question"],
}


def question_messages(conclusion: str, title: str) -> list[dict]:
    """The prompt sees the claim only (never the title), so the question cannot copy the title; the examples are
    templates, so their words cannot leak into the question (a placeholder in the output is rejected)."""
    return [
        {"role": "system", "content": "You write short exam questions for doctors."},
        {
            "role": "user",
            "content": "Finding: <treatment> did not reduce <outcome> in <population>.\n"
            '{"question": "Does <treatment> lower <outcome> in <population>?"}\n\n'
            "Finding: Evidence on <exposure> for <disease> is insufficient.\n"
            '{"question": "Does <exposure> protect against <disease>?"}\n\n'
            f"Finding: {conclusion}\n"
            "Write one yes/no question, in the same style, that this finding answers. Ask about the main claim in "
            "its positive form, even if the finding is negative. Use your own words; never mention a study, paper "
            "or conclusion.",
        },
    ]


def order_key(doc_key: str) -> str:
    return hashlib.sha256(f"{HARD_SET_VERSION}:{doc_key}".encode()).hexdigest()


def set_version(items: list[HardItem]) -> str:
    digest = hashlib.sha256(json.dumps([i.as_row() for i in items], sort_keys=True).encode()).hexdigest()[:12]
    return f"{HARD_SET_VERSION}-{len(items)}-{digest}"


def composition(items: list[HardItem]) -> dict[str, int]:
    out = {p: 0 for p in POLARITIES}
    for i in items:
        out[i.polarity] += 1
    return out
