"""The ``serving_capacity`` asset against the session's live stack: AIPerf (``.venv-aiperf``) sends the agent's own
prompts to the model server and the API on loopback, one small bounded level each (the gateway is a keyed target like
the API; `make bench` loads all three), while the engine's ``/metrics`` and ``/slots`` are sampled. The capacity record
lands in the state store with its curves; the engine's slots are warmed first; a conversation's follow-up is sent; a
key that begins with "-" reaches the tool; no key reaches its command line, its logs or its artifacts."""

from __future__ import annotations

import json
import secrets

import httpx
import pytest

pytestmark = pytest.mark.integration

MAX_TOKENS = 8


def test_serving_capacity_measures_the_live_stack_and_records_it(serving_stack, api_server, tmp_path):
    import dagster as dg

    from assets.serving.capacity import serving_capacity
    from assets.serving.state import read_record
    from core import capacity
    from resources.load_test import LoadTestResource

    state = serving_stack.resources["pipeline_state"]
    load_test = LoadTestResource(
        work_dir=str(tmp_path / "capacity"),
        cache_dir=str(serving_stack.settings.cache),
        api_url=api_server.url,
        api_key=api_server.key,
        niceness=10,  # the tool beside a server on two cores (docs/benchmarks.md: it halved the server's prefill)
    )
    run_config = {
        "targets": ["model_server", "api"],
        "concurrency": [2],
        "poisson_rates": [],
        "requests_per_level": 3,  # a question and a two-turn conversation, per target
        "max_requests": 6,
        "max_tokens": MAX_TOKENS,
        "questions": 1,
        "conversations": 1,
        "level_time_limit_s": 240,
        "request_timeout_s": 180,
        "ttft_p95_ms": 120000,
        "e2e_p95_ms": 180000,
    }
    result = dg.materialize(
        [serving_capacity],
        resources={**serving_stack.resources, "load_test": load_test},
        instance=serving_stack.instance,
        run_config={"ops": {"serving_capacity": {"config": run_config}}},
        raise_on_error=False,
    )
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    meta = {k: v.value for k, v in result.asset_materializations_for_node("serving_capacity")[0].metadata.items()}
    assert meta["requests_sent"] == 6 and meta["requests_failed"] == 0 and meta["requests_unfinished"] == 0, meta

    record = state.read_json(meta["record"])
    assert state.get_bytes(f"{meta['record']}.png").startswith(b"\x89PNG")
    assert record["model"] == "qwen2.5-coder-0.5b-instruct" and record["tool"].startswith("aiperf ")
    rows = {r["target"]: r for r in record["rows"]}
    assert set(rows) == {"model_server", "api"}
    for name, row in rows.items():
        assert row["completed"] == 3 and row["errors"] == 0, (name, row)
        assert 0 < row["ttft_p50_ms"] <= row["e2e_p50_ms"] and row["e2e_p95_ms"] <= row["e2e_p99_ms"], (name, row)
        assert row["requests_per_s"] > 0 and row["output_tokens_per_s"] > 0, (name, row)
        # the engine was sampled while the load ran, and was busy: a request in flight, its prompt in a slot
        assert row["samples"] > 0 and row["queue_depth_max"] >= 1 and row["kv_use_max"] > 0, (name, row)
    # the engine's own token count: the reply bound holds, and the prompts carry the retrieved passages
    assert rows["model_server"]["output_tokens_avg"] <= MAX_TOKENS < 500 < rows["model_server"]["input_tokens_avg"]
    # the API answers with its own prompts and bounds: more tokens than a bare 8-token reply
    assert rows["api"]["output_tokens_avg"] > MAX_TOKENS, rows["api"]
    # the capacity at the (generous) SLO is the one level, for each target
    assert record["capacity"] == capacity.capacity(record["rows"], capacity.Slo(120000, 180000))
    assert {c["max_level"] for c in record["capacity"].values()} == {2.0}, record["capacity"]

    # the conversation's second turn was sent, after its first (AIPerf's per-request export)
    for name in rows:
        export = tmp_path / "capacity" / name / "c2" / "aiperf" / "profile_export.jsonl"
        turns = [json.loads(line)["metadata"] for line in export.read_text().splitlines() if line.strip()]
        assert sorted(t["turn_index"] for t in turns) == [0, 0, 1], (name, turns)

    # every slot of the engine held the system text before the levels (the Serve app relays llama-server's /slots)
    deployments = read_record(state, "model_deployments")
    engine = deployments["endpoints"]["llm"].removesuffix("/").removesuffix("/v1")
    slots = len(httpx.get(f"{engine}/slots", timeout=10).json())
    logs = [e.user_message for e in serving_stack.instance.all_logs(result.run_id)]
    assert slots >= 2 and f"model_server: {slots} slot(s) warmed with the system text" in logs, logs[-5:]

    # a key that begins with "-" (token_urlsafe gives one in 32) is one word to the real tool: as "--api-key KEY" it
    # read the key as an option and exited (make test at 3b0b4c6). The Serve app takes a bearer header and ignores it.
    dashed = "-" + secrets.token_urlsafe(16)
    target = capacity.Target("model_server", engine, deployments["llm"], engine, keyed=True)
    prompt = capacity.conversation_record("dashed", [{"role": "user", "content": "Say OK."}], [], 4)
    tokenizer = load_test.tokenizer(read_record(state, "model_artifacts")["llm"]["path"])
    row = load_test.run_level(target, capacity.Level(capacity.CONCURRENCY, 1, 1), [prompt], tokenizer, dashed, 120, 120)
    assert row["completed"] == 1 and row["errors"] == 0, row
    keys = [serving_stack.gateway.master_key, api_server.key, dashed]

    # keys go to the tool by environment: nothing it wrote or logged holds one
    for path in (tmp_path / "capacity").rglob("*"):
        if path.is_file():
            text = path.read_bytes().decode(errors="replace")
            assert not any(s in text for s in keys), path
