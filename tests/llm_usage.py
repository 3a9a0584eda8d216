"""The session's LLM work per test: the served llama-server's own token counters (``/llm/metrics``), read before and
after each test once the serving stack is up, kept on the test's report (``user_properties``, so they reach the
junit file and, under pytest-xdist, the controller) and summed at the end. The suite's time on a 2-core machine is
mostly the 0.5B model's prefill (docs/tests.md): this says which tests ask for it."""

from __future__ import annotations

import pytest

PROMPT, GENERATED = "llm_prompt_tokens", "llm_generated_tokens"
_COUNTERS = {"llamacpp:prompt_tokens_total": PROMPT, "llamacpp:tokens_predicted_total": GENERATED}
_state: dict = {"url": None, "before": {}}
_totals: dict[str, dict[str, int]] = {}


def watch(metrics_url: str | None) -> None:
    """Called by the serving stack's fixture with its relay of llama-server's metrics (None when it stops)."""
    _state["url"] = metrics_url


def parse(text: str) -> dict[str, int]:
    """The two token counters from llama-server's Prometheus text (the capacity record's parser)."""
    from core.capacity import parse_prometheus

    metrics = parse_prometheus(text)
    return {name: int(metrics[counter]) for counter, name in _COUNTERS.items() if counter in metrics}


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Tokens a test added. A counter that went down means the server was replaced during the test (the kill tests):
    what the new one counted is the part that can be known, so that is what is kept."""
    return {k: (after[k] - before.get(k, 0) if after[k] >= before.get(k, 0) else after[k]) for k in after}


def _read() -> dict[str, int]:
    if not _state["url"]:
        return {}
    try:
        import httpx

        return parse(httpx.get(_state["url"], timeout=3).text)
    except Exception:  # a server being replaced, or stopped: this test's count is unknown, never an error
        return {}


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    _state["before"] = _read()


@pytest.hookimpl(tryfirst=True)  # before the fixtures go: the session's last test takes the serving stack with it
def pytest_runtest_teardown(item, nextitem):
    after = _read()
    if after:
        for name, value in delta(_state["before"], after).items():
            if value:
                item.user_properties.append((name, value))


def pytest_runtest_logreport(report):
    if report.when == "teardown":
        props = {k: v for k, v in report.user_properties if k in (PROMPT, GENERATED)}
        if props:
            _totals[report.nodeid] = props


def summary(totals: dict[str, dict[str, int]], top: int = 15) -> list[str]:
    if not totals:
        return []
    prompt = sum(t.get(PROMPT, 0) for t in totals.values())
    generated = sum(t.get(GENERATED, 0) for t in totals.values())
    lines = [
        f"the served LLM's tokens: {prompt:,} prompt (after its cache), {generated:,} generated, {len(totals)} tests"
    ]
    ranked = sorted(totals.items(), key=lambda kv: -kv[1].get(PROMPT, 0))[:top]
    lines += [f"{t.get(PROMPT, 0):>8,} {t.get(GENERATED, 0):>7,}  {nodeid}" for nodeid, t in ranked]
    return lines


def pytest_terminal_summary(terminalreporter):
    lines = summary(_totals)
    if lines:
        terminalreporter.write_sep("=", "LLM tokens per test (prompt, generated; llama-server's counters)")
        for line in lines:
            terminalreporter.write_line(line)
