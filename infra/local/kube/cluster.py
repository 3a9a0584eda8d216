"""A real Kubernetes control plane on 127.0.0.1, the local twin of EKS (``agentic cluster up|down|status``).

etcd, kube-apiserver, kube-controller-manager and kube-scheduler (v1.34) are the upstream binaries, built from the Go
module proxy by ``infra/local/kube/build.sh`` into the user cache. kwok turns Nodes and Pods into fakes that go Ready
(no container runs), Karpenter's kwok provider provisions those Nodes from NodePools, and the KubeRay operator turns
RayClusters into Pods. Everything lives under ``<AGENTIC_HOME>/kube`` (certificates, kubeconfigs, etcd data, logs,
pid files) and every listener is on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from infra.local.kube.pki import CLIENTS, SERVICE_CIDR, kubeconfig, write_pki
from infra.local.processes import free_port

VERSIONS = {
    "etcd": "v3.6.4",
    "kubernetes": "v1.34.2",
    "kwok": "v0.8.0",
    "karpenter": "v1.14.1",
    "kuberay": "v1.5.0",
}
# Start order; stopped in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "karpenter", "kuberay")
KWOK_STAGES = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-complete.yaml",
    "pod/fast/pod-delete.yaml",
)


class ClusterError(RuntimeError):
    pass


def kube_cache(cache: Path | None = None) -> Path:
    return Path(cache or os.environ.get("AGENTIC_CACHE") or Path.home() / ".cache" / "agentic") / "kube"


def component_dir(name: str, cache: Path | None = None) -> Path:
    return kube_cache(cache) / f"{name}-{VERSIONS[name]}"


def missing_binaries(cache: Path | None = None) -> list[str]:
    return [n for n in VERSIONS if not (component_dir(n, cache) / ".done").exists()]


BUILD_SCRIPT = Path(__file__).resolve().parent / "build.sh"


def ensure_built(cache: Path | None = None, log=None) -> float | None:
    """Build the missing components with ``build.sh`` (the script ``scripts/setup.sh kube`` runs), each cached by
    version; returns the seconds it took, or None when everything was built already. Its progress lines go to stdout,
    Go's output to ``<cache>/kube/build.log`` (its tail is in the error when the build fails)."""
    missing = missing_binaries(cache)
    if not missing:
        return None
    log = log or (lambda msg: print(msg, flush=True))  # flushed: build.sh's own lines share this stdout
    root = kube_cache(cache)
    if not shutil.which("go"):
        raise ClusterError(
            f"the local control plane is not built ({', '.join(missing)} missing in {root}) and Go is not installed "
            "to build it: install Go 1.24+ (the build fetches the sources from the Go module proxy)"
        )
    root.mkdir(parents=True, exist_ok=True)
    build_log = root / "build.log"
    log(
        f"building the local control plane ({', '.join(missing)}) from the Go module proxy into {root}: "
        "about 10-15 min cold on 2 cores, once per version; Go's output in " + str(build_log)
    )
    t0 = time.monotonic()
    env = {**os.environ, "AGENTIC_CACHE": str(root.parent)}
    with open(build_log, "w") as err:
        proc = subprocess.run(["bash", str(BUILD_SCRIPT)], env=env, stdin=subprocess.DEVNULL, stderr=err)
    seconds = time.monotonic() - t0
    still = missing_binaries(cache)
    if proc.returncode != 0 or still:
        tail = "\n".join(build_log.read_text(errors="replace").splitlines()[-20:])
        raise ClusterError(
            f"building the local control plane failed after {seconds:.0f} s (exit {proc.returncode}; "
            f"missing: {', '.join(still) or 'none'}; log {build_log}):\n{tail}"
        )
    log(f"built the local control plane in {seconds:.0f} s")
    return seconds


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    # a zombie leader (a child not yet reaped by its parent) counts as stopped
    try:
        return Path(f"/proc/{pgid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


# ------------------------------------------------------------------ the cluster


@dataclass
class LocalCluster:
    """The control plane of one home: ``up()``, ``down()``, ``status()``; ``kubeconfig`` is the admin's."""

    home: Path
    crd_dirs: tuple[Path, ...] = ()
    instance_types: list[dict] | None = None
    cache: Path | None = None

    @property
    def root(self) -> Path:
        return Path(self.home) / "kube"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    def _state(self) -> dict:
        p = self.root / "state.json"
        return json.loads(p.read_text()) if p.exists() else {}

    def _pidfile(self, name: str) -> Path:
        return self.root / "run" / f"{name}.pid"

    def _alive(self, name: str) -> bool:
        p = self._pidfile(name)
        if not p.exists():
            return False
        try:
            os.killpg(int(p.read_text()), 0)
            return True
        except (ProcessLookupError, ValueError, PermissionError):
            return False

    def status(self) -> dict:
        st = self._state()
        procs = {n: self._alive(n) for n in COMPONENTS}
        healthy = False
        if st.get("server") and procs["kube-apiserver"]:
            healthy = self._readyz(st["server"])
        return {
            "running": any(procs.values()),
            "healthy": healthy,
            "server": st.get("server", ""),
            "kubeconfig": str(self.kubeconfig) if self.kubeconfig.exists() else "",
            "components": procs,
            "versions": VERSIONS,
            "home": str(self.root),
        }

    def _readyz(self, server: str) -> bool:
        import ssl

        import httpx

        pki = self.root / "pki"
        try:
            ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
            ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
            r = httpx.get(f"{server}/readyz", verify=ctx, timeout=2)
            return r.status_code == 200
        except (httpx.HTTPError, OSError):
            return False

    def _start(self, name: str, argv: list[str], env: dict | None = None) -> None:
        logs = self.root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        (self.root / "run").mkdir(parents=True, exist_ok=True)
        with open(logs / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: `down` stops exactly it
                env={**os.environ, **(env or {})},
                cwd=self.root,
            )
        self._pidfile(name).write_text(str(proc.pid))

    def _wait(self, what: str, ok, timeout: float, component: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ok():
                return
            if not self._alive(component):
                raise ClusterError(f"{component} exited while waiting for {what}: {self._tail(component)}")
            time.sleep(0.2)
        raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}: {self._tail(component)}")

    def _tail(self, name: str, n: int = 12) -> str:
        p = self.root / "logs" / f"{name}.log"
        return "\n".join(p.read_text(errors="replace").splitlines()[-n:]) if p.exists() else "(no log)"

    def up(self, timeout: float = 120.0) -> dict:
        """Start every component (those already running are left alone) and wait until the API is ready, the CRDs
        are established and the default ServiceAccount exists."""
        missing = missing_binaries(self.cache)
        if missing:
            raise ClusterError(
                f"the local control plane is not built ({', '.join(missing)} missing in {kube_cache(self.cache)}): "
                "run `agentic cluster up` or `make cluster` (they build it), or `bash infra/local/kube/build.sh`"
            )
        t0 = time.monotonic()
        st = self.status()
        if st["healthy"] and all(st["components"].values()):
            return {**st, "started_in_s": 0.0}
        if any(st["components"].values()):
            self.down()
        self.root.mkdir(parents=True, exist_ok=True)
        pki = self.root / "pki"
        if not (pki / "ca.crt").exists():
            write_pki(pki)
        # the same ports as last time when they are free (etcd keeps its peer URL in its data)
        old = self._state().get("ports", {})
        names = ("etcd", "etcd_peer", "apiserver", "karpenter_metrics", "karpenter_health")
        ports = {
            n: old[n] if n in old and _port_free(old[n]) else free_port()
            for n in (*names, "kuberay_metrics", "kuberay_health")
        }
        server = f"https://127.0.0.1:{ports['apiserver']}"
        (self.root / "state.json").write_text(json.dumps({"server": server, "ports": ports}))
        for user in CLIENTS:
            target = self.kubeconfig if user == "admin" else self.root / f"{user}.kubeconfig"
            target.write_text(yaml.safe_dump(kubeconfig(server, pki, user)))
        k8s, etcd = component_dir("kubernetes", self.cache), component_dir("etcd", self.cache)

        self._start(
            "etcd",
            [
                str(etcd / "etcd"),
                "--name=agentic",
                f"--data-dir={self.root / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{ports['etcd']}",
                f"--advertise-client-urls=http://127.0.0.1:{ports['etcd']}",
                f"--listen-peer-urls=http://127.0.0.1:{ports['etcd_peer']}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{ports['etcd_peer']}",
                f"--initial-cluster=agentic=http://127.0.0.1:{ports['etcd_peer']}",
                "--listen-metrics-urls=",
                "--quota-backend-bytes=2147483648",
                "--unsafe-no-fsync",  # a throwaway local store: durability is not worth the latency here
                "--log-level=warn",
            ],
        )
        self._start(
            "kube-apiserver",
            [
                str(k8s / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{ports['etcd']}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={ports['apiserver']}",
                f"--cert-dir={pki}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=RBAC",
                "--allow-privileged=true",
                # 127.0.0.1 is not a valid endpoint address: the `kubernetes` Service gets no endpoints here
                "--endpoint-reconciler-type=none",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
                "--v=0",
            ],
        )
        self._wait("the API server", lambda: self._readyz(server), timeout, "kube-apiserver")
        self._apply_crds()
        self._start(
            "kube-controller-manager",
            [
                str(k8s / "kube-controller-manager"),
                f"--kubeconfig={self.root / 'kube-controller-manager.kubeconfig'}",
                "--secure-port=0",  # no health/metrics listener at all
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allocate-node-cidrs=false",
                "--cluster-name=agentic-local",
                "--node-monitor-grace-period=40s",
                "--v=0",
            ],
        )
        self._start(
            "kube-scheduler",
            [
                str(k8s / "kube-scheduler"),
                f"--kubeconfig={self.root / 'kube-scheduler.kubeconfig'}",
                "--secure-port=0",
                "--leader-elect=false",
                "--v=0",
            ],
        )
        kwok = component_dir("kwok")
        self._start(
            "kwok",
            [
                str(kwok / "kwok"),
                f"--kubeconfig={self.root / 'kwok.kubeconfig'}",
                # only the nodes Karpenter's kwok provider creates (it annotates them kwok.x-k8s.io/node=fake)
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--cidr=10.244.0.1/16",
                "--node-ip=127.0.0.1",
                *[f"--config={kwok / 'stage' / s}" for s in KWOK_STAGES],
            ],
        )
        karpenter = component_dir("karpenter")
        types = self.root / "instance-types.json"
        types.write_text(json.dumps(self.instance_types or [], indent=1))
        self._start(
            "karpenter",
            [str(karpenter / "karpenter-kwok")],
            env={
                "KUBECONFIG": str(self.root / "karpenter.kubeconfig"),
                "INSTANCE_TYPES_FILE_PATH": str(types) if self.instance_types else "",
                "DISABLE_LEADER_ELECTION": "true",
                "METRICS_PORT": str(ports["karpenter_metrics"]),
                "HEALTH_PROBE_PORT": str(ports["karpenter_health"]),
                "LOG_LEVEL": "info",
                # short windows: pending pods are batched for 1-3 s instead of up to 10 s
                "BATCH_IDLE_DURATION": "500ms",
                "BATCH_MAX_DURATION": "3s",
                "SYSTEM_NAMESPACE": "kube-system",
            },
        )
        kuberay = component_dir("kuberay")
        self._start(
            "kuberay",
            [
                str(kuberay / "ray-operator"),
                f"--metrics-addr=127.0.0.1:{ports['kuberay_metrics']}",
                f"--health-probe-bind-address=127.0.0.1:{ports['kuberay_health']}",
                "--enable-leader-election=false",
                "--log-stdout-encoder=console",
            ],
            env={"KUBECONFIG": str(self.root / "kuberay.kubeconfig")},
        )
        self._wait(
            "the default ServiceAccount (kube-controller-manager)",
            self._default_service_account,
            timeout,
            "kube-controller-manager",
        )
        return {**self.status(), "started_in_s": round(time.monotonic() - t0, 1)}

    def client(self):
        from kubernetes import config, dynamic

        return dynamic.DynamicClient(config.new_client_from_config(config_file=str(self.kubeconfig)))

    def _default_service_account(self) -> bool:
        from kubernetes.client.exceptions import ApiException

        try:
            from kubernetes import client, config

            api = client.CoreV1Api(config.new_client_from_config(config_file=str(self.kubeconfig)))
            api.read_namespaced_service_account("default", "default")
            return True
        except (ApiException, OSError):
            return False

    def crd_files(self) -> list[Path]:
        """The CRDs the platform uses (../shared/crds) plus Karpenter-kwok's own; for a kind in both, the shared
        (production) one wins."""
        files: dict[str, Path] = {}
        for d in (component_dir("karpenter", self.cache) / "crds", *self.crd_dirs):
            for f in sorted(Path(d).glob("*.yaml")):
                files[f.name] = f
        return sorted(files.values())

    def _apply_crds(self) -> None:
        from kubernetes import client, config, dynamic

        api = config.new_client_from_config(config_file=str(self.kubeconfig))
        dyn = dynamic.DynamicClient(api)
        names = []
        for f in self.crd_files():
            for doc in yaml.safe_load_all(f.read_text()):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                # server-side: a client-side apply of the KubeRay CRDs exceeds the annotation size limit
                dyn.request(
                    "patch",
                    f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{doc['metadata']['name']}",
                    body=doc,
                    field_manager="agentic-cluster",
                    force_conflicts=True,
                    content_type="application/apply-patch+yaml",
                )
                names.append(doc["metadata"]["name"])
        ext = client.ApiextensionsV1Api(api)
        deadline = time.monotonic() + 60
        for name in names:
            while True:
                conds = ext.read_custom_resource_definition(name).status.conditions or []
                if any(c.type == "Established" and c.status == "True" for c in conds):
                    break
                if time.monotonic() > deadline:
                    raise ClusterError(f"CRD {name} not established after 60 s")
                time.sleep(0.2)

    def down(self, wipe: bool = False) -> list[str]:
        """Stop this home's components (only the process groups whose pids it recorded); ``wipe`` also deletes the
        data, certificates and kubeconfigs."""
        groups = {}
        for n in reversed(COMPONENTS):
            p = self._pidfile(n)
            if p.exists():
                try:
                    groups[n] = int(p.read_text())
                    os.killpg(groups[n], signal.SIGTERM)
                except (ValueError, ProcessLookupError, PermissionError):
                    pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_group_alive(g) for g in groups.values()):
            time.sleep(0.1)
        for n, g in groups.items():
            if _group_alive(g):
                os.killpg(g, signal.SIGKILL)
            self._pidfile(n).unlink(missing_ok=True)
        stopped = list(groups)
        if wipe and self.root.exists():
            shutil.rmtree(self.root)
        return stopped
