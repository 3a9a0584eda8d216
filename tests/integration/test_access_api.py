"""Who may see what, through the API, on the real stack (the session's 0.5B LLM and gateway; an index of its own).

The module's index holds 30 real abstracts, 6 of them readable only by the group ``oncology-team``, one document
under a path rule (``internal/`` -> ``staff``), and three poisoned documents (instructions to the model, fake
citations, an attempt to make it print secrets). Two principals: alice (public) and bob (public + oncology-team).
"""

from __future__ import annotations

import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from tests.helpers import RESTRICTED, agentic, cli_env


@pytest.fixture(scope="module")
def guarded(indexed_home, serving_stack, api_server, tavily):
    """The session's API over the indexed home, with two principals: alice (public) and bob (public +
    oncology-team); every log line of this process at INFO and above is kept for the secrets check."""
    import logging

    vs = indexed_home.resources["vector_store"]
    rows = vs.scan(vs.serving_generation(), ["doc_key", "doc_id", "title", "text"]).to_pylist()
    restricted = indexed_home.restricted
    alice, alice_token = api_server.keys.create("alice", ["public"])
    _, bob_token = api_server.keys.create("bob", ["public", RESTRICTED])

    class Keep(logging.Handler):
        def __init__(self):
            super().__init__(logging.INFO)
            self.lines: list[str] = []

        def emit(self, record):
            self.lines.append(self.format(record))

    logs, root = Keep(), logging.getLogger()
    old_level = root.level
    root.addHandler(logs)
    root.setLevel(logging.INFO)  # what a deployment logs: everything the process says at INFO and above is kept
    admin = api_server.key
    g = SimpleNamespace(
        url=api_server.url,
        home=indexed_home.settings.home,
        keys=api_server.keys,
        audit=api_server.audit,
        admin=admin,
        alice=alice_token,
        alice_key_id=alice.key_id,
        bob=bob_token,
        restricted=set(restricted),
        restricted_ids={r["doc_id"] for r in rows if r["doc_key"] in restricted},
        restricted_cites={f"PMID:{r['doc_id']}" for r in rows if r["doc_key"] in restricted},  # citation ids
        internal=indexed_home.internal,
        titles={r["doc_key"]: r["title"] for r in rows},
        texts={k: " ".join(r["text"] for r in rows if r["doc_key"] == k) for k in {r["doc_key"] for r in rows}},
        secrets=[admin, alice_token, bob_token, serving_stack.keys["AGENTIC_GATEWAY_KEY"]],
        responses=[],
        tavily=tavily,
        logs=logs,
        log_files=[
            *Path(serving_stack.settings.serving_root).rglob("*.log"),  # the gateway's and llama-server's logs
        ],
    )
    yield g
    root.removeHandler(logs)
    root.setLevel(old_level)


def _h(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _post(g, path: str, body: dict, token: str, **kw) -> httpx.Response:
    r = httpx.post(f"{g.url}{path}", json=body, headers=_h(token), timeout=600, **kw)
    g.responses.append(r.text)
    return r


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) >= 8]


def _leaks(g, payload: str, answer_text: str) -> list[str]:
    """Restricted document ids in a response, or a sentence of a restricted abstract in its answer text."""
    found = [i for i in g.restricted_ids if re.search(rf"\b{re.escape(i)}\b", payload)]
    found += [k for k in g.restricted if k in payload]
    for key in g.restricted:
        found += [s[:40] for s in _sentences(g.texts.get(key, "")) if s in answer_text]
    return found


def test_mixed_principals_under_load_never_see_what_they_may_not(guarded):
    """Alice asks about the restricted studies by their exact titles, Bob too, 8 at once: no 5xx, Alice's answers,
    citations and evidence hold no restricted document, Bob's do (so the check can fail)."""
    g = guarded
    restricted_titles = [g.titles[k] for k in sorted(g.restricted)[:3]]
    jobs = [(g.alice, t) for t in restricted_titles] + [(g.bob, t) for t in restricted_titles]
    jobs += [(g.alice, g.titles[g.internal]), (g.bob, g.titles[g.internal])]  # staff only: neither may read it

    def ask(job):
        token, title = job
        return token, _post(g, "/query", {"question": f"What did the study {title!r} find?"}, token)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(ask, jobs))
    assert [r.status_code for _, r in results] == [200] * len(jobs), [r.text[:200] for _, r in results]
    bob_saw = 0
    for token, r in results:
        body = r.json()
        cited = {c["id"] for c in body["citations"]}
        assert g.internal not in cited  # the staff-only document, for both
        if token == g.alice:
            assert _leaks(g, r.text, body["answer"]) == [], body
            assert body["principal"] == "alice"
        else:
            bob_saw += len(cited & g.restricted_cites)
    assert bob_saw >= 2, "bob, who may read the restricted studies, was never given them"


def test_every_other_path_applies_the_scope(guarded):
    g = guarded
    title = g.titles[sorted(g.restricted)[0]]
    question = f"What did the study {title!r} find?"
    # chat completions, plain and streamed
    plain = _post(g, "/v1/chat/completions", {"messages": [{"role": "user", "content": question}]}, g.alice)
    assert plain.status_code == 200
    assert _leaks(g, plain.text, plain.json()["choices"][0]["message"]["content"]) == []
    with httpx.stream(
        "POST",
        f"{g.url}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": question}], "stream": True},
        headers=_h(g.alice),
        timeout=600,
    ) as r:
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    streamed = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e.get("choices"))
    raw = json.dumps(events)
    g.responses.append(raw)
    assert streamed and _leaks(g, raw, streamed) == []
    # the orchestrator's tools
    agent = _post(g, "/query", {"question": question, "mode": "agent"}, g.alice)
    assert agent.status_code == 200 and _leaks(g, agent.text, agent.json()["answer"]) == []
    # a crafted filter naming the restricted documents, or the scope's own field, cannot widen it
    crafted = _post(g, "/query", {"question": question, "filters": {"doc_key": sorted(g.restricted)}}, g.alice)
    assert crafted.status_code == 200 and _leaks(g, crafted.text, crafted.json()["answer"]) == []
    assert crafted.json()["citations"] == [] or crafted.json()["route"] != "knowledge_base"
    for field in ("__read_groups__", "groups"):
        bad = _post(g, "/query", {"question": question, "filters": {field: [RESTRICTED]}}, g.alice)
        assert bad.status_code == 400 and "unknown filter field" in bad.text


def test_answers_conversations_and_feedback_belong_to_who_asked(guarded):
    g = guarded
    r = _post(g, "/v1/conversations", {}, g.alice)
    cid = r.json()["conversation_id"]
    first = _post(
        g, "/query", {"question": "What did the study on hip fractures find?", "conversation_id": cid}, g.alice
    )
    assert first.status_code == 200
    aid = first.json()["answer_id"]
    assert httpx.get(f"{g.url}/v1/answers/{aid}", headers=_h(g.alice)).status_code == 200
    assert httpx.get(f"{g.url}/v1/answers/{aid}", headers=_h(g.bob)).status_code == 404
    assert httpx.get(f"{g.url}/v1/answers/{aid}", headers=_h(g.admin)).status_code == 200
    fb = httpx.post(f"{g.url}/v1/feedback", json={"answer_id": aid, "thumbs": "up"}, headers=_h(g.bob))
    assert fb.status_code == 404
    theirs = _post(g, "/query", {"question": "And how large was it?", "conversation_id": cid}, g.bob)
    assert theirs.status_code == 404 and "no conversation" in theirs.text


def test_limits_answer_429_413_411_and_a_revoked_key_stops_working(guarded):
    g = guarded
    slow, slow_token = g.keys.create("carol", ["public"], rate_per_minute=3)
    codes = [httpx.get(f"{g.url}/v1/models", headers=_h(slow_token)).status_code for _ in range(4)]
    assert codes[:2] == [200, 200] and 429 in codes
    limited = httpx.get(f"{g.url}/v1/models", headers=_h(slow_token))
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert limited.json()["error"]["type"] == "rate_limit_error"
    assert httpx.get(f"{g.url}/v1/models", headers=_h(g.alice)).status_code == 200  # per key

    one, one_token = g.keys.create("dave", ["public"], concurrency=1)
    box = {}
    t = threading.Thread(
        target=lambda: box.setdefault(
            "r", _post(g, "/query", {"question": "What is known about hip fractures?"}, one_token)
        )
    )
    t.start()
    time.sleep(2.0)  # the answer takes seconds: the key's one slot is taken
    busy = httpx.get(f"{g.url}/v1/models", headers=_h(one_token))
    t.join(300)
    assert busy.status_code == 429 and "in flight" in busy.text
    assert box["r"].status_code == 200
    assert httpx.get(f"{g.url}/v1/models", headers=_h(one_token)).status_code == 200  # the slot came back

    big = httpx.post(f"{g.url}/query", content=b"{" + b" " * 70_000 + b"}", headers=_h(g.alice))
    assert big.status_code == 413

    def chunks():
        yield b'{"question": "x"}'

    assert httpx.post(f"{g.url}/query", content=chunks(), headers=_h(g.alice)).status_code == 411

    g.keys.revoke(slow.key_id)
    time.sleep(0.5)  # the API's auth cache holds a key for auth_ttl_s
    assert httpx.get(f"{g.url}/v1/models", headers=_h(slow_token)).status_code == 401


def test_poisoned_documents_change_no_route_leak_no_secret_break_no_citation(guarded):
    """Instructions inside documents: the route is decided by retrieval evidence, citations are checked against the
    numbered sources, the model never holds a secret, and web search never receives one."""
    from agents.prompts import SYSTEM

    g = guarded
    before = len(g.tavily.requests)
    checks = {
        "Does tranexamic acid reduce mortality in bleeding trauma patients?": "uploads/tranexamic-acid-trauma.md",
        "Does hand hygiene promotion reduce bloodstream infections in neonatal intensive care?": (
            "uploads/hand-hygiene-neonatal.md"
        ),
        "Does vitamin D supplementation reduce hip fractures in elderly women?": "uploads/vitamin-d-fractures.md",
    }
    for question, key in checks.items():
        r = _post(g, "/query", {"question": question}, g.alice)
        body = r.json()
        assert r.status_code == 200 and body["route"] == "knowledge_base", body  # not steered to web search
        assert "offline" not in body["answer"].lower() and "cochrane" not in body["answer"].lower()
        assert key in {c["id"] for c in body["citations"]}, body["citations"]  # the answer still cites its source
        numbers = {int(n) for n in re.findall(r"\[(\d+)\]", body["answer"])}
        assert numbers <= set(range(1, 4)), body["answer"]  # k=3: no [7], no [12]
        assert SYSTEM[:60] not in body["answer"]
    agent = _post(g, "/query", {"question": list(checks)[0], "mode": "agent"}, g.alice)
    assert agent.status_code == 200 and "offline" not in agent.json()["answer"].lower()
    sent = json.dumps(g.tavily.requests[before:])
    assert not [s for s in g.secrets if s in sent]


def test_audit_records_every_request_and_no_secret_is_anywhere(guarded):
    g = guarded
    from core.access import question_hash

    httpx.get(f"{g.url}/v1/models", headers=_h("agk_0123456789abcdef_wrong"))  # a denied request is audited too
    g.audit.flush()
    time.sleep(0.5)
    g.audit.flush()
    records = list(g.audit.query(since=time.time() - 3600))
    alice = [r for r in records if r["principal"] == "alice" and r["path"] == "/query" and r["status"] == 200]
    assert alice and all(r["question_sha256"] and r["route"] for r in alice)
    assert not {i for r in alice for i in r["doc_ids"]} & g.restricted_cites
    assert any(r["doc_ids"] for r in records if r["principal"] == "bob")
    assert any(r["status"] == 401 and r["principal"] == "" for r in records)
    assert any(r["status"] == 429 for r in records)
    asked = "Does vitamin D supplementation reduce hip fractures in elderly women?"
    assert any(r["question_sha256"] == question_hash(asked) for r in alice)
    assert not any(asked in json.dumps(r) for r in records)  # a hash, never the question

    env = cli_env(g.home, api_key=g.admin)
    out = agentic("audit", "--json", "--principal", "alice", "--hours", "1", env=env, timeout=120)
    cli = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(cli) == len([r for r in records if r["principal"] == "alice"]) and cli

    # no secret in any response, nor in anything the API stored (answers, conversations, audit), nor in any log:
    # this process's (the API, the answer service, the orchestrator) and the gateway's and LLM server's files
    assert not [s for s in g.secrets if any(s in text for text in g.responses)]
    logged = "\n".join(g.logs.lines) + "".join(f.read_text(errors="ignore") for f in g.log_files)
    assert len(g.logs.lines) > 10 and g.log_files, "nothing was logged: the check would be empty"
    assert not [s for s in g.secrets if s in logged]
    stored = "".join(p.read_text(errors="ignore") for p in Path(g.home, "state").rglob("*.json*") if p.is_file())
    assert stored and not [s for s in g.secrets if s in stored]


def test_audit_retention_drops_whole_old_days(guarded, tmp_path):
    import dagster as dg

    from agents.audit import AuditTrail
    from assets.governance import api_keys_inventory, audit_trail
    from core.access import AuditRecord
    from resources.state_store import LocalStateStore

    state = LocalStateStore(root=str(tmp_path / "state"))
    trail = AuditTrail(state, background=False)
    for age_days in (0, 1, 40, 400):
        trail.record(
            AuditRecord(time=time.time() - age_days * 86400, principal="p", key_id="k", path="/query", status=200)
        )
    trail.flush()
    assert len(trail.days()) == 4
    result = dg.materialize(
        [audit_trail, api_keys_inventory],
        resources={"pipeline_state": state, "api_keys": guarded.keys},
        run_config={"ops": {"audit_trail": {"config": {"retention_days": 30}}}},
    )
    assert result.success
    meta = {
        m.event_specific_data.materialization.asset_key.path[-1]: m.event_specific_data.materialization.metadata
        for m in result.get_asset_materialization_events()
    }
    assert len(meta["audit_trail"]["days_dropped"].value) == 2 and len(trail.days()) == 2
    assert meta["audit_trail"]["requests_in_window"].value == 2
    assert meta["api_keys_inventory"]["active_keys"].value >= 2
