"""The orchestrator (``mode="agent"``): a Strands ``Agent`` with the tools ``search_knowledge_base``,
``assess_relevance`` (the answerability judge) and ``web_search``, held to the routing rule of ``agents.routing`` by
its action filter and a hook that cancels what the rule does not allow; its answer goes through the same support
check as the fast path's (one structured correction when it fails). It reuses the answer service's retrieval, judge,
rewrite and structured answer."""

from __future__ import annotations

import json
import time

from agents.answers import Answer, Plan, trace_lineage, turns_of
from agents.prompts import SYSTEM, answer_messages, format_sources
from agents.routing import RouteState, next_actions, refusal
from agents.sources import Source, citations_for
from agents.tracing import trace_id_of, tracer
from core import answer_text, answerability, answering, conversation
from core.access import ReadScope, web_query_from

AGENT_STEPS = (
    " Cite sources with their numbers in square brackets, like [1]. Work in steps: search_knowledge_base, then "
    "assess_relevance, then answer from the sources it says address the question; use web_search only if none does. "
    "Finish with the final answer citing [n]."
)


def agent_answer(
    service, question: str, filters: dict | None = None, history: list | None = None, *, scope: ReadScope
) -> Answer:
    """``service``'s answer (an ``agents.service.AnswerService``) by the orchestrator."""
    return _Orchestration(service, question, filters, history, scope).answer()


def _numbered(sources: list[Source]) -> str:
    return format_sources(sources) if sources else "(no results)"


class _Orchestration:
    """One orchestrated answer: the sources the tools found, the routing state, and the tokens and calls spent."""

    def __init__(self, service, question: str, filters: dict | None, history: list | None, scope: ReadScope):
        self.service, self.question, self.filters, self.scope = service, question, filters, scope
        self.cfg = service.config
        self.turns = turns_of(history)
        # a follow-up that refers back is about the studies the last answer cited: pinned in the first search
        self.studies = conversation.conversation_studies(question, self.turns)
        self.referenced: list[int] = []
        self.sources: list[Source] = []
        self.kb_last: list[Source] = []
        self.kb_evidence: dict = {}
        self.relevance: float | None = None
        self.scores: dict[int, float] = {}  # the judge's per-source score, for each source it read
        self.asked = question  # the standalone question, once rewritten
        self.route = RouteState()
        self.tokens = {"prompt": 0, "completion": 0}
        self.llm_calls = 0
        self.models: list[str] = []
        self.verdict_steps: dict = {}  # what the model said, what the checks changed, the final verdict

    # ---------------------------------------------------------------- the tools

    def search_knowledge_base(self, query: str) -> str:
        pinned = self.studies if not self.route.kb_searched else None
        found, evidence = self.service.retrieve(
            query, self.filters, whole=int(bool(pinned)), scope=self.scope, pinned=pinned
        )
        for s in found:
            s.n += len(self.sources)
        self.sources.extend(found)
        self.kb_last, self.kb_evidence = found, evidence
        self.route.kb_searched, self.route.kb_last, self.route.judged = True, [s.n for s in found], False
        return _numbered(found)

    def assess_relevance(self, question: str) -> str:
        if self.kb_last:
            judged, _ = self.service.judge(
                self.asked, self.kb_last, answering.is_yes_no(self.asked), self.tokens, self.models
            )
            self.llm_calls += 1
            referenced = [s.n for s in self.kb_last if s.id in self.studies]
            judged = answerability.with_referenced(judged, referenced)
            self.referenced += [n for n in referenced if n not in self.referenced]
            self.route.covered += judged.covered
            self.scores.update(judged.scores)
            self.relevance = judged.score
        else:
            self.relevance = 0.0
        self.route.judged = True
        covered = self.route.covered_now()
        return json.dumps({"score": round(self.relevance, 3), "covered": covered, "use_only": covered})

    def web_search(self, query: str) -> str:
        # the model proposes the query after reading documents: only the question's own words may leave
        found, result = self.service.web_sources(web_query_from(self.asked, query), start=len(self.sources) + 1)
        self.route.web_calls += 1
        self.sources.extend(found)
        if not result.get("available"):
            return f"Web search unavailable: {result.get('error')}. Answer from the knowledge base and say so."
        return _numbered(found)

    def _tools(self) -> list:
        from strands import tool

        @tool
        def search_knowledge_base(query: str) -> str:
            """Search the biomedical knowledge base (PubMed abstracts). Returns numbered sources."""
            return self.search_knowledge_base(query)

        @tool
        def assess_relevance(question: str) -> str:
            """Which knowledge-base sources address the question (the answerability judge)."""
            return self.assess_relevance(question)

        @tool
        def web_search(query: str) -> str:
            """Search the web. Allowed only when the knowledge base was searched and found too little."""
            return self.web_search(query)

        return [search_knowledge_base, assess_relevance, web_search]

    # ---------------------------------------------------------------- the agent

    def _routing_rule(self, event) -> None:
        why = refusal(self.route, event.tool_use["name"], self.cfg.max_agent_tool_calls)
        self.route.tool_calls += 1
        if why:
            event.cancel_tool = why

    def _agent(self):
        from strands import Agent
        from strands.hooks import BeforeToolCallEvent

        from agents.model import ActionModel

        gateway = self.service.gateway
        model = ActionModel(
            tool_mode=self.cfg.tool_mode,
            tool_first=True,  # the routing rule: the knowledge base before any answer
            action_filter=lambda: next_actions(self.route, self.cfg.max_agent_tool_calls),
            client_args={"base_url": f"{gateway.url}/v1", "api_key": gateway.master_key, "max_retries": 0},
            model_id=gateway.chat_model,
            params={"max_tokens": 200, "temperature": self.cfg.temperature},
        )
        # The orchestrator keeps the conversation: earlier turns are the agent's own message history.
        prior = [{"role": t.role, "content": [{"text": t.content}]} for t in conversation.history_window(self.turns)]
        agent = Agent(
            model=model,
            messages=prior,
            tools=self._tools(),
            system_prompt=SYSTEM + AGENT_STEPS,
            callback_handler=None,
            trace_attributes={"agentic.mode": "agent"},
        )
        agent.add_hook(self._routing_rule, BeforeToolCallEvent)
        return agent

    # ---------------------------------------------------------------- the answer

    def answer(self) -> Answer:
        from opentelemetry import trace

        span = tracer().start_span("agentic.answer", attributes={"agentic.mode": "agent"})
        token = trace.context_api.attach(trace.set_span_in_context(span))
        t0 = time.perf_counter()
        try:
            standalone, rewrites = self.service.standalone(self.question, self.turns, self.tokens, self.models)
            self.asked = standalone
            self.llm_calls += rewrites
            result = self._agent()(standalone)
            usage = result.metrics.accumulated_usage
            self.tokens["prompt"] += usage.get("inputTokens", 0)
            self.tokens["completion"] += usage.get("outputTokens", 0)
            self.llm_calls += result.metrics.cycle_count
            answer = self._checked(str(result).strip(), span)
        finally:
            trace.context_api.detach(token)
        answer.timings_ms = {"total": round((time.perf_counter() - t0) * 1000, 1)}
        span.set_attribute("agentic.route", answer.route)
        span.set_attribute("agentic.answer_id", answer.answer_id)
        trace_lineage(span, answer)
        span.end()
        return answer

    def _checked(self, text: str, span) -> Answer:
        """The agent's text, held to the sources judged to address the question (and web results): none usable, the
        uncovered answer; a text that fails the support check, one structured correction over the usable sources."""
        route = "web_search" if self.route.web_calls else ("knowledge_base" if self.route.kb_searched else "model_only")
        verdict, evidence, notes = "", [], []
        usable = [s.n for s in self.sources if s.origin == "web" or s.n in self.route.covered]
        if not usable:
            nearest = [(s.id, s.title) for s in self.sources[:3]]
            text = answerability.render_uncovered("not_covered", nearest)
            route, verdict = "not_in_knowledge_base", "not_in_sources"
        elif decision := self._verdict(route, usable):
            # a yes/no question answered from the index: its verdict is the calibrated one, read from the conclusion
            # of the source judged likeliest to address it, as on the fast path; the agent's own text is not kept
            text, verdict, evidence = self._corrected(route, usable, span, notes, decision)
            notes.insert(0, f"A yes/no question: answered under the verdict read from source [{decision.source}].")
        elif problems := answer_text.check_text_answer(text, {s.n: s.text for s in self.sources if s.n in usable}):
            text, verdict, evidence = self._corrected(route, usable, span, notes)
            notes.insert(0, "The agent's answer failed the support check (" + "; ".join(problems[:2]) + ").")
        allowed_sources = [s for s in self.sources if s.n in usable]
        citations = citations_for(text, allowed_sources, notes) if route != "not_in_knowledge_base" else []
        return Answer(
            self.question,
            text,
            citations,
            self.relevance,
            route,
            trace_id_of(span),
            self.llm_calls,
            self.tokens,
            {},
            notes,
            verdict=verdict,
            evidence=evidence,
            standalone_question=self.asked,
            relevance_evidence=self.kb_evidence,
            verdict_steps=self.verdict_steps,
            lineage=self.service.lineage(",".join(self.models)),
        )

    def _verdict(self, route: str, usable: list[int]):
        """For a yes/no question answered from the knowledge base: the calibrated verdict (``core.verdict``) from the
        conclusion of the covered source the judge scored highest; else None."""
        covered = [s for s in self.sources if s.n in usable and s.origin == "knowledge_base"]
        if route != "knowledge_base" or not covered or not answering.is_yes_no(self.asked):
            return None
        top = next((s for s in covered if s.n in self.referenced[:1]), None) or max(
            covered, key=lambda s: self.scores.get(s.n, 0.0)
        )
        self.llm_calls += 1
        return self.service.decide_verdict(self.asked, top, self.tokens, self.models)

    def _corrected(
        self, route: str, usable: list[int], span, notes: list[str], decision=None
    ) -> tuple[str, str, list[dict]]:
        """The structured answer over the usable sources (the fast path's, with its checks), written under
        ``decision`` when a verdict was read: (text, verdict, evidence)."""
        yes_no = answering.is_yes_no(self.asked)
        plan = Plan(self.question, self.sources, self.relevance, route, [], "", span, 0, self.tokens)
        plan.yes_no, plan.models, plan.allowed = yes_no, self.models, usable
        plan.decision = decision
        if decision is not None:
            plan.verdict_steps.update(model=decision.said, calibrated=decision.verdict, decision=decision.as_dict())
        plan.messages = answer_messages(self.asked, self.sources, yes_no, self.cfg.max_quotes, usable)
        text, _numbers, checked = self.service.structured_answer(plan)
        self.llm_calls += plan.llm_calls
        by_n = {s.n: s for s in self.sources}
        evidence = [{"n": q["source"], "id": by_n[q["source"]].id, "quote": q["quote"]} for q in checked.quotes]
        notes += plan.notes
        self.verdict_steps = {**plan.verdict_steps, "final": checked.verdict}
        return text, checked.verdict, evidence
