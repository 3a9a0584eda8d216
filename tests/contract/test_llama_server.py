"""Which llama-server serves which model: a probe verdict for one model never stands for another (issue 29, item 7)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import httpx
import pytest

from core.gguf import get_model
from infra.local import llama_server as ls
from pipelines.settings import load_settings

CACHE = load_settings().cache


def _file(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return path


@pytest.mark.unit
def test_probe_record_is_keyed_by_cpu_binary_model_and_threads(tmp_path):
    binary, other_binary = _file(tmp_path / "a" / "llama-server", 10), _file(tmp_path / "b" / "llama-server", 10)
    small, large = _file(tmp_path / "m" / "small.gguf", 5), _file(tmp_path / "m" / "large.gguf", 7)
    resized = _file(tmp_path / "n" / "small.gguf", 6)
    same = _file(tmp_path / "o" / "small.gguf", 5)  # another folder (a test's cache): the same model

    def record(b=binary, m=small, threads=2, cpu="aaa"):
        return ls.probe_record(tmp_path, b, m, threads, cpu=cpu)

    assert record() == record(m=same)
    keys = {record(), record(m=large), record(m=resized), record(b=other_binary), record(threads=1), record(cpu="bbb")}
    assert len(keys) == 6


@pytest.mark.unit
def test_the_native_build_lives_in_a_folder_named_for_this_cpu(tmp_path):
    """A cache moved to another CPU looks in another folder, so it never runs a binary built for a different one."""
    assert ls._cpu_fingerprint() in str(ls.source_binary(tmp_path))
    assert ls._cpu_fingerprint() in ls.source_origin()


@pytest.mark.unit
def test_the_native_build_names_the_cpus_instruction_sets_and_leaves_out_amx(tmp_path):
    """ggml's AMX matmul crashed (SIGSEGV in ggml_backend_amx_mul_mat) in a VM whose CPU lists AMX, in a -march=native
    build; a build folder made before this rule (which may hold such a build) is never looked in."""
    spr = {"avx", "avx2", "fma", "f16c", "bmi2", "avx_vnni", "avx512f", "avx512_vnni", "amx_tile", "amx_int8"}
    flags = ls.target_flags("native", spr)
    assert "-DGGML_NATIVE=OFF" in flags and "-DGGML_AVX512_VNNI=ON" in flags and "-DGGML_AVX_VNNI=ON" in flags
    assert "-DGGML_AVX512_BF16=OFF" in flags and not any("AMX" in f for f in flags)
    zen3 = ls.target_flags("native", {"avx", "avx2", "fma", "f16c", "bmi2"})
    assert "-DGGML_AVX2=ON" in zen3 and "-DGGML_AVX512=OFF" in zen3 and "-DGGML_AVX_VNNI=OFF" in zen3
    assert ls.target_flags("native", {"asimd", "sve"}) == ["-DGGML_NATIVE=ON"]  # Graviton: the compiler decides
    assert ls.target_flags("x86-64-v3", spr) == ls.TARGET_FLAGS["x86-64-v3"]
    assert ls.source_binary(tmp_path).parts[-4].endswith("-r3")


@pytest.mark.contract
def test_the_build_compiles_ggmls_kernels_at_o3_and_the_rest_at_o1(tmp_path):
    """Only the kernels decide tokens/s; the server, chat-template and CLI code take most of the compile time (the
    build took 259 s at -O1 instead of 350 at -O3). CMake's own configure of the sources setup unpacked."""
    src = ls._source_build_dir(CACHE) / "src"
    assert (src / "CMakeLists.txt").is_file(), f"no llama.cpp sources in {src}: run `make setup` (part llama-native)"
    subprocess.run(ls.configure_command(src, tmp_path), check=True, capture_output=True, timeout=120)
    ninja = (tmp_path / "build" / "build.ninja").read_text()

    def opt(obj: str) -> list[str]:
        rule = ninja[ninja.index(f"build {obj}: ") :]
        flags = next(x for x in rule.splitlines() if x.strip().startswith("FLAGS ="))
        return re.findall(r"(?<!\S)-O\d", flags)

    for kernel in ("ggml-cpu.dir/ggml-cpu/ops.cpp.o", "ggml-cpu.dir/ggml-cpu/repack.cpp.o", "ggml-base.dir/ggml.c.o"):
        assert opt(f"ggml/src/CMakeFiles/{kernel}") == ["-O3"], kernel
    for other in ("common/CMakeFiles/llama-common.dir/arg.cpp.o", "src/CMakeFiles/llama.dir/llama-model.cpp.o"):
        assert opt(other) == ["-O1"], other


def _served_tokens(server: ls.LlamaServer) -> int:
    body = {"prompt": "def fibonacci(n):", "n_predict": 8, "temperature": 0, "cache_prompt": False}
    return httpx.post(f"{server.url}/completion", json=body, timeout=120).json()["tokens_predicted"]


def _serves(binary: Path, env: dict, model: Path) -> int:
    server = ls.LlamaServer(binary, env, model, "llm", ctx_size=2048, parallel=1)
    try:
        server.start(timeout_s=60)
        return _served_tokens(server)
    finally:
        server.stop()


@pytest.mark.contract
def test_make_run_then_make_test_each_model_gets_a_binary_that_serves_it(tmp_path):
    """On a fresh cache, as `make run` (the 1.5B) then `make test` (the 0.5B) then `make run` again resolve them:
    each model is probed for itself with the real binaries, and whatever it resolves serves it. Where the prebuilt one
    fails a model (SIGILL on this CPU for the 0.5B), that model has no binary until the source build is there: the
    user cache's build is linked in, as `make setup` would have built it (not ~5 min of compiling again)."""
    models = {k: CACHE / "models" / "llm" / get_model(k).file_name for k in ("1.5b", "0.5b")}
    if missing := [m.name for m in models.values() if not m.is_file()]:
        pytest.fail(f"missing {missing}: `make test` prepares both models (setup.sh all llm:0.5b llm:1.5b)")
    cache = tmp_path / "cache"
    (cache / "models" / "llm").mkdir(parents=True)
    local = {k: cache / "models" / "llm" / m.name for k, m in models.items()}
    for k, m in models.items():
        local[k].symlink_to(m)
    probes = cache / "llama.cpp" / "probes"

    def resolve(key: str):
        try:
            return ls.resolve_binary(cache, local[key])
        except ls.LlamaServerError as exc:
            built = ls._source_build_dir(CACHE)
            if not (built / "build" / "bin" / "llama-server").is_file():
                pytest.fail(f"{exc}; and no source build in {CACHE} (`make test` builds it when a probe fails)")
            ls._source_build_dir(cache).parent.mkdir(parents=True, exist_ok=True)
            ls._source_build_dir(cache).symlink_to(built)
            return ls.resolve_binary(cache, local[key])

    after = []
    for key in ("1.5b", "0.5b", "1.5b", "1.5b"):
        binary, env, origin = resolve(key)
        assert _serves(binary, env, local[key]) > 0, (key, origin)
        after.append(sorted(p.name for p in probes.glob("*.json")))
    # each model was probed for itself, each binary at most once per model (where the prebuilt one dies, as for both
    # models on an AVX2-only EPYC, the native build is probed after it), and a run with nothing new probed nothing.
    # Where the prebuilt serves the 1.5B but not the 0.5B (an AVX-512 EPYC), the second `make run` probes the native
    # build the 0.5B brought in, once, and uses it (it decodes faster); the third probes nothing.
    verdicts = [json.loads(p.read_text()) for p in probes.glob("*.json")]
    pairs = [(v["binary"], v["model"]) for v in verdicts]
    assert len(pairs) == len(set(pairs)), pairs
    assert {m.name for m in local.values()} == {v["model"] for v in verdicts if v["ok"]}, verdicts
    assert after[3] == after[2], after


@pytest.mark.contract
def test_a_native_build_that_crashes_is_not_used(tmp_path):
    """A native build is probed like the prebuilt one (one of llama-cpp-python 0.3.36 crashed with SIGSEGV at start on
    this CPU): one that dies loading the model leaves the model to the prebuilt binary, and the verdict is kept."""
    model = CACHE / "models" / "llm" / get_model("0.5b").file_name
    if not model.is_file():
        pytest.fail(f"missing {model.name}: `make test` prepares it (setup.sh all llm:0.5b)")
    cache = tmp_path / "cache"
    crashing = ls.source_binary(cache)
    crashing.parent.mkdir(parents=True)
    crashing.write_text("#!/bin/sh\nkill -SEGV $$\n")  # what that build did, at the point llama-server starts
    crashing.chmod(0o755)
    try:
        binary, env, origin = ls.resolve_binary(cache, model)
    except ls.LlamaServerError as exc:
        # a CPU where the prebuilt binary dies too (SIGILL on an AVX2-only EPYC): nothing is used, and the error
        # names both verdicts and the way out
        assert "native build failed its probe" in str(exc) and "prebuilt one failed its probe" in str(exc), exc
        assert "make setup" in str(exc)
    else:
        assert origin == ls.PREBUILT_ORIGIN and binary != crashing
        assert _serves(binary, env, model) > 0
    verdicts = [p.read_text() for p in (cache / "llama.cpp" / "probes").glob("*.json")]
    assert any('"ok": false' in v and str(crashing) in v for v in verdicts), verdicts


@pytest.mark.contract
def test_the_load_tests_warm_up_leaves_the_system_text_in_every_slot(tmp_path):
    """``LoadTestResource.warm`` before a sweep: each slot of a real llama-server holds the system text after it. A
    slot that already holds it answers a repeat in one token's time, so unpinned requests sent at once could all land
    on that slot (run 7 of the planner's check: one slot warmed of two, a level's p95 paid the cold one)."""
    from resources.load_test import LoadTestResource

    model = CACHE / "models" / "llm" / get_model("0.5b").file_name
    binary, env, _ = ls.resolve_binary(CACHE, model, threads=1)
    server = ls.LlamaServer(binary, env, model, "llm", ctx_size=4096, parallel=2, threads=1)
    system = "You answer clinical questions from the sources given, and cite them. " * 12
    server.start(timeout_s=60)
    try:
        chat = {"messages": [{"role": "system", "content": system}, {"role": "user", "content": "Hi"}], "max_tokens": 1}
        first = httpx.post(f"{server.url}/v1/chat/completions", json=chat, timeout=120)  # one slot holds the text now
        held = first.json()["usage"]["prompt_tokens"]
        load_test = LoadTestResource(work_dir=str(tmp_path), cache_dir=str(tmp_path))
        assert load_test.warm(server.url, system) == 2
        slots = httpx.get(f"{server.url}/slots", timeout=10).json()
        # each slot's last prompt: the system text and a short user turn (a never-used slot has none)
        assert [s.get("n_prompt_tokens", 0) >= held - 4 for s in slots] == [True, True], slots
    finally:
        server.stop()


@pytest.mark.unit
def test_speculative_decoding_is_ngram_lookup_or_none():
    assert ls.speculative_args("") == []
    assert ls.speculative_args("ngram")[:2] == ["--spec-type", "ngram-simple"]
    with pytest.raises(ValueError, match="speculative"):
        ls.speculative_args("draft")
    server = ls.LlamaServer(Path("llama-server"), {}, Path("m.gguf"), "llm", speculative="ngram")
    assert server.command()[-len(ls.SPECULATIVE["ngram"]) :] == ls.SPECULATIVE["ngram"]
    assert "--spec-type" not in ls.LlamaServer(Path("llama-server"), {}, Path("m.gguf"), "llm").command()


@pytest.mark.contract
def test_llama_server_with_ngram_speculation_drafts_a_quote_from_the_prompt():
    """With n-gram speculative decoding (``AGENTIC_LLM_SPECULATIVE=ngram``), text copied from the prompt (an answer's evidence quote) is drafted from
    the prompt's n-grams and accepted in batches: llama-server reports the drafts it made and those it kept."""
    model = CACHE / "models" / "llm" / get_model("0.5b").file_name
    binary, env, _ = ls.resolve_binary(CACHE, model, threads=1)
    server = ls.LlamaServer(binary, env, model, "llm", ctx_size=2048, parallel=1, threads=1, speculative="ngram")
    quote = "Teachers reported similar numbers of ADHD symptoms for immigrant and nonimmigrant children in the cohort."
    server.start(timeout_s=60)
    try:
        ask = f'Source [1]: "{quote}"\nCopy the sentence of source [1] exactly, with nothing else.'
        body = {"messages": [{"role": "user", "content": ask}], "max_tokens": 40, "temperature": 0}
        reply = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=120).json()
        timings = reply["timings"]
        assert quote[:40] in reply["choices"][0]["message"]["content"]
        assert timings.get("draft_n", 0) > 0 and timings.get("draft_n_accepted", 0) >= 8, timings
    finally:
        server.stop()


@pytest.mark.contract
def test_a_routed_replica_restarts_a_llama_server_that_died_and_sends_the_request_once_more(tmp_path):
    """The suite once saw the routed app answer 500: the replica's llama-server dropped the first request, and
    nothing said why. A replica now restarts a server that died (as a container restart would) and sends the request
    once more, since nothing had come back yet; the cause goes to its log."""
    import asyncio
    import json

    from resources.serve_routing import relay_chat

    model = CACHE / "models" / "llm" / get_model("0.5b").file_name
    binary, env, _ = ls.resolve_binary(CACHE, model, threads=1)
    server = ls.LlamaServer(binary, env, model, "llm", ctx_size=2048, parallel=1, threads=1, log_path=tmp_path / "log")
    body = {"messages": [{"role": "user", "content": "Say yes."}], "max_tokens": 2}

    async def call() -> list:
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
            return [part async for part in relay_chat(server, client, body)]

    server.start(timeout_s=60)
    try:
        pid = server.proc.pid
        server.proc.kill()  # the process this test started, by its handle
        server.proc.wait()
        parts = asyncio.run(call())
        assert parts[0] == 200 and json.loads(b"".join(parts[1:]))["choices"]
        assert server.restarts == 1 and server.proc.pid != pid
        # a server that cannot be brought back: the LLM app's clean 503 with an OpenAI error body, not a bare 500
        server.proc.kill()
        server.proc.wait()
        server.binary = tmp_path / "missing-llama-server"
        parts = asyncio.run(call())
        assert parts[0] == 503 and "model server unavailable" in json.loads(b"".join(parts[1:]))["error"]["message"]
    finally:
        server.stop()
