"""Answering questions off the index: a fast path and a Strands orchestrator agent.

Fast path (one LLM call when all goes well):

1. a follow-up in a conversation is rewritten into a standalone question (one short call, only when it leans on
   the conversation: ``core.conversation``);
2. hybrid retrieval of ``k`` distinct documents, each with its conclusions section (with the retrieval evidence of
   ``core.relevance`` recorded for the trace);
3. answerability (``core.answerability``): one constrained call judges which sources address the question; routing
   is code: the knowledge base when one does, and the answer may use only those; otherwise web search (MCP) when it
   is configured, else "the indexed sources do not cover this" with the nearest studies named, nothing cited;
4. one JSON-schema-constrained call writes evidence quotes, a verdict and cited sentences (``core.answering``);
   code checks every quote and sentence against the sources, and the verdict against the quotes. A failed check
   gets one correction call with the problems; if that fails too, the answer is the verified quotes themselves.

Orchestrator (``mode="agent"``): a Strands ``Agent`` with the tools ``search_knowledge_base``,
``assess_relevance`` (the answerability judge) and ``web_search``; the same routing rule is enforced by a hook that
cancels a web search the rule does not allow, and its answer goes through the same support check (one structured correction when it fails).
Agents import resources, never assets.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Iterator

from agents.tracing import trace_id_of, tracer
from core import answerability, answering, chunking, conversation
from core.access import ReadScope, web_query_from
from core.conversation import Turn
from core.relevance import RELEVANCE_VERSION
from resources.gateway import LLMGatewayResource
from resources.retrieval import RetrieverResource

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
_CITE = re.compile(r"\[(\d{1,2})\]")


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
class Source:
    n: int
    id: str  # "PMID:123" or the document key, or the URL for web results
    title: str
    text: str
    origin: str  # "knowledge_base" | "web"
    url: str = ""
    score: float = 0.0
    doc_key: str = ""
    page: str = ""  # "3" or "3-4": where in a paged source (PDF, scan) the passage is; "" otherwise
    dense: float = 0.0  # the document's best dense cosine similarity to the question

    def citation(self) -> dict:
        c = {"n": self.n, "id": self.id, "title": self.title, "origin": self.origin, "url": self.url}
        if self.page:
            c["page"] = self.page
        return c


def page_label(hit) -> str:
    """The page(s) a hit's text is on, "3" or "3-4"; "" for a source without pages."""
    first, last = getattr(hit, "page", None), getattr(hit, "page_end", None)
    if not first:
        return ""
    return str(first) if not last or last == first else f"{first}-{last}"


def cite_label(citation: dict) -> str:
    """How a citation is shown: "PMID:123", or "scans/x.pdf, page 2" for a paged source."""
    page = citation.get("page") or ""
    return f"{citation['id']}, {'pages' if '-' in page else 'page'} {page}" if page else citation["id"]


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


def _source_id(hit) -> str:
    key = hit.doc_key or ""
    if key.startswith("pubmed/") and key.endswith(".xml"):
        return "PMID:" + key[len("pubmed/") : -4]
    return key or hit.doc_id


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


def citations_for(answer: str, sources: list[Source], notes: list[str]) -> list[dict]:
    """The sources the answer cites by ``[n]``; when it cites none, every source it was given (with a note)."""
    found = cited(answer, sources)
    if found or not sources:
        return found
    notes.append("The model cited no source by number; the sources it was given are listed.")
    return [s.citation() for s in sources]


def cited(answer: str, sources: list[Source]) -> list[dict]:
    by_n = {s.n: s for s in sources}
    seen, out = set(), []
    for m in _CITE.finditer(answer):
        n = int(m.group(1))
        if n in by_n and n not in seen:
            seen.add(n)
            out.append(by_n[n].citation())
    return out


def turns_of(history: list[dict] | list[Turn] | None) -> list[Turn]:
    out = []
    for t in history or []:
        if isinstance(t, Turn):
            out.append(t)
        elif isinstance(t, dict) and t.get("role") in ("user", "assistant") and str(t.get("content") or "").strip():
            out.append(Turn(t["role"], str(t["content"])))
    return out


class WebSearch:
    """The web search MCP server, through Strands' MCP client (stdio subprocess or streamable HTTP)."""

    def __init__(self, mode: str, url: str = "", env: dict[str, str] | None = None):
        self.mode, self.url, self.env = mode, url, env
        self._client = None
        self._lock = threading.Lock()

    def _ensure(self):
        if self._client is not None:
            return self._client
        from strands.tools.mcp import MCPClient

        if self.mode == "http":
            client = MCPClient(url=self.url)
        else:
            import sys

            from mcp import StdioServerParameters, stdio_client

            params = StdioServerParameters(command=sys.executable, args=["-m", "agents.websearch_mcp"], env=self.env)
            client = MCPClient(lambda: stdio_client(params))
        client.start()
        self._client = client
        return client

    def search(self, query: str, max_results: int = 5) -> dict:
        if self.mode == "off":
            return {"available": False, "results": [], "error": "web search is turned off in this deployment"}
        with self._lock:
            client = self._ensure()
        result = client.call_tool_sync(
            f"ws-{uuid.uuid4().hex[:8]}", "web_search", {"query": query, "max_results": max_results}
        )
        structured = result.get("structuredContent")
        if isinstance(structured, dict):
            return structured.get("result", structured) if "results" not in structured else structured
        for c in result.get("content", []):
            if "text" in c:
                try:
                    return json.loads(c["text"])
                except ValueError:
                    return {"available": True, "results": [], "error": c["text"][:300]}
        return {"available": True, "results": [], "error": "empty web search result"}

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.stop(None, None, None)
            except Exception:
                pass
            self._client = None


def _trace_lineage(span, answer) -> None:
    """The answer's lineage and token totals on its root span: a trace says what the answer was made from."""
    for key, value in answer.lineage.items():
        if value is not None:
            span.set_attribute(f"agentic.lineage.{key}", str(value))
    # totals under agentic.*: gen_ai.usage.* here would count the answer's tokens twice in trace stores' sums
    span.set_attribute("agentic.tokens.prompt", int(answer.tokens.get("prompt", 0)))
    span.set_attribute("agentic.tokens.completion", int(answer.tokens.get("completion", 0)))
    span.set_attribute("agentic.llm_calls", int(answer.llm_calls))


def _count_usage(r, tokens: dict, span, models: list[str] | None) -> None:
    if r.model:
        span.set_attribute("gen_ai.response.model", r.model)
        if models is not None and r.model not in models:
            models.append(r.model)
    if r.usage:
        tokens["prompt"] += r.usage.prompt_tokens
        tokens["completion"] += r.usage.completion_tokens
        span.set_attribute("gen_ai.usage.input_tokens", r.usage.prompt_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", r.usage.completion_tokens)


class AnswerService:
    def __init__(
        self,
        retriever: RetrieverResource,
        gateway: LLMGatewayResource,
        config: AgentConfig | None = None,
        web_search: WebSearch | None = None,
        state=None,  # a PipelineStateStore, for the index generation's lineage record (optional)
        fit: answerability.Fit | None = None,  # the answerability fit; the committed one by default
    ):
        self.retriever, self.gateway = retriever, gateway
        self.config = config or AgentConfig()
        self.web = web_search or WebSearch(self.config.web_search, self.config.web_search_url)
        self.client = gateway.openai_client()
        self.state = state
        self._fit = fit
        self._lineage_cache: tuple[float, dict] | None = None

    @property
    def fit(self) -> answerability.Fit:
        """The answerability fit of the model that answers (resolved once, through the gateway)."""
        if self._fit is None:
            self._fit = answerability.load_fit(self.lineage()["llm"])
        return self._fit

    # -- lineage --------------------------------------------------------------------------------
    def lineage(self, llm: str = "") -> dict:
        """What an answer was made from: index generation, chunker, embedding model, LLM, prompt version."""
        now = time.monotonic()
        if self._lineage_cache is None or now - self._lineage_cache[0] > 30:
            store = self.retriever.vector_store
            generation = self.config.generation or store.serving_generation()
            built = {}
            if self.state is not None and generation:
                from core.generations import LINEAGE_PREFIX

                built = self.state.read_json(LINEAGE_PREFIX + generation) or {}
            self._lineage_cache = (
                now,
                {
                    "llm": self.gateway.upstream_model(self.gateway.chat_model),
                    "index_generation": generation,
                    "chunker_version": built.get("chunker_version"),
                    "embedding_model": built.get("embedding_model") or self.retriever.embedder.model_id,
                },
            )
        cached = self._lineage_cache[1]
        return {
            **cached,
            "llm": cached["llm"] if not llm or llm == self.gateway.chat_model else llm,
            "prompt_version": (
                f"{answering.PROMPT_VERSION}+{answerability.ANSWERABILITY_VERSION}+{RELEVANCE_VERSION}"
                f"+{conversation.REWRITE_VERSION}"
            ),
        }

    # -- building blocks (also the orchestrator's tools) ----------------------------------------
    def retrieve(
        self,
        question: str,
        filters: dict | None = None,
        k: int | None = None,
        whole: int = 0,
        *,
        scope: ReadScope,
    ) -> tuple[list[Source], dict]:
        """``k`` documents the ``scope`` may read, as numbered sources (conclusions first; the first ``whole`` of
        them entire), and the relevance evidence ({} if none found)."""
        with tracer().start_as_current_span("retrieve") as span:
            found = self.retriever.passages(
                question,
                k=k or self.config.k,
                filters=filters,
                generation=self.config.generation,
                whole=whole,
                scope=scope,
            )
            span.set_attribute("agentic.principal", scope.principal)
            span.set_attribute("retrieval.mode", "hybrid+conclusions")
            span.set_attribute("retrieval.hits", len(found.passages))
        sources = [
            Source(
                n=i + 1,
                id=_source_id(p.hit),
                title=p.hit.title or "",
                text=passage_text(
                    p.conclusion, p.hit.text, self.config.max_passage_chars, p.document, self.config.max_document_chars
                ),
                origin="knowledge_base",
                score=float(p.hit.score),
                doc_key=p.hit.doc_key or "",
                page=page_label(p.hit),
                dense=float(p.dense),
            )
            for i, p in enumerate(found.passages)
        ]
        return sources, (found.evidence.as_dict() if found.evidence else {})

    def web_sources(self, question: str, start: int = 1) -> tuple[list[Source], dict]:
        with tracer().start_as_current_span("web_search") as span:
            result = self.web.search(question, max_results=self.config.k)
            span.set_attribute("web_search.available", bool(result.get("available")))
            span.set_attribute("web_search.results", len(result.get("results", [])))
        sources = [
            Source(
                n=start + i,
                id=r.get("url", ""),
                title=r.get("title", ""),
                text=(r.get("content") or "")[: self.config.max_passage_chars],
                origin="web",
                url=r.get("url", ""),
                score=float(r.get("score") or 0),
            )
            for i, r in enumerate(result.get("results", []))
        ]
        return sources, result

    def _chat(
        self,
        plan_tokens: dict,
        span_name: str,
        messages: list[dict],
        max_tokens: int,
        schema: dict | None = None,
        models: list[str] | None = None,
        **extra,
    ) -> str:
        """One chat call; with ``schema`` the gateway's structured output makes the reply compact JSON of it."""
        with tracer().start_as_current_span(span_name) as span:
            span.set_attribute("gen_ai.system", "openai")
            span.set_attribute("gen_ai.request.model", self.gateway.chat_model)
            kwargs = dict(extra, **self.gateway.structured(span_name, schema)) if schema else extra
            r = self.client.chat.completions.create(
                model=self.gateway.chat_model,
                messages=messages,
                max_tokens=max_tokens,
                temperature=self.config.temperature,
                **kwargs,
            )
            _count_usage(r, plan_tokens, span, models)
            return r.choices[0].message.content or ""

    def judge(
        self, question: str, sources: list[Source], yes_no: bool, tokens: dict, models: list[str]
    ) -> tuple[answerability.Answerability, list[answerability.Features]]:
        """One constrained call: does each source address the question? Then the fitted per-source score and the
        route (``core.answerability``). Its prompt is the answer's up to the question, so the answer call that
        follows pays only its own instructions and output."""
        messages = answerability.judge_messages(
            answer_messages(question, sources, yes_no, self.config.max_quotes),
            question,
            [(s.n, s.title) for s in sources],
        )
        with tracer().start_as_current_span("judge_answerability") as span:
            span.set_attribute("gen_ai.request.model", self.gateway.chat_model)
            r = self.client.chat.completions.create(
                model=self.gateway.chat_model,
                messages=messages,
                max_tokens=4 * len(sources) + 8,
                temperature=0.0,
                logprobs=True,
                top_logprobs=5,
                **self.gateway.structured("judge_answerability", answerability.judge_schema(len(sources))),
            )
            _count_usage(r, tokens, span, models)
            choice = r.choices[0]
            entries = [
                {"token": c.token, "top_logprobs": [{"token": a.token, "logprob": a.logprob} for a in c.top_logprobs]}
                for c in ((choice.logprobs.content or []) if choice.logprobs else [])
            ]
            probs = answerability.yes_probabilities(choice.message.content or "", entries, len(sources))
            lead = answerability.leads([s.dense for s in sources])
            features = [
                answerability.Features(p, answerability.subject_overlap(question, f"{s.title}\n{s.text}"), s.dense, g)
                for p, s, g in zip(probs, sources, lead)
            ]
            decided = answerability.decide([s.n for s in sources], features, self.fit)
            span.set_attribute("agentic.answerability.route", decided.route)
            span.set_attribute("agentic.answerability.score", decided.score)
            span.set_attribute("agentic.answerability.covered", len(decided.covered))
        return decided, features

    def standalone(self, question: str, history: list[Turn], tokens: dict, models: list[str]) -> tuple[str, int]:
        """The question made standalone from the conversation: (question, LLM calls made: 0 or 1)."""
        if not conversation.needs_rewrite(question, history):
            return question, 0
        window = conversation.history_window(history, self.config.history_budget_tokens)
        text = self._chat(
            tokens,
            "rewrite_question",
            conversation.rewrite_messages(question, window),
            self.config.rewrite_max_tokens,
            conversation.REWRITE_SCHEMA,
            models,
        )
        try:
            rewritten = str(json.loads(text).get("question", ""))
        except (ValueError, AttributeError):
            rewritten = ""
        return conversation.accept_rewrite(question, rewritten, window), 1

    # -- fast path ------------------------------------------------------------------------------
    def plan(
        self, question: str, filters: dict | None = None, history: list | None = None, *, scope: ReadScope
    ) -> Plan:
        question = question.strip()
        if not question:
            raise ValueError("question is empty")
        span = tracer().start_span("agentic.answer", attributes={"agentic.question_chars": len(question)})
        from opentelemetry import trace

        token = trace.context_api.attach(trace.set_span_in_context(span))
        tokens = {"prompt": 0, "completion": 0}
        timings: dict[str, float] = {}
        notes: list[str] = []
        models: list[str] = []
        try:
            t = time.perf_counter()
            standalone, calls = self.standalone(question, turns_of(history), tokens, models)
            if calls:
                timings["rewrite"] = (time.perf_counter() - t) * 1000
                span.set_attribute("agentic.standalone_question", standalone[:300])
            yes_no = answering.is_yes_no(standalone)
            t = time.perf_counter()
            # a yes/no question is decided by the conclusions; an open one reads its top document whole
            sources, evidence = self.retrieve(standalone, filters, whole=0 if yes_no else 1, scope=scope)
            timings["retrieve"] = (time.perf_counter() - t) * 1000
            with tracer().start_as_current_span("assess_relevance") as rspan:
                for name, value in evidence.items():
                    rspan.set_attribute(f"agentic.relevance.{name}", value)
            judged, nearest = None, []
            if sources:
                t = time.perf_counter()
                judged, _features = self.judge(standalone, sources, yes_no, tokens, models)
                timings["judge"] = (time.perf_counter() - t) * 1000
                calls += 1
                order = sorted(sources, key=lambda s: -judged.scores.get(s.n, 0.0))
                nearest = [(s.id, s.title) for s in order[:3]]
            relevance: float | None = judged.score if judged else None
            if judged is not None and judged.route == "covered":
                route = "knowledge_base"
            else:
                t = time.perf_counter()
                web, result = self.web_sources(standalone)
                timings["web_search"] = (time.perf_counter() - t) * 1000
                if web:
                    route, sources = "web_search", web
                else:
                    why = result.get("error") or ("no results" if result.get("available") else "not configured")
                    notes.append(
                        f"No indexed source addresses the question (answerability {relevance or 0:.2f}, needed "
                        f"{self.fit.threshold:.2f}), and web search gave nothing ({why})."
                    )
                    route, sources = "not_in_knowledge_base", []
            span.set_attribute("agentic.route", route)
            if relevance is not None:
                span.set_attribute("agentic.relevance", relevance)
            allowed = judged.covered if route == "knowledge_base" and judged is not None else None
            messages = answer_messages(standalone, sources, yes_no, self.config.max_quotes, allowed)
            plan = Plan(question, sources, relevance, route, messages, trace_id_of(span), span, calls, tokens, timings)
            plan.notes, plan.standalone, plan.yes_no = notes, standalone, yes_no
            plan.relevance_evidence, plan.models = evidence, models
            plan.answerability, plan.nearest, plan.allowed = judged, nearest, allowed
            return plan
        except Exception as exc:
            span.record_exception(exc)
            span.end()
            raise
        finally:
            trace.context_api.detach(token)

    def answer(
        self,
        question: str,
        filters: dict | None = None,
        mode: str = "auto",
        history: list | None = None,
        conversation_id: str | None = None,
        *,
        scope: ReadScope,
    ) -> Answer:
        """The answer from what ``scope`` may read (its filter is in every retrieval, the orchestrator's too)."""
        if mode == "agent":
            result = self.agent_answer(question, filters, history, scope=scope)
        elif mode == "auto":
            result = self.complete(self.plan(question, filters, history, scope=scope))
        else:
            raise ValueError("mode must be 'auto' or 'agent'")
        result.conversation_id, result.principal = conversation_id, scope.principal
        return result

    def _structured(self, plan: Plan) -> tuple[str, list[int], answering.Checked]:
        """The answer call, the code checks, at most ``max_corrections`` correction calls, the quote fallback.
        Only the sources judged to address the question may be quoted or cited (schema and checks alike)."""
        allowed = plan.allowed
        by_n = {s.n: s.text for s in plan.sources if allowed is None or s.n in allowed}
        schema = answering.answer_schema(
            len(plan.sources), plan.yes_no, self.config.max_quotes, self.config.max_sentences, allowed
        )
        messages = list(plan.messages)
        checked = None
        steps = plan.verdict_steps
        for attempt in range(1 + self.config.max_corrections):
            name = "generate_answer" if attempt == 0 else "correct_answer"
            raw = self._chat(plan.tokens, name, messages, self.config.answer_max_tokens, schema, plan.models)
            plan.llm_calls += 1
            parsed = answering.parse_answer(raw)
            said = parsed.get("verdict")
            if attempt == 0:
                steps["model"] = said
            else:
                steps["checks"].append(f"correction call: the model said {said}")
            with tracer().start_as_current_span("check_answer") as span:
                checked = answering.check_answer(
                    parsed,
                    by_n,
                    plan.yes_no,
                    self.config.min_quote_support,
                    self.config.min_sentence_support,
                    plan.standalone,
                    on_topic=plan.route == "knowledge_base",
                )
                span.set_attribute("agentic.check.ok", checked.ok)
                span.set_attribute("agentic.check.problems", len(checked.problems))
            if checked.ok:
                if attempt:
                    plan.notes.append("The first answer failed the support check; the corrected one passed.")
                if checked.repaired:
                    plan.notes.append(f"Corrected in code: {checked.repaired}.")
                    steps["checks"].append(checked.repaired)
                text, numbers = answering.render(checked)
                return text, numbers, checked
            repaired = answering.repair(checked)
            if repaired is not None:
                # the verdict contradicts the evidence's own conclusion: fixed from that conclusion, no second call
                plan.notes.append(f"Corrected in code: {repaired.repaired}.")
                plan.span.set_attribute("agentic.check.repaired", repaired.repaired)
                steps["checks"].append(repaired.repaired)
                text, numbers = answering.render(repaired)
                return text, numbers, repaired
            messages = [*plan.messages, {"role": "assistant", "content": raw}]
            messages.append({"role": "user", "content": answering.correction_message(checked)})
        plan.notes.append(
            "The answer failed the support check ("
            + "; ".join(checked.problems[:3])
            + "): the verified quotes from the sources are given instead of its sentences."
        )
        text, numbers = answering.render_quotes(checked)
        checked.verdict = answering.fallback_verdict(checked)
        steps["checks"].append(f"failed the checks after correction: {checked.verdict}")
        return text, numbers, checked

    def complete(self, plan: Plan) -> Answer:
        """The answer for a plan from :meth:`plan` (also what :meth:`stream_answer` streams)."""
        from opentelemetry import trace

        token = trace.context_api.attach(trace.set_span_in_context(plan.span))
        try:
            t = time.perf_counter()
            evidence: list[dict] = []
            if plan.route == "not_in_knowledge_base":
                judged = plan.answerability
                text = answerability.render_uncovered(judged.route if judged else "not_covered", plan.nearest)
                numbers, verdict = [], "not_in_sources"
            else:
                text, numbers, checked = self._structured(plan)
                verdict = checked.verdict
                by_n = {s.n: s for s in plan.sources}
                evidence = [{"n": q["source"], "id": by_n[q["source"]].id, "quote": q["quote"]} for q in checked.quotes]
                if verdict == "not_in_sources":
                    plan.notes.append("The model found no source about the question.")
                if verdict in ("not_in_sources", "unanswered") and plan.route == "knowledge_base" and plan.sources:
                    # a source was judged to address the question: say which one it looked in, not "not covered"
                    covered = plan.answerability.covered if plan.answerability else []
                    top = next((s for s in plan.sources if s.n in covered), plan.sources[0])
                    text, numbers = answering.render_closest(top.n, top.title)
            plan.timings_ms["generate"] = (time.perf_counter() - t) * 1000
            chosen = set(numbers)
            citations = [s.citation() for s in plan.sources if s.n in chosen]
            plan.span.set_attribute("agentic.citations", len(citations))
            plan.span.set_attribute("agentic.verdict", verdict)
            result = Answer(
                plan.question,
                text,
                citations,
                plan.relevance,
                plan.route,
                plan.trace_id,
                plan.llm_calls,
                plan.tokens,
                {k: round(v, 1) for k, v in plan.timings_ms.items()},
                plan.notes,
                verdict=verdict,
                evidence=evidence,
                standalone_question=plan.standalone,
                relevance_evidence=plan.relevance_evidence,
                lineage=self.lineage(",".join(plan.models)),
                answerability=plan.answerability.as_dict() if plan.answerability else {},
                verdict_steps={**plan.verdict_steps, "final": verdict},
            )
            plan.span.set_attribute("agentic.answer_id", result.answer_id)
            _trace_lineage(plan.span, result)
            plan.result = result
            return result
        except Exception as exc:
            plan.span.record_exception(exc)
            raise
        finally:
            plan.span.end()
            trace.context_api.detach(token)

    def stream_answer(self, plan: Plan) -> Iterator[str]:
        """The answer's text in pieces; the finished :class:`Answer` is stored in ``plan.result``.

        The text is streamed after the support check, not token by token: an answer that might be withdrawn by the
        check is not shown to a clinician first.
        """
        result = self.complete(plan)
        for i, word in enumerate(result.answer.split(" ")):
            yield (" " if i else "") + word

    # -- orchestrator agent -----------------------------------------------------------------------
    def agent_answer(
        self, question: str, filters: dict | None = None, history: list | None = None, *, scope: ReadScope
    ) -> Answer:
        from opentelemetry import trace
        from strands import Agent, tool
        from strands.hooks import BeforeToolCallEvent

        from agents.model import ActionModel

        cfg = self.config
        state = {"sources": [], "relevance": None, "kb_searched": False, "web_calls": 0, "tool_calls": 0, "covered": []}
        tokens = {"prompt": 0, "completion": 0}
        llm_calls = [0]
        models: list[str] = []
        turns = turns_of(history)

        def numbered(sources: list[Source]) -> str:
            return format_sources(sources) if sources else "(no results)"

        @tool
        def search_knowledge_base(query: str) -> str:
            """Search the biomedical knowledge base (PubMed abstracts). Returns numbered sources."""
            found, evidence = self.retrieve(query, filters, scope=scope)
            offset = len(state["sources"])
            for s in found:
                s.n += offset
            state["sources"].extend(found)
            state["kb_searched"] = True
            state["kb_last"] = found
            state["kb_evidence"] = evidence
            return numbered(found)

        @tool
        def assess_relevance(question: str) -> str:
            """Which knowledge-base sources address the question (the answerability judge)."""
            last = state.get("kb_last") or []
            if last:
                asked = state.get("asked", question)
                judged, _ = self.judge(asked, last, answering.is_yes_no(asked), tokens, models)
                llm_calls[0] += 1
                state["covered"] += judged.covered
                state["relevance"] = judged.score
            else:
                state["relevance"] = 0.0
            covered = [s.n for s in last if s.n in state["covered"]]
            return json.dumps({"score": round(state["relevance"], 3), "covered": covered, "use_only": covered})

        @tool
        def web_search(query: str) -> str:
            """Search the web. Allowed only when the knowledge base was searched and found too little."""
            # the model proposes the query after reading documents: only the question's own words may leave
            found, result = self.web_sources(
                web_query_from(state.get("asked", question), query), start=len(state["sources"]) + 1
            )
            state["web_calls"] += 1
            state["sources"].extend(found)
            if not result.get("available"):
                return f"Web search unavailable: {result.get('error')}. Answer from the knowledge base and say so."
            return numbered(found)

        def routing_rule(event: BeforeToolCallEvent) -> None:
            # The routing rule is code: knowledge base first, web search only when no source addresses the question.
            state["tool_calls"] += 1
            name = event.tool_use["name"]
            if state["tool_calls"] > cfg.max_agent_tool_calls:
                event.cancel_tool = "Tool budget used up: give the final answer now."
            elif name == "web_search":
                if not state["kb_searched"]:
                    event.cancel_tool = "Search the knowledge base first."
                elif state["kb_last"] and (state["relevance"] is None):
                    event.cancel_tool = "Assess the relevance of the knowledge-base sources first."
                elif state["kb_last"] and covered_now():
                    event.cancel_tool = (
                        f"Not needed: sources {covered_now()} address the question. Answer from those sources."
                    )

        def covered_now() -> list[int]:
            return [s.n for s in state.get("kb_last") or [] if s.n in state["covered"]]

        def next_actions() -> tuple[set[str], bool]:
            # The routing rule as a state machine: knowledge base -> relevance -> (web search if low) -> answer.
            if state["tool_calls"] >= cfg.max_agent_tool_calls:
                return set(), True
            if not state["kb_searched"]:
                return {"search_knowledge_base"}, False
            if state.get("kb_last") and state["relevance"] is None:
                return {"assess_relevance"}, False
            low = not covered_now()
            if low and state["web_calls"] == 0:
                return {"web_search"}, False  # below the threshold the web is searched: code, not a suggestion
            return set(), True

        model = ActionModel(
            tool_mode=cfg.tool_mode,
            tool_first=True,  # the routing rule: the knowledge base before any answer
            action_filter=next_actions,
            client_args={"base_url": f"{self.gateway.url}/v1", "api_key": self.gateway.master_key, "max_retries": 0},
            model_id=self.gateway.chat_model,
            params={"max_tokens": 200, "temperature": cfg.temperature},
        )
        # The orchestrator keeps the conversation: earlier turns are the agent's own message history.
        prior = [{"role": t.role, "content": [{"text": t.content}]} for t in conversation.history_window(turns)]
        agent = Agent(
            model=model,
            messages=prior,
            tools=[search_knowledge_base, assess_relevance, web_search],
            system_prompt=(
                SYSTEM + " Cite sources with their numbers in square brackets, like [1]. Work in steps: "
                "search_knowledge_base, then assess_relevance, then answer from the sources it says address the "
                "question; use web_search only if none does. Finish with the final answer citing [n]."
            ),
            callback_handler=None,
            trace_attributes={"agentic.mode": "agent"},
        )
        agent.add_hook(routing_rule, BeforeToolCallEvent)
        span = tracer().start_span("agentic.answer", attributes={"agentic.mode": "agent"})
        token = trace.context_api.attach(trace.set_span_in_context(span))
        t0 = time.perf_counter()
        notes: list[str] = []
        usable: list[int] = []
        try:
            standalone, rewrites = self.standalone(question, turns, tokens, models)
            state["asked"] = standalone
            llm_calls[0] += rewrites
            result = agent(standalone)
            text = str(result).strip()
            usage = result.metrics.accumulated_usage
            tokens["prompt"] += usage.get("inputTokens", 0)
            tokens["completion"] += usage.get("outputTokens", 0)
            cycles = result.metrics.cycle_count
            sources = state["sources"]
            route = "web_search" if state["web_calls"] else ("knowledge_base" if state["kb_searched"] else "model_only")
            verdict, evidence = "", []
            relevance = state["relevance"]
            # only web results and the knowledge-base sources judged to address the question may carry a claim
            usable = [s.n for s in sources if s.origin == "web" or s.n in state["covered"]]
            if not usable:
                nearest = [(s.id, s.title) for s in sources[:3]]
                text = answerability.render_uncovered("not_covered", nearest)
                route, verdict = "not_in_knowledge_base", "not_in_sources"
            else:
                # The post-answer support check: a free-text answer with uncited or unsupported sentences (or one
                # citing a source that does not address the question) gets one structured correction over the
                # usable sources (the correction loop).
                problems = answering.check_text_answer(text, {s.n: s.text for s in sources if s.n in usable})
                if problems:
                    yes_no = answering.is_yes_no(standalone)
                    plan = Plan(question, sources, relevance, route, [], "", span, 0, tokens)
                    plan.yes_no, plan.models, plan.allowed = yes_no, models, usable
                    plan.messages = answer_messages(standalone, sources, yes_no, self.config.max_quotes, usable)
                    text, _numbers, checked = self._structured(plan)
                    llm_calls[0] += plan.llm_calls
                    verdict = checked.verdict
                    by_n = {s.n: s for s in sources}
                    evidence = [
                        {"n": q["source"], "id": by_n[q["source"]].id, "quote": q["quote"]} for q in checked.quotes
                    ]
                    notes.append("The agent's answer failed the support check (" + "; ".join(problems[:2]) + ").")
                    notes += plan.notes
        finally:
            trace.context_api.detach(token)
        span.set_attribute("agentic.route", route)
        allowed_sources = [s for s in sources if s.n in usable]
        citations = citations_for(text, allowed_sources, notes) if route != "not_in_knowledge_base" else []
        answer = Answer(
            question,
            text,
            citations,
            relevance,
            route,
            trace_id_of(span),
            llm_calls[0] + cycles,
            tokens,
            {"total": round((time.perf_counter() - t0) * 1000, 1)},
            notes,
            verdict=verdict,
            evidence=evidence,
            standalone_question=standalone,
            relevance_evidence=state.get("kb_evidence") or {},
            lineage=self.lineage(",".join(models)),
        )
        span.set_attribute("agentic.answer_id", answer.answer_id)
        _trace_lineage(span, answer)
        span.end()
        return answer

    def close(self) -> None:
        self.web.close()
