"""Keeps the local Ray of one run: out of the terminal's reach, and gone with the supervisor.

`ray.init()` without an address starts Ray's processes as children of the
program, in its process group: a Ctrl+C at the terminal reaches all of them,
and after a SIGKILL of the program two of them (the dashboard and runtime-env
agents) lived on for good (measured: still there 60 s later). So the
supervisor starts this keeper instead, in a session of its own, and joins the
Ray it starts (`ray start --head --block`) by its address.

The keeper is a child subreaper, so every process Ray starts stays its
descendant whoever its parent was. It reads its standard input, a pipe whose
other end only the supervisor holds: end-of-file means the supervisor is done
or dead (the kernel closes the pipe even after a SIGKILL). Then it stops every
descendant: SIGTERM, a moment, SIGKILL, until none is left, and exits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

from protocol.lineage import PR_SET_CHILD_SUBREAPER, prctl

TERM_GRACE = 1.0  # seconds Ray's processes get to stop on SIGTERM before SIGKILL


def main(argv: list[str]) -> int:
    """argv: the `ray start` options (after --head --block). Runs until its standard input closes."""
    for signum in (signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    with open(os.devnull, "wb") as quiet:
        subprocess.Popen([sys.executable, "-P", "-m", "ray.scripts.scripts", "start", "--head", "--block", *argv],
                         stdin=subprocess.DEVNULL, stdout=quiet, stderr=quiet)
    try:
        while os.read(0, 65536):
            pass
    except OSError:
        pass
    stop_descendants()
    return 0


def stop_descendants() -> None:
    """SIGTERM every descendant, then SIGKILL whatever is left, until nothing is left."""
    me = psutil.Process()
    deadline = time.monotonic() + TERM_GRACE
    _signal_all(me, signal.SIGTERM)
    while time.monotonic() < deadline and _reap(me):
        time.sleep(0.05)
    for _ in range(50):
        if not _reap(me):
            return
        _signal_all(me, signal.SIGKILL)
        time.sleep(0.02)


def _signal_all(me: psutil.Process, signum: int) -> None:
    for process in me.children(recursive=True):
        try:
            process.send_signal(signum)
        except psutil.Error:
            pass


def _reap(me: psutil.Process) -> bool:
    """Reap exited children; True while any descendant is still running."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            break
    try:
        return any(p.status() != psutil.STATUS_ZOMBIE for p in me.children(recursive=True))
    except psutil.Error:
        return True


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
