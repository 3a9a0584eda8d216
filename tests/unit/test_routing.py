"""The routing rule the orchestrator's action filter and its hook both read (agents/routing.py)."""

from __future__ import annotations

from agents.routing import JUDGE, SEARCH, WEB, RouteState, next_actions, refusal


def test_knowledge_base_then_judge_then_web_only_when_nothing_is_covered():
    s = RouteState()
    assert next_actions(s, 4) == ({SEARCH}, False)
    assert refusal(s, WEB, 4) == "Search the knowledge base first."
    s.kb_searched, s.kb_last, s.tool_calls = True, [1, 2, 3], 1
    assert next_actions(s, 4) == ({JUDGE}, False)
    assert refusal(s, WEB, 4) == "Assess the relevance of the knowledge-base sources first."
    s.judged, s.tool_calls = True, 2
    assert next_actions(s, 4) == ({WEB}, False) and refusal(s, WEB, 4) is None  # nothing covered: the web, by rule
    s.web_calls, s.tool_calls = 1, 3
    assert next_actions(s, 4) == (set(), True) and refusal(s, WEB, 4)  # once


def test_a_covered_source_means_no_web_search_and_the_budget_ends_the_calls():
    s = RouteState(tool_calls=2, kb_searched=True, kb_last=[1, 2], judged=True, covered=[2, 7])
    assert s.covered_now() == [2]
    assert next_actions(s, 4) == (set(), True)
    assert refusal(s, WEB, 4) == "Not needed: sources [2] address the question. Answer from those sources."
    assert refusal(s, SEARCH, 4) == "Not needed: sources [2] address the question. Answer from those sources."
    spent = RouteState(tool_calls=4)
    assert next_actions(spent, 4) == (set(), True)
    assert refusal(spent, SEARCH, 4) == "Tool budget used up: give the final answer now."


def test_an_empty_search_goes_to_the_web_without_a_judge():
    s = RouteState(tool_calls=1, kb_searched=True, kb_last=[])
    assert next_actions(s, 4) == ({WEB}, False)
    assert refusal(s, JUDGE, 4) == "Not now: web_search first."
