"""The seam between the loop and where its children run: start one, carry its frames, watch it, kill it.

The arbiter sees every child as a `ChildProcess`: frames both ways over a
socket it selects on, a sentinel that turns readable once the child has exited,
its exit code, and a kill. Everything above this seam (signals, the two-stage
stop, restarts, hang detection, limits, the event log, the control endpoint,
messages between agents) is the same code whatever carries the frames.

Two backends: `LocalBackend`, the process tree on this machine (our forkserver
forks each child), and `supervisor.runtime.ray_backend.RayBackend`, whose
children run on a Ray cluster and whose frames travel as Ray calls, bridged to
a local socket so the loop cannot tell the difference.
"""

from __future__ import annotations

import os
import signal
import socket
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Protocol

from protocol import Message

if TYPE_CHECKING:
    from supervisor.runtime.events import EventLog

Job = tuple[str, str]  # (child name, entry point "module:function")


class ChildProcess(Protocol):
    """What the loop holds of one running child, whichever backend started it."""

    sock: socket.socket  # the loop's end of the child's frames: selected on, never blocking
    pid: int  # the child's process id (on its own node, for a remote child)
    started_at: float  # monotonic, when its start was asked for
    outbox: bytearray
    pipe_open: bool
    writable: bool

    @property
    def sentinel(self) -> int: ...

    def send(self, message: Message) -> None: ...

    def send_frame(self, frame: bytes) -> None: ...

    def flush(self) -> None: ...

    def drain(self, timeout: float) -> None: ...

    def receive(self, max_bytes: Optional[int] = None) -> list[Message]: ...

    def exitcode(self) -> Optional[int]: ...

    def wait(self, timeout: float) -> Optional[int]: ...

    def kill_tree(self, ppids: Optional[dict[int, int]] = None) -> None: ...

    def close(self) -> None: ...


class Backend(Protocol):
    """Where children run. One per arbiter; the arbiter calls it from its loop's thread only."""

    name: str  # "local" or "ray": said in supervisor_started

    def open(self, log: "EventLog") -> dict[str, Any]:
        """Be ready to start children (a cluster joined, its pre-flight passed); more for supervisor_started."""
        ...

    def close(self, leaving: bool = False) -> None:
        """Let go of what `open` took; `leaving`: this process exits next, so what its exit does need not be waited for."""
        ...

    def start_many(self, jobs: list[Job], first: Optional[Callable[[int], bytes]] = None, pack: int = 1
                   ) -> Iterator["ChildProcess | OSError"]:
        """Start each job, in order: its child, or the OSError that stopped it.

        `first(i)`: job i's first frame (its Start), handed over with the start so the child finds it waiting.
        `pack`: the config's `agents_per_process`, for a backend that can run several agents in one process.
        A `ConnectionRefusedError` means the starter itself died under this start: the caller retries the
        job alone, through `start`, after `starter_died`.
        """
        ...

    def start(self, name: str, entry: str) -> ChildProcess: ...

    def starter_died(self) -> tuple[Optional[int], Optional[str]]:
        """(its pid, how it ended) if what starts children has died since last asked, else (None, None)."""
        ...

    def start_again(self) -> None:
        """Replace a starter that died."""
        ...

    def lost(self, child: ChildProcess, said_last_word: bool) -> bool:
        """Whether `child` (exited) ended because its starter or its node went, not by anything it did."""
        ...

    def lost_reason(self, child: ChildProcess) -> str:
        """How a lost child is described in its exit event."""
        ...

    def helper_pids(self) -> set[int]:
        """Our own processes that are not children and must outlive every sweep for orphans."""
        ...

    def bury(self, child: ChildProcess) -> None:
        """What a child left behind once it has exited and been closed (its process group's tools)."""
        ...


class LocalBackend:
    """The process tree on this machine: our forkserver forks every child (`process`, `forkserver`)."""

    name = "local"

    def open(self, log: "EventLog") -> dict[str, Any]:
        return {}  # the forkserver is started by `process.worker_context`, for the CLI before anything else

    def close(self, leaving: bool = False) -> None:
        pass

    def start_many(self, jobs: list[Job], first: Optional[Callable[[int], bytes]] = None, pack: int = 1
                   ) -> Iterator["ChildProcess | OSError"]:
        from supervisor.runtime.process import WorkerProcess

        return WorkerProcess.start_many(jobs, first, pack)

    def start(self, name: str, entry: str) -> ChildProcess:
        from supervisor.runtime.process import WorkerProcess

        return WorkerProcess.start(name, entry)

    def starter_died(self) -> tuple[Optional[int], Optional[str]]:
        from supervisor.runtime.process import forkserver_death, forkserver_pid

        pid = forkserver_pid()
        cause = forkserver_death()
        return (pid, cause) if cause is not None else (None, None)

    def start_again(self) -> None:
        from supervisor.runtime.process import start_forkserver_again

        start_forkserver_again()

    def lost(self, child: ChildProcess, said_last_word: bool) -> bool:
        """Forked by a forkserver that has died since: its status went with it."""
        from supervisor.runtime.process import LOST_STATUS, ended_within, forkserver_pid

        if _sibling_killed(child, said_last_word):
            return True
        forkserver = getattr(child, "forkserver", None)
        if forkserver is None:
            return False
        if forkserver != forkserver_pid():
            return True
        # A dying forkserver closes its workers' status pipes before it can be reaped: wait for it a moment.
        return not said_last_word and child.exitcode() == LOST_STATUS and ended_within(forkserver, 0.5)

    def lost_reason(self, child: ChildProcess) -> str:
        sibling = _killed_for_a_sibling(child)
        if sibling is not None:
            return f"lost with its process, killed for {sibling} (agents_per_process)"
        return "lost with its forkserver"

    def helper_pids(self) -> set[int]:
        from supervisor.runtime.process import helper_pids

        return helper_pids()

    def bury(self, child: ChildProcess) -> None:
        pack = getattr(child, "pack", None)
        if pack is not None and pack.open > 0:
            return  # its process still runs the other agents of its pack: the last one out buries it
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _killed_for_a_sibling(child: ChildProcess) -> Optional[str]:
    """The agent whose kill took `child`'s process, if `child` shares it (a pack) and is not that agent."""
    pack = getattr(child, "pack", None)
    if pack is None or pack.killed_for in (None, getattr(child, "name", None)):
        return None
    return str(pack.killed_for)


def _sibling_killed(child: ChildProcess, said_last_word: bool) -> bool:
    """A pack's agent that went only because its process was killed for another of its agents."""
    return _killed_for_a_sibling(child) is not None and not getattr(child, "killed", False) and not said_last_word
