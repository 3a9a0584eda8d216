"""Stopping a detached local service (its own process group, pid in a file)."""

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
    ours = {pid for pid, (_, cmd) in table.items() if marker in cmd}
    grew = True
    while grew:
        children = {pid for pid, (ppid, _) in table.items() if ppid in ours} - ours
        ours |= children
        grew = bool(children)
    ours.discard(os.getpid())
    return ours


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stop_processes_naming(marker: str, grace_s: float = 3.0) -> int:
    """SIGTERM, ``grace_s`` seconds, then SIGKILL: only the processes of ``marker`` (see ``pids_naming``)."""
    pids = pids_naming(marker)
    count = len(pids)
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
            break
    return count
