"""Build and run the local OpenSearch node (Maven project beside this file).

``ensure_built()`` runs ``mvn package`` once (jars land in the user's Maven cache, ~/.m2): ``scripts/setup.sh
opensearch`` (``make opensearch``, ``make test``) calls it, and ``agentic opensearch run|start`` on demand;
``OpenSearchNode`` starts ``java -cp ... agentic.OpenSearchNode DATA_DIR PORT`` in its own session,
waits until the cluster is yellow (60 s budget), and stops it with SIGTERM (the node closes cleanly
on shutdown).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

PROJECT = Path(__file__).resolve().parent / "opensearch"


class OpenSearchError(RuntimeError):
    pass


def java_binary() -> str:
    home = os.environ.get("AGENTIC_JAVA_HOME") or os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    java = shutil.which("java")
    if not java:
        raise OpenSearchError("java not found: install a JDK 17+ or set JAVA_HOME")
    return java


def _fingerprint() -> str:
    h = hashlib.sha256()
    for p in sorted([PROJECT / "pom.xml", *PROJECT.glob("src/**/*.java")]):
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def needs_build() -> bool:
    """Whether ``ensure_built()`` would run Maven (no build yet, or the sources changed since the last one)."""
    target = PROJECT / "target"
    return not ((target / f".built-{_fingerprint()}").exists() and (target / "classpath.txt").exists())


def ensure_built(quiet: bool = True, log=None) -> Path:
    """mvn package if the sources changed since the last build; returns the classpath file.

    ``log`` (e.g. ``print``), when given, is told that a build starts and how long it took (nothing when cached)."""
    target = PROJECT / "target"
    stamp = target / f".built-{_fingerprint()}"
    cp = target / "classpath.txt"
    if stamp.exists() and cp.exists():
        return cp
    mvn = shutil.which("mvn")
    if not mvn:
        raise OpenSearchError("mvn not found: Maven is needed to fetch the OpenSearch jars")
    if log:
        log(f"building the local OpenSearch node (mvn package in {PROJECT}; jars into ~/.m2) ...")
    t0 = time.monotonic()
    cmd = [mvn, "-B", "-q" if quiet else "-ntp", "-DskipTests", "package"]
    proc = subprocess.run(cmd, cwd=PROJECT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise OpenSearchError(f"building the OpenSearch launcher failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    for old in target.glob(".built-*"):
        old.unlink()
    stamp.touch()
    if log:
        log(f"built the local OpenSearch node in {time.monotonic() - t0:.0f} s")
    return cp


class OpenSearchNode:
    """One local node. Output goes to DATA_DIR/node.log; the pid to DATA_DIR/node.pid (for `agentic opensearch stop`)."""

    def __init__(self, data_dir: Path, port: int = 9200, heap: str = "1g"):
        self.data_dir = Path(data_dir)
        self.port = port
        self.heap = heap
        self.proc: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = self.data_dir / "node.log"
        self.pid_path = self.data_dir / "node.pid"
        self.startup_seconds: float | None = None

    def start(self, timeout_s: float = 60.0) -> "OpenSearchNode":
        if _answers(self.url):
            raise OpenSearchError(
                f"something already listens on {self.url}; set AGENTIC_OPENSEARCH_PORT to another port"
            )
        cp = ensure_built()
        plugin_jars = sorted(str(j) for j in (PROJECT / "target" / "plugins").glob("*/*.jar"))
        classpath = os.pathsep.join([str(PROJECT / "target" / "classes"), cp.read_text().strip(), *plugin_jars])
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            java_binary(),
            f"-Xms{self.heap}",
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            "-cp",
            classpath,
            "agentic.OpenSearchNode",
            str(self.data_dir / "node"),
            str(self.port),
        ]
        t0 = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        self.pid_path.write_text(str(self.proc.pid))
        while not _healthy(self.url):
            if self.proc.poll() is not None:
                raise OpenSearchError(f"OpenSearch exited with {self.proc.returncode}:\n{self.tail()}")
            if time.monotonic() - t0 > timeout_s:
                self.stop()
                raise OpenSearchError(f"OpenSearch not ready after {timeout_s:.0f}s:\n{self.tail()}")
            time.sleep(0.5)
        self.startup_seconds = time.monotonic() - t0
        return self

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def stop(self, timeout_s: float = 30.0) -> int | None:
        pid = self.proc.pid if self.proc else _read_pid(self.pid_path)
        if pid is None:
            return None
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            self.pid_path.unlink(missing_ok=True)
            return None
        t0 = time.monotonic()
        code = None
        while time.monotonic() - t0 < timeout_s:
            if self.proc is not None:
                code = self.proc.poll()
                if code is not None:
                    break
            elif not _alive(pid):
                break
            time.sleep(0.2)
        else:
            os.killpg(pid, signal.SIGKILL)
            if self.proc is not None:
                code = self.proc.wait()
        self.pid_path.unlink(missing_ok=True)
        return code

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except Exception:  # noqa: BLE001 - anything but an answer means "free"
        return False


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_cluster/health?wait_for_status=yellow&timeout=1s", timeout=3) as r:
            return json.loads(r.read()).get("status") in ("yellow", "green")
    except Exception:  # noqa: BLE001 - not up yet
        return False
