"""Which llama-server serves which model: a probe verdict for one model never stands for another (issue 29, item 7)."""

from __future__ import annotations

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


def _refuse_probe(*_a, **_k):
    raise AssertionError("probed although a native build exists")


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
def test_a_verdict_for_one_model_never_stands_for_another(tmp_path, monkeypatch):
    prebuilt = _file(tmp_path / "pre" / "llama-server", 10)
    big, small = _file(tmp_path / "m" / "big-1.5b.gguf", 7), _file(tmp_path / "m" / "small-0.5b.gguf", 5)
    probed = []

    def fake_probe(binary, env, model, threads=0, **_):
        probed.append((Path(model).name, threads))
        return Path(model) == big, "fake verdict"

    monkeypatch.setattr(ls, "prebuilt_binary", lambda: (prebuilt, {}))
    monkeypatch.setattr(ls, "probe", fake_probe)
    cache = tmp_path / "cache"
    assert ls.resolve_binary(cache, big, threads=2)[0] == prebuilt
    with pytest.raises(ls.LlamaServerError, match="small-0.5b.gguf"):
        ls.resolve_binary(cache, small, threads=2)
    assert ls.resolve_binary(cache, big, threads=2)[0] == prebuilt  # recorded: not probed again
    ls.resolve_binary(cache, big, threads=1)  # another thread count: its own probe
    assert probed == [("big-1.5b.gguf", 2), ("small-0.5b.gguf", 2), ("big-1.5b.gguf", 1)]


@pytest.mark.unit
def test_the_native_build_wins_but_only_on_the_cpu_it_was_built_on(tmp_path, monkeypatch):
    model = _file(tmp_path / "m" / "model.gguf", 5)
    monkeypatch.setattr(ls, "prebuilt_binary", lambda: (_file(tmp_path / "pre" / "llama-server", 10), {}))
    monkeypatch.setattr(ls, "probe", _refuse_probe)
    monkeypatch.setattr(ls, "_cpu_fingerprint", lambda: "aaa")
    built = _file(ls.source_binary(tmp_path), 10)
    binary, _, origin = ls.resolve_binary(tmp_path, model)
    assert binary == built and "-march=native, CPU aaa" in origin
    monkeypatch.setattr(ls, "_cpu_fingerprint", lambda: "bbb")  # the cache moved to another CPU
    monkeypatch.setattr(ls, "prebuilt_binary", lambda: None)
    with pytest.raises(ls.LlamaServerError):
        ls.resolve_binary(tmp_path, model)


def _served_tokens(server: ls.LlamaServer) -> int:
    body = {"prompt": "def fibonacci(n):", "n_predict": 8, "temperature": 0, "cache_prompt": False}
    return httpx.post(f"{server.url}/completion", json=body, timeout=120).json()["tokens_predicted"]


@pytest.mark.contract
def test_make_run_then_make_test_each_model_gets_a_binary_that_serves_it(tmp_path, monkeypatch):
    """`make run` (setup and serve 1.5b), `make test` (setup and serve 0.5b), `make run` again, on a fresh cache."""
    models = [CACHE / "models" / "llm" / get_model(k).file_name for k in ("1.5b", "0.5b", "1.5b")]
    if missing := [m.name for m in models if not m.is_file()]:
        pytest.fail(f"missing {missing}: `make test` prepares both models (setup.sh all llm:0.5b llm:1.5b)")
    cache = tmp_path / "cache"
    (cache / "models" / "llm").mkdir(parents=True)

    def reuse_build(into, **_):  # the source build the user cache already has, not ~5 min of compiling
        built = ls._source_build_dir(CACHE)
        if not (built / "build" / "bin" / "llama-server").is_file():
            pytest.fail(f"no source build in {CACHE}: `make test` builds it when the 0.5B fails its probe")
        ls._source_build_dir(into).parent.mkdir(parents=True, exist_ok=True)
        ls._source_build_dir(into).symlink_to(built)
        return ls.source_binary(into)

    monkeypatch.setattr(ls, "build_from_source", reuse_build)
    for model in models:
        local = cache / "models" / "llm" / model.name
        if not local.exists():
            local.symlink_to(model)
        ls.ensure(cache, local, log=lambda _: None)  # setup.sh
        binary, env, origin = ls.resolve_binary(cache, local)  # serving, as ModelServing.serve does
        server = ls.LlamaServer(binary, env, local, "llm", ctx_size=2048, parallel=1)
        try:
            server.start(timeout_s=60)
            assert _served_tokens(server) > 0, origin
        finally:
            server.stop()
