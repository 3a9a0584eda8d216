"""Conversations: a follow-up becomes a standalone question before retrieval.

"Which regions were studied in it?" retrieves nannoplankton in a Romanian basin; rewritten with the conversation
("Which regions were studied in the study of gliclazide during Ramadan?") it retrieves the right article. The
rewrite is one short JSON-schema-constrained LLM call, made only when the question leans on the conversation
(pronouns, "the study", very short); the history it sees is cut to a token budget, newest turns first. A follow-up
that refers back after an answer that cited the knowledge base is about the studies it cited
(``conversation_studies``). Pure functions; the call is in ``agents.service``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.answer_text import LEADS, NOT_FOUND, NOT_IN_SOURCES
from core.answering import content_words

REWRITE_VERSION = "rewrite-v4-retry-with-subject"
_ANAPHORA = re.compile(
    r"\b(it|its|they|them|their|theirs|this|that|these|those|he|she|him|her|such|there|the same|above|"
    r"the (?:study|trial|paper|article|review|analysis|drug|treatment|intervention|disease|condition|patients|"
    r"authors|results?|findings?|cohort|sample|population)|(?:this|that|the) one|former|latter)\b",
    re.I,
)


@dataclass(frozen=True)
class Turn:
    role: str  # "user" | "assistant"
    content: str
    cited: tuple[str, ...] = ()  # an assistant turn's knowledge-base citations ("PMID:123" or document keys)


def needs_rewrite(question: str, history: list[Turn]) -> bool:
    """True when a question cannot stand alone: it refers back (pronouns, "the study") or has almost no content."""
    if not any(t.role == "user" for t in history):
        return False
    return bool(_ANAPHORA.search(question)) or len(content_words(question)) < 2


def approx_tokens(text: str) -> int:
    return max(1, len(text) // 4)


def history_window(history: list[Turn], budget_tokens: int = 600, per_turn_chars: int = 600) -> list[Turn]:
    """The newest turns that fit ``budget_tokens`` (each cut to ``per_turn_chars``), oldest first."""
    out: list[Turn] = []
    used = 0
    for turn in reversed(history):
        text = turn.content.strip()
        if len(text) > per_turn_chars:
            text = text[:per_turn_chars].rsplit(" ", 1)[0] + " ..."
        cost = approx_tokens(text)
        if out and used + cost > budget_tokens:
            break
        out.append(Turn(turn.role, text, turn.cited))
        used += cost
    return list(reversed(out))


REWRITE_SCHEMA = {
    "type": "object",
    "properties": {"question": {"type": "string", "minLength": 5, "maxLength": 300}},
    "required": ["question"],
}


def rewrite_messages(question: str, history: list[Turn]) -> list[dict]:
    lines = [f"{'User' if t.role == 'user' else 'Assistant'}: {t.content}" for t in history]
    return [
        {
            "role": "system",
            "content": "You rewrite a follow-up question so it can be understood without the conversation.",
        },
        {
            "role": "user",
            "content": "Conversation:\n" + "\n".join(lines) + f"\n\nFollow-up question: {question}\n\n"
            "Rewrite the follow-up question as one standalone question. Replace every pronoun and every 'the study' "
            "with what it refers to, naming the drug, disease, population or study topic from the conversation. "
            'Reply as JSON: {"question": "..."}',
        },
    ]


# words of the answers' own framing ("Yes: the cited sources support this"): never a conversation's subject
_FRAMING = frozenset(
    content_words(" ".join([*LEADS.values(), NOT_IN_SOURCES, NOT_FOUND, "source sources states concludes closest"]))
)


def names_subject(original: str, rewritten: str, history: list[Turn], min_words: int = 2) -> bool:
    """Whether a rewrite names what the conversation was about: it brings in ``min_words`` content words of the
    earlier turns that the follow-up itself did not have ("How long was the follow-up in the study?" does not)."""
    earlier = {w for t in history for w in content_words(t.content)} - _FRAMING
    own = set(content_words(original))
    return len((set(content_words(rewritten)) - own) & earlier) >= min_words


_FIRST_QUESTION = re.compile(r"^(.+?\?)(?:\s|$)", re.S)


def first_question(text: str) -> str:
    """The rewrite's first question: small models append an answer after it ("Which patients were studied? The study
    involved patients with hypertension ..."), and that invented text steers retrieval to other articles."""
    m = _FIRST_QUESTION.match(text.strip())
    return m.group(1).strip() if m else text.strip()


SUBJECT_MARK = "(about: "


def with_subject(question: str, history: list[Turn]) -> str | None:
    """The question with the conversation's last user question attached, which retrieval can use; None without one."""
    last_user = next((t.content for t in reversed(history) if t.role == "user"), "")
    return f"{question.strip()} {SUBJECT_MARK}{last_user.strip()[:200]})" if last_user.strip() else None


def accept_rewrite(original: str, rewritten: str, history: list[Turn]) -> str:
    """The rewrite's first question when it names the conversation's subject; otherwise the follow-up with the last
    user question attached (small models often keep "the study" unresolved)."""
    rewritten = first_question(rewritten or "")
    if len(rewritten) <= 400 and names_subject(original, rewritten, history):
        return rewritten
    return with_subject(original, history) or rewritten or original


_DEFINITE = re.compile(r"\bthe\s+[a-z]", re.I)


def refers_back(question: str) -> bool:
    """Whether a follow-up presupposes something named earlier: a pronoun or a definite description ("What did the
    control group get?", "How was that trial designed?"). A new question with its own subject and no definite
    reference ("How is hypertension treated in older adults?") does not."""
    return bool(_ANAPHORA.search(question) or _DEFINITE.search(question))


def retry_with_subject(question: str, asked: str, history: list[Turn]) -> str | None:
    """What to ask again when ``asked`` (the follow-up as made standalone) found no source that addresses it: the
    follow-up with the conversation's subject attached, where it refers back; else None."""
    if SUBJECT_MARK in asked or not refers_back(question):
        return None
    return with_subject(question, history)


def conversation_studies(question: str, history: list[Turn], limit: int = 2) -> list[str]:
    """The studies a follow-up that refers back is about: what the last answer cited from the knowledge base (its
    first ``limit``), or [] (a new question, or a last answer that cited nothing). "What did the control group get?"
    asks about the trial just cited, whatever else retrieval finds for the words "control group"."""
    if not refers_back(question):
        return []
    last = next((t for t in reversed(history) if t.role == "assistant"), None)
    return list(last.cited[:limit]) if last else []
