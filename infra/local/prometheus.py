"""The local metrics store: Prometheus from Debian's package (unpacked into the user cache by ``make setup``).

It scrapes what ``infra.platform.observability.local_scrape_config`` lists (the same service list the eks
ServiceMonitors come from) and evaluates the platform's alert rules, on 127.0.0.1 only. Debian's binary has its
web UI assets compiled out, so the UI pages answer 500 here; the HTTP API, which tests and panels use, works.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import yaml

from infra.local.processes import DetachedServer, free_port

PROMETHEUS_DEBIAN_VERSION = "2.42.0+ds-5+deb12u1"


def prometheus_root(cache: Path) -> Path:
    return Path(cache) / f"prometheus-{PROMETHEUS_DEBIAN_VERSION}" / "root" / "usr" / "bin"


def promtool(cache: Path) -> Path:
    return prometheus_root(cache) / "promtool"


class PrometheusServer(DetachedServer):
    """One Prometheus for a home: config, rules, TSDB, pid, port and log live in ``workdir``."""

    name = "prometheus"
    health_path = "/-/ready"

    def __init__(self, workdir: Path, cache: Path):
        super().__init__(workdir)
        self.binary = prometheus_root(cache) / "prometheus"

    def installed(self) -> bool:
        return self.binary.exists()

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
        cmd = [
            str(self.binary),
            f"--config.file={path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            "--storage.tsdb.retention.time=2d",
            f"--web.listen-address=127.0.0.1:{port}",  # the default is every interface
            "--web.enable-lifecycle",  # /-/reload after a config change
        ]
        return self._launch(cmd, {k: v for k, v in os.environ.items() if not k.startswith("AGENTIC_")}, port, timeout_s)

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
