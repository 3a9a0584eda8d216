"""The answer service's types: its configuration, a finished answer, the plan decided before the answer call, and
the helpers that put an answer's lineage and tokens on its trace."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field

from agents.sources import Source
from core import answerability, answering, verdict
from core.conversation import Turn


@dataclass
class AgentConfig:
    k: int = 5
    retrieval_mode: str = "hybrid"
    max_passage_chars: int = 700
    # an open question ("How large was that study?") reads its top document whole, up to this many characters:
    # its answer is often in METHODS, which the conclusions and the best-matching chunk leave out
    max_document_chars: int = 2400
    answer_max_tokens: int = 360  # the JSON answer: quotes, verdict, sentences
    rewrite_max_tokens: int = 80
    history_budget_tokens: int = 600
    max_corrections: int = 1
    # evidence quotes per answer (the schema's bound): one, from a conclusion, is what the checks need; a second cost
    # ~35 generated tokens (~4 s on 2 cores) and was often the first one again, for another source
    max_quotes: int = 1
    max_sentences: int = 3  # answer sentences per answer
    min_quote_support: float = 0.85  # share of a quote's words found in order in its source
    min_sentence_support: float = 0.5  # share of a sentence's content words found in the sources it cites
    temperature: float = 0.1
    frequency_penalty: float = 0.5  # small local models loop on lists without it
    tool_mode: str = "json_action"  # "native" where the endpoint has a tool parser (vLLM)
    max_agent_tool_calls: int = 4
    web_search: str = "stdio"  # "stdio" (subprocess), "http" (web_search_url) or "off"
    web_search_url: str = ""
    generation: str | None = None  # index generation to read; None = the serving one (evaluation sets a candidate)


@dataclass
class Answer:
    question: str
    answer: str
    citations: list[dict]
    relevance: float | None
    route: str
    trace_id: str
    llm_calls: int
    tokens: dict = field(default_factory=dict)
    timings_ms: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    answer_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    verdict: str = ""
    evidence: list[dict] = field(default_factory=list)  # verified quotes: {"n", "id", "quote"}
    standalone_question: str = ""
    conversation_id: str | None = None
    relevance_evidence: dict = field(default_factory=dict)
    lineage: dict = field(default_factory=dict)
    principal: str = ""  # who asked: the answer came from what they may read
    # which sources address the question (core.answerability): scores per source, covered, related, route
    answerability: dict = field(default_factory=dict)
    # the verdict as the model wrote it, what the checks changed, and the final one (reported separately)
    verdict_steps: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Plan:
    """Everything decided before the final LLM call."""

    question: str
    sources: list[Source]
    relevance: float | None
    route: str
    messages: list[dict]
    trace_id: str
    span: object
    llm_calls: int = 0
    tokens: dict = field(default_factory=lambda: {"prompt": 0, "completion": 0})
    timings_ms: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    standalone: str = ""
    yes_no: bool = False
    relevance_evidence: dict = field(default_factory=dict)
    models: list[str] = field(default_factory=list)
    result: Answer | None = None
    answerability: answerability.Answerability | None = None
    nearest: list[tuple[str, str]] = field(default_factory=list)  # (id, title) named when nothing covers the question
    verdict_steps: dict = field(default_factory=lambda: {"model": None, "checks": []})
    allowed: list[int] | None = None  # the only sources the answer may quote or cite (None: all of them)
    decision: verdict.Decision | None = None  # the calibrated verdict read from a conclusion before the answer
    follow_up_retry: bool | None = None  # asked again with the conversation's subject: covered then? (None: not asked)

    def answer_schema(self, max_quotes: int, max_sentences: int) -> dict:
        """The JSON schema of the answer call and of its corrections: only the sources judged to address the
        question, and when a verdict was decided before the answer, only it or "not_in_sources". A correction fixes
        quotes and sentences; it does not decide again (on dev the calibrated verdict agreed with the hand labels
        0.90, the model's own word 0.65)."""
        decided = [self.decision.verdict, "not_in_sources"] if self.decision else None
        return answering.answer_schema(len(self.sources), self.yes_no, max_quotes, max_sentences, self.allowed, decided)


MAX_CITED = 5


def cited_ids(citations) -> tuple[str, ...]:
    """The knowledge-base ids of an answer's ``citations`` (as the API returns them), bounded: what a follow-up that
    refers back is about (``core.conversation.conversation_studies``). Web results are not the index's to fetch."""
    if not isinstance(citations, list):
        return ()
    ids = [
        str(c["id"])[:200]
        for c in citations
        if isinstance(c, dict) and c.get("id") and c.get("origin", "knowledge_base") == "knowledge_base"
    ]
    return tuple(dict.fromkeys(ids))[:MAX_CITED]


def turns_of(history: list[dict] | list[Turn] | None) -> list[Turn]:
    """Conversation turns from the API's messages; an assistant message may carry its answer's ``citations``."""
    out = []
    for t in history or []:
        if isinstance(t, Turn):
            out.append(t)
        elif isinstance(t, dict) and t.get("role") in ("user", "assistant") and str(t.get("content") or "").strip():
            cited = cited_ids(t.get("citations")) if t["role"] == "assistant" else ()
            out.append(Turn(t["role"], str(t["content"]), cited))
    return out


def trace_lineage(span, answer) -> None:
    """The answer's lineage and token totals on its root span: a trace says what the answer was made from."""
    for key, value in answer.lineage.items():
        if value is not None:
            span.set_attribute(f"agentic.lineage.{key}", str(value))
    # totals under agentic.*: gen_ai.usage.* here would count the answer's tokens twice in trace stores' sums
    span.set_attribute("agentic.tokens.prompt", int(answer.tokens.get("prompt", 0)))
    span.set_attribute("agentic.tokens.completion", int(answer.tokens.get("completion", 0)))
    span.set_attribute("agentic.llm_calls", int(answer.llm_calls))


def count_usage(r, tokens: dict, span, models: list[str] | None) -> None:
    if r.model:
        span.set_attribute("gen_ai.response.model", r.model)
        if models is not None and r.model not in models:
            models.append(r.model)
    if r.usage:
        tokens["prompt"] += r.usage.prompt_tokens
        tokens["completion"] += r.usage.completion_tokens
        span.set_attribute("gen_ai.usage.input_tokens", r.usage.prompt_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", r.usage.completion_tokens)
