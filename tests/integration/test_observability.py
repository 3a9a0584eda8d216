"""Observability on real components: one answer is one trace in the trace store (Arize Phoenix), read back through
its API and shown in its UI; every dashboard panel returns data from a real Prometheus after real traffic."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import ask_api, indexed_title

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"


def _title(serving_stack) -> str:
    return indexed_title(serving_stack)[0]


@pytest.fixture(scope="module")
def one_answer(answers, serving_stack, trace_store):
    """One question through the API (the session's answer to it), and its trace as the trace store has it."""
    body = answers(f"What did the study {_title(serving_stack)!r} find?")
    trace_id = body["agentic"]["trace_id"]
    want = {"agentic.answer", "retrieve", "assess_relevance", "generate_answer", "litellm_request"}
    spans = trace_store.wait(trace_id, want, timeout_s=60)
    return body, trace_id, spans


def test_one_question_through_the_api_is_one_trace_with_the_gateways_spans(one_answer):
    body, trace_id, spans = one_answer
    names = [s.name for s in spans]
    assert {"agentic.answer", "retrieve", "assess_relevance", "generate_answer", "litellm_request"} <= set(names), names
    assert {s.trace_id for s in spans} == {trace_id}
    by_id = {s.span_id: s for s in spans}

    # every parent is in the trace (nothing dangles)
    dangling = [(s.name, s.parent_id) for s in spans if s.parent_id and s.parent_id not in by_id]
    assert not dangling, (dangling, [(s.name, s.span_id, s.parent_id) for s in spans])

    def ancestors(span):
        while span.parent_id:
            span = by_id[span.parent_id]
            yield span

    # one root, the API's HTTP request; the answer under it, and every other span under those
    roots = [s for s in spans if s.parent_id is None]
    assert [r.name for r in roots] == ["POST /v1/chat/completions"], [(s.name, s.parent_id) for s in spans]
    root = next(s for s in spans if s.name == "agentic.answer")
    assert roots[0] in ancestors(root)
    assert all(roots[0] in ancestors(s) for s in spans if s is not roots[0])

    for name in ("retrieve", "assess_relevance", "generate_answer"):
        step = next(s for s in spans if s.name == name)
        assert step.parent_id == root.span_id, name
    # the gateway's spans are children of the agent's model calls (traceparent crossed the HTTP hop)
    gateway_calls = [s for s in spans if s.name == "litellm_request"]
    # the agent's model calls (generate_answer, and a repair if the check asked for one)
    agent_calls = [s for s in spans if "gen_ai.usage.input_tokens" in s.attributes and s.name != "litellm_request"]
    for call in gateway_calls:
        assert any(a in agent_calls for a in ancestors(call)), (call.name, call.parent_id)
    # token counts: the gateway's usage, the agent's model-call spans, the API's reply and the cost report's reading
    # of the trace (core.trace_cost, which counts each call once) all agree
    from core.trace_cost import answer_record

    usage = body["usage"]
    gw_in = sum(int(s.attributes["gen_ai.usage.input_tokens"]) for s in gateway_calls)
    gw_out = sum(int(s.attributes["gen_ai.usage.output_tokens"]) for s in gateway_calls)
    assert gw_in == usage["prompt_tokens"] == sum(int(s.attributes["gen_ai.usage.input_tokens"]) for s in agent_calls)
    assert gw_out == usage["completion_tokens"] > 0
    assert len(gateway_calls) == len(agent_calls) == body["agentic"]["llm_calls"]
    record = answer_record(root, spans)
    assert sum(i for i, _ in record.tokens.values()) == gw_in and sum(o for _, o in record.tokens.values()) == gw_out
    for call in agent_calls + gateway_calls:
        assert call.attributes.get("gen_ai.request.model") and call.seconds > 0
    # the answer's lineage is on its root span
    lineage = body["agentic"]["lineage"]
    for key in ("index_generation", "chunker_version", "embedding_model", "llm", "prompt_version"):
        assert root.attributes[f"agentic.lineage.{key}"] == str(lineage[key]), key
    assert root.attributes["agentic.route"] == body["agentic"]["route"]
    assert root.attributes["agentic.tokens.completion"] == usage["completion_tokens"]


def test_no_secret_reaches_the_trace_store(one_answer, api_server, serving_stack):
    _, _, spans = one_answer
    text = repr([(s.name, s.attributes) for s in spans])
    for secret in (api_server.key, serving_stack.keys["AGENTIC_GATEWAY_KEY"]):
        assert secret not in text


def test_a_trace_opens_in_the_trace_stores_ui(one_answer, trace_store):
    """Headless Chromium renders the trace's page in Phoenix's UI (kept as a test artifact) and its DOM names the
    answer's steps."""
    _, trace_id, _ = one_answer
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is missing (make setup installs it)"
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "phoenix-trace.png"
    shot.unlink(missing_ok=True)
    url = trace_store.store.trace_url(trace_id)
    flags = [
        chromium,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1600,1000",
        "--virtual-time-budget=20000",
    ]
    profile = ARTIFACTS / ".chromium-profile"
    dom = subprocess.run(
        [*flags, f"--user-data-dir={profile}-dom", "--dump-dom", url], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    for name in ("agentic.answer", "generate_answer", "litellm_request"):
        assert name in dom.stdout, name
    run = subprocess.run(
        [*flags, f"--user-data-dir={profile}", f"--screenshot={shot}", url], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000  # a rendered page, not a blank one
    shutil.rmtree(f"{profile}-dom", ignore_errors=True)
    shutil.rmtree(profile, ignore_errors=True)


# ---------------------------------------------------------------- metrics: every panel answers from a real Prometheus


def _ray_metrics_target() -> str:
    import ray

    node = next(n for n in ray.nodes() if n["Alive"])
    return f"{node['NodeManagerAddress']}:{node['MetricsExportPort']}"


def test_every_dashboard_panel_returns_data_from_a_real_prometheus(api_server, serving_stack, tmp_path, one_answer):
    """Prometheus (Debian's build) scrapes the API, the gateway and Ray with the config rendered from the platform's
    service list and evaluates its alert rules; after a bounded loopback load every panel of the shipped dashboards
    that the local stack can serve returns series (the GPU ones are checked on exporter-shaped series by promtool)."""
    from infra.local.prometheus import PrometheusServer
    from infra.platform.dashboards import dashboard_panels
    from infra.platform.observability import alert_rules, local_scrape_config

    key_files = {}
    for name, key in (("agentic-api", api_server.key), ("litellm", serving_stack.keys["AGENTIC_GATEWAY_KEY"])):
        path = tmp_path / f"{name}.key"
        path.touch(mode=0o600)
        path.write_text(key)
        key_files[name] = str(path)
    targets = {
        "agentic-api": api_server.url.removeprefix("http://"),
        "litellm": serving_stack.gateway.url.removeprefix("http://"),
        "ray-serve": _ray_metrics_target(),
    }
    prom = PrometheusServer(tmp_path / "prometheus", serving_stack.settings.cache)
    assert prom.installed(), "Prometheus is missing from the cache (make setup fetches it)"
    prom.start(local_scrape_config(targets, key_files=key_files, interval="2s"), alert_rules())
    try:
        deadline = time.time() + 90
        while time.time() < deadline and not (
            len(prom.targets()) == len(targets) and all(t["health"] == "up" for t in prom.targets())
        ):
            time.sleep(1)
        health = {t["labels"]["job"]: (t["health"], t["lastError"]) for t in prom.targets()}
        assert set(health) == set(targets) and all(h == "up" for h, _ in health.values()), health

        # bounded load on loopback: 3 questions, 2 refused requests, 6 embeddings and 1 unknown model at the gateway
        title = _title(serving_stack)
        for q in (f"What did the study {title!r} find?", "What are the risk factors for type 2 diabetes?"):
            ask_api(api_server, q)
        httpx.post(
            f"{api_server.url}/query",
            headers={"Authorization": f"Bearer {api_server.key}"},
            json={"question": f"Summarize {title!r}"},
            timeout=300,
        ).raise_for_status()
        for _ in range(2):
            assert httpx.post(f"{api_server.url}/query", json={"question": "x"}).status_code == 401
        gw = {"Authorization": f"Bearer {serving_stack.keys['AGENTIC_GATEWAY_KEY']}"}
        for i in range(6):
            httpx.post(
                f"{serving_stack.gateway.url}/v1/embeddings",
                headers=gw,
                json={"model": serving_stack.gateway.embedding_model, "input": [f"insulin resistance {i}"]},
                timeout=60,
            ).raise_for_status()
        bad = httpx.post(
            f"{serving_stack.gateway.url}/v1/chat/completions",
            headers=gw,
            json={"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]},
            timeout=60,
        )
        assert bad.status_code >= 400

        panels = [p for p in dashboard_panels() if p.needs is None]
        empty = panels
        deadline = time.time() + 120  # Ray reports its metrics every 10 s
        while time.time() < deadline and empty:
            time.sleep(3)
            empty = [p for p in empty if not prom.query(p.expr)]
        print(f"panels with data: {len(panels) - len(empty)}/{len(panels)}")
        assert not empty, [(p.dashboard, p.title, p.expr) for p in empty]

        # the alert rules load and evaluate on the real series without error
        r = httpx.get(f"{prom.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
        loaded = [rule for g in r for rule in g["rules"]]
        assert len(loaded) == sum(len(g["rules"]) for g in alert_rules()["groups"])
        assert all(rule["health"] == "ok" for rule in loaded), [(x["name"], x.get("lastError")) for x in loaded]
    finally:
        prom.stop()


@pytest.mark.e2e
def test_agentic_ask_reports_to_the_homes_trace_store(serving_stack, trace_store):
    """`agentic ask` in another shell finds the trace store `agentic up` runs for its home (no OTEL_* endpoint set):
    its answer is a trace there, with the gateway's spans in it."""
    import json
    import os

    from tests.helpers import agentic, stack_cli

    _, env = stack_cli(serving_stack)
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    home_phoenix = serving_stack.settings.serving_root / "phoenix"
    home_phoenix.mkdir(parents=True, exist_ok=True)
    port_file = home_phoenix / "phoenix.port"
    port_file.write_text(trace_store.url.rsplit(":", 1)[1])  # as `agentic up` leaves it
    try:
        out = agentic("ask", "--json", f"What did the study {_title(serving_stack)!r} find?", env=env, timeout=300)
    finally:
        port_file.unlink()
    answer = json.loads(out.stdout)
    want = {"agentic.answer", "retrieve"} | ({"litellm_request"} if answer["llm_calls"] else set())
    spans = trace_store.wait(answer["trace_id"], want, timeout_s=60)
    assert want <= {s.name for s in spans}, [s.name for s in spans]
    assert not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")  # the endpoint came from the home, not the environment


@pytest.mark.integration
def test_agentic_up_scrapes_its_own_services_with_keys_kept_out_of_the_config(base_settings, tmp_path, monkeypatch):
    """`agentic up`'s metrics wiring: the targets are this home's gateway, API and Ray head (only when the head is the
    one it started), Prometheus runs with the rendered config and rules, and the bearer keys sit in 0600 files, never
    in prometheus.yml."""
    import stat

    from pipelines.services import metrics_targets, prometheus_server, start_metrics
    from tests.conftest import make_settings

    settings = make_settings(base_settings, tmp_path / "home", ray_address="127.0.0.1:6379")
    run = settings.serving_root / "run"
    run.mkdir(parents=True)
    assert "ray-serve" not in metrics_targets(settings, "127.0.0.1:8000")  # no head of this home's on file
    (run / "ray.address").write_text("127.0.0.1:6379")
    (run / "ray.metrics").write_text("127.0.0.1:6380")
    targets = metrics_targets(settings, "127.0.0.1:8000")
    assert targets == {
        "litellm": f"127.0.0.1:{settings.gateway_port}",
        "agentic-api": "127.0.0.1:8000",
        "ray-serve": "127.0.0.1:6380",
    }
    monkeypatch.setenv("AGENTIC_API_KEY", "api-key-for-this-test")
    monkeypatch.setenv("AGENTIC_GATEWAY_KEY", "gateway-key-for-this-test")
    prom = prometheus_server(settings)
    url = start_metrics(settings, targets, log=lambda *_: None)
    try:
        deadline = time.time() + 30  # targets appear after the first discovery cycle
        while time.time() < deadline and len(prom.targets()) < len(targets):
            time.sleep(0.5)
        assert {t["labels"]["job"] for t in prom.targets()} == set(targets)
        config = (prom.workdir / "prometheus.yml").read_text()
        assert "key-for-this-test" not in config
        for name, key in (("agentic-api", "api-key-for-this-test"), ("litellm", "gateway-key-for-this-test")):
            path = prom.workdir / f"{name}.key"
            assert path.read_text() == key and stat.S_IMODE(path.stat().st_mode) == 0o600
        rules = httpx.get(f"{url}/api/v1/rules", timeout=10).json()["data"]["groups"]
        assert sum(len(g["rules"]) for g in rules) > 0
    finally:
        assert prom.stop() and not prom.alive()
