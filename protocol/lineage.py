"""The other half of the parent-child contract: who gets the signals, and dying together.

Every process the supervisor tree starts (a worker, a group's sub-supervisor)
makes the same promises to its parent, besides speaking the wire: it leaves
the terminal's signals to the parent (its own session, SIGINT ignored, so a
Ctrl+C never reaches it and its own children can be killed as one group), and
it dies with its parent, even when the parent is killed by SIGKILL (Linux's
parent-death signal, then a re-check of the parent to close the race).

The child's immediate parent is the forkserver it was forked from, which
exits the moment its connection to the supervisor closes; so a supervisor
killed by SIGKILL takes its forkserver with it, and the forkserver its children.
"""

from __future__ import annotations

import ctypes
import os
import signal
import struct
import sys
from typing import Callable, Optional, cast

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
# An exit code on a child's status pipe: the forkserver writes it when it reaps the child, and an agent
# that leaves a shared process before the others (`agents_per_process`) writes its own.
EXIT_STATUS = struct.Struct("=i")


def _load_prctl() -> Optional[Callable[..., int]]:
    """libc's prctl, looked up once: None where it is missing.

    Looked up at import, so in the forkserver, before any worker is forked. Each
    `ctypes.CDLL` builds a new function-pointer class; done in every worker's
    `detach`, that was most of its 0.8 ms and 116 page faults (16 workers, probed).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        return cast(Callable[..., int], ctypes.CDLL(None, use_errno=True).prctl)
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()


def prctl(option: int, value: int) -> bool:
    """Linux's prctl(2) with one argument; False where it is missing or refused."""
    if _PRCTL is None:
        return False
    return bool(_PRCTL(option, value, 0, 0, 0) == 0)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def detach(supervisor_pid: int) -> None:
    """Leave the terminal's signals to the supervisor and die with it."""
    parent = os.getppid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for signum in (signal.SIGTERM, signal.SIGHUP):  # the forkserver ignored these for us; tools get defaults
        signal.signal(signum, signal.SIG_DFL)
    try:
        os.setsid()
    except OSError:
        pass  # already a session leader
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    # The parent may have died before prctl took effect: check once after it.
    if os.getppid() != parent or not pid_alive(supervisor_pid):
        os._exit(0)
