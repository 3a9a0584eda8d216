"""The local metrics store: Prometheus from Debian's package (unpacked into the user cache by ``make setup``).

It scrapes what ``infra.platform.observability.local_scrape_config`` lists (the same service list the eks
ServiceMonitors come from) and evaluates the platform's alert rules, on 127.0.0.1 only. Debian's binary has its
web UI assets compiled out, so the UI pages answer 500 here; the HTTP API, which tests and panels use, works.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import yaml

from infra.local.phoenix import free_port

PROMETHEUS_DEBIAN_VERSION = "2.42.0+ds-5+deb12u1"


def prometheus_root(cache: Path) -> Path:
    return Path(cache) / f"prometheus-{PROMETHEUS_DEBIAN_VERSION}" / "root" / "usr" / "bin"


def promtool(cache: Path) -> Path:
    return prometheus_root(cache) / "promtool"


class PrometheusServer:
    """One Prometheus for a home: config, rules, TSDB, pid, port and log live in ``workdir``."""

    def __init__(self, workdir: Path, cache: Path):
        self.workdir = Path(workdir)
        self.binary = prometheus_root(cache) / "prometheus"

    @property
    def _pidfile(self) -> Path:
        return self.workdir / "prometheus.pid"

    @property
    def _portfile(self) -> Path:
        return self.workdir / "prometheus.port"

    @property
    def log(self) -> Path:
        return self.workdir / "prometheus.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._portfile.read_text().strip()}" if self._portfile.exists() else ""

    def installed(self) -> bool:
        return self.binary.exists()

    def alive(self) -> bool:
        if not self.url:
            return False
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def write_config(self, config: dict, rules: dict | None = None) -> Path:
        """Write ``config`` (plus ``rules`` as its one rule file); a running server re-reads both."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = dict(config)
        if rules is not None:
            rules_file = self.workdir / "rules.yml"
            rules_file.write_text(yaml.safe_dump(rules, sort_keys=False))
            config["rule_files"] = [str(rules_file)]
        path = self.workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        if self.alive():
            httpx.post(f"{self.url}/-/reload", timeout=10).raise_for_status()
        return path

    def start(self, config: dict, rules: dict | None = None, timeout_s: float = 60) -> dict:
        if not self.installed():
            raise RuntimeError(f"Prometheus is not installed at {self.binary}; run `make setup`")
        self.stop()
        path = self.write_config(config, rules)
        port = free_port()
        t0 = time.perf_counter()
        with open(self.log, "ab") as out:
            proc = subprocess.Popen(
                [
                    str(self.binary),
                    f"--config.file={path}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    "--storage.tsdb.retention.time=2d",
                    f"--web.listen-address=127.0.0.1:{port}",  # the default is every interface
                    "--web.enable-lifecycle",  # /-/reload after a config change
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={k: v for k, v in os.environ.items() if not k.startswith("AGENTIC_")},
            )
        self._pidfile.write_text(str(proc.pid))
        self._portfile.write_text(str(port))
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"Prometheus exited with {proc.returncode}: {self.log.read_text()[-2000:]}")
            if self.alive():
                return {"url": self.url, "pid": proc.pid, "startup_seconds": round(time.perf_counter() - t0, 1)}
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"Prometheus not ready after {timeout_s:.0f} s (log: {self.log})")

    def stop(self) -> bool:
        from infra.local.processes import stop_pidfile

        stopped = stop_pidfile(self._pidfile)
        self._portfile.unlink(missing_ok=True)
        return stopped

    # -- reading ---------------------------------------------------------------------------
    def query(self, expr: str) -> list[dict]:
        """An instant query's result vector (``[{"metric": {...}, "value": [t, "v"]}]``)."""
        r = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=30)
        r.raise_for_status()
        body = r.json()
        if body.get("status") != "success":
            raise RuntimeError(f"query failed: {body}")
        return body["data"]["result"]

    def targets(self) -> list[dict]:
        r = httpx.get(f"{self.url}/api/v1/targets", timeout=10)
        r.raise_for_status()
        return r.json()["data"]["activeTargets"]

    def alerts(self) -> list[dict]:
        r = httpx.get(f"{self.url}/api/v1/alerts", timeout=10)
        r.raise_for_status()
        return r.json()["data"]["alerts"]
