"""The routing rule, written once: the knowledge base first; its sources judged (answerability) before anything
else; the web only when no source addresses the question, once; and a budget of tool calls. The orchestrator's
action filter (which tools the model is offered next) and its hook (which tool call is cancelled, and why) both
read it, so they cannot drift apart. Pure: the state is the orchestrator's."""

from __future__ import annotations

from dataclasses import dataclass, field

SEARCH, JUDGE, WEB = "search_knowledge_base", "assess_relevance", "web_search"


@dataclass
class RouteState:
    tool_calls: int = 0  # tool calls the model made so far
    kb_searched: bool = False
    kb_last: list[int] = field(default_factory=list)  # the numbers of the last knowledge-base search's sources
    judged: bool = False  # the answerability judge has read them
    covered: list[int] = field(default_factory=list)  # sources judged to address the question
    web_calls: int = 0

    def covered_now(self) -> list[int]:
        return [n for n in self.kb_last if n in self.covered]


def next_actions(state: RouteState, budget: int) -> tuple[set[str], bool]:
    """(the tools the model may call now, whether it may give the final answer now)."""
    if state.tool_calls >= budget:
        return set(), True
    if not state.kb_searched:
        return {SEARCH}, False
    if state.kb_last and not state.judged:
        return {JUDGE}, False
    if not state.covered_now() and state.web_calls == 0:
        return {WEB}, False  # no source addresses the question: the web is searched, by rule, not by suggestion
    return set(), True


def refusal(state: RouteState, tool: str, budget: int) -> str | None:
    """Why the rule cancels a call of ``tool`` now, said to the model; None when the call may run."""
    allowed, _ = next_actions(state, budget)
    if tool in allowed:
        return None
    if state.tool_calls >= budget:
        return "Tool budget used up: give the final answer now."
    if not state.kb_searched:
        return "Search the knowledge base first."
    if state.kb_last and not state.judged:
        return "Assess the relevance of the knowledge-base sources first."
    if state.covered_now():
        return f"Not needed: sources {state.covered_now()} address the question. Answer from those sources."
    if allowed:
        return f"Not now: {', '.join(sorted(allowed))} first."
    return "Give the final answer now, from the sources found."
