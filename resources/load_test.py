"""The load tool: AIPerf (NVIDIA, ``aiperf`` on PyPI) from its own venv (setup part ``aiperf``: ``.venv-aiperf``, its
pins clash with the main set), run as a subprocess, one run per load level (``core.capacity``), while a thread samples
the engine's ``/metrics`` and ``/slots``. Every run is bounded: its request count, a per-request timeout and a
wall-clock limit after which the tool's process group is stopped; targets must be on loopback unless
``loopback_only`` is off (a cluster deployment).

AIPerf counts tokens with a HuggingFace tokenizer; with no hub access it is built from the served GGUF file's own
vocabulary (``core.gguf_tokenizer``). A target's key reaches the tool by environment, not on its command line.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
import httpx

from core import capacity
from core.gguf_tokenizer import write_tokenizer

REPO = Path(__file__).resolve().parents[1]
KEY_ENV = "AGENTIC_LOADTEST_KEY"
# python -c: the key from the environment is appended to the tool's own argv, so no process listing shows it (the
# tool's exports redact it). One "--api-key=KEY" word: as two, a key that begins with "-" (token_urlsafe gives one
# in 32) was read as an option, and the tool exited ("--api-key requires an argument"; seen in make test)
SHIM = (
    "import os, sys\n"
    f"key = os.environ.pop({KEY_ENV!r}, '')\n"
    "sys.argv = ['aiperf', *sys.argv[1:], *([f'--api-key={key}'] if key else [])]\n"
    "from aiperf.cli import app\n"
    "sys.exit(app())\n"
)
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class LoadTestError(RuntimeError):
    pass


class LoadTestResource(dg.ConfigurableResource):
    """Runs AIPerf against a serving target and samples the engine; what the ``serving_capacity`` asset calls."""

    aiperf_python: str = str(REPO / ".venv-aiperf" / "bin" / "python")  # "" where a deployment does not ship it
    work_dir: str  # each run's artifacts: the prompts sent, the tool's export and log
    cache_dir: str  # tokenizers made from GGUF files
    api_url: str = ""  # the agent API, a third target ("" = not tested)
    api_key: str = ""  # a key the API accepts (the admin principal's)
    loopback_only: bool = True
    poll_s: float = 0.5  # engine sampling period
    niceness: int = 0  # the tool's own CPU priority (on a 2-core machine it competes with the server)

    def check(self) -> None:
        if not self.aiperf_python or not Path(self.aiperf_python).is_file():
            raise LoadTestError(
                f"AIPerf is not installed here ({self.aiperf_python or 'no interpreter configured'}): run "
                "`scripts/setup.sh aiperf`"
            )

    def version(self) -> str:
        self.check()
        out = subprocess.run(
            [self.aiperf_python, "-c", "import importlib.metadata as m; print(m.version('aiperf'))"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return out.stdout.strip() or "unknown"

    def tokenizer(self, gguf_path: str | Path) -> Path:
        """The HuggingFace tokenizer folder for the served GGUF file (made once per file)."""
        return write_tokenizer(Path(gguf_path), Path(self.cache_dir) / "tokenizers" / Path(gguf_path).stem)

    def _guard(self, *urls: str) -> None:
        if not self.loopback_only:
            return
        for url in urls:
            host = urlparse(url).hostname or ""
            if host not in LOOPBACK:
                raise LoadTestError(f"{url}: load is sent to loopback only (loopback_only is on)")

    def run_level(
        self,
        target: capacity.Target,
        level: capacity.Level,
        records: list[dict],
        tokenizer: Path,
        key: str,
        request_timeout_s: float,
        time_limit_s: float,
        seed: int = 0,
    ) -> dict:
        """One AIPerf run: its row (``core.capacity.parse_export``) with the engine's queue and KV-cache use, the run's
        wall time and ``timed_out`` (stopped at ``time_limit_s``: what finished by then is reported, if anything)."""
        self.check()
        self._guard(target.url, target.engine_url)
        out = Path(self.work_dir) / target.name / level.name
        shutil.rmtree(out, ignore_errors=True)  # an earlier run's export is never read as this one's
        out.mkdir(parents=True)
        dataset = capacity.write_jsonl(records, out / "prompts.jsonl")
        args = capacity.aiperf_args(
            target, level, dataset, tokenizer, out / "aiperf", request_timeout_s, len(records), seed
        )
        cmd = [self.aiperf_python, "-c", SHIM, *args]
        env = {k: v for k, v in os.environ.items() if k != KEY_ENV}
        if key:
            env[KEY_ENV] = key
        samples: list[dict] = []
        stop = threading.Event()
        sampler = threading.Thread(target=self._sample, args=(target.engine_url, samples, stop), daemon=True)
        t0 = time.perf_counter()
        timed_out = False
        with open(out / "aiperf.log", "wb") as log:
            proc = spawn_tool(cmd, log, env, out, self.niceness)
            sampler.start()
            try:
                proc.wait(timeout=time_limit_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                _stop_group(proc)
            finally:
                stop.set()
                sampler.join(5)
        wall = time.perf_counter() - t0
        export = out / "aiperf" / "profile_export_aiperf.json"
        if export.is_file():  # also when stopped at the time limit: the tool writes what finished
            row = capacity.parse_export(json.loads(export.read_text()))
        elif timed_out:  # stopped before it wrote anything
            row = _empty_row()
        else:
            tail = (out / "aiperf.log").read_text(errors="replace")[-2000:]
            raise LoadTestError(
                f"aiperf exited with {proc.returncode} and no export ({target.name} {level.name}):\n{tail}"
            )
        row = capacity.settle(row, sum(capacity.requests_of(r) for r in records), timed_out)
        return {**row, "wall_s": wall, **capacity.summarize_samples(samples)}

    def _sample(self, engine_url: str, samples: list[dict], stop: threading.Event) -> None:
        """llama-server's queue (``/metrics``) and the context its busy slots hold (``/slots``), every ``poll_s``."""
        with httpx.Client(timeout=2) as client:
            while not stop.is_set():
                sample: dict = {"t": time.time()}
                try:
                    r = client.get(f"{engine_url}/metrics")
                    if r.status_code == 200:
                        sample.update(capacity.engine_gauges(capacity.parse_prometheus(r.text)))
                    r = client.get(f"{engine_url}/slots")
                    if r.status_code == 200:
                        sample.update(capacity.slots_kv(r.json()))
                except (httpx.HTTPError, ValueError):
                    pass
                if len(sample) > 1:
                    samples.append(sample)
                stop.wait(self.poll_s)

    def warm(self, engine_url: str, system_text: str) -> int:
        """One request per llama-server slot with the prompts' shared system text, before a target's levels, as the
        slots of a server in use hold it (a cold slot's first request pays it, and a short level reads that one as its
        p95; docs/serving.md). Each request names its slot (``id_slot``): sent at once but unpinned, a request that
        came after the other had finished went to the slot already holding the text (run 7 of the planner's check).
        Returns the slots warmed: 0 without a system text or ``/slots`` (vLLM's prefix cache is the engine's)."""
        self._guard(engine_url)
        if not system_text:
            return 0
        try:
            slots = httpx.get(f"{engine_url}/slots", timeout=10)
            n = len(slots.json()) if slots.status_code == 200 else 0
        except (httpx.HTTPError, ValueError):
            n = 0
        messages = [{"role": "system", "content": system_text}, {"role": "user", "content": "Reply OK."}]
        for slot in range(n):
            body = {"messages": messages, "max_tokens": 1, "temperature": 0, "id_slot": slot}
            try:
                httpx.post(f"{engine_url}/v1/chat/completions", json=body, timeout=300).raise_for_status()
            except httpx.HTTPError as exc:
                raise LoadTestError(f"warming slot {slot} of {engine_url} failed: {exc}") from exc
        return n

    def sweep(
        self,
        targets: list[capacity.Target],
        levels: list[capacity.Level],
        prompts: Callable[[capacity.Target], list[dict]],
        tokenizer: Path,
        keys: dict[str, str],
        request_timeout_s: float,
        time_limit_s: float,
        log: Callable[[str], None] = print,
    ) -> list[dict]:
        """Every level against every target, in order of load; after a level that ran out of time, the higher levels of
        its mode on that target are skipped (they would only take longer). Rows carry target, mode, value, requests."""
        rows = []
        for target in targets:
            pool = prompts(target)
            if not target.agent_side:  # the API builds its own prompts, and its engine is warm from them
                warmed = self.warm(target.engine_url, capacity.shared_system_text(pool))
                log(f"{target.name}: {warmed} slot(s) warmed with the system text")
            datasets = capacity.level_datasets(pool, levels)
            stopped: set[str] = set()
            service_ms = None  # the last concurrency level's median end-to-end: how far apart the next one starts
            for level, records in zip(levels, datasets):
                level = capacity.staggered(level, service_ms)
                head = {"target": target.name, "mode": level.mode, "value": level.value, "requests": level.requests,
                        "ramp_s": level.ramp_s}  # fmt: skip
                if level.mode in stopped:
                    rows.append({**head, **capacity.settle(_empty_row(), level.requests, False), "skipped": True})
                    continue
                row = {**head, **self.run_level(target, level, records, tokenizer, keys.get(target.name, ""),
                                                request_timeout_s, time_limit_s)}  # fmt: skip
                rows.append(row)
                if level.mode == capacity.CONCURRENCY and row.get("e2e_p50_ms"):
                    service_ms = row["e2e_p50_ms"]
                if row["timed_out"]:
                    stopped.add(level.mode)
                log(_describe(row))
        return rows


def spawn_tool(cmd: list[str], log, env: dict[str, str], cwd: Path, niceness: int) -> subprocess.Popen:
    """The tool in a session of its own (stopped as a group), at ``niceness``. Where the kernel schedules each session
    as one group (autogroup), a nice value ranks a process only inside its session: the tool's busy timing process,
    at nice 19, still took a core's share beside two llama-servers (94% against 43% each, 6 Dec). So the session's
    group gets the niceness too."""
    if niceness > 0:
        cmd = ["nice", "-n", str(niceness), *cmd]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)
    if niceness > 0:
        group = Path(f"/proc/{proc.pid}/autogroup")
        for _ in range(3):  # the kernel refuses changes closer than 0.1 s apart to unprivileged callers (EAGAIN)
            try:
                group.write_text(str(niceness))
                break
            except BlockingIOError:
                time.sleep(0.15)
            except OSError:
                break  # no autogroup here: the nice value alone ranks the tool
    return proc


def _empty_row() -> dict:
    return capacity.parse_export({})


def _describe(row: dict) -> str:
    def ms(v):
        return "-" if v is None else f"{v / 1000:.1f} s"

    return (
        f"{row['target']} {capacity.Level(row['mode'], row['value'], 1).name}: {row['completed']}/{row['requests']} ok,"
        f" p95 TTFT {ms(row['ttft_p95_ms'])}, p95 e2e {ms(row['e2e_p95_ms'])},"
        f" {row['output_tokens_per_s'] or 0:.1f} tok/s, {row['requests_per_s'] or 0:.3f} req/s"
        + (f" (time limit: {row['unfinished']} unfinished)" if row.get("timed_out") else "")
    )


def _stop_group(proc: subprocess.Popen) -> None:
    """The tool and its worker processes (its own session): SIGINT first (it writes what it has), then SIGKILL."""
    for sig, wait in ((signal.SIGINT, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue
