"""The local trace store: Arize Phoenix (OTLP in; UI and REST out), from its own venv (``.venv-phoenix``).

Phoenix takes OTLP/HTTP protobuf at ``<url>/v1/traces`` and serves spans back at
``/v1/projects/{project}/spans``. It runs offline here: no web fonts, telemetry or sandbox downloads. Its gRPC
receiver binds every interface whatever ``PHOENIX_HOST`` says (Phoenix 20.26), so it gets a free port of its own and
nothing is sent to it; HTTP binds 127.0.0.1. Its Prometheus endpoint stays off (it would take port 9090).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
PHOENIX_VERSION = "20.26.1"
PROJECT = "agentic-rag"  # every service sends here: a trace belongs to the project of its first-ingested span


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PhoenixServer:
    """One Phoenix process for a home: its database, pid, port and log live in ``workdir``."""

    def __init__(self, workdir: Path, venv: Path = REPO / ".venv-phoenix"):
        self.workdir = Path(workdir)
        self.venv = Path(venv)

    @property
    def _pidfile(self) -> Path:
        return self.workdir / "phoenix.pid"

    @property
    def _portfile(self) -> Path:
        return self.workdir / "phoenix.port"

    @property
    def log(self) -> Path:
        return self.workdir / "phoenix.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._portfile.read_text().strip()}" if self._portfile.exists() else ""

    def installed(self) -> bool:
        return (self.venv / "bin" / "phoenix").exists()

    def alive(self) -> bool:
        if not self.url:
            return False
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def start(self, timeout_s: float = 240) -> dict:
        """Start Phoenix unless this home's is already up; returns its url, pid and startup seconds."""
        if self.alive():
            return {"url": self.url, "pid": int(self._pidfile.read_text()), "startup_seconds": 0.0}
        if not self.installed():
            raise RuntimeError(f"Arize Phoenix is not installed at {self.venv}; run `make setup`")
        self.stop()
        self.workdir.mkdir(parents=True, exist_ok=True)
        port, grpc_port = free_port(), free_port()
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("PHOENIX_", "OTEL_"))
        }  # a Service named phoenix injects PHOENIX_PORT=tcp://..., which Phoenix cannot parse
        env.update(
            {
                "PHOENIX_HOST": "127.0.0.1",
                "PHOENIX_PORT": str(port),
                "PHOENIX_GRPC_PORT": str(grpc_port),
                "PHOENIX_WORKING_DIR": str(self.workdir / "data"),
                "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
                "PHOENIX_TELEMETRY_ENABLED": "false",
                "PHOENIX_DISABLE_AGENT_ASSISTANT": "true",
                "PHOENIX_LOG_MIGRATIONS": "false",
                "PYTHONUNBUFFERED": "1",
            }
        )
        t0 = time.perf_counter()
        with open(self.log, "ab") as out:
            proc = subprocess.Popen(
                [str(self.venv / "bin" / "phoenix"), "serve"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._pidfile.write_text(str(proc.pid))
        self._portfile.write_text(str(port))
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if proc.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"Phoenix exited with {proc.returncode}:\n{tail}")
            if self.alive():
                return {"url": self.url, "pid": proc.pid, "startup_seconds": round(time.perf_counter() - t0, 1)}
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"Phoenix not healthy after {timeout_s:.0f} s (log: {self.log})")

    def stop(self) -> bool:
        from infra.local.processes import stop_pidfile

        stopped = stop_pidfile(self._pidfile)
        self._portfile.unlink(missing_ok=True)
        return stopped

    def otlp_env(self, project: str = PROJECT) -> dict[str, str]:
        """The exporter settings that send a process's spans here (the API's and LiteLLM's alike)."""
        return {"OTEL_EXPORTER_OTLP_ENDPOINT": self.url, "OTEL_EXPORTER_OTLP_HEADERS": f"x-project-name={project}"}
