"""Faithful answers: a JSON-schema answer with verbatim evidence, checked by code against the sources.

A small model (1.5B on 2 cores) writes one object, in this order: evidence quotes copied from the numbered
sources (conclusions first), a verdict on the question, then short answer sentences that each name their
sources. Nothing here trusts the model: :func:`check_answer` verifies every quote against its source's text,
every sentence's lexical support in the sources it cites, and that the sentences and the quoted evidence agree
with the verdict (a "Yes" over a quote that says "no significant difference" is the error this exists to stop).
:func:`render` writes the answer text from what passed, so every sentence carries a citation. One bounded
correction (the reference design's correction loop) gets the problems as feedback; if it still fails, the
answer falls back to the verified quotes themselves.

Pure functions; the LLM calls are in ``agents.service``.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

from core.evaluation import CONCLUSION_LABELS

PROMPT_VERSION = "answer-v6-instructions-first"

YES_NO_VERDICTS = ("supports", "refutes", "insufficient", "not_in_sources")
OPEN_VERDICTS = ("answered", "not_in_sources")

_YES_NO_START = re.compile(
    r"^\s*(is|are|was|were|does|do|did|can|could|should|would|will|has|have|had|may|might|must)\b", re.I
)
# "Was it a prospective or a retrospective study?": the subject is the study already named, so "or" offers the
# answers (an alternative question); "Do A or B reduce X?" names its subject and stays yes/no, and "... or not?" too
_ALTERNATIVE = re.compile(
    r"^\s*(?:is|are|was|were|does|do|did|has|have|had)\s+(?:it|that|this|they|these|those|the (?:study|trial|"
    r"analysis|series|cohort|review|research))\b[^?]*\bor\b(?!\s+not\b)",
    re.I,
)
_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")
CITE_MARKS = re.compile(r"\s*\[\d{1,2}\](?:\s*\[\d{1,2}\])*")
# Conclusions that do not support a positive claim. Deliberately phrase-level: "not" alone is too common. Not "no
# increase": "X reduced Y with no increase in complications" is a positive conclusion with a safety clause.
_NEGATIVE = re.compile(
    r"\b(no (?:significant|statistically significant|clear|clinically (?:relevant|meaningful)|consistent)?\s*"
    r"(?:difference|differences|effect|effects|benefit|improvement|association|evidence|reduction|impact|change|"
    r"relationship|relation|correlation|link)s?"
    r"|did not|does not|do not|was not|were not|is not|are not|has not|have not|cannot|could not|failed to|"
    r"not (?:significantly|associated|effective|superior|improve|reduce)|"
    r"insufficient|not sufficient|inconclusive|remains? (?:unclear|uncertain|unknown)|unclear whether|"
    r"lack of (?:evidence|effect|benefit)|limited evidence|low[- ](?:quality|certainty) evidence|"
    r"(?:very )?low[- ]certainty|further (?:research|studies|"
    r"trials) (?:is|are) (?:needed|required|warranted))\b",
    re.I,
)
# The subset of negative cues that say the evidence is too weak to decide (not that it decides "no"). "Further research
# is needed" alone is not one: it closes many positive and negative conclusions alike.
_INSUFFICIENT = re.compile(
    r"\b(insufficient|not sufficient|inconclusive|remains? (?:unclear|uncertain|unknown|controversial)|unclear whether|"
    r"uncertain whether|lack of (?:high[- ]quality )?evidence|limited evidence|low[- ](?:quality|certainty) evidence|"
    r"(?:very )?low[- ]certainty|not (?:possible|able) to (?:draw|conclude|determine)|no (?:firm |definitive )?"
    r"conclusions? (?:can|could) be drawn|cannot be (?:recommended|determined|concluded))\b",
    re.I,
)
# Conclusions that report an effect (read only in sentences or clauses without a negative cue).
_POSITIVE = re.compile(
    r"\b(significantly (?:improved|reduced|increased|decreased|lowered|better|higher|lower|associated)|"
    r"improve[sd]?|reduce[sd]?|(?:is|are|was|were) (?:safe and )?(?:effective|beneficial|feasible|superior)|"
    r"(?:is|are|was|were) (?:significantly |independently |strongly )?associated with)\b",
    re.I,
)
_AFFIRMATIVE_OPENING = re.compile(
    r"^\s*(yes\b|there is (?:good|strong|clear|sufficient) evidence|it (?:is|does) (?:effective|work))", re.I
)
_NEGATIVE_OPENING = re.compile(r"^\s*no\b[,.:]?", re.I)
STOPWORDS = frozenset(
    """a an the and or of in on for to with without by from at as is are was were be been being this that these those it
    its their there which who whom whose what when where why how than then so such not no nor do does did done can could
    should would will may might must has have had into about over under between among after before during per via vs
    also more most less least very much many any some all each both either neither other others same own only just
    study studies patients patient results result conclusion conclusions background methods objective aim aims we our
    they them he she his her evidence effect effects based use used using compared versus group groups""".split()
)


def is_yes_no(question: str) -> bool:
    """A question a clinician would answer yes / no / not known (decided by code, so the model need not): it opens
    with an auxiliary verb, or with a framing phrase and a comma and then one ("In children on ECMO, is ...?",
    "Among adults with X, does ...?"; 16 of the 77 covered dev questions are written that way), unless it asks which
    of two things the study it refers to was ("Was it prospective or retrospective?")."""
    q = question.strip()
    if _ALTERNATIVE.match(q):  # its first sentence offers the answers: "prospective or retrospective?"
        return False
    head, comma, rest = q.partition(",")
    framed = bool(comma) and len(head) <= 120 and "?" not in head and bool(_YES_NO_START.match(rest))
    return bool(_YES_NO_START.match(q)) or framed


def content_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS and len(w) > 2]


def answer_schema(
    n_sources: int,
    yes_no: bool,
    max_quotes: int = 1,
    max_sentences: int = 3,
    allowed: list[int] | None = None,
    verdicts: list[str] | None = None,
) -> dict[str, Any]:
    """The object the model must write, properties in the order it writes them (evidence before verdict).
    ``allowed``: the only source numbers it may quote or cite (those judged to address the question); ``verdicts``:
    the only verdicts it may write (the one decided before the answer, and "not_in_sources")."""
    n = max(n_sources, 1)
    source = {"type": "integer", "enum": list(allowed)} if allowed else {"type": "integer", "minimum": 1, "maximum": n}
    return {
        "type": "object",
        "properties": {
            "evidence": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"source": source, "quote": {"type": "string", "minLength": 10, "maxLength": 240}},
                    "required": ["source", "quote"],
                },
                "minItems": 1,
                "maxItems": max_quotes,
            },
            "verdict": {"type": "string", "enum": list(verdicts or (YES_NO_VERDICTS if yes_no else OPEN_VERDICTS))},
            "answer": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "sentence": {"type": "string", "minLength": 10, "maxLength": 260},
                        "sources": {"type": "array", "items": source, "minItems": 1, "maxItems": 3},
                    },
                    "required": ["sentence", "sources"],
                },
                "minItems": 1,
                "maxItems": max_sentences,
            },
        },
        "required": ["evidence", "verdict", "answer"],
    }


def task_text(yes_no: bool, max_quotes: int = 1) -> str:
    if yes_no:
        verdict = (
            'verdict: "supports" only if the quoted conclusion says yes; "refutes" if it says no, no effect, no '
            'difference or not associated; "insufficient" if it says the evidence is insufficient, unclear or that more '
            'research is needed; "not_in_sources" if no source is about the question.'
        )
    else:
        verdict = 'verdict: "answered", or "not_in_sources" if no source is about the question.'
    return (
        "Task: reply with one JSON object.\n"
        f"evidence: copy word for word {'the sentence' if max_quotes == 1 else 'one or two sentences'} from the "
        "sources that answers the question, preferring a source's Conclusion; give its source number.\n"
        f"{verdict}\n"
        "answer: one to three short sentences that say what the sources conclude, in your own words, agreeing with "
        "the evidence and the verdict; give each sentence the numbers of the sources it comes from. Do not start "
        "with 'Yes' unless the verdict is supports. Do not repeat the question."
    )


def _norm_tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def quote_support(quote: str, source_text: str) -> float:
    """Share of the quote's words found, in order, in the source (1.0 = verbatim up to case and punctuation)."""
    q, s = _norm_tokens(quote), _norm_tokens(source_text)
    if not q or not s:
        return 0.0
    matcher = difflib.SequenceMatcher(None, s, q, autojunk=False)
    matched = sum(b.size for b in matcher.get_matching_blocks() if b.size >= 2 or len(q) < 4)
    return matched / len(q)


def sentence_support(sentence: str, source_text: str, stem: int = 6) -> float:
    """Share of the sentence's content words that occur in the source (or share its first ``stem`` letters with one
    there): cheap evidence that it says what it cites."""
    words = content_words(sentence)
    if not words:
        return 0.0
    vocab = set(content_words(source_text))
    stems = {w[:stem] for w in vocab}
    return sum(1 for w in words if w in vocab or w[:stem] in stems) / len(words)


def has_negative_finding(text: str) -> bool:
    return bool(_NEGATIVE.search(text))


def conclusion_part(source_text: str) -> str:
    """The "Conclusion: ..." part of a source as the model reads it (``agents.service.passage_text``), or ''."""
    if not source_text.startswith("Conclusion:"):
        return ""
    return source_text[len("Conclusion:") :].split("\nExcerpt:", 1)[0].strip()


# a conclusions label inside a chunk ("LABEL: text", as the chunker writes sections): the conclusion chunk often
# starts with the end of RESULTS
_IN_TEXT_CONCLUSION = re.compile(rf"\b(?:{CONCLUSION_LABELS})\s*:", re.I)


def fit_conclusion(text: str, limit: int) -> str:
    """``text`` (a conclusion chunk) within ``limit`` characters, never losing its conclusions: when it is too long
    and its conclusions label is not at the start, the text before the label is shortened, not the conclusions
    ("... did no" was all that survived of "did not reduce the incidence ..." in a chunk that began with RESULTS).
    The conclusions themselves are cut at the end only when they alone exceed the limit."""
    text = text.strip()
    if len(text) <= limit:
        return text
    found = [m.start() for m in _IN_TEXT_CONCLUSION.finditer(text)]
    at = found[-1] if found else 0
    if at <= 0:
        return text[:limit]
    tail = text[at:]
    room = limit - len(tail) - 5  # " ... "
    if room < 80:  # not enough room for a useful piece of what came before
        return tail[:limit]
    head = text[:room].rsplit(" ", 1)[0]
    return f"{head} ... {tail}"


def verdict_of_claim(claim: str) -> str:
    """The verdict a negative conclusion sentence gives: "insufficient" when it says the evidence cannot decide."""
    return "insufficient" if _INSUFFICIENT.search(claim) else "refutes"


_CLAUSE = re.compile(r"\s*;\s*|,?\s+\b(?:but|whereas|while|although|though|however|yet)\b,?\s*", re.I)


def negative_claims(question: str, source_text: str, min_overlap: float = 0.4) -> list[str]:
    """Sentences of a source's conclusion that report no effect / no difference / weak evidence about what the
    question asks (they share ``min_overlap`` of its content words): a "supports" verdict over them is wrong.

    A mixed sentence ("improved pain and function but did not improve PtGA") counts only when its negative clause is
    at least as close to the question as its positive one: asked about pain, that sentence says yes."""
    if not question:
        return []
    found = []
    conclusion = conclusion_part(source_text)
    for sentence in text_sentences(conclusion):
        if not has_negative_finding(sentence) or sentence_support(question, sentence) < min_overlap:
            continue
        parts = [c for c in _CLAUSE.split(sentence) if c and c.strip()]
        if len(parts) > 1:
            neg = max((sentence_support(question, c) for c in parts if has_negative_finding(c)), default=0.0)
            pos = max(
                (sentence_support(question, c) for c in parts if _POSITIVE.search(c) and not has_negative_finding(c)),
                default=0.0,
            )
            if pos > neg:
                continue
        found.append(sentence)
    # the conclusions' own sentences before the RESULTS that a conclusion chunk may begin with: they are what a
    # repaired answer quotes
    labels = list(_IN_TEXT_CONCLUSION.finditer(conclusion))
    if found and labels:
        tail = conclusion[labels[-1].start() :]
        found.sort(key=lambda sentence: sentence not in tail)
    return found


def positive_claims(question: str, source_text: str, min_overlap: float = 0.5) -> list[str]:
    """Sentences of a source's conclusion that report an effect about what the question asks, when none of its
    sentences about the question is negative: a "refutes" verdict over them is wrong ("Pain and physical function
    improved with both doses of tanezumab compared to NSAIDs" answered "No")."""
    if not question or negative_claims(question, source_text):
        return []
    return [
        s
        for s in text_sentences(conclusion_part(source_text))
        if _POSITIVE.search(s) and not has_negative_finding(s) and sentence_support(question, s) >= min_overlap
    ]


@dataclass
class Checked:
    verdict: str
    quotes: list[dict]  # verified: {"source", "quote", "support"}
    sentences: list[dict]  # supported: {"sentence", "sources", "support"}
    problems: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # why sentences or quotes were dropped
    # a "supports" verdict that the evidence itself contradicts: {"source": n, "claim": the negative sentence}
    conflict: dict | None = None
    repaired: str = ""  # what the code changed without another LLM call, if anything

    @property
    def ok(self) -> bool:
        return not self.problems


def parse_answer(text: str) -> dict:
    import json

    try:
        obj = json.loads(text)
    except ValueError:
        return {}
    return obj if isinstance(obj, dict) else {}


def check_answer(
    obj: dict,
    sources: dict[int, str],
    yes_no: bool,
    min_quote_support: float = 0.85,
    min_sentence_support: float = 0.5,
    question: str = "",
    on_topic: bool = False,
) -> Checked:
    """Verify a model answer object against ``sources`` ({n: text}); what fails is dropped and named in problems.

    ``question``: when given, a "not_in_sources" verdict over a verified quote that is about the question (half its
    content words) is a contradiction too: small models say "not in the sources" over the very passage they quote.
    ``on_topic``: retrieval evidence says the sources are about the question (the knowledge-base route); then a
    "not_in_sources" with no quote at all is questioned once too (follow-ups like "Which patients were studied in
    the study of X?" got it over the very abstract about X)."""
    verdicts = YES_NO_VERDICTS if yes_no else OPEN_VERDICTS
    verdict = obj.get("verdict") if obj.get("verdict") in verdicts else ""
    problems: list[str] = []
    dropped: list[str] = []
    if not verdict:
        problems.append(f"the verdict must be one of {', '.join(verdicts)}")
    quotes = []
    for ev in obj.get("evidence") or []:
        if not isinstance(ev, dict):
            continue
        n, quote = ev.get("source"), str(ev.get("quote") or "").strip()
        if n not in sources:
            dropped.append(f"quote cites source {n}, which does not exist")
            continue
        support = quote_support(quote, sources[n])
        if support >= min_quote_support:
            quotes.append({"source": n, "quote": quote, "support": round(support, 3)})
        else:
            dropped.append(f'quote "{quote[:80]}" is not in source [{n}] (match {support:.2f})')
    sentences = []
    for item in obj.get("answer") or []:
        if not isinstance(item, dict):
            continue
        cited = [n for n in dict.fromkeys(item.get("sources") or []) if n in sources]
        # an item may hold more than one sentence: each is checked and cited on its own
        for text in text_sentences(CITE_MARKS.sub("", str(item.get("sentence") or "")).strip()):
            if not cited:
                dropped.append(f'sentence "{text[:80]}" cites no existing source')
                continue
            support = max(sentence_support(text, sources[n]) for n in cited)
            if support < min_sentence_support:
                dropped.append(f'sentence "{text[:80]}" is not supported by source(s) {cited} ({support:.2f})')
                continue
            sentences.append({"sentence": text, "sources": cited, "support": round(support, 3)})
    if verdict == "not_in_sources":
        about = [q for q in quotes if question and sentence_support(question, q["quote"]) >= 0.5]
        if about:
            return Checked(
                verdict,
                quotes,
                sentences,
                [f"the verdict says no source is about the question, but source [{about[0]['source']}] is"],
                dropped,
            )
        if on_topic and not quotes:
            return Checked(
                verdict,
                [],
                [],
                [
                    "the verdict says no source is about the question, but the search found sources about it: quote "
                    "the sentence that answers the question, and say not_in_sources only if no sentence does"
                ],
                dropped,
            )
        return Checked(verdict, [], [], [], dropped)
    if not quotes:
        problems.append("no evidence quote was copied word for word from the sources")
    if not sentences:
        problems.append("no answer sentence is supported by the sources it cites")
    problems += [d for d in dropped if d.startswith("sentence")][:2]
    conflict = None
    if yes_no and verdict:
        # a quoted negative finding counts when it is about the question ("differences between the 2.5 mg and NSAID
        # groups were not significant" does not refute "Does tanezumab improve pain?"); without a question, any does
        negative_quote = next(
            (
                q
                for q in quotes
                if has_negative_finding(q["quote"])
                and (not question or negative_claims(question, "Conclusion: " + q["quote"]))
            ),
            None,
        )
        if verdict == "supports" and negative_quote:
            problems.append(
                "the verdict 'supports' contradicts the quoted evidence, which reports no effect, no difference or "
                "insufficient evidence"
            )
            conflict = {"source": negative_quote["source"], "claim": negative_quote["quote"]}
        elif verdict == "supports":
            # the model may quote a side sentence: the conclusion of each source it relies on is checked too
            found = _first_claim(negative_claims, question, sources, _relied(quotes, sentences))
            if found:
                problems.append(
                    f"source [{found[0]}] concludes \"{found[1][:160]}\", which the verdict 'supports' contradicts"
                )
                conflict = {"source": found[0], "claim": found[1]}
        elif verdict == "refutes" and not any(has_negative_finding(q["quote"]) for q in quotes):
            # the mirror error, rarer and less dangerous: "no" over a conclusion that reports the effect. Positive
            # cues are weaker evidence than negative ones, so this asks the model again instead of fixing it in code.
            found = _first_claim(positive_claims, question, sources, _relied(quotes, sentences))
            if found:
                problems.append(
                    f"source [{found[0]}] concludes \"{found[1][:160]}\", which the verdict 'refutes' contradicts"
                )
        for s in sentences:
            if verdict in ("refutes", "insufficient") and _AFFIRMATIVE_OPENING.match(s["sentence"]):
                problems.append(f'the sentence "{s["sentence"][:60]}" says yes but the verdict is {verdict}')
            if verdict == "supports" and _NEGATIVE_OPENING.match(s["sentence"]):
                problems.append(f'the sentence "{s["sentence"][:60]}" says no but the verdict is supports')
    checked = Checked(verdict, quotes, sentences, problems, dropped, conflict)
    if yes_no and verdict == "refutes" and checked.ok:
        refine_insufficient(checked, sources, question)
    return checked


def _relied(quotes: list[dict], sentences: list[dict]) -> list[int]:
    """The sources an answer relies on: those it quotes, then those its sentences cite."""
    return list(dict.fromkeys([q["source"] for q in quotes] + [n for s in sentences for n in s["sources"]]))


def _first_claim(find, question: str, sources: dict[int, str], relied: list[int]) -> tuple[int, str] | None:
    """(source, sentence): the first claim ``find`` (negative_claims / positive_claims) reports among ``relied``."""
    for n in relied:
        claims = find(question, sources[n])
        if claims:
            return n, claims[0]
    return None


def refine_insufficient(checked: Checked, sources: dict[int, str], question: str) -> None:
    """A "refutes" whose evidence only says it cannot decide ("the evidence is insufficient") becomes "insufficient":
    a clinician reads "no" and "we do not know" differently. Only the conclusions of the sources the answer cites."""
    claims = [c for n in _relied(checked.quotes, checked.sentences) for c in negative_claims(question, sources[n])]
    claims += [q["quote"] for q in checked.quotes if has_negative_finding(q["quote"])]
    if claims and all(verdict_of_claim(c) == "insufficient" for c in claims):
        checked.verdict = "insufficient"
        checked.repaired = "verdict refutes -> insufficient: the cited conclusion says the evidence cannot decide"


def repair(checked: Checked) -> Checked | None:
    """The correction that needs no LLM call: a "supports" verdict contradicted by the evidence's own negative
    conclusion becomes that conclusion's verdict, and the model's sentences (written under the wrong verdict) are
    replaced by the conclusion, quoted. None when there is no such conflict (then the model is asked again)."""
    if checked.conflict is None:
        return None
    n, claim = checked.conflict["source"], checked.conflict["claim"].strip()
    verdict = verdict_of_claim(claim)
    others = [q for q in checked.quotes if q["quote"] != claim]
    quotes = [{"source": n, "quote": claim, "support": 1.0}, *others]
    quoted = claim.rstrip(". ")
    sentence = {"sentence": f'Source [{n}] concludes: "{quoted}."', "sources": [n], "support": 1.0}
    return Checked(
        verdict,
        quotes,
        [sentence],
        [],
        checked.dropped,
        None,
        f"verdict supports -> {verdict}: source [{n}] concludes otherwise; its conclusion replaces the sentences",
    )


def correction_message(checked: Checked) -> str:
    problems = "\n".join(f"- {p}" for p in checked.problems[:5])
    return (
        "Your answer has these problems:\n"
        f"{problems}\n"
        "Write the JSON object again: copy the evidence word for word from the sources, choose the verdict that the "
        "evidence supports, and write sentences that agree with it."
    )


def text_sentences(text: str) -> list[str]:
    parts = re.split(r"(?<=[.!?])\s+(?=[A-Z\"'(\[])", text.strip())
    return [p for p in (x.strip() for x in parts) if p]
