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
from core import answerability, answering, conversation
from core.access import ReadScope, web_query_from


def agent_answer(
    service, question: str, filters: dict | None = None, history: list | None = None, *, scope: ReadScope
) -> Answer:
    """``service``'s answer (an ``agents.service.AnswerService``) by the orchestrator: a Strands agent over the tools, kept to the routing rule (``agents.routing``) by its
    action filter and a hook; a free-text answer that fails the support check gets one structured correction."""
    from opentelemetry import trace
    from strands import Agent, tool
    from strands.hooks import BeforeToolCallEvent

    from agents.model import ActionModel

    cfg = service.config
    state = {"sources": [], "relevance": None}
    route_state = RouteState()
    tokens = {"prompt": 0, "completion": 0}
    llm_calls = [0]
    models: list[str] = []
    turns = turns_of(history)

    def numbered(sources: list[Source]) -> str:
        return format_sources(sources) if sources else "(no results)"

    @tool
    def search_knowledge_base(query: str) -> str:
        """Search the biomedical knowledge base (PubMed abstracts). Returns numbered sources."""
        found, evidence = service.retrieve(query, filters, scope=scope)
        offset = len(state["sources"])
        for s in found:
            s.n += offset
        state["sources"].extend(found)
        state["kb_last"] = found
        state["kb_evidence"] = evidence
        route_state.kb_searched, route_state.kb_last, route_state.judged = True, [s.n for s in found], False
        return numbered(found)

    @tool
    def assess_relevance(question: str) -> str:
        """Which knowledge-base sources address the question (the answerability judge)."""
        last = state.get("kb_last") or []
        if last:
            asked = state.get("asked", question)
            judged, _ = service.judge(asked, last, answering.is_yes_no(asked), tokens, models)
            llm_calls[0] += 1
            route_state.covered += judged.covered
            state["relevance"] = judged.score
        else:
            state["relevance"] = 0.0
        route_state.judged = True
        covered = route_state.covered_now()
        return json.dumps({"score": round(state["relevance"], 3), "covered": covered, "use_only": covered})

    @tool
    def web_search(query: str) -> str:
        """Search the web. Allowed only when the knowledge base was searched and found too little."""
        # the model proposes the query after reading documents: only the question's own words may leave
        found, result = service.web_sources(
            web_query_from(state.get("asked", question), query), start=len(state["sources"]) + 1
        )
        route_state.web_calls += 1
        state["sources"].extend(found)
        if not result.get("available"):
            return f"Web search unavailable: {result.get('error')}. Answer from the knowledge base and say so."
        return numbered(found)

    def routing_rule(event: BeforeToolCallEvent) -> None:
        why = refusal(route_state, event.tool_use["name"], cfg.max_agent_tool_calls)
        route_state.tool_calls += 1
        if why:
            event.cancel_tool = why

    model = ActionModel(
        tool_mode=cfg.tool_mode,
        tool_first=True,  # the routing rule: the knowledge base before any answer
        action_filter=lambda: next_actions(route_state, cfg.max_agent_tool_calls),
        client_args={"base_url": f"{service.gateway.url}/v1", "api_key": service.gateway.master_key, "max_retries": 0},
        model_id=service.gateway.chat_model,
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
        standalone, rewrites = service.standalone(question, turns, tokens, models)
        state["asked"] = standalone
        llm_calls[0] += rewrites
        result = agent(standalone)
        text = str(result).strip()
        usage = result.metrics.accumulated_usage
        tokens["prompt"] += usage.get("inputTokens", 0)
        tokens["completion"] += usage.get("outputTokens", 0)
        cycles = result.metrics.cycle_count
        sources = state["sources"]
        route = (
            "web_search" if route_state.web_calls else ("knowledge_base" if route_state.kb_searched else "model_only")
        )
        verdict, evidence = "", []
        relevance = state["relevance"]
        # only web results and the knowledge-base sources judged to address the question may carry a claim
        usable = [s.n for s in sources if s.origin == "web" or s.n in route_state.covered]
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
                plan.messages = answer_messages(standalone, sources, yes_no, service.config.max_quotes, usable)
                text, _numbers, checked = service.structured_answer(plan)
                llm_calls[0] += plan.llm_calls
                verdict = checked.verdict
                by_n = {s.n: s for s in sources}
                evidence = [{"n": q["source"], "id": by_n[q["source"]].id, "quote": q["quote"]} for q in checked.quotes]
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
        lineage=service.lineage(",".join(models)),
    )
    span.set_attribute("agentic.answer_id", answer.answer_id)
    trace_lineage(span, answer)
    span.end()
    return answer
