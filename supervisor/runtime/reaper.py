"""Nothing a worker started outlives it; the supervisor behaves as PID 1 would.

On Linux the supervisor makes itself a child subreaper: a process whose parent
dies (a tool started by a worker that crashed, a worker whose forkserver died)
is re-parented to the supervisor rather than to init. The reaper kills and
reaps those orphans, so no zombie piles up in a container and no tool keeps
running after its agent is gone. This is only for a process the supervisor
owns (the CLI): a program embedding it may have children of its own.

Finding a live orphan means listing the supervisor's own children. The
kernel keeps that list per thread (`/proc/self/task/TID/children`), so a scan
reads one small file per thread of ours; where a kernel is built without it,
the scan reads every process's parent instead (the whole of /proc, as `psutil`
does: ~2 ms with 70 processes, ~20 ms with a thousand). Either way, so that a
stop of N workers does not cost N scans, a scan is asked for with `sweep_soon`
and done at most every MIN_SWEEP_INTERVAL (and once more before the run ends,
with `sweep_if_due`). A dead orphan needs no scan: the kernel names it on
SIGCHLD (`reap_dead`, one `waitid` per exit).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Callable, Optional

import psutil

from protocol.lineage import PR_SET_CHILD_SUBREAPER, prctl

MIN_SWEEP_INTERVAL = 0.05  # seconds between two scans of /proc; orphans of a dead worker live at most this long
SWEEP_SHARE = 10  # and a scan costs at most ~1/SWEEP_SHARE of the loop on a very busy machine


def become_subreaper() -> bool:
    """Adopt orphaned descendants (Linux); False where the kernel cannot."""
    return prctl(PR_SET_CHILD_SUBREAPER, 1)


def parents() -> dict[int, int]:
    """pid -> parent pid of every process on the machine: one scan of /proc."""
    ppid_map: Optional[Callable[[], dict[int, int]]] = getattr(psutil, "_ppid_map", None)
    if ppid_map is not None:
        try:
            return dict(ppid_map())
        except Exception:  # a private helper of psutil: never let its change break a stop
            pass
    found: dict[int, int] = {}
    for proc in psutil.process_iter(["ppid"]):
        ppid = proc.info.get("ppid")
        if ppid is not None:
            found[proc.pid] = ppid
    return found


def children_of(pid: int, ppids: dict[int, int]) -> list[int]:
    return [child for child, parent in ppids.items() if parent == pid]


def own_children() -> list[int]:
    """This process's children: the kernel's list for each of its threads, or one scan of /proc without them.

    A child started by a thread is on that thread's list, an adopted orphan on
    one of them; a thread that ended meanwhile took its file along (its
    children went to another thread's list).
    """
    me = os.getpid()
    if not os.path.exists(f"/proc/{me}/task/{me}/children"):  # a kernel without CONFIG_PROC_CHILDREN
        return children_of(me, parents())
    found: list[int] = []
    for tid in os.listdir(f"/proc/{me}/task"):
        try:
            with open(f"/proc/{me}/task/{tid}/children", "rb") as listing:
                found.extend(int(pid) for pid in listing.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def descendants_of(roots: list[int], ppids: dict[int, int]) -> list[int]:
    """Every descendant of `roots` (not the roots), from one scan's parent map."""
    below: dict[int, list[int]] = {}
    for child, parent in ppids.items():
        below.setdefault(parent, []).append(child)
    found: list[int] = []
    todo = list(roots)
    seen = set(roots)
    while todo:
        for child in below.get(todo.pop(), ()):
            if child not in seen:
                seen.add(child)
                found.append(child)
                todo.append(child)
    return found


class Reaper:
    """Kills and reaps the supervisor's children that it did not start itself."""

    def __init__(self, helpers: Callable[[], set[int]] = set, clock: Callable[[], float] = time.monotonic) -> None:
        # Children present now are ours to keep, and so are the helpers of the moment (a forkserver
        # restarted after this was made is a helper, not an orphan).
        self.keep = set(own_children())
        self.helpers = helpers
        self.clock = clock
        self.scans = 0
        self.due = False  # a worker exited since the last scan: it may have left live orphans
        self.last_scan = float("-inf")
        self.scan_cost = 0.0

    # ---- when to scan --------------------------------------------------------------

    def sweep_soon(self) -> None:
        """A worker has exited: its orphans are killed by the next scan."""
        self.due = True

    def next_scan_at(self) -> Optional[float]:
        """When the pending scan may run (None: none pending); scans are spaced by their cost."""
        if not self.due:
            return None
        return self.last_scan + max(MIN_SWEEP_INTERVAL, SWEEP_SHARE * self.scan_cost)

    def sweep_if_due(self) -> list[int]:
        """The pending scan, now (the run is ending: nothing may be left for later)."""
        return self.sweep() if self.due else []

    # ---- acting ----------------------------------------------------------------------

    def sweep(self) -> list[int]:
        """SIGKILL every adopted orphan, reap the dead ones; returns the pids acted on."""
        began = self.clock()
        self.due = False
        self.scans += 1
        acted: list[int] = []
        keep = self.keep | self.helpers()
        for pid in own_children():
            if pid in keep:
                continue
            try:
                os.kill(pid, signal.SIGKILL)  # a zombie takes it harmlessly
            except ProcessLookupError:
                pass
            acted.append(pid)
        for pid in acted:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        self.last_scan = self.clock()
        self.scan_cost = self.last_scan - began
        return acted

    def reap_dead(self) -> list[int]:
        """On SIGCHLD: reap every exited child we did not start, without a scan; returns their pids.

        `waitid` with WNOWAIT names a dead child without reaping it, so a helper's
        exit (the forkserver's) stays for its owner to collect. A helper first in
        the kernel's list would hide the orphans behind it: then the old scan does it.
        """
        reaped: list[int] = []
        keep = self.keep | self.helpers()
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return reaped
            if info is None or info.si_pid == 0:
                return reaped
            if info.si_pid in keep:
                return reaped + self.sweep()
            try:
                os.waitpid(info.si_pid, 0)  # it is dead: this does not block
            except ChildProcessError:
                pass
            reaped.append(info.si_pid)


def kill_descendants(pid: int, ppids: Optional[dict[int, int]] = None) -> None:
    """SIGKILL every descendant of `pid`, including those that left its process group."""
    for child in descendants_of([pid], parents() if ppids is None else ppids):
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass
