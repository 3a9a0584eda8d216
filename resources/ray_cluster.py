"""Ray: a local Ray cluster per AGENTIC_HOME on the local profile, the KubeRay cluster (GCS address) on EKS.

Bulk data work goes through ``resources.ray_jobs`` (Ray Jobs API on EKS, in-process driver locally).
"""

from __future__ import annotations

import os
import secrets
import socket
import warnings
from pathlib import Path

import dagster as dg

# Ray reads these at import/init time; they are part of how this platform runs Ray, not user settings.
RAY_ENV_DEFAULTS = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DEDUP_LOGS": "1",
    "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
}


def ray_on_loopback() -> None:
    """One node on 127.0.0.1: GCS, raylet, agents and workers listen on loopback only.

    Ray turns a node address of 127.0.0.1 into the host's reachable one (``resolve_ip_for_localhost``) and then binds
    its servers there or on every interface; its single-node switch (the laptop default) keeps the node on loopback.
    The local profile is one node; a KubeRay cluster's pods must reach each other, so eks never calls this. Every
    process of the node inherits the variable; a process that imported Ray already gets the constant too."""
    import sys

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:
        constants.ENABLE_RAY_CLUSTER = False


def apply_ray_env_defaults() -> None:
    """Set RAY_ENV_DEFAULTS where the environment does not say otherwise (before Ray is imported)."""
    for k, v in RAY_ENV_DEFAULTS.items():
        os.environ.setdefault(k, v)


def ensure_token_file(path: str | Path) -> Path:
    """A home's Ray token: created on first use (mode 0600), the same one ever after."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path


def use_ray_token(token_file: str | Path) -> None:
    """Token authentication for every Ray process this one starts or joins, and its children: the token the
    environment already names (a test session's, or RAY_AUTH_TOKEN from a Secret), else this home's file."""
    os.environ["RAY_AUTH_MODE"] = "token"
    if not (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")):
        os.environ["RAY_AUTH_TOKEN_PATH"] = str(ensure_token_file(token_file))


class RayResource(dg.ConfigurableResource):
    """One Ray cluster per AGENTIC_HOME: ``address`` when given, else this home's ``agentic up`` head, else a new one.

    * ``address`` set (``AGENTIC_RAY_ADDRESS``; KubeRay on eks): connect to exactly that cluster.
    * else ``address_file`` (the file ``agentic up`` writes with its head's GCS address, under this home) names a
      head that answers: connect to it, so the same home's commands share the head ``agentic up`` left running.
    * else start a new local cluster owned by this process (``ray.init(address="local")``). Never a bare
      ``ray.init()``: that joins whatever cluster ``RAY_ADDRESS`` or ``<tmp>/ray/ray_current_cluster`` points at,
      i.e. another home's ``agentic up`` head, and then fails on ``num_cpus`` ("When connecting to an existing
      cluster, num_cpus and num_gpus must not be provided").

    If this process already has Ray initialized (a test session, a Ray job driver), that connection is used as is.
    """

    address: str = ""
    address_file: str = ""  # local profile: AGENTIC_HOME/serving/run/ray.address, written by `agentic up`
    token_file: str = ""  # local profile: this home's Ray token (AGENTIC_HOME/secrets/ray.token), created on first use
    loopback: bool = False  # local profile: a single node whose every listener is on 127.0.0.1 (ray_on_loopback)
    num_cpus: int = 0  # local cluster only; 0 = all cores
    object_store_mb: int = 1024  # local cluster only
    namespace: str = "agentic"

    def resolved_address(self) -> str:
        """The GCS address to connect to, or "" when this process should start its own local cluster."""
        if self.address:
            return self.address
        if self.address_file:
            try:
                recorded = Path(self.address_file).read_text().strip()
            except OSError:
                return ""
            if recorded and _gcs_answers(recorded):
                return recorded
        return ""

    def ensure(self) -> None:
        apply_ray_env_defaults()
        if self.loopback:
            ray_on_loopback()
        if self.token_file:
            use_ray_token(self.token_file)
        # Ray starts its processes with fork+exec; lancedb's at-fork warning is about forks that keep running
        # Python, which Ray does not do.
        warnings.filterwarnings("ignore", message="lancedb fork support is experimental")
        import ray

        if ray.is_initialized():
            return
        address = self.resolved_address()
        if address:
            ray.init(address=address, namespace=self.namespace, log_to_driver=False)
        else:
            ray.init(
                address="local",  # a new cluster of our own, whatever RAY_ADDRESS or ray_current_cluster say
                num_cpus=self.num_cpus or os.cpu_count(),
                object_store_memory=self.object_store_mb * 1024 * 1024,
                include_dashboard=False,
                namespace=self.namespace,
                log_to_driver=False,
            )

    def cluster_cpus(self) -> int:
        import ray

        self.ensure()
        return int(ray.cluster_resources().get("CPU", 1))


def _gcs_answers(address: str, timeout_s: float = 1.0) -> bool:
    """Whether something listens on ``host:port`` (a stale address file after a crash or reboot does not)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False
