"""Nothing a worker started outlives it; the supervisor behaves as PID 1 would.

On Linux the supervisor makes itself a child subreaper: a process whose parent
dies (a tool started by a worker that crashed, a worker whose forkserver died)
is re-parented to the supervisor rather than to init. `sweep` then kills and
reaps those orphans, so no zombie piles up in a container and no tool keeps
running after its agent is gone. This is only for a process the supervisor
owns (the CLI): a program embedding it may have children of its own.
"""

from __future__ import annotations

import os
import signal
from typing import Callable

import psutil

from protocol.lineage import PR_SET_CHILD_SUBREAPER, prctl


def become_subreaper() -> bool:
    """Adopt orphaned descendants (Linux); False where the kernel cannot."""
    return prctl(PR_SET_CHILD_SUBREAPER, 1)


class Reaper:
    """Kills and reaps the supervisor's children that it did not start itself."""

    def __init__(self, helpers: Callable[[], set[int]] = set) -> None:
        # Children present now are ours to keep, and so are the helpers of the moment (a forkserver
        # restarted after this was made is a helper, not an orphan).
        self.keep = {child.pid for child in psutil.Process().children()}
        self.helpers = helpers

    def sweep(self) -> list[int]:
        """SIGKILL every adopted orphan, reap the dead ones; returns the pids acted on."""
        acted: list[int] = []
        keep = self.keep | self.helpers()
        for child in psutil.Process().children():
            if child.pid in keep:
                continue
            try:
                if child.status() != psutil.STATUS_ZOMBIE:
                    os.kill(child.pid, signal.SIGKILL)
            except (psutil.NoSuchProcess, ProcessLookupError):
                pass
            acted.append(child.pid)
        for pid in acted:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        return acted


def kill_descendants(pid: int) -> None:
    """SIGKILL every descendant of `pid`, including those that left its process group."""
    try:
        family = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return
    for proc in family:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
