"""The capacity test's pure parts: the tokenizer made from the GGUF file (against llama-server's own ``/tokenize``,
recorded), the sweep plan and the tool's arguments, the agent's prompt mix as AIPerf conversations, the tool's export
and the engine's ``/metrics`` and ``/slots`` (recorded from real runs), and the SLO search. Fixtures in
``tests/unit/data/capacity/``: ``aiperf_export.json`` (AIPerf 0.13.0, 3 requests to llama-server, 0.5B),
``llama_server_metrics.txt`` and ``llama_server_slots.json`` (one slot busy with a 934-token prompt, 2 slots of
4,096), ``tokenize_qwen2.5-coder-0.5b.json`` (llama-server's ``/tokenize`` of ten texts, ``add_special`` off)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from core import capacity
from core.capacity import CONCURRENCY, POISSON, Level, Slo, Target
from core.gguf import get_model
from core.gguf_tensors import GGUFError
from core.gguf_tokenizer import read_vocab, tokenizer_json, write_tokenizer

DATA = Path(__file__).parent / "data" / "capacity"
ENGINE = Target("model_server", "http://127.0.0.1:8001/llm", "qwen2.5-coder-0.5b-instruct", "http://127.0.0.1:8001/llm")


def test_the_tokenizer_made_from_the_gguf_file_tokenizes_as_llama_server_does(base_settings, tmp_path):
    from tokenizers import Tokenizer

    gguf = base_settings.cache / "models" / "llm" / get_model("0.5b").file_name
    out = write_tokenizer(gguf, tmp_path / "tok")
    recorded = json.loads((DATA / "tokenize_qwen2.5-coder-0.5b.json").read_text())
    assert recorded["model"] == gguf.name
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    for item in recorded["texts"]:  # the agent's system text, questions, abstracts, Unicode, code, whitespace
        assert tok.encode(item["text"], add_special_tokens=False).ids == item["ids"], item["text"][:60]
    assert sum(len(t["ids"]) for t in recorded["texts"]) > 1000
    # the chat markers are single special tokens, and decoding gives the text back
    ids = tok.encode("<|im_start|>user\nIs it safe?<|im_end|>", add_special_tokens=False).ids
    assert ids[0] == 151644 and ids[-1] == 151645
    assert tok.decode(tok.encode(recorded["texts"][5]["text"]).ids) == recorded["texts"][5]["text"]
    config = json.loads((out / "tokenizer_config.json").read_text())
    assert config["eos_token"] == "<|im_end|>" and "<|im_start|>" in config["chat_template"]
    stamp = (out / "source.json").stat().st_mtime_ns
    write_tokenizer(gguf, out)  # made once per file
    assert (out / "source.json").stat().st_mtime_ns == stamp


def test_a_vocabulary_with_another_pre_tokenizer_is_refused_not_guessed(base_settings):
    vocab = read_vocab(base_settings.cache / "models" / "llm" / get_model("0.5b").file_name)
    assert vocab["tokenizer.ggml.pre"] == "qwen2" and len(vocab["tokenizer.ggml.tokens"]) == 151_936
    with pytest.raises(GGUFError, match="llama-bpe"):
        tokenizer_json({**vocab, "tokenizer.ggml.pre": "llama-bpe"})
    added = {t["content"]: t["special"] for t in tokenizer_json(vocab)["added_tokens"]}
    assert added["<|im_end|>"] is True and added["<tool_call>"] is False  # control vs user-defined


def test_the_sweep_is_ordered_and_bounded():
    levels = capacity.sweep_plan([4, 1, 2, 2], [0.1, 0.05], 8, 40)
    assert [lv.name for lv in levels] == ["c1", "c2", "c4", "r0.05", "r0.1"]
    assert {lv.requests for lv in levels} == {8}
    with pytest.raises(ValueError, match="over the bound of 39"):
        capacity.sweep_plan([1, 2, 4], [0.05, 0.1], 8, 39)
    with pytest.raises(ValueError, match="cannot keep 8 in flight"):
        capacity.sweep_plan([8], [], 4, 100)
    with pytest.raises(ValueError, match="no load level"):
        capacity.sweep_plan([], [], 4, 100)


def test_the_tools_arguments_bound_each_run_and_carry_no_key(tmp_path):
    keyed = Target("gateway", "http://127.0.0.1:4000", "chat", ENGINE.engine_url, keyed=True)
    args = capacity.aiperf_args(
        keyed, Level(POISSON, 0.05, 6), tmp_path / "p.jsonl", tmp_path / "tok", tmp_path, 120, 4
    )

    def value(flag: str) -> str:
        return args[args.index(flag) + 1]

    assert args[0] == "profile" and "--api-key" not in args
    assert (
        value("--num-sessions") == "4"  # the file's conversations, each sent whole: no request count to cut one
        and "--request-count" not in args
        and value("--request-rate") == "0.05"
        and value("--arrival-pattern") == "poisson"
    )
    assert value("--url") == "http://127.0.0.1:4000" and value("--custom-dataset-type") == "multi_turn"
    assert value("--request-timeout-seconds") == "120" and value("--ui") == "none"
    assert "--streaming" in args and "--concurrency" not in args and "--use-server-token-count" in args
    assert value("--cache-bust") == "first-turn-prefix"  # no run reads another run's prompts from the server's cache
    assert value("--connection-reuse-strategy") == "never"  # a reused connection the server had closed failed
    api = Target("api", "http://127.0.0.1:8000", "agentic-rag", ENGINE.engine_url, True, False, agent_side=True)
    args = capacity.aiperf_args(api, Level(CONCURRENCY, 2, 4), tmp_path / "p.jsonl", tmp_path / "tok", tmp_path, 60, 3)
    assert args[args.index("--concurrency") + 1] == "2" and "--use-server-token-count" not in args
    assert "--cache-bust" not in args  # the marker would enter the question the API retrieves with


def test_the_agents_prompts_become_conversations_and_each_level_gets_its_own():
    from agents.prompts import SYSTEM, answer_messages
    from agents.sources import Source

    sources = [Source(1, "PMID:1", "Trial of X", "Conclusion: X lowered Y.", "knowledge_base")]
    messages = answer_messages("Does X lower Y?", sources, True, 1)
    one = capacity.conversation_record("cov-1", messages, [], 64)
    two = capacity.conversation_record("conv-2", messages, ["How many patients were in it?"], 64)
    assert one["turns"][0]["role"] == "system" and one["turns"][0]["text"].startswith(SYSTEM)
    assert "output_length" not in one["turns"][0] and one["turns"][1]["output_length"] == 64
    assert "[1] Trial of X\nConclusion: X lowered Y." in one["turns"][1]["text"]
    assert two["turns"][2] == {"text": "How many patients were in it?", "output_length": 64}
    assert capacity.requests_of(one) == 1 and capacity.requests_of(two) == 2
    api = capacity.conversation_record("conv-2", [{"role": "user", "content": "Does X lower Y?"}], ["And Z?"], None)
    assert api["turns"] == [{"text": "Does X lower Y?"}, {"text": "And Z?"}]
    with pytest.raises(ValueError, match="assistant"):
        capacity.conversation_record("x", [{"role": "assistant", "content": "hi"}], [], 8)

    levels = [Level(CONCURRENCY, 1, 3), Level(CONCURRENCY, 2, 2), Level(POISSON, 0.1, 1)]
    first, second, third = capacity.level_datasets([one, two, one | {"session_id": "cov-3"}], levels)
    assert [r["session_id"] for r in first] == ["cov-1-c1-0", "conv-2-c1-1"]  # 1 + 2 requests
    assert [r["session_id"] for r in second] == ["cov-3-c2-0", "cov-1-c2-1"]  # goes on where c1 stopped, wraps
    # exactly the level's count: a conversation that would go over it keeps its first turn (its system prompt too)
    [trimmed] = third
    assert trimmed["session_id"] == f"conv-2-{levels[2].name}-0" and trimmed["turns"] == two["turns"][:2]
    # what the engine's slots are warmed with before the levels: the system text all conversations share
    assert capacity.shared_system_text([one, two]) == one["turns"][0]["text"]
    assert capacity.shared_system_text([one, api]) == ""  # the API's conversations carry none


def test_the_agent_prompt_mix_is_built_from_what_the_agent_retrieves():
    from agents.answers import AgentConfig
    from agents.prompts import SYSTEM
    from agents.sources import Source
    from assets.serving.capacity import agent_prompts

    class Retrieved:  # the retrieval part of the answer service: what the index gives for a question
        config = AgentConfig()
        asked: list[tuple[str, int]] = []

        def retrieve(self, question, whole=0, *, scope):
            self.asked.append((question, whole))
            return [Source(1, "PMID:9", f"About {question[:10]}", "Conclusion: it did.", "knowledge_base")], {}

    covered = [{"id": "cov-1", "question": "Does X lower Y?"}, {"id": "cov-2", "question": "Is Z safe?"}]
    convs = [{"id": "conv-1", "turn1": "What did the trial of X find?", "turn2": "How long was it?"}]
    service = Retrieved()
    mix = agent_prompts(service, covered, convs, 96)
    assert [r["session_id"] for r in mix["engine"]] == ["cov-1", "conv-1", "cov-2"]
    assert service.asked == [("Does X lower Y?", 0), ("What did the trial of X find?", 1), ("Is Z safe?", 0)]
    conv = mix["engine"][1]
    assert (
        conv["turns"][0]["text"].startswith(SYSTEM)
        and "Question: What did the trial of X find?" in conv["turns"][1]["text"]
    )
    assert conv["turns"][2] == {"text": "How long was it?", "output_length": 96}
    assert mix["api"][1]["turns"] == [{"text": "What did the trial of X find?"}, {"text": "How long was it?"}]


def test_the_split_of_the_prompts_is_the_evaluation_sets_dev_split():
    from assets.serving.capacity import eval_items
    from benchmarks import eval_sets

    covered, conversations = eval_items(500, 500)
    assert covered == eval_sets.covered("dev") and conversations == eval_sets.conversations("dev")


def test_a_recorded_export_gives_its_row():
    row = capacity.parse_export(json.loads((DATA / "aiperf_export.json").read_text()))
    assert row["completed"] == 3 and row["errors"] == 0 and row["error_rate"] == 0.0
    assert row["ttft_p95_ms"] == pytest.approx(620.8188737) and row["e2e_p99_ms"] == pytest.approx(2250.4636788)
    assert row["itl_p50_ms"] == pytest.approx(60.297624052631576)
    assert row["output_tokens_per_s"] == pytest.approx(11.9456, abs=1e-3)
    assert row["requests_per_s"] == pytest.approx(0.55995, abs=1e-4)
    cut = capacity.settle(row, 6, timed_out=True)  # stopped at its time limit with 3 of 6 finished
    assert cut["unfinished"] == 3 and cut["error_rate"] == 0.5 and cut["timed_out"]
    assert not capacity.meets(cut, Slo(1e4, 1e4)) and capacity.meets(capacity.settle(row, 3, False), Slo(1e4, 1e4))
    empty = capacity.parse_export({})  # a run stopped before any request finished
    assert empty["completed"] == 0 and empty["error_rate"] == 1.0 and empty["ttft_p95_ms"] is None


def test_the_engines_queue_and_kv_use_from_its_metrics_and_slots():
    metrics = capacity.parse_prometheus((DATA / "llama_server_metrics.txt").read_text())
    gauges = capacity.engine_gauges(metrics)
    assert gauges == {"processing": 1.0, "deferred": 0.0, "kv_ratio": None}  # this build exports no KV ratio
    assert capacity.parse_prometheus('x{a="1"} 2\n# c\nbad\ny NaN') == {
        'x{a="1"}': 2.0,
        "y": pytest.approx(float("nan"), nan_ok=True),
    }
    kv = capacity.slots_kv(json.loads((DATA / "llama_server_slots.json").read_text()))
    assert kv == {"kv_tokens": 934.0, "kv_use": 934 / 8192}  # the idle slot's cached 75 tokens are not counted
    samples = [{"processing": 2, "deferred": 1, "kv_use": 0.5}, {"processing": 1, "deferred": 0, "kv_use": 0.1}, {}]
    summary = capacity.summarize_samples(samples)
    assert summary["queue_depth_max"] == 3 and summary["queue_depth_mean"] == 2 and summary["kv_use_max"] == 0.5
    assert capacity.summarize_samples([])["queue_depth_mean"] is None


def _row(target, mode, value, ttft, e2e, errors=0):
    return {
        "target": target, "mode": mode, "value": value, "ttft_p95_ms": ttft, "e2e_p95_ms": e2e, "completed": 8,
        "errors": errors, "error_rate": errors / 8, "requests_per_s": value / 10, "output_tokens_per_s": value * 5,
    }  # fmt: skip


def test_the_capacity_is_the_highest_level_below_the_first_miss():
    slo = Slo(ttft_p95_ms=2000, e2e_p95_ms=10000)
    rows = [
        _row("model_server", CONCURRENCY, 4, 2500, 9000),  # TTFT misses
        _row("model_server", CONCURRENCY, 1, 500, 4000),
        _row("model_server", CONCURRENCY, 2, 1500, 8000),
        _row("model_server", CONCURRENCY, 8, 1900, 9000),  # passes again above the miss: not the capacity
        _row("model_server", POISSON, 0.05, 400, 3000),
        _row("model_server", POISSON, 0.1, 400, 3000, errors=1),  # a failed request misses
        _row("gateway", CONCURRENCY, 1, 2100, 4000),
    ]
    found = capacity.capacity(rows, slo)
    c = found["model_server/concurrency"]
    assert (c["max_level"], c["first_miss"], c["passes_above_miss"]) == (2, 4, True)
    assert c["requests_per_s"] == 0.2 and c["levels"] == 4
    assert found["model_server/poisson"]["max_level"] == 0.05 and found["model_server/poisson"]["first_miss"] == 0.1
    assert found["gateway/concurrency"]["max_level"] is None
    assert not capacity.meets({**rows[1], "completed": 0}, slo) and not capacity.meets(capacity.parse_export({}), slo)


def test_a_sweep_stops_a_mode_after_a_level_runs_out_of_time(tmp_path):
    from resources.load_test import LoadTestError, LoadTestResource

    class Timed(LoadTestResource):
        def run_level(self, target, level, records, tokenizer, key, request_timeout_s, time_limit_s, seed=0):
            ran.append((target.name, level.name, key, len(records)))
            return {**capacity.settle(capacity.parse_export({}), level.requests, level.name == "c2"), "wall_s": 1.0}

    ran: list = []
    levels = capacity.sweep_plan([1, 2, 4], [0.1], 4, 100)
    gateway = Target("gateway", "http://127.0.0.1:4000", "chat", ENGINE.engine_url, keyed=True)
    lt = Timed(work_dir=str(tmp_path), cache_dir=str(tmp_path))
    prompt = {"session_id": "s", "turns": [{"text": "q"}]}
    rows = lt.sweep(
        [ENGINE, gateway], levels, lambda t: [prompt], tmp_path, {"gateway": "k"}, 60, 60, log=lambda m: None
    )
    assert [(r["target"], r["mode"], r["value"], bool(r.get("skipped"))) for r in rows][:4] == [
        ("model_server", CONCURRENCY, 1, False),
        ("model_server", CONCURRENCY, 2, False),
        ("model_server", CONCURRENCY, 4, True),  # after c2 ran out of time
        ("model_server", POISSON, 0.1, False),
    ]
    assert ran[:3] == [("model_server", "c1", "", 4), ("model_server", "c2", "", 4), ("model_server", "r0.1", "", 4)]
    assert ("gateway", "c1", "k", 4) in ran  # the key goes with its target only
    with pytest.raises(LoadTestError, match="loopback only"):
        lt._guard("http://10.0.0.5:8000")
    LoadTestResource(work_dir="w", cache_dir="c", loopback_only=False)._guard("http://agentic-api.agentic:8000")
    with pytest.raises(LoadTestError, match="setup.sh aiperf"):
        LoadTestResource(aiperf_python="", work_dir="w", cache_dir="c").check()


def test_a_concurrency_level_after_a_lower_one_starts_its_sessions_staggered(tmp_path):
    from resources.load_test import LoadTestResource

    class Recorded(LoadTestResource):
        def run_level(self, target, level, records, tokenizer, key, request_timeout_s, time_limit_s, seed=0):
            ran.append(level)
            row = capacity.settle(capacity.parse_export({}), level.requests, False)
            return {**row, "e2e_p50_ms": {"c1": 8000.0, "c2": 12000.0}.get(level.name), "wall_s": 1.0}

    ran: list = []
    levels = capacity.sweep_plan([1, 2, 4], [0.1], 4, 100)
    lt = Recorded(work_dir=str(tmp_path), cache_dir=str(tmp_path))
    rows = lt.sweep([ENGINE], levels, lambda t: [{"session_id": "s", "turns": [{"text": "q"}]}], tmp_path, {}, 60, 60,
                    log=lambda m: None)  # fmt: skip
    # c2 opens its second slot half a c1 answer in; c4 opens one every quarter of a c2 answer; rates are open loops
    assert [(lv.name, lv.ramp_s) for lv in ran] == [("c1", 0.0), ("c2", 4.0), ("c4", 9.0), ("r0.1", 0.0)]
    assert [r["ramp_s"] for r in rows] == [0.0, 4.0, 9.0, 0.0]
    args = capacity.aiperf_args(ENGINE, ran[1], tmp_path / "p.jsonl", tmp_path / "tok", tmp_path, 60, 3)
    assert args[args.index("--concurrency-ramp-duration") + 1] == "4"
    args = capacity.aiperf_args(ENGINE, ran[0], tmp_path / "p.jsonl", tmp_path / "tok", tmp_path, 60, 3)
    assert "--concurrency-ramp-duration" not in args
    assert capacity.staggered(Level(CONCURRENCY, 2, 4), None).ramp_s == 0.0  # nothing measured below it yet


@pytest.mark.contract  # it starts processes (sleep), so not the unit tier
def test_the_tools_whole_session_runs_at_its_niceness(tmp_path):
    import time

    from resources.load_test import spawn_tool

    def nice(pid: int) -> str:  # /proc/<pid>/stat's 19th field; `nice` sets it before it runs the command
        deadline = time.time() + 5
        while Path(f"/proc/{pid}/comm").read_text().strip() != "sleep" and time.time() < deadline:
            time.sleep(0.02)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16]

    procs = []
    try:
        with open(tmp_path / "log", "wb") as log:
            procs = [spawn_tool(["sleep", "30"], log, dict(os.environ), tmp_path, n) for n in (19, 0)]
        assert [nice(p.pid) for p in procs] == ["19", "0"]
        # the session's scheduler group too: it yields to the servers' group, not only inside its own session
        groups = [Path(f"/proc/{p.pid}/autogroup").read_text().split()[-1] for p in procs]
        assert groups == ["19", "0"]
        assert all(os.getsid(p.pid) == p.pid for p in procs)  # a session of its own: stopped as a group
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_the_curves_names_and_labels():
    rows = [
        _row("model_server", CONCURRENCY, c, 300 * c, 2000 * c) | {"queue_depth_mean": c, "kv_use_max": 0.1}
        for c in (1, 2)
    ]
    png = capacity.curves_png(rows, Slo(1000, 5000), "qwen2.5-coder-0.5b-instruct on test")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC 7B13 64-Core Processor\n"
    assert capacity.hardware_label(cpuinfo, 2) == "AMD EPYC 7B13, 2 cores"
    assert capacity.hardware_label("", 2, gpu="NVIDIA H100") == "NVIDIA H100 x1"
    assert capacity.record_name("qwen2.5-coder-1.5b-instruct", "AMD EPYC 7B13, 2 cores") == (
        "qwen2.5-coder-1.5b-instruct/amd-epyc-7b13-2-cores"
    )


def test_the_serve_apps_slots_relay_gives_counts_and_no_callers_text():
    slots = json.loads((DATA / "llama_server_slots.json").read_text())
    relayed = capacity.slot_counts(slots)
    assert capacity.slots_kv(relayed) == capacity.slots_kv(slots) and capacity.slots_kv(relayed)["kv_tokens"] > 0
    text = json.dumps(relayed)
    assert '"params"' in json.dumps(slots) and '"params"' not in text  # sampling params, the prompt's stop words
    assert all(not isinstance(v, str) for s in relayed for v in s.values())


def test_aiperfs_per_request_records_are_read_in_send_order():
    from core.capacity import request_records

    def line(start, turn, **metrics):
        meta = {"conversation_id": "c", "turn_index": turn, "request_start_ns": start, "request_end_ns": start + 9}
        return json.dumps({"metadata": meta, "metrics": {k: {"value": v} for k, v in metrics.items()}})

    text = "\n".join([
        line(20, 1, time_to_first_token=5.0, request_latency=8.0, input_sequence_length=120,
             usage_prompt_cache_read_tokens=100, output_sequence_length=3),
        "",
        line(10, 0, input_sequence_length=90),  # unfinished: no latencies
    ])  # fmt: skip
    first, second = request_records(text)
    assert (first["start_ns"], first["turn"], first["ttft_ms"], first["e2e_ms"]) == (10, 0, None, None)
    assert (second["prompt"] - second["cached"], second["out"], second["e2e_ms"]) == (20.0, 3.0, 8.0)
