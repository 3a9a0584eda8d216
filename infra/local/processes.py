"""Detached local services: started in their own session (pid, port and log on file), stopped by their pid."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def stop_pidfile(pidfile: Path, grace_s: float = 5.0) -> bool:
    """SIGTERM the process group named in ``pidfile``, SIGKILL after ``grace_s``; remove the file. False if none."""
    if not pidfile.exists():
        return False
    try:
        pid = int(pidfile.read_text())
        os.killpg(pid, signal.SIGTERM)
        for _ in range(int(grace_s * 10)):
            os.killpg(pid, 0)
            time.sleep(0.1)
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, ValueError, PermissionError):
        pass
    pidfile.unlink(missing_ok=True)
    return True


def _proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line), from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        table[int(entry)] = (ppid, cmdline)
    return table


def pids_naming(marker: str) -> set[int]:
    """Processes whose command line names ``marker`` (a private directory, such as a Ray head's temp dir), and all
    their descendants; never this process."""
    table = _proc_table()
    ours = _with_descendants(table, {pid for pid, (_, cmd) in table.items() if marker in cmd})
    ours.discard(os.getpid())
    return ours


def _with_descendants(table: dict[int, tuple[int, str]], roots: set[int]) -> set[int]:
    ours, grew = set(roots), True
    while grew:
        children = {pid for pid, (ppid, _) in table.items() if ppid in ours} - ours
        ours |= children
        grew = bool(children)
    return ours


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stop_pids(pids: set[int], grace_s: float = 3.0) -> None:
    """SIGTERM, up to ``grace_s`` seconds for them to go, then SIGKILL: exactly these processes, none other."""
    for sig, grace in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + grace
        while pids and time.time() < deadline:
            pids = {pid for pid in pids if _alive(pid)}
            time.sleep(0.1)
        if not pids:
            return


def stop_processes_naming(marker: str, grace_s: float = 3.0) -> int:
    """``stop_pids`` of the processes of ``marker`` (see ``pids_naming``); how many there were."""
    pids = pids_naming(marker)
    stop_pids(set(pids), grace_s)
    return len(pids)


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def _hex_address(field: str) -> tuple[str, int]:
    """/proc/net/tcp's ``0100007F:1F90`` -> ("127.0.0.1", 8080); tcp6's 32-hex-digit form -> its IPv6 text."""
    import ipaddress

    addr, port = field.split(":")
    raw = bytes.fromhex(addr)
    # each 32-bit word is in host (little-endian) order
    raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(raw)), int(port, 16)


def listening_sockets(pids: set[int]) -> list[dict]:
    """Every TCP socket in LISTEN state that one of ``pids`` holds: pid, command, address, port (from /proc)."""
    owner = {inode: pid for pid in pids for inode in _socket_inodes(pid)}
    table = _proc_table()
    found = []
    for name in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[3] != "0A" or cols[9] not in owner:  # 0A: TCP_LISTEN
                continue
            addr, port = _hex_address(cols[1])
            pid = owner[cols[9]]
            cmd = table.get(pid, (0, "?"))[1]
            found.append({"pid": pid, "command": cmd[:160], "address": addr, "port": port})
    return found


def descendants(root: int) -> set[int]:
    """``root`` and every process below it (a daemon that left its parent is not one: name it another way)."""
    return _with_descendants(_proc_table(), {root})


def is_loopback(address: str) -> bool:
    import ipaddress

    ip = ipaddress.ip_address(address)
    return ip.is_loopback or (ip.version == 6 and ip.ipv4_mapped is not None and ip.ipv4_mapped.is_loopback)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DetachedServer:
    """A local HTTP service of a home, detached from the CLI that starts it: ``<name>.pid``, ``<name>.port`` and
    ``<name>.log`` live in ``workdir``, so another command (``agentic down``, ``agentic ask``) finds it."""

    name = "server"
    health_path = "/"

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)

    @property
    def _pidfile(self) -> Path:
        return self.workdir / f"{self.name}.pid"

    @property
    def _portfile(self) -> Path:
        return self.workdir / f"{self.name}.port"

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._portfile.read_text().strip()}" if self._portfile.exists() else ""

    def alive(self) -> bool:
        import httpx

        if not self.url:
            return False
        try:
            return httpx.get(f"{self.url}{self.health_path}", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def _launch(self, cmd: list[str], env: dict[str, str], port: int, timeout_s: float) -> dict:
        """Start ``cmd`` in its own session, listening on ``port``; wait until healthy. Returns url, pid, seconds."""
        import subprocess

        self.workdir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with open(self.log, "ab") as out:
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self._pidfile.write_text(str(proc.pid))
        self._portfile.write_text(str(port))
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if proc.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{self.name} exited with {proc.returncode}:\n{tail}")
            if self.alive():
                return {"url": self.url, "pid": proc.pid, "startup_seconds": round(time.perf_counter() - t0, 1)}
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"{self.name} not healthy after {timeout_s:.0f} s (log: {self.log})")

    def stop(self) -> bool:
        stopped = stop_pidfile(self._pidfile)
        self._portfile.unlink(missing_ok=True)
        return stopped
