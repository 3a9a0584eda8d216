"""The prompts of the fast path and the orchestrator: the system message, the structured answer's messages (their
instructions first, for the serving engine's prefix cache) and a source's passage as the model reads it."""

from __future__ import annotations

from agents.sources import Source
from core import answering, chunking

SYSTEM = (
    "You are a biomedical research assistant. Use only the numbered sources given to you. "
    "Report what the sources conclude, including negative findings and insufficient evidence; never agree with "
    "the question's framing unless the sources do."
)
ANSWER_TASK = (
    "Task: answer the question in 2 to 4 sentences. After each claim put the number of the source it comes from "
    "in square brackets at the end of the sentence, like this: '... [1].'"
)
REPLY = "Reply with the JSON object."


def format_sources(sources: list[Source]) -> str:
    return "\n\n".join(f"[{s.n}] {s.title}\n{s.text}" for s in sources)


def user_prompt(question: str, sources: list[Source], task: str) -> str:
    return f"Sources:\n{format_sources(sources)}\n\nQuestion: {question}\n\n{task}"


def answer_messages(
    question: str, sources: list[Source], yes_no: bool, max_quotes: int, allowed: list[int] | None = None
) -> list[dict]:
    """The structured answer's prompt. Its instructions are static, so they go first, in the system message: the
    serving engine's prefix cache (llama-server's slots, vLLM's automatic prefix caching) then skips them on every
    answer (~150 tokens, ~3 s of prompt processing on 2 cores); only the sources and the question are new, and the
    answerability judge has just read those (same prefix). ``allowed``: the sources judged to address the question,
    the only ones the answer may use (the schema enforces it; the prompt says it)."""
    reply = REPLY
    if allowed is not None and len(allowed) < len(sources):
        reply = f"Use only source{'s' if len(allowed) > 1 else ''} {_cites_of(allowed)}: the others do not address the question. {REPLY}"
    return [
        {"role": "system", "content": f"{SYSTEM}\n\n{answering.task_text(yes_no, max_quotes)}"},
        {"role": "user", "content": f"Sources:\n{format_sources(sources)}\n\nQuestion: {question}\n\n{reply}"},
    ]


def _cites_of(numbers: list[int]) -> str:
    return ", ".join(f"[{n}]" for n in numbers)


def passage_text(conclusion: str, text: str, limit: int, document: str = "", document_limit: int = 0) -> str:
    """A source as the model reads it: its conclusions first (labelled), then the best-matching excerpt, or, when
    ``document`` is given, the rest of the whole document (up to ``document_limit`` characters in all)."""
    conclusion, text, document = (conclusion or "").strip(), (text or "").strip(), (document or "").strip()
    if document:
        limit = max(limit, document_limit)
        if not conclusion:
            return document[:limit]
        fitted = answering.fit_conclusion(conclusion, limit - len("Conclusion: "))
        return f"Conclusion: {fitted}\nExcerpt: {chunking.without_sentences(document, fitted)}"[:limit]
    if not conclusion:
        return text[:limit]
    fitted = answering.fit_conclusion(conclusion, limit - len("Conclusion: "))
    if conclusion != text:
        return f"Conclusion: {fitted}\nExcerpt: {text}"[:limit]
    return f"Conclusion: {fitted}"
