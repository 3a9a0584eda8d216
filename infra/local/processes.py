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
