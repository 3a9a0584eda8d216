"""An answer's text, written by code from what passed the checks (``core.answering``): the verdict's lead sentence,
every sentence ending with its citations, the fallbacks (the verified quotes alone; where it looked), and the
citation checks of a free-text answer (the orchestrator's) and of the benchmark."""

from __future__ import annotations

import re

from core.answering import CITE_MARKS, Checked, content_words, quote_support, sentence_support, text_sentences


def _cites(numbers: list[int]) -> str:
    return "".join(f"[{n}]" for n in numbers)


LEADS = {
    "supports": "Yes: the cited sources support this",
    "refutes": "No: the cited sources do not support this",
    "insufficient": "The cited sources do not give enough evidence to answer this with confidence",
}
NOT_IN_SOURCES = "The knowledge base does not cover this question, so I cannot answer it from its sources."


def render(checked: Checked) -> tuple[str, list[int]]:
    """The answer text from what passed the checks, every sentence ending with its citations; (text, cited numbers)."""
    if checked.verdict == "not_in_sources":
        return NOT_IN_SOURCES, []
    parts: list[str] = []
    cited: list[int] = []
    evidence_sources = list(dict.fromkeys(q["source"] for q in checked.quotes))
    if checked.verdict in LEADS and evidence_sources:
        parts.append(f"{LEADS[checked.verdict]} {_cites(evidence_sources)}.")
        cited += evidence_sources
    for s in checked.sentences:
        sentence = s["sentence"].rstrip()
        end = sentence[-1] if sentence[-1] in ".!?" else "."
        sentence = sentence.rstrip(".!? ")
        parts.append(f"{sentence} {_cites(s['sources'])}{end}")
        cited += s["sources"]
    return " ".join(parts), list(dict.fromkeys(cited))


NOT_FOUND = "The sources found do not state this."


def render_closest(n: int, title: str) -> tuple[str, list[int]]:
    """What a knowledge-base answer says when it found nothing to state: where it looked. Retrieval judged the question
    on topic, so "the knowledge base does not cover this" would mislead; and the reader of a follow-up ("How long was
    the follow-up?", often not in an abstract) learns which study was checked and can open it."""
    title = re.sub(r"\s+", " ", title or "").strip().rstrip(".") or "untitled"
    return f'{NOT_FOUND} The closest source is "{title}" [{n}].', [n]


def render_quotes(checked: Checked, verdict: str = "") -> tuple[str, list[int]]:
    """The fallback when the model's answer does not hold up after its correction: what the sources say, verbatim,
    led by ``verdict`` only when it is one read from a quoted source's conclusion (``fallback_verdict``). The failed
    answer's own verdict is never shown: after two failed attempts it is not trustworthy ("Is patient education
    beneficial?" got "Yes" over a source whose evidence was insufficient)."""
    if not checked.quotes:
        return "The sources I found do not clearly answer this question.", []
    cited = list(dict.fromkeys(q["source"] for q in checked.quotes))
    parts = [f"{LEADS[verdict]} {_cites(cited)}."] if verdict in LEADS else []
    parts += [f'Source [{q["source"]}] states: "{q["quote"].rstrip(". ")}." [{q["source"]}]' for q in checked.quotes]
    return " ".join(parts), cited


def fallback_verdict(checked: Checked, decided: tuple[str, int] | None = None) -> str:
    """The verdict of a fallback answer: "quotes_only" (verified quotes) or "unanswered" (nothing verified).
    ``decided``: (verdict, source) read from that source's conclusion before the answer (``core.verdict``); it is
    kept when a verified quote comes from that source, since no failed answer wrote it."""
    if not checked.quotes:
        return "unanswered"
    if decided and decided[0] in LEADS and any(q["source"] == decided[1] for q in checked.quotes):
        return decided[0]
    return "quotes_only"


def fallback_step(verdict: str) -> str:
    """What ``verdict_steps`` records for a fallback answer."""
    kept = f"the verified quotes under the calibrated verdict {verdict}" if verdict in LEADS else verdict
    return f"failed the checks after correction: {kept}"


def check_text_answer(text: str, sources: dict[int, str], min_sentence_support: float = 0.5) -> list[str]:
    """Problems of a free-text answer (the orchestrator's): sentences without a citation or without support."""
    problems = []
    for sentence in text_sentences(text):
        numbers = [int(m) for m in re.findall(r"\[(\d{1,2})\]", sentence) if int(m) in sources]
        bare = CITE_MARKS.sub("", sentence).strip()
        if len(content_words(bare)) < 2:
            continue
        if not numbers:
            problems.append(f'sentence without a citation: "{bare[:60]}"')
        elif max(sentence_support(bare, sources[n]) for n in numbers) < min_sentence_support:
            problems.append(f'sentence not supported by {numbers}: "{bare[:60]}"')
    return problems


def supported_share(text: str, sources: dict[int, str], min_sentence_support: float = 0.5) -> float:
    """Share of an answer's sentences that cite a source which supports them (the benchmark's citation metric)."""
    sentences = [s for s in text_sentences(text) if len(content_words(CITE_MARKS.sub("", s))) >= 2]
    if not sentences:
        return 0.0
    good = 0
    for s in sentences:
        numbers = [int(m) for m in re.findall(r"\[(\d{1,2})\]", s) if int(m) in sources]
        bare = CITE_MARKS.sub("", s).strip()
        quoted = re.search(r'"([^"]{10,})"', bare)
        if numbers and quoted:
            good += max(quote_support(quoted.group(1), sources[n]) for n in numbers) >= 0.85
        elif numbers and any(bare.startswith(lead) for lead in LEADS.values()):
            good += 1  # the verdict's lead sentence cites the verified evidence
        elif numbers:
            good += max(sentence_support(bare, sources[n]) for n in numbers) >= min_sentence_support
    return good / len(sentences)
