"""Ray job runners (resources.ray_jobs) and one Ray cluster per AGENTIC_HOME (resources.ray_cluster).

A real Ray head with the dashboard (the Jobs API) is started here with ``ray start`` on loopback ports, its
temp dir under a private /tmp directory, and stopped by killing exactly the processes of that temp dir (never
``ray stop``, which stops every Ray on the machine). It also plays "another home's ``agentic up`` head".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from resources.ray_cluster import RayResource
from resources.ray_jobs import (
    RESULT_MARKER,
    LocalRayJobRunner,
    RayJobError,
    RayJobsApiRunner,
    decode_payload,
    encode_payload,
    parse_result,
)
from tests.helpers import free_port

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
TARGETS = "tests.ray_job_targets"


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


# ---------------------------------------------------------------- pure parts (no Ray)


def test_payload_and_result_protocol():
    payload = {"uris": ["s3://b/k1"], "n": 3, "nested": {"ü": 1.5}}
    assert decode_payload(encode_payload(payload)) == payload
    assert all(c.isalnum() or c in "-_=" for c in encode_payload(payload))  # shell-safe as it is
    with pytest.raises(ValueError, match="pass URIs"):
        encode_payload({"blob": "x" * 100_000})
    logs = (
        f'noise\n{RESULT_MARKER} {{"a": 1}}\n(pid=1) worker line\n{RESULT_MARKER} {{"a": 2, "b": [1]}}trailing\nbye\n'
    )
    assert parse_result(logs) == {"a": 2, "b": [1]}
    assert parse_result("no result here") is None

    params = RayJobsApiRunner(address="http://127.0.0.1:1").submit_params(f"{TARGETS}:square_sum", {"n": 2}, {"K": "v"})
    assert params["entrypoint"].startswith(f"python -m resources.ray_jobs {TARGETS}:square_sum ")
    assert params["runtime_env"] == {"env_vars": {"K": "v"}}  # no working_dir unless configured
    assert params["metadata"]["target"] == f"{TARGETS}:square_sum"
    again = RayJobsApiRunner(address="http://127.0.0.1:1").submit_params(f"{TARGETS}:square_sum", {"n": 2})
    assert params["submission_id"] != again["submission_id"] and again["runtime_env"] is None
    wd = RayJobsApiRunner(address="http://x", working_dir="/app").submit_params(f"{TARGETS}:fail", {})
    assert wd["runtime_env"] == {"working_dir": "/app"}
    with pytest.raises(ValueError, match="package.module:function"):
        RayJobsApiRunner(address="http://x").submit_params("rm -rf /; x:y", {})


def test_profiles_register_ray_jobs(tmp_path):
    from pipelines.profiles import build_resources
    from pipelines.settings import load_settings

    local = build_resources(load_settings({"AGENTIC_HOME": str(tmp_path)}))
    assert isinstance(local["ray_jobs"], LocalRayJobRunner)
    assert local["ray_jobs"].ray_cluster.address_file == str(tmp_path / "serving" / "run" / "ray.address")
    eks = build_resources(load_settings({"AGENTIC_PROFILE": "eks", "AGENTIC_HOME": str(tmp_path)}))
    assert isinstance(eks["ray_jobs"], RayJobsApiRunner)
    assert eks["ray_jobs"].address.env_var_name == "AGENTIC_RAY_JOBS_ADDRESS"


def test_stale_address_file_means_a_cluster_of_our_own(tmp_path):
    addr = tmp_path / "ray.address"
    assert RayResource(address_file=str(addr)).resolved_address() == ""  # no `agentic up` in this home
    addr.write_text(f"127.0.0.1:{free_port()}")  # a head that crashed: nothing listens there
    assert RayResource(address_file=str(addr)).resolved_address() == ""
    assert RayResource(address="10.0.0.1:6379", address_file=str(addr)).resolved_address() == "10.0.0.1:6379"


# ---------------------------------------------------------------- LocalRayJobRunner on the session's Ray


@pytest.mark.timeout(120)
def test_local_runner_runs_target_on_the_session_cluster(ray_address):
    import ray

    runner = LocalRayJobRunner(ray_cluster=RayResource(address=ray_address))
    os.environ.pop("AGENTIC_TEST_JOB_ENV", None)
    result = runner.run(
        f"{TARGETS}:square_sum",
        {"n": 4, "env_name": "AGENTIC_TEST_JOB_ENV"},
        env={"AGENTIC_TEST_JOB_ENV": "local-value"},
        timeout_s=60,
    )
    assert result["sum"] == 0 + 1 + 4 + 9
    assert result["env_in_driver"] == "local-value" and result["env_in_tasks"] == ["local-value"]
    assert result["gcs_address"] == ray.get_runtime_context().gcs_address == ray_address
    assert "AGENTIC_TEST_JOB_ENV" not in os.environ  # set for the call only
    with pytest.raises(ValueError, match="failed on purpose: local"):
        runner.run(f"{TARGETS}:fail", {"why": "local"})
    with pytest.raises(TypeError, match="must return a dict"):
        runner.run(f"{TARGETS}:not_a_dict", {})
    with pytest.raises(TimeoutError, match="did not finish within 0.3s"):
        runner.run(f"{TARGETS}:sleep", {"s": 1}, timeout_s=0.3)


def test_local_runner_frees_a_targets_actors_left_in_cyclic_garbage(ray_address):
    """Regression (the suite hung in CI and here): an embed stage's idle Ray Data pool actor, reachable only from
    cyclic garbage in the long-lived driver, kept its CPUs until some later collection; on the suite's 2-CPU cluster
    the next stage's tasks waited forever behind it. Automatic GC is off here, so only the runner can free it."""
    import gc

    import ray

    runner = LocalRayJobRunner(ray_cluster=RayResource(address=ray_address))
    total = ray.cluster_resources()["CPU"]
    gc.collect()
    gc.disable()
    try:
        assert runner.run(f"{TARGETS}:actor_left_in_cyclic_garbage", {}, timeout_s=60) == {"started": True}
        deadline = time.time() + 20
        while time.time() < deadline and ray.available_resources().get("CPU", 0) < total:
            time.sleep(0.25)
        free = ray.available_resources().get("CPU", 0)
    finally:
        gc.enable()
        gc.collect()
    assert free == total, f"the target's actor still holds a CPU ({free} of {total} free)"


# ---------------------------------------------------------------- RayJobsApiRunner on a real head (Jobs API)


@pytest.mark.timeout(240)
def test_jobs_api_runner_result_and_failure(ray_head):
    runner = RayJobsApiRunner(address=ray_head["dashboard"], poll_interval_s=0.5)
    env = {"PYTHONPATH": str(REPO), "AGENTIC_TEST_JOB_ENV": "api-value"}
    result = runner.run(f"{TARGETS}:square_sum", {"n": 4, "env_name": "AGENTIC_TEST_JOB_ENV"}, env=env, timeout_s=120)
    assert result["sum"] == 0 + 1 + 4 + 9
    # job-level runtime_env: the driver and every task see the variables without the target passing them on
    assert result["env_in_driver"] == "api-value" and result["env_in_tasks"] == ["api-value"]
    assert _port(result["gcs_address"]) == _port(ray_head["gcs"])  # Ray reports 127.0.0.1 as the node's IP

    with pytest.raises(RayJobError, match="failed on purpose: remote") as err:
        runner.run(f"{TARGETS}:fail", {"why": "remote"}, env=env, timeout_s=120)
    assert err.value.status == "FAILED" and "Traceback" in err.value.logs_tail
    assert err.value.submission_id.startswith("agentic-tests-ray-job-targets-fail-")

    with pytest.raises(TimeoutError, match="was stopped") as slow:
        runner.run(f"{TARGETS}:sleep", {"s": 120}, env=env, timeout_s=1)
    from ray.job_submission import JobStatus, JobSubmissionClient

    job_id = str(slow.value).split()[2]
    client, deadline = JobSubmissionClient(ray_head["dashboard"]), time.time() + 30
    while client.get_job_status(job_id) != JobStatus.STOPPED and time.time() < deadline:
        time.sleep(0.5)
    assert client.get_job_status(job_id) == JobStatus.STOPPED


# ---------------------------------------------------------------- token authentication

_JOIN_SCRIPT = "import sys, ray; ray.init(address=sys.argv[1]); print('JOINED', ray.cluster_resources()['CPU'])"


def _join(gcs: str, **auth) -> tuple[bool, str]:
    """(joined, what it said) for a driver connecting to ``gcs`` with ``auth`` as its token settings; a refused one
    keeps retrying, so it is stopped (by its pid) once the GCS has said why, or after 60 s."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}  # no auth setting: Ray's default
    env.update(auth)
    proc = subprocess.Popen(
        [sys.executable, "-c", _JOIN_SCRIPT, gcs], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines, deadline = [], time.time() + 60
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("JOINED") or "InvalidAuthToken" in line or time.time() > deadline:
                break
    finally:
        proc.kill()
        proc.wait()
    out = "".join(lines)
    return "JOINED" in out, out[-1500:]


def test_a_head_refuses_a_client_without_the_token_or_with_a_wrong_one(ray_head, ray_token):
    """The suite's Ray heads run with token authentication: the GCS and the dashboard (the Jobs API, which runs
    code) refuse a caller without the token or with another, and take the one with it."""
    import httpx

    assert oct(ray_token.stat().st_mode & 0o777) == "0o600"
    token = ray_token.read_text().strip()
    jobs = f"{ray_head['dashboard']}/api/jobs/"
    assert httpx.get(jobs, timeout=10).status_code == 401
    assert httpx.get(jobs, headers={"Authorization": "Bearer " + "0" * 64}, timeout=10).status_code == 403
    assert httpx.get(jobs, headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code == 200

    joined, out = _join(ray_head["gcs"], RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="0" * 64)
    assert not joined and "InvalidAuthToken" in out, out
    joined, out = _join(ray_head["gcs"])  # a client with no authentication settings at all
    assert not joined, out
    joined, out = _join(ray_head["gcs"], RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(ray_token))
    assert joined, out


# ---------------------------------------------------------------- one Ray per AGENTIC_HOME

_OTHER_HOME_SCRIPT = textwrap.dedent("""
    import json, os, sys
    from ray._private.services import canonicalize_bootstrap_address

    # What a bare ray.init() would join here: the other home's head (through <RAY_TMPDIR>/ray/ray_current_cluster).
    would_join = canonicalize_bootstrap_address(None)
    os.environ["RAY_ADDRESS"] = would_join  # the other way a bare ray.init() picks up a running cluster
    import ray
    from pipelines.profiles import build_resources
    from pipelines.settings import load_settings

    settings = load_settings()
    res = build_resources(settings)
    ray_res = res["ray_cluster"].model_copy(update={"num_cpus": 1, "object_store_mb": 100})
    ray_res.ensure()

    @ray.remote(num_cpus=1)
    def where():
        return ray.get_runtime_context().get_node_id()

    out = {"would_join": would_join, "home_address": ray_res.resolved_address(),
           "gcs": ray.get_runtime_context().gcs_address, "task_node": ray.get(where.remote())}
    ray.shutdown()
    # The same home after `agentic up`: its address file names its head, and its commands join that head.
    settings.ray_address_file.parent.mkdir(parents=True, exist_ok=True)
    settings.ray_address_file.write_text(sys.argv[1])
    ray_res = build_resources(settings)["ray_cluster"]
    ray_res.ensure()
    out["same_home_gcs"] = ray.get_runtime_context().gcs_address
    ray.shutdown()
    print("RESULT " + json.dumps(out))
""")


@pytest.mark.timeout(180)
def test_run_under_another_home_gets_its_own_ray(ray_head, tmp_path):
    from ray.util.state import list_nodes

    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "AGENTIC_RAY_ADDRESS")}
    env.update(
        AGENTIC_HOME=str(tmp_path / "home"),
        RAY_TMPDIR=ray_head["root"],
        PYTHONPATH=str(REPO),
        RAY_USAGE_STATS_ENABLED="0",
    )
    proc = subprocess.run(
        [sys.executable, "-c", _OTHER_HOME_SCRIPT, ray_head["gcs"]],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=150,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"{proc.stdout[-3000:]}\n{proc.stderr[-4000:]}"
    out = json.loads(lines[-1][len("RESULT ") :])
    assert _port(out["would_join"]) == _port(ray_head["gcs"])  # the trap is set: a bare ray.init() would have joined it
    assert out["home_address"] == ""  # no AGENTIC_RAY_ADDRESS, no `agentic up` in this home: a cluster of its own
    assert _port(out["gcs"]) != _port(ray_head["gcs"])
    other_nodes = {n.node_id for n in list_nodes(address=ray_head["dashboard"])}
    assert other_nodes and out["task_node"] not in other_nodes
    assert _port(out["same_home_gcs"]) == _port(ray_head["gcs"])  # this home's own head, found through its address file


@pytest.mark.integration
def test_agentic_down_stops_every_process_of_the_head_up_started(base_settings, tmp_path):
    """`agentic up`'s head, then `agentic down`: nothing of it is left, the Ray client server included (it names the
    head's GCS address, not its temp dir, and `agentic down` used to leave it listening)."""
    import shutil
    import tempfile

    from infra.local.processes import pids_naming
    from pipelines.services import down, ensure_ray_head
    from tests.conftest import make_settings

    home = Path(tempfile.mkdtemp(prefix="dn", dir="/tmp"))  # short: Ray's unix socket paths live under it
    settings = make_settings(base_settings, home)
    address = ensure_ray_head(settings, log=lambda *_: None)
    client_server = f"--address={address} "
    assert pids_naming(str(settings.ray_root)) and pids_naming(client_server)
    down(settings, log=lambda *_: None)  # returns once what it stopped is gone
    assert not pids_naming(str(settings.ray_root)) and not pids_naming(client_server)
    shutil.rmtree(home, ignore_errors=True)
