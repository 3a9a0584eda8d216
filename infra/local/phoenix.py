"""The local trace store: Arize Phoenix (OTLP in; UI and REST out), from its own venv (``.venv-phoenix``).

Phoenix takes OTLP/HTTP protobuf at ``<url>/v1/traces`` and serves spans back at
``/v1/projects/{project}/spans``. It runs offline here: no web fonts, telemetry or sandbox downloads. Its gRPC
receiver binds every interface whatever ``PHOENIX_HOST`` says (Phoenix 20.26), so it is started through
``infra/phoenix/serve_on_loopback.py``, which binds that receiver to 127.0.0.1 (nothing sends gRPC to it); HTTP binds
127.0.0.1. Its Prometheus endpoint stays off (it would take port 9090).
"""

from __future__ import annotations

import os
from pathlib import Path

from infra.local.processes import DetachedServer, free_port

REPO = Path(__file__).resolve().parents[2]
PHOENIX_VERSION = "20.26.1"
PROJECT = "agentic-rag"  # every service sends here: a trace belongs to the project of its first-ingested span


class PhoenixServer(DetachedServer):
    """One Phoenix process for a home: its database, pid, port and log live in ``workdir``."""

    name = "phoenix"
    health_path = "/healthz"

    def __init__(self, workdir: Path, venv: Path = REPO / ".venv-phoenix"):
        super().__init__(workdir)
        self.venv = Path(venv)

    def installed(self) -> bool:
        return (self.venv / "bin" / "phoenix").exists()

    def start(self, timeout_s: float = 240) -> dict:
        """Start Phoenix unless this home's is already up; returns its url, pid and startup seconds."""
        if self.alive():
            return {"url": self.url, "pid": int(self._pidfile.read_text()), "startup_seconds": 0.0}
        if not self.installed():
            raise RuntimeError(f"Arize Phoenix is not installed at {self.venv}; run `make setup`")
        self.stop()
        port, grpc_port = free_port(), free_port()
        # a Service named phoenix injects PHOENIX_PORT=tcp://..., which Phoenix cannot parse
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOENIX_", "OTEL_"))}
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
        launcher = REPO / "infra" / "phoenix" / "serve_on_loopback.py"  # `phoenix serve`, gRPC on loopback
        return self._launch([str(self.venv / "bin" / "python"), str(launcher)], env, port, timeout_s)

    def otlp_env(self, project: str = PROJECT) -> dict[str, str]:
        """The exporter settings that send a process's spans here (the API's and LiteLLM's alike)."""
        return {"OTEL_EXPORTER_OTLP_ENDPOINT": self.url, "OTEL_EXPORTER_OTLP_HEADERS": f"x-project-name={project}"}
