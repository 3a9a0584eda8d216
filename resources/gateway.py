"""The LLM gateway: a LiteLLM proxy in front of the model deployments.

Agents and evaluation reach models only through it (OpenAI routes, one master key). The config is
generated from the deployments' endpoints; it names the key as ``os.environ/LITELLM_MASTER_KEY``,
never as a literal, and the key reaches the proxy process through its environment. LiteLLM does not
fit in the project environment (it pins packages strands-agents needs newer), so locally the proxy
runs from its own venv (``.venv-gateway``, locked in ``infra/gateway/requirements.lock``).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import dagster as dg
import httpx
import yaml

REPO = Path(__file__).resolve().parents[1]


class GatewayError(RuntimeError):
    pass


def _inject_trace_context(request: httpx.Request) -> None:
    from opentelemetry import propagate

    propagate.inject(request.headers)


async def _ainject_trace_context(request: httpx.Request) -> None:
    _inject_trace_context(request)


def traced_http_client(asynchronous: bool = False, **kw):
    """An httpx client that sends the current span's W3C ``traceparent`` with every request."""
    if asynchronous:
        return httpx.AsyncClient(event_hooks={"request": [_ainject_trace_context]}, **kw)
    return httpx.Client(event_hooks={"request": [_inject_trace_context]}, **kw)


class LLMGatewayResource(dg.ConfigurableResource):
    """Where the gateway is and the key to reach it, and ``deploy(config)``: ``LocalGateway`` runs the proxy here,
    ``ClusterGateway`` writes the config for the LiteLLM Deployment that the platform group applies."""

    url: str = "http://127.0.0.1:4000"
    master_key: str  # dg.EnvVar("AGENTIC_GATEWAY_KEY")
    chat_model: str = "chat"  # the name agents ask for; the gateway maps it to the deployed LLM
    judge_model: str = "judge"  # the name evaluation asks for
    judge_backend: str = ""  # "" -> the deployed LLM; else a LiteLLM model id (eks: a Bedrock model)
    aws_region: str = "us-east-1"
    embedding_model: str = "all-MiniLM-L6-v2"
    state_dir: str = ""  # local: config, pid file and log of the proxy
    litellm_bin: str = str(REPO / ".venv-gateway" / "bin" / "litellm")
    request_timeout_s: int = 300
    retries: int = 2
    # how a JSON schema is enforced upstream: "json_schema" (response_format, what vLLM takes) or "grammar" (a
    # compact GBNF grammar for llama-server, whose own schema conversion lets small models pretty-print: a fifth of
    # the answer's tokens on 2 CPU cores)
    structured_output: str = "json_schema"
    # where the proxy exports its spans (OTLP/HTTP); "" -> no "otel" callback. Locally the home's Phoenix; on eks the
    # Deployment's environment names Langfuse and this only switches the callback on.
    otlp_endpoint: str = ""  # its headers (a project name, or a key) come from OTEL_EXPORTER_OTLP_HEADERS, never config

    def callbacks(self) -> tuple[str, ...]:
        return ("prometheus", "otel") if self.otlp_endpoint else ("prometheus",)

    def structured(self, name: str, schema: dict) -> dict:
        """Request kwargs (for the OpenAI client) that make the model write ``schema`` as compact JSON."""
        if self.structured_output == "grammar":
            from core.grammar import schema_to_gbnf

            return {"extra_body": {"grammar": schema_to_gbnf(schema)}}
        if self.structured_output != "json_schema":
            raise ValueError("structured_output must be 'json_schema' or 'grammar'")
        return {"response_format": {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}}

    # -- client side -------------------------------------------------------------------------
    # Every client sends the current span's ``traceparent``, so the proxy's spans join the caller's trace (the openai
    # client sends none of its own).
    def openai_client(self, **kw):
        import openai

        kw.setdefault("http_client", traced_http_client())
        return openai.OpenAI(
            base_url=f"{self.url}/v1", api_key=self.master_key, timeout=self.request_timeout_s, max_retries=0, **kw
        )

    def async_openai_client(self, **kw):
        import openai

        kw.setdefault("http_client", traced_http_client(asynchronous=True))
        return openai.AsyncOpenAI(
            base_url=f"{self.url}/v1", api_key=self.master_key, timeout=self.request_timeout_s, max_retries=0, **kw
        )

    def alive(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health/liveliness", timeout=3).status_code == 200
        except httpx.HTTPError:
            return False

    def models(self) -> list[str]:
        r = httpx.get(f"{self.url}/v1/models", headers={"Authorization": f"Bearer {self.master_key}"}, timeout=10)
        r.raise_for_status()
        return sorted(m["id"] for m in r.json()["data"])

    def upstream_model(self, alias: str) -> str:
        """The model the gateway routes ``alias`` to (LiteLLM's ``/model/info``), or the alias when it cannot say:
        answers record which LLM wrote them, and the alias alone ("chat") does not say that."""
        try:
            r = httpx.get(f"{self.url}/model/info", headers={"Authorization": f"Bearer {self.master_key}"}, timeout=10)
            r.raise_for_status()
            for m in r.json().get("data", []):
                if m.get("model_name") == alias:
                    model = (m.get("litellm_params") or {}).get("model") or alias
                    return model.split("/", 1)[1] if model.startswith(("openai/", "hosted_vllm/")) else model
        except (httpx.HTTPError, ValueError):
            pass
        return alias

    def _paths(self) -> tuple[Path, Path, Path]:
        d = Path(self.state_dir) / "gateway"
        return d / "litellm.yaml", d / "litellm.pid", d / "litellm.log"

    def write_config(self, config: dict) -> Path:
        cfg, _, _ = self._paths()
        cfg.parent.mkdir(parents=True, exist_ok=True)
        cfg.write_text(yaml.safe_dump(config, sort_keys=False))
        from infra.platform.gateway import AUTH_MODULE

        (cfg.parent / AUTH_MODULE.name).write_text(AUTH_MODULE.read_text())  # the key check, loaded from beside it
        return cfg

    def deploy(self, config: dict) -> dict:
        """Put ``config`` in force; returns what the model_gateway asset reports."""
        raise NotImplementedError


class ClusterGateway(LLMGatewayResource):
    """eks: LiteLLM is a Deployment the platform group applies; here the config is only written, for the record."""

    def deploy(self, config: dict) -> dict:
        path = self.write_config(config)
        return {"mode": "rendered", "config": str(path), "summary": f"LiteLLM config written to {path}"}

    def stop(self) -> None:
        """Nothing runs here: the Deployment is the platform's."""


class LocalGateway(LLMGatewayResource):
    """local: the proxy runs on this machine, from its own venv, on loopback; its config, pid file and log live in
    ``state_dir``."""

    def deploy(self, config: dict) -> dict:
        info, models = self.start(config), self.models()
        summary = f"LiteLLM proxy up in {info['startup_seconds']:.1f} s at {self.url}: {models}"
        return {"mode": "running", "url": self.url, "models": models, "summary": summary, **info}

    def _port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].split("/")[0])

    def start(self, config: dict, timeout_s: float = 180) -> dict:
        """(Re)start the proxy with ``config``; returns pid and startup time."""
        if not Path(self.litellm_bin).exists():
            raise GatewayError(f"LiteLLM is not installed at {self.litellm_bin}; run `make setup`")
        cfg, pidfile, logfile = self._paths()
        self.stop()
        self.write_config(config)
        env = dict(os.environ)
        env.update(
            {
                "LITELLM_MASTER_KEY": self.master_key,
                "AGENTIC_UPSTREAM_KEY": env.get(
                    "AGENTIC_UPSTREAM_KEY", "none"
                ),  # llama-server/vLLM inside the cluster need none
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "LITELLM_TELEMETRY": "False",
                "LITELLM_LOG": env.get("LITELLM_LOG", "WARNING"),
                "PYTHONUNBUFFERED": "1",
            }
        )
        # PHOENIX_* would make LiteLLM register a second (Phoenix) exporter beside "otel": every span twice
        headers = env.get("OTEL_EXPORTER_OTLP_HEADERS", "")
        for key in [k for k in env if k.startswith("PHOENIX_") or k.startswith("OTEL_")]:
            env.pop(key)
        if self.otlp_endpoint:
            env.update(
                {
                    "OTEL_EXPORTER": "otlp_http",
                    "OTEL_EXPORTER_OTLP_ENDPOINT": self.otlp_endpoint,
                    "OTEL_EXPORTER_OTLP_HEADERS": headers,
                    "OTEL_SERVICE_NAME": "litellm",
                }
            )
        t0 = time.perf_counter()
        with open(logfile, "ab") as log:
            proc = subprocess.Popen(
                [
                    self.litellm_bin,
                    "--config",
                    str(cfg),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self._port()),
                    "--num_workers",
                    "1",
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        pidfile.write_text(str(proc.pid))
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if proc.poll() is not None:
                tail = logfile.read_text(errors="replace")[-2000:]
                raise GatewayError(f"LiteLLM proxy exited with {proc.returncode}:\n{tail}")
            if self.alive():
                return {"pid": proc.pid, "startup_seconds": time.perf_counter() - t0, "config": str(cfg)}
            time.sleep(0.5)
        self.stop()
        raise GatewayError(f"LiteLLM proxy not alive after {timeout_s:.0f} s (log: {logfile})")

    def stop(self) -> None:
        from infra.local.processes import stop_pidfile

        stop_pidfile(self._paths()[1])
