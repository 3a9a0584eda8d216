"""Ray jobs: run a function as the driver of a Ray job, locally in-process or on a cluster through the Ray Jobs API.

A *target* is ``"package.module:function"``; the function takes the payload dict and returns a JSON-serializable
dict. It is the Ray driver: it may start Ray tasks, actors and Ray Data pipelines, but must not call ``ray.init``
itself (the runner connects first). Payloads carry references (URIs, keys, ids), not bulk data: on the Jobs API
they travel on the entrypoint's command line, limited to ``MAX_PAYLOAD_BYTES``.

* ``LocalRayJobRunner`` (local profile): ensures this home's Ray (``RayResource``), imports the target and calls
  it in this process, so its tasks run on that cluster. ``env`` is set in ``os.environ`` for the duration of the
  call and handed to the target as ``payload["_runtime_env"] = {"env_vars": env}``; a target that needs the
  variables in its Ray workers passes it on, e.g. ``fn.options(runtime_env=payload.get("_runtime_env"))`` or
  ``ds.map_batches(..., runtime_env=payload.get("_runtime_env"))``.
* ``RayJobsApiRunner`` (eks profile): ``JobSubmissionClient.submit_job`` to the cluster's dashboard
  (``AGENTIC_RAY_JOBS_ADDRESS``, e.g. ``http://agentic-data-head-svc:8265``) with entrypoint
  ``python -m resources.ray_jobs <target> <base64 JSON payload>``; ``env`` becomes the job's
  ``runtime_env.env_vars``, which every worker of the job inherits (so ``_runtime_env`` is not added). Polls until
  the job ends; a failed or stopped job raises ``RayJobError`` with the tail of the job's logs (the target's
  traceback); on success the result is the last ``AGENTIC_RAY_JOB_RESULT <json>`` line of the logs, printed by this
  module's ``__main__``. On timeout the job is stopped and ``TimeoutError`` raised.

Progress: a target calls ``report_progress(done=..., items=...)`` as its work completes. The local runner sums the
counts and hands them to ``run(on_progress=...)`` in the caller's thread every ``poll_interval_s``; as a Ray job the
counts go out as ``AGENTIC_RAY_JOB_PROGRESS <json>`` lines, which the Jobs API runner reads from the job's logs every
``progress_interval_s``. Either way the step that called ``run`` logs them (``core.progress``).

Why not dagster-ray (0.4.8)? It would fit without pin conflicts (it needs ``dagster>=1.10`` and ``tenacity``), but
its ``PipesRayJobClient`` is a Dagster Pipes client: ``run`` needs an op/asset execution context, returns Pipes
results rather than the job's return value, expects ``dagster-pipes`` on the job side, and bounds only its internal
calls, not the job (no stop-on-timeout). Its ``RayResource`` backends use Ray Client (client mode), which is what
bulk data should not go through, and it has no in-process counterpart for the local profile. The two runners here
are about 150 lines over Ray's own ``JobSubmissionClient``, callable from assets, the CLI and tests alike; the
one-line result protocol on stdout is the same idea as Pipes' stdout messages, so moving to Pipes later is cheap.
"""

from __future__ import annotations

import base64
import concurrent.futures
import gc
import hashlib
import importlib
import json
import os
import re
import shlex
import sys
import threading
import time
import traceback
import uuid
from contextlib import contextmanager
from typing import Any, Callable

import dagster as dg

from resources.ray_cluster import RayResource, apply_ray_env_defaults

RESULT_MARKER = "AGENTIC_RAY_JOB_RESULT"
PROGRESS_MARKER = "AGENTIC_RAY_JOB_PROGRESS"
MAX_PAYLOAD_BYTES = 64 * 1024  # base64 on a command line; Linux caps one argument at 128 KiB
_TARGET_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class RayJobError(RuntimeError):
    """A Ray job that failed, was stopped, or printed no result; ``logs_tail`` holds the end of its logs."""

    def __init__(self, message: str, *, submission_id: str = "", status: str = "", logs_tail: str = ""):
        super().__init__(message)
        self.submission_id = submission_id
        self.status = status
        self.logs_tail = logs_tail


def load_target(target: str) -> Callable[[dict], dict]:
    if not _TARGET_RE.match(target):
        raise ValueError(f"target must be 'package.module:function', got {target!r}")
    module_name, func_name = target.split(":")
    fn = getattr(importlib.import_module(module_name), func_name, None)
    if not callable(fn):
        raise ValueError(f"{target}: {func_name} is not a function of {module_name}")
    return fn


def _json_result(target: str, result: Any) -> dict:
    """The result as the Jobs API runner would return it (a JSON round trip), so both runners agree."""
    if not isinstance(result, dict):
        raise TypeError(f"{target} must return a dict, returned {type(result).__name__}")
    return json.loads(json.dumps(result))


def encode_payload(payload: dict) -> str:
    raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    encoded = base64.urlsafe_b64encode(raw).decode()
    if len(encoded) > MAX_PAYLOAD_BYTES:
        raise ValueError(
            f"payload is {len(encoded)} bytes encoded (limit {MAX_PAYLOAD_BYTES}): pass URIs or keys, not data"
        )
    return encoded


def decode_payload(encoded: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(encoded.encode()))


def parse_result(logs: str) -> dict | None:
    """The last ``AGENTIC_RAY_JOB_RESULT <json>`` line of a job's logs (text after the JSON is ignored), or None."""
    found = None
    for line in logs.splitlines():
        if line.startswith(RESULT_MARKER + " "):
            try:
                found, _ = json.JSONDecoder().raw_decode(line[len(RESULT_MARKER) + 1 :])
            except json.JSONDecodeError:
                continue
    return found


@contextmanager
def _environ(env: dict[str, str] | None):
    if not env:
        yield
        return
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update({k: str(v) for k, v in env.items()})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _tail(text: str, chars: int) -> str:
    return text if len(text) <= chars else "..." + text[-chars:]


# ------------------------------------------------------------------ progress: target -> runner -> step


class _Counts:
    """Summed progress increments (numbers only): what a runner hands its ``on_progress`` at each poll. Bounded:
    one counter per key, however many increments arrive."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, float] = {}

    def add(self, counts: dict) -> None:
        with self._lock:
            for k, v in counts.items():
                if isinstance(v, int | float) and not isinstance(v, bool):
                    self._counts[k] = self._counts.get(k, 0) + v

    def take(self) -> dict:
        with self._lock:
            out, self._counts = self._counts, {}
        return out


_sink = threading.local()  # the LocalRayJobRunner's _Counts in the thread that runs its target


def report_progress(**counts: int | float) -> None:
    """Called by a target as its work completes (increments, e.g. ``done=1, items=120``). In-process (local) the
    counts go to the runner's ``on_progress``; as a Ray job (``main``) they go out as a ``PROGRESS_MARKER`` line,
    which ``RayJobsApiRunner`` reads from the job's logs; with no runner listening, nowhere."""
    counts = {k: v for k, v in counts.items() if v}
    if not counts:
        return
    sink = getattr(_sink, "counts", None)
    if sink is not None:
        sink.add(counts)
    elif getattr(_sink, "stdout", False):
        sys.stdout.write(f"\n{PROGRESS_MARKER} {json.dumps(counts, separators=(',', ':'))}\n")
        sys.stdout.flush()


def parse_progress(text: str) -> dict:
    """The summed counts of every complete ``PROGRESS_MARKER`` line in ``text``."""
    counts = _Counts()
    for line in text.splitlines():
        if line.startswith(PROGRESS_MARKER + " "):
            try:
                counts.add(json.loads(line[len(PROGRESS_MARKER) + 1 :]))
            except (json.JSONDecodeError, AttributeError):
                continue
    return counts.take()


# ------------------------------------------------------------------ job side: python -m resources.ray_jobs


def main(argv: list[str] | None = None) -> int:
    """Entrypoint of a Ray job: connect to the job's cluster, run the target, print the result line."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m resources.ray_jobs package.module:function <base64 JSON payload>", file=sys.stderr)
        return 2
    target, encoded = argv
    try:
        apply_ray_env_defaults()
        import ray

        # A job's driver gets RAY_ADDRESS from the job supervisor; run by hand without it, start a cluster of its own
        # rather than joining whichever one is running on this machine.
        ray.init(address=os.environ.get("RAY_ADDRESS") or "local", namespace="agentic")
        _sink.stdout = True
        result = _json_result(target, load_target(target)(decode_payload(encoded)))
        line = f"{RESULT_MARKER} {json.dumps(result, separators=(',', ':'))}\n"
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        return 1
    sys.stdout.flush()
    sys.stderr.flush()
    # One write, on a fresh line, after Ray's log forwarding has stopped: nothing interleaves with it.
    ray.shutdown()
    sys.stdout.write("\n" + line)
    sys.stdout.flush()
    return 0


# ------------------------------------------------------------------ orchestrator side: the resources


class RayJobRunner(dg.ConfigurableResource):
    """Runs ``target`` (``"package.module:function"``, called with ``payload``) as a Ray job; returns its dict."""

    def run(
        self,
        target: str,
        payload: dict,
        *,
        timeout_s: float = 3600,
        env: dict[str, str] | None = None,
        on_progress: Callable[[dict], None] | None = None,
    ) -> dict:
        """``on_progress``: called in the caller's thread, at most once per poll, with the counts the target reported
        (``report_progress``) since the last call, summed."""
        raise NotImplementedError


class LocalRayJobRunner(RayJobRunner):
    """The target runs in this process as the Ray driver of ``ray_cluster`` (local profile).

    ``timeout_s``: the call runs in a worker thread; past the deadline ``TimeoutError`` is raised, though
    in-process work cannot be stopped and finishes in the background. ``env``: see the module docstring.
    """

    ray_cluster: RayResource

    poll_interval_s: float = 0.5  # how often on_progress hears from the target

    def run(
        self,
        target: str,
        payload: dict,
        *,
        timeout_s: float = 3600,
        env: dict[str, str] | None = None,
        on_progress: Callable[[dict], None] | None = None,
    ) -> dict:
        fn = load_target(target)
        self.ray_cluster.ensure()
        call_payload = dict(payload)
        if env:
            call_payload["_runtime_env"] = {"env_vars": {k: str(v) for k, v in env.items()}}
        counts = _Counts()

        def call() -> dict:
            _sink.counts = counts if on_progress else None
            try:
                with _environ(env):
                    return _json_result(target, fn(call_payload))
            finally:
                _sink.counts = None
                # A stage's Ray handles (a Data pool's actors) can end up in cyclic garbage, which only a collection
                # frees: in a long-lived driver (a run's process, the suite) an idle pool actor then kept its CPU
                # until some later GC, and on a 2-CPU cluster beside Serve the next stage's tasks waited forever.
                gc.collect()

        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="ray-job")
        deadline = time.monotonic() + timeout_s
        try:
            future = pool.submit(call)
            while True:
                # on_progress runs here, in the caller's thread (a Dagster step logs from its own thread)
                try:
                    result = future.result(timeout=max(0.0, min(self.poll_interval_s, deadline - time.monotonic())))
                except concurrent.futures.TimeoutError:
                    if time.monotonic() >= deadline:
                        raise
                    if on_progress and (delta := counts.take()):
                        on_progress(delta)
                    continue
                if on_progress and (delta := counts.take()):
                    on_progress(delta)
                return result
        except concurrent.futures.TimeoutError as exc:
            raise TimeoutError(
                f"{target} did not finish within {timeout_s}s (it keeps running in this process)"
            ) from exc
        finally:
            pool.shutdown(wait=False)


class RayJobsApiRunner(RayJobRunner):
    """The target runs as a Ray job submitted to ``address``, the cluster's dashboard (eks: AGENTIC_RAY_JOBS_ADDRESS).

    ``working_dir``: uploaded with the job when set; leave empty where the cluster's image carries the code (eks).
    """

    address: str
    working_dir: str = ""
    poll_interval_s: float = 2.0
    progress_interval_s: float = 10.0
    log_tail_chars: int = 6000

    def client(self):
        from ray.job_submission import JobSubmissionClient

        return JobSubmissionClient(self.address)

    def submit_params(self, target: str, payload: dict, env: dict[str, str] | None = None) -> dict:
        if not _TARGET_RE.match(target):
            raise ValueError(f"target must be 'package.module:function', got {target!r}")
        encoded = encode_payload(payload)
        runtime_env: dict[str, Any] = {}
        if env:
            runtime_env["env_vars"] = {k: str(v) for k, v in env.items()}
        if self.working_dir:
            runtime_env["working_dir"] = self.working_dir
        digest = hashlib.sha256(f"{target} {encoded}".encode()).hexdigest()
        slug = re.sub(r"[^a-z0-9]+", "-", target.lower()).strip("-")[-40:]
        submission_id = f"agentic-{slug}-{digest[:8]}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        return {
            "entrypoint": f"python -m resources.ray_jobs {shlex.quote(target)} {encoded}",
            "submission_id": submission_id,
            "runtime_env": runtime_env or None,
            "metadata": {"target": target, "payload_sha256": digest, "submitted_by": "agentic"},
        }

    def run(
        self,
        target: str,
        payload: dict,
        *,
        timeout_s: float = 3600,
        env: dict[str, str] | None = None,
        on_progress: Callable[[dict], None] | None = None,
    ) -> dict:
        from ray.job_submission import JobStatus

        params = self.submit_params(target, payload, env)
        client = self.client()
        job_id = client.submit_job(**params)
        deadline = time.monotonic() + timeout_s
        read, progress_at = 0, 0.0  # characters of the job's logs scanned for progress lines; when last
        while True:
            status = client.get_job_status(job_id)
            # the Jobs API returns the whole log: read it for progress every progress_interval_s, not every poll
            if on_progress and (status.is_terminal() or time.monotonic() - progress_at >= self.progress_interval_s):
                read, progress_at = self._progress(client, job_id, read, on_progress), time.monotonic()
            if status.is_terminal():
                break
            if time.monotonic() > deadline:
                client.stop_job(job_id)
                raise TimeoutError(
                    f"Ray job {job_id} ({target}) did not finish within {timeout_s}s and was stopped\n"
                    f"--- log tail ---\n{self._logs_tail(client, job_id)}"
                )
            time.sleep(self.poll_interval_s)
        logs = client.get_job_logs(job_id)
        if status != JobStatus.SUCCEEDED:
            message = client.get_job_info(job_id).message or ""
            tail = _tail(logs, self.log_tail_chars)
            raise RayJobError(
                f"Ray job {job_id} ({target}) {status.value}: {message}\n--- log tail ---\n{tail}",
                submission_id=job_id,
                status=status.value,
                logs_tail=tail,
            )
        result = parse_result(logs)
        if result is None:
            tail = _tail(logs, self.log_tail_chars)
            raise RayJobError(
                f"Ray job {job_id} ({target}) succeeded but printed no {RESULT_MARKER} line\n--- log tail ---\n{tail}",
                submission_id=job_id,
                status=status.value,
                logs_tail=tail,
            )
        return result

    def _progress(self, client, job_id: str, read: int, on_progress: Callable[[dict], None]) -> int:
        """Hand on_progress the counts of the progress lines the job printed since ``read``; the new offset."""
        try:
            logs = client.get_job_logs(job_id)
        except Exception:  # progress is a courtesy: the job's status decides, not its logs
            return read
        end = logs.rfind("\n") + 1  # complete lines only; a line being written is read at the next poll
        if end > read:
            if delta := parse_progress(logs[read:end]):
                on_progress(delta)
            return end
        return read

    def _logs_tail(self, client, job_id: str) -> str:
        try:
            return _tail(client.get_job_logs(job_id), self.log_tail_chars)
        except Exception as exc:  # the logs are a courtesy on the way to an error
            return f"(logs unavailable: {exc})"


if __name__ == "__main__":
    # main of the importable module, not of __main__: a target's report_progress must find the sink main sets there
    from resources.ray_jobs import main as _main

    raise SystemExit(_main())
