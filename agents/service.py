"""Answering questions off the index: a fast path and a Strands orchestrator agent.

Fast path (ordinary questions, at most 2 LLM calls): retrieve (hybrid) -> the evaluation agent
grades the passages (1 call, JSON-schema constrained) -> answer with citations (1 call). The two
calls share their prompt prefix (system + passages + question) so llama.cpp reuses its KV cache
for the second. Routing is code: the knowledge base first; web search (MCP) when the relevance
score is below ``relevance_threshold`` or the knowledge base returned nothing; when web search is
not configured the answer comes from the knowledge base with a note saying so.

Orchestrator (``mode="agent"``): a Strands ``Agent`` with the tools ``search_knowledge_base``,
``assess_relevance`` and ``web_search``; the same routing rule is enforced by a hook that cancels
a web search the rule does not allow. Agents import resources, never assets.
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
from resources.gateway import LLMGatewayResource
from resources.retrieval import RetrieverResource

SYSTEM = (
    "You are a biomedical research assistant. Use only the numbered sources given to you. "
    "Cite sources with their numbers in square brackets, like [1] or [2][3]. "
    "If the sources do not answer the question, say so plainly."
)
ASSESS_TASK = (
    "Task: grade the sources for the question. List the numbers of the sources that help answer it, "
    "then give a score from 0 (no source is about the question) to 5 (the sources fully answer it)."
)
ANSWER_TASK = (
    "Task: answer the question in 2 to 4 sentences. After each claim put the number of the source it comes from "
    "in square brackets at the end of the sentence, like this: '... [1].'"
)
_CITE = re.compile(r"\[(\d{1,2})\]")


@dataclass
class AgentConfig:
    k: int = 5
    retrieval_mode: str = "hybrid"
    relevance_threshold: float = 0.4  # score/5 below this -> web search
    max_passage_chars: int = 700
    assess_max_tokens: int = 64
    answer_max_tokens: int = 200
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

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Plan:
    """Everything decided before the final LLM call (so the final call can be streamed)."""

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


def _source_id(hit) -> str:
    key = hit.doc_key or ""
    if key.startswith("pubmed/") and key.endswith(".xml"):
        return "PMID:" + key[len("pubmed/") : -4]
    return key or hit.doc_id


def format_sources(sources: list[Source]) -> str:
    return "\n\n".join(f"[{s.n}] {s.title}\n{s.text}" for s in sources)


def user_prompt(question: str, sources: list[Source], task: str) -> str:
    return f"Sources:\n{format_sources(sources)}\n\nQuestion: {question}\n\n{task}"


def assess_schema(n: int) -> dict:
    return {
        "type": "object",
        "properties": {
            "relevant_sources": {
                "type": "array",
                "items": {"type": "integer", "minimum": 1, "maximum": max(n, 1)},
                "maxItems": max(n, 1),
            },
            "score": {"type": "integer", "enum": [0, 1, 2, 3, 4, 5]},
        },
        "required": ["relevant_sources", "score"],
    }


def citations_for(answer: str, sources: list[Source], notes: list[str]) -> list[dict]:
    """The sources the answer cites by ``[n]``; when it cites none, every source it was given (with a note)."""
    found = cited(answer, sources)
    if found or not sources:
        return found
    notes.append("The model cited no source by number; the sources it was given are listed.")
    return [{"n": s.n, "id": s.id, "title": s.title, "origin": s.origin, "url": s.url} for s in sources]


def cited(answer: str, sources: list[Source]) -> list[dict]:
    by_n = {s.n: s for s in sources}
    seen, out = set(), []
    for m in _CITE.finditer(answer):
        n = int(m.group(1))
        if n in by_n and n not in seen:
            seen.add(n)
            s = by_n[n]
            out.append({"n": n, "id": s.id, "title": s.title, "origin": s.origin, "url": s.url})
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


class AnswerService:
    def __init__(
        self,
        retriever: RetrieverResource,
        gateway: LLMGatewayResource,
        config: AgentConfig | None = None,
        web_search: WebSearch | None = None,
    ):
        self.retriever, self.gateway = retriever, gateway
        self.config = config or AgentConfig()
        self.web = web_search or WebSearch(self.config.web_search, self.config.web_search_url)
        self.client = gateway.openai_client()

    # -- building blocks (also the orchestrator's tools) ----------------------------------------
    def retrieve(self, question: str, filters: dict | None = None, k: int | None = None) -> list[Source]:
        with tracer().start_as_current_span("retrieve") as span:
            hits = self.retriever.search(
                question,
                k=k or self.config.k,
                mode=self.config.retrieval_mode,
                filters=filters,
                generation=self.config.generation,
            )
            span.set_attribute("retrieval.mode", self.config.retrieval_mode)
            span.set_attribute("retrieval.hits", len(hits))
        return [
            Source(
                n=i + 1,
                id=_source_id(h),
                title=h.title or "",
                text=(h.text or "")[: self.config.max_passage_chars],
                origin="knowledge_base",
                score=float(h.score),
                doc_key=h.doc_key or "",
            )
            for i, h in enumerate(hits)
        ]

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
        response_format: dict | None = None,
        **extra,
    ) -> str:
        with tracer().start_as_current_span(span_name) as span:
            span.set_attribute("gen_ai.system", "openai")
            span.set_attribute("gen_ai.request.model", self.gateway.chat_model)
            kwargs = dict(extra, response_format=response_format) if response_format else extra
            r = self.client.chat.completions.create(
                model=self.gateway.chat_model,
                messages=messages,
                max_tokens=max_tokens,
                temperature=self.config.temperature,
                **kwargs,
            )
            if r.usage:
                plan_tokens["prompt"] += r.usage.prompt_tokens
                plan_tokens["completion"] += r.usage.completion_tokens
                span.set_attribute("gen_ai.usage.input_tokens", r.usage.prompt_tokens)
                span.set_attribute("gen_ai.usage.output_tokens", r.usage.completion_tokens)
            return r.choices[0].message.content or ""

    def assess(self, question: str, sources: list[Source], tokens: dict) -> tuple[float, list[int]]:
        """The evaluation agent: grade the passages for the question -> (score in [0, 1], relevant source numbers)."""
        messages = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": user_prompt(question, sources, ASSESS_TASK)},
        ]
        fmt = {"type": "json_schema", "json_schema": {"name": "relevance", "schema": assess_schema(len(sources))}}
        text = self._chat(tokens, "assess_relevance", messages, self.config.assess_max_tokens, fmt)
        try:
            obj = json.loads(text)
            score = max(0, min(5, int(obj.get("score", 0)))) / 5
            relevant = sorted({int(n) for n in obj.get("relevant_sources", []) if 1 <= int(n) <= len(sources)})
        except (ValueError, TypeError, AttributeError):
            score, relevant = 0.0, []
        return score, relevant

    # -- fast path ------------------------------------------------------------------------------
    def plan(self, question: str, filters: dict | None = None) -> Plan:
        question = question.strip()
        if not question:
            raise ValueError("question is empty")
        span = tracer().start_span("agentic.answer", attributes={"agentic.question_chars": len(question)})
        from opentelemetry import trace

        token = trace.context_api.attach(trace.set_span_in_context(span))
        tokens = {"prompt": 0, "completion": 0}
        timings: dict[str, float] = {}
        notes: list[str] = []
        calls = 0
        try:
            t = time.perf_counter()
            sources = self.retrieve(question, filters)
            timings["retrieve"] = (time.perf_counter() - t) * 1000
            relevance: float | None = None
            if sources:
                t = time.perf_counter()
                relevance, _relevant = self.assess(question, sources, tokens)
                calls += 1
                timings["assess"] = (time.perf_counter() - t) * 1000
            route = (
                "knowledge_base"
                if sources and relevance is not None and relevance >= self.config.relevance_threshold
                else "web_search"
            )
            if route == "web_search":
                t = time.perf_counter()
                web, result = self.web_sources(question)
                timings["web_search"] = (time.perf_counter() - t) * 1000
                if web:
                    sources = web
                elif not result.get("available"):
                    notes.append(
                        f"Web search unavailable ({result.get('error', 'not configured')}); answered from the knowledge base."
                    )
                    route = "knowledge_base_fallback" if sources else "no_context"
                else:
                    notes.append(f"Web search found nothing ({result.get('error') or 'no results'}).")
                    route = "knowledge_base_fallback" if sources else "no_context"
            span.set_attribute("agentic.route", route)
            if relevance is not None:
                span.set_attribute("agentic.relevance", relevance)
            messages = [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": user_prompt(question, sources, ANSWER_TASK)},
            ]
            return Plan(
                question, sources, relevance, route, messages, trace_id_of(span), span, calls, tokens, timings, notes
            )
        except Exception as exc:
            span.record_exception(exc)
            span.end()
            raise
        finally:
            trace.context_api.detach(token)

    def _finish(self, plan: Plan, text: str, t0: float) -> Answer:
        plan.timings_ms["generate"] = (time.perf_counter() - t0) * 1000
        citations = citations_for(text, plan.sources, plan.notes) if plan.route != "no_context" else []
        plan.span.set_attribute("agentic.citations", len(citations))
        plan.span.end()
        return Answer(
            plan.question,
            text.strip(),
            citations,
            plan.relevance,
            plan.route,
            plan.trace_id,
            plan.llm_calls,
            plan.tokens,
            {k: round(v, 1) for k, v in plan.timings_ms.items()},
            plan.notes,
        )

    def answer(self, question: str, filters: dict | None = None, mode: str = "auto") -> Answer:
        if mode == "agent":
            return self.agent_answer(question, filters)
        if mode != "auto":
            raise ValueError("mode must be 'auto' or 'agent'")
        return self.complete(self.plan(question, filters))

    def complete(self, plan: Plan) -> Answer:
        """The final LLM call of the fast path, for a plan from :meth:`plan` (the non-streamed twin of stream_answer)."""
        from opentelemetry import trace

        token = trace.context_api.attach(trace.set_span_in_context(plan.span))
        try:
            t = time.perf_counter()
            if plan.route == "no_context":
                text = "I found nothing in the knowledge base or on the web to answer this question."
            else:
                text = self._chat(
                    plan.tokens,
                    "generate_answer",
                    plan.messages,
                    self.config.answer_max_tokens,
                    frequency_penalty=self.config.frequency_penalty,
                )
                plan.llm_calls += 1
            return self._finish(plan, text, t)
        except Exception as exc:
            plan.span.record_exception(exc)
            plan.span.end()
            raise
        finally:
            trace.context_api.detach(token)

    def stream_answer(self, plan: Plan) -> Iterator[str]:
        """Stream the final answer's text; the finished :class:`Answer` is stored in ``plan.result``."""
        from opentelemetry import trace

        t = time.perf_counter()
        parts: list[str] = []
        if plan.route == "no_context":
            parts.append("I found nothing in the knowledge base or on the web to answer this question.")
            yield parts[0]
        else:
            ctx = trace.set_span_in_context(plan.span)
            with tracer().start_as_current_span("generate_answer", context=ctx) as span:
                stream = self.client.chat.completions.create(
                    model=self.gateway.chat_model,
                    messages=plan.messages,
                    max_tokens=self.config.answer_max_tokens,
                    temperature=self.config.temperature,
                    stream=True,
                    stream_options={"include_usage": True},
                    frequency_penalty=self.config.frequency_penalty,
                )
                for chunk in stream:
                    if chunk.usage:
                        plan.tokens["prompt"] += chunk.usage.prompt_tokens
                        plan.tokens["completion"] += chunk.usage.completion_tokens
                        span.set_attribute("gen_ai.usage.output_tokens", chunk.usage.completion_tokens)
                    if chunk.choices and chunk.choices[0].delta.content:
                        parts.append(chunk.choices[0].delta.content)
                        yield chunk.choices[0].delta.content
            plan.llm_calls += 1
        plan.result = self._finish(plan, "".join(parts), t)

    # -- orchestrator agent -----------------------------------------------------------------------
    def agent_answer(self, question: str, filters: dict | None = None) -> Answer:
        from opentelemetry import trace
        from strands import Agent, tool
        from strands.hooks import BeforeToolCallEvent

        from agents.model import ActionModel

        cfg = self.config
        state = {"sources": [], "relevance": None, "kb_searched": False, "web_calls": 0, "tool_calls": 0}
        tokens = {"prompt": 0, "completion": 0}
        llm_calls = [0]

        def numbered(sources: list[Source]) -> str:
            return format_sources(sources) if sources else "(no results)"

        @tool
        def search_knowledge_base(query: str) -> str:
            """Search the biomedical knowledge base (PubMed abstracts). Returns numbered sources."""
            found = self.retrieve(query, filters)
            offset = len(state["sources"])
            for s in found:
                s.n += offset
            state["sources"].extend(found)
            state["kb_searched"] = True
            state["kb_last"] = found
            return numbered(found)

        @tool
        def assess_relevance(question: str) -> str:
            """Grade how well the knowledge-base sources found so far answer the question (score 0..1)."""
            sources = state.get("kb_last") or []
            if not sources:
                state["relevance"] = 0.0
                return json.dumps({"score": 0.0, "reason": "the knowledge base returned nothing"})
            score, relevant = self.assess(question, sources, tokens)
            llm_calls[0] += 1
            state["relevance"] = score
            return json.dumps({"score": score, "relevant_sources": relevant, "threshold": cfg.relevance_threshold})

        @tool
        def web_search(query: str) -> str:
            """Search the web. Allowed only when the knowledge base was searched and found too little."""
            found, result = self.web_sources(query, start=len(state["sources"]) + 1)
            state["web_calls"] += 1
            state["sources"].extend(found)
            if not result.get("available"):
                return f"Web search unavailable: {result.get('error')}. Answer from the knowledge base and say so."
            return numbered(found)

        def routing_rule(event: BeforeToolCallEvent) -> None:
            # The routing rule is code: knowledge base first, web search only below the relevance threshold.
            state["tool_calls"] += 1
            name = event.tool_use["name"]
            if state["tool_calls"] > cfg.max_agent_tool_calls:
                event.cancel_tool = "Tool budget used up: give the final answer now."
            elif name == "web_search":
                if not state["kb_searched"]:
                    event.cancel_tool = "Search the knowledge base first."
                elif state["kb_last"] and (state["relevance"] is None):
                    event.cancel_tool = "Assess the relevance of the knowledge-base sources first."
                elif state["kb_last"] and state["relevance"] >= cfg.relevance_threshold:
                    event.cancel_tool = (
                        f"Not needed: knowledge-base relevance {state['relevance']:.2f} >= "
                        f"{cfg.relevance_threshold}. Answer from those sources."
                    )

        def next_actions() -> tuple[set[str], bool]:
            # The routing rule as a state machine: knowledge base -> relevance -> (web search if low) -> answer.
            if state["tool_calls"] >= cfg.max_agent_tool_calls:
                return set(), True
            if not state["kb_searched"]:
                return {"search_knowledge_base"}, False
            if state.get("kb_last") and state["relevance"] is None:
                return {"assess_relevance"}, False
            low = not state.get("kb_last") or state["relevance"] < cfg.relevance_threshold
            if low and state["web_calls"] == 0:
                return {"web_search"}, False  # below the threshold the web is searched: code, not a suggestion
            return set(), True

        model = ActionModel(
            tool_mode=cfg.tool_mode,
            tool_first=True,  # the routing rule: the knowledge base before any answer
            action_filter=next_actions,
            client_args={"base_url": f"{self.gateway.url}/v1", "api_key": self.gateway.master_key, "max_retries": 0},
            model_id=self.gateway.chat_model,
            params={"max_tokens": cfg.answer_max_tokens, "temperature": cfg.temperature},
        )
        agent = Agent(
            model=model,
            tools=[search_knowledge_base, assess_relevance, web_search],
            system_prompt=(
                SYSTEM + " Work in steps: search_knowledge_base, then assess_relevance, then answer; "
                "use web_search only if the relevance is low. Finish with the final answer citing [n]."
            ),
            callback_handler=None,
            trace_attributes={"agentic.mode": "agent"},
        )
        agent.add_hook(routing_rule, BeforeToolCallEvent)
        span = tracer().start_span("agentic.answer", attributes={"agentic.mode": "agent"})
        token = trace.context_api.attach(trace.set_span_in_context(span))
        t0 = time.perf_counter()
        try:
            result = agent(question)
            text = str(result).strip()
            usage = result.metrics.accumulated_usage
            tokens["prompt"] += usage.get("inputTokens", 0)
            tokens["completion"] += usage.get("outputTokens", 0)
            cycles = result.metrics.cycle_count
        finally:
            trace.context_api.detach(token)
        route = "web_search" if state["web_calls"] else ("knowledge_base" if state["kb_searched"] else "model_only")
        span.set_attribute("agentic.route", route)
        sources = state["sources"]
        notes: list[str] = []
        citations = citations_for(text, sources, notes)
        span.end()
        return Answer(
            question,
            text,
            citations,
            state["relevance"],
            route,
            trace_id_of(span),
            llm_calls[0] + cycles,
            tokens,
            {"total": round((time.perf_counter() - t0) * 1000, 1)},
            notes,
        )

    def close(self) -> None:
        self.web.close()
