"""Long-running local services: the persistent Ray head, the serving job, the API process.

``agentic up`` starts the trace store (Arize Phoenix) unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` names one, a Ray
head (``ray start --head``) unless ``AGENTIC_RAY_ADDRESS`` names one, materializes the ``serving`` group on it (Ray
Serve apps + LiteLLM gateway, both outliving the CLI), starts the API (``agentic serve``) in the background, and last
Prometheus, scraping the API, the gateway and Ray and evaluating the alert rules. ``agentic down`` stops them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from infra.local.processes import free_port
from pipelines.settings import Settings


def build_answer_service(settings: Settings):
    """The deployment's answer service (``agents.resource.AnswerServiceResource``), tracing to this home's trace
    store when `agentic up` runs one."""
    from agents.tracing import setup_tracing
    from pipelines.profiles import build_resources

    endpoint, header_text = settings.otlp_endpoint, settings.otlp_headers
    phoenix = phoenix_server(settings)
    if not endpoint and phoenix.alive():  # this home's `agentic up` runs a trace store: `agentic ask` reports there too
        env = phoenix.otlp_env()
        endpoint, header_text = env["OTEL_EXPORTER_OTLP_ENDPOINT"], env["OTEL_EXPORTER_OTLP_HEADERS"]
    headers = dict(kv.split("=", 1) for kv in header_text.split(",") if "=" in kv)
    setup_tracing(endpoint or None, headers)
    res = build_resources(settings)
    return res["answer_service"].build(
        resolve_env(res["retriever"]), resolve_env(res["gateway"]), resolve_env(res["pipeline_state"])
    )


def resolve_env(resource):
    """A resource used outside a Dagster run, with its ``dg.EnvVar`` fields (nested too) read from the environment."""
    import dagster as dg

    update = {}
    for name in type(resource).model_fields:
        value = getattr(resource, name)
        if isinstance(value, dg.EnvVar):
            update[name] = value.get_value()
            if update[name] is None:
                raise RuntimeError(
                    f"environment variable {value.env_var_name} is not set ({type(resource).__name__}.{name})"
                )
        elif isinstance(value, dg.ConfigurableResource):
            update[name] = resolve_env(value)
    return resource.model_copy(update=update) if update else resource


def _run_dir(settings: Settings) -> Path:
    d = settings.serving_root / "run"
    d.mkdir(parents=True, exist_ok=True)
    return d


def ensure_ray_head(settings: Settings, log=print) -> str:
    from resources.ray_cluster import apply_ray_env_defaults, ray_on_loopback, use_ray_token

    use_ray_token(settings.ray_token_file)  # the head, `ray status` and everything `agentic up` starts after it
    if settings.ray_address:
        return settings.ray_address
    addr_file = _run_dir(settings) / "ray.address"
    if addr_file.exists():
        address = addr_file.read_text().strip()
        probe = subprocess.run(
            [sys.executable, "-m", "ray.scripts.scripts", "status", f"--address={address}"],
            capture_output=True,
            text=True,
        )
        if probe.returncode == 0:
            return address
    apply_ray_env_defaults()
    ray_on_loopback()  # the head and every process it starts listen on 127.0.0.1 only
    port = free_port()
    # The head's temp dir is this home's: `agentic down` stops exactly the processes that name it, never another home's Ray.
    settings.ray_root.mkdir(parents=True, exist_ok=True)
    metrics_port = free_port()
    cmd = [
        str(Path(sys.executable).with_name("ray")),
        "start",
        "--head",
        f"--port={port}",
        # a fixed metrics port for Prometheus (no dashboard writes service discovery), on loopback: Ray binds the
        # metrics agent to the node's address
        "--node-ip-address=127.0.0.1",
        f"--metrics-export-port={metrics_port}",
        f"--num-cpus={os.cpu_count()}",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={settings.ray_root}",
    ]
    log(f"starting a persistent Ray head on 127.0.0.1:{port}")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ray start failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    address = f"127.0.0.1:{port}"
    addr_file.write_text(address)
    (_run_dir(settings) / "ray.metrics").write_text(f"127.0.0.1:{metrics_port}")
    return address


def start_api(settings: Settings, host: str = "127.0.0.1", port: int = 8000, log=print) -> int:
    run = _run_dir(settings)
    pidfile, logfile = run / "api.pid", run / "api.log"
    stop_pid(pidfile)
    cmd = [str(Path(sys.executable).with_name("agentic")), "serve", "--host", host, "--port", str(port)]
    with open(logfile, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=dict(os.environ))
    pidfile.write_text(str(proc.pid))
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"agentic serve exited with {proc.returncode}; see {logfile}")
        try:
            if httpx.get(f"http://{host}:{port}/health", timeout=2).status_code == 200:
                return proc.pid
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"agentic serve not healthy after 120 s; see {logfile}")


def phoenix_server(settings: Settings):
    from infra.local.phoenix import PhoenixServer

    return PhoenixServer(settings.serving_root / "phoenix")


def prometheus_server(settings: Settings):
    from infra.local.prometheus import PrometheusServer

    return PrometheusServer(settings.serving_root / "prometheus", settings.cache)


def start_trace_store(settings: Settings, log=print) -> Settings:
    """This home's Phoenix, and the OTLP settings that send the API's and the gateway's spans to it (exported to the
    environment too, for the processes started after). A configured ``OTEL_EXPORTER_OTLP_ENDPOINT`` wins."""
    from dataclasses import replace

    if settings.otlp_endpoint:
        log(f"traces go to {settings.otlp_endpoint}")
        return settings
    phoenix = phoenix_server(settings)
    info = phoenix.start()
    log(f"trace store (Arize Phoenix) on {info['url']} (pid {info['pid']}, up in {info['startup_seconds']} s)")
    env = phoenix.otlp_env()
    os.environ.update(env)
    return replace(
        settings, otlp_endpoint=env["OTEL_EXPORTER_OTLP_ENDPOINT"], otlp_headers=env["OTEL_EXPORTER_OTLP_HEADERS"]
    )


def metrics_targets(settings: Settings, api: str | None) -> dict[str, str]:
    """service name (as in the platform's service list) -> 127.0.0.1:port of what this home runs."""
    targets = {"litellm": f"127.0.0.1:{settings.gateway_port}"}
    if api:
        targets["agentic-api"] = api
    # Ray's metrics when the head is the one `agentic up` started for this home (its port is on file)
    run = _run_dir(settings)
    ray_metrics, ray_address = run / "ray.metrics", run / "ray.address"
    if ray_metrics.exists() and ray_address.exists() and ray_address.read_text().strip() == settings.ray_address:
        targets["ray-serve"] = ray_metrics.read_text().strip()
    return targets


def start_metrics(settings: Settings, targets: dict[str, str], log=print) -> str:
    """Prometheus scraping ``targets`` with the platform's alert rules; returns its URL. The API's and the gateway's
    bearer keys go to 0600 files Prometheus reads, never into its config."""
    from infra.platform.observability import METRICS_SERVICES, alert_rules, local_scrape_config

    prom = prometheus_server(settings)
    prom.workdir.mkdir(parents=True, exist_ok=True)
    key_files = {}
    for svc in METRICS_SERVICES:
        if svc.name in targets and svc.key_env:
            path = prom.workdir / f"{svc.name}.key"
            path.touch(mode=0o600)
            path.write_text(os.environ.get(svc.key_env, ""))
            key_files[svc.name] = str(path)
    info = prom.start(local_scrape_config(targets, key_files=key_files), alert_rules())
    log(f"Prometheus on {info['url']} scraping {', '.join(sorted(targets))} (pid {info['pid']})")
    return info["url"]


def stop_pid(pidfile: Path) -> bool:
    from infra.local.processes import stop_pidfile

    return stop_pidfile(pidfile)


def down(settings: Settings, log=print) -> None:
    from pipelines.profiles import build_resources

    run = _run_dir(settings)
    if stop_pid(run / "api.pid"):
        log("stopped the API")
    res = build_resources(settings)
    res["gateway"].model_copy(update={"master_key": ""}).stop()  # stopping needs no key
    log("stopped the gateway")
    if prometheus_server(settings).stop():
        log("stopped Prometheus")
    if phoenix_server(settings).stop():
        log("stopped the trace store")
    addr_file = run / "ray.address"
    if addr_file.exists() and not settings.ray_address:
        from infra.local.processes import stop_processes_naming

        address = addr_file.read_text().strip()
        stop_processes_naming(str(settings.ray_root))  # `ray stop` would stop every Ray on the machine
        if address:  # the head's Ray client server names its GCS address, not the temp dir
            stop_processes_naming(f"--address={address} ")
        addr_file.unlink()
        (run / "ray.metrics").unlink(missing_ok=True)
        log("stopped the Ray head (and its Serve applications)")


def local_cluster(settings: Settings):
    """This home's local Kubernetes control plane, with kwok instance types mirroring the platform's pools and priced
    from the price book, and the platform's CRDs (``AGENTIC_CRD_DIR`` or ../shared/crds)."""
    from core.cost import load_price_book
    from infra.local.kube.cluster import LocalCluster
    from infra.local.kube.instance_types import kwok_instance_types
    from infra.platform.config import load_platform_config
    from infra.validate import crd_dirs

    cfg = load_platform_config(settings.platform_config or None)
    book = load_price_book(cfg.region)
    return LocalCluster(
        home=settings.home,
        crd_dirs=crd_dirs(),
        instance_types=kwok_instance_types(cfg, book),
        cache=settings.cache,
    )
