"""The sweep's one Ray head (127.0.0.1, token auth) and the sampler of its workers' memory."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from benchmarks.scale_sweep.common import mb, rss_kb
from infra.local.processes import free_port, stop_pids

# ------------------------------------------------------------------ the Ray head and its workers


def _ppid_map() -> dict[int, int]:
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                out[int(d)] = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class RayHead:
    """A Ray head owned by the sweep process, with its own temp dir; its processes are stopped by pid (never ``ray stop``)."""

    def __init__(self, root: Path, cpus: int, object_store_mb: int):
        self.temp_dir = str(root / "ray")
        self.cpus, self.object_store_mb = cpus, object_store_mb
        self.address = ""
        self.raylet_pid = 0

    def start(self) -> str:
        """A Ray head owned by this process (``ray.init(address="local")``, node IP 127.0.0.1, its own temp dir), that the
        step processes join through its GCS address, on loopback only and with a token of the sweep's own (in the
        environment the step processes inherit), as every Ray head of the project. Not ``ray start``: that also starts a
        Ray Client server."""
        from resources.ray_cluster import apply_ray_env_defaults, ray_on_loopback, use_ray_token

        apply_ray_env_defaults()
        ray_on_loopback()
        os.environ.pop("RAY_AUTH_TOKEN", None)
        os.environ.pop("RAY_AUTH_TOKEN_PATH", None)
        use_ray_token(Path(self.temp_dir).parent / "ray.token")
        import ray

        ray.init(
            address="local",
            num_cpus=self.cpus,
            object_store_memory=self.object_store_mb * 1024 * 1024,
            include_dashboard=False,
            dashboard_host="127.0.0.1",
            dashboard_port=free_port(),
            _node_ip_address="127.0.0.1",
            _temp_dir=self.temp_dir,
            namespace="agentic-scale-sweep",
            log_to_driver=False,
            configure_logging=False,
        )
        self.address = ray.get_runtime_context().gcs_address
        for pid in self.own_pids():
            if "/raylet" in _cmdline(pid).split(" ")[0]:
                self.raylet_pid = pid
        return self.address

    def own_pids(self) -> set[int]:
        """The head's processes (their command lines name its temp dir) and everything below them (the workers,
        whose titles Ray rewrites to ``ray::...``)."""
        ppids = _ppid_map()
        ours = {pid for pid in ppids if self.temp_dir in _cmdline(pid)}
        ours.discard(os.getpid())
        grew = True
        while grew:
            kids = {p for p, pp in ppids.items() if pp in ours and p not in ours}
            ours |= kids
            grew = bool(kids)
        return ours

    def worker_pids(self) -> list[int]:
        if not self.raylet_pid:
            return []
        ppids = _ppid_map()
        return [p for p, pp in ppids.items() if pp == self.raylet_pid and _cmdline(p).startswith("ray::")]

    def stop(self) -> None:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        stop_pids(set(self.own_pids()), grace_s=5.0)


class WorkerSampler(threading.Thread):
    """Samples the Ray workers' RSS while one step runs (not Ray's own agents): the largest worker and the largest sum,
    over all workers and over the step's workers (those seen running a task or actor of the step; not idle ones, nor
    Ray Data's long-lived helper actors that were already there when the step started)."""

    AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")

    def __init__(self, head: RayHead, interval_s: float = 0.25):
        super().__init__(daemon=True)
        self.head, self.interval_s = head, interval_s
        self.stop_event = threading.Event()
        self.before: dict[int, str] | None = None
        self.active: set[int] = set()
        self.max_worker_kb = self.max_sum_kb = self.max_step_worker_kb = self.max_step_sum_kb = 0
        self.titles: set[str] = set()
        self.samples = 0

    def run(self) -> None:
        pids: list[int] = []
        n = 0
        while not self.stop_event.is_set():
            if n % 4 == 0:  # the worker list once a second; titles and RSS every sample
                pids = [p for p in self.head.worker_pids() if not _cmdline(p).startswith(self.AGENTS)]
            titles = {p: _cmdline(p).split(" ")[0][:48] for p in pids}
            if self.before is None:
                self.before = {p: t for p, t in titles.items() if t != "ray::IDLE"}
            for p, t in titles.items():
                if t and t != "ray::IDLE" and self.before.get(p) != t:
                    self.active.add(p)
                    self.titles.add(t)
            rss = [(p, rss_kb(p)) for p in pids]
            rss = [(p, r) for p, r in rss if r]
            step = [r for p, r in rss if p in self.active]
            if rss:
                self.max_worker_kb = max(self.max_worker_kb, max(r for _, r in rss))
                self.max_sum_kb = max(self.max_sum_kb, sum(r for _, r in rss))
            if step:
                self.max_step_worker_kb = max(self.max_step_worker_kb, max(step))
                self.max_step_sum_kb = max(self.max_step_sum_kb, sum(step))
            self.samples += 1
            n += 1
            self.stop_event.wait(self.interval_s)

    def result(self) -> dict:
        return {
            "step_workers_max_rss_mb": mb(self.max_step_worker_kb),
            "step_workers_max_sum_rss_mb": mb(self.max_step_sum_kb),
            "step_workers": len(self.active),
            "all_workers_max_rss_mb": mb(self.max_worker_kb),
            "all_workers_max_sum_rss_mb": mb(self.max_sum_kb),
            "samples": self.samples,
            "titles": sorted(self.titles),
        }
