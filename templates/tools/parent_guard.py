"""Makes a tool die with the mlflowctl command that started it. A restore killed with -9 must not leave its
loader running (it once finished a PostgreSQL restore after the CLI was gone). On Linux the kernel delivers
SIGKILL when the parent exits (PR_SET_PDEATHSIG); elsewhere, and as a backstop for a parent that died before
the request took effect, a daemon thread exits as soon as this process is re-parented."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import threading
import time

PR_SET_PDEATHSIG = 1


PARENT_ENV = "MLFLOWCTL_PARENT_PID"


def die_with_parent(poll_seconds: float = 0.5) -> None:
    """The parent is the PID the caller wrote into MLFLOWCTL_PARENT_PID before it started this process, not
    getppid() now: a caller killed while this process was still importing would leave it guarding init (PID 1)."""
    parent = int(os.environ.get(PARENT_ENV) or os.getppid())
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the watchdog below does the job

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(137)
            time.sleep(poll_seconds)

    if os.getppid() != parent:
        os._exit(137)
    threading.Thread(target=watch, name="parent-guard", daemon=True).start()
