"""The worker process's entry point: detach from the terminal, watch the parent, run.

A worker acts only on messages from its pipe. The terminal's signals belong to
the supervisor: the worker leaves the terminal's process group (its own session,
so a Ctrl+C never reaches it and its own children can be killed as one group)
and ignores SIGINT in any case. If the supervisor dies, even by SIGKILL, the
worker goes too: pipe EOF wakes the agent loop, and on Linux the kernel's
parent-death signal covers a worker too busy to read its pipe. (The worker's
parent is the forkserver, which exits when the supervisor does; see
`protocol.lineage`.)
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys

from typing import TYPE_CHECKING

from protocol.lineage import EXIT_STATUS, detach
from protocol.specs import warm

if TYPE_CHECKING:
    from protocol import Error


def run_worker(sock: socket.socket, supervisor_pid: int) -> None:
    """Target of the worker process: one agent, one pipe, then exit."""
    detach(supervisor_pid)
    yield_to_the_supervisor()
    code = 70
    try:
        from workers.agent_loop import AgentWorker

        async def main() -> int:
            worker = AgentWorker(sock)
            code = await worker.run()
            if worker.leave_at_once:  # not asyncio.run's tidy-up of the loop, its tasks and clients: gone at once
                _leave(code)
            return code

        code = asyncio.run(main())
    except BaseException as exc:  # a worker never dies with a traceback on a terminal
        _report_crash(sock, exc)
    _leave(code)


def run_pack(socks: list[socket.socket], status_fds: list[int], supervisor_pid: int) -> None:
    """Target of a pack's process: several agents, each on its own pipe, in one loop (`agents_per_process`).

    An agent that ends while others still run closes its pipe and writes its own
    exit code on its status pipe, as the forkserver would for a process; the
    last one ends the process, whose exit code the forkserver writes to it.
    """
    detach(supervisor_pid)
    yield_to_the_supervisor()
    running = set(range(len(socks)))  # the agents that have not said their exit code yet
    try:
        from workers.agent_loop import AgentWorker

        async def one(index: int) -> int:
            worker = AgentWorker(socks[index], shares_process=True)
            try:
                code = await worker.run()
            except Exception as exc:  # outside the agent loop's own care: one frame, no traceback
                if worker.link is not None:  # the link owns the socket now: the frame goes after what it holds
                    worker.link.send(_crash(exc))
                else:
                    _report_crash(socks[index], exc)
                code = 70
            if running == {index} and worker.leave_at_once:
                _leave(code)  # the last one, nothing to tidy: the process goes, the forkserver says its code
            if worker.link is not None:
                await worker.link.close()  # its last words out before its exit is seen (a second close is a no-op)
            _say_exit(status_fds[index], code)
            running.discard(index)
            return code

        async def main() -> int:
            codes = await asyncio.gather(*(one(index) for index in range(len(socks))))
            return codes[-1]

        code = asyncio.run(main())
    except BaseException as exc:  # an agent's code ended the interpreter's loop: every agent still here says so
        for index in sorted(running):
            _report_crash(socks[index], exc)
        code = 70
    _leave(code)


def _say_exit(fd: int, code: int) -> None:
    """An agent's exit code on its status pipe, and the pipe let go: its exit as the supervisor sees it."""
    try:
        os.write(fd, EXIT_STATUS.pack(code))
    except OSError:
        pass  # the supervisor is gone, or has stopped waiting: nobody to tell
    os.close(fd)


def yield_to_the_supervisor() -> None:
    """Run as a batch task: a worker woken by its pipe never preempts the supervisor on its core.

    A stop writes an Interrupt to every worker, one after the other. Each write
    woke a worker that took the supervisor's core at once, so the supervisor
    wrote the next one only when the scheduler gave the core back: 2000 such
    writes took 1.0 s at 1000 agents (profiled). A batch task still gets its
    fair share of the CPU; it only waits for the next tick instead of
    preempting whoever runs. An agent waits on its model far longer than a
    tick. The agent's tools inherit the policy. Where the kernel refuses, the
    worker runs as it was.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except (AttributeError, OSError):
        pass


def _leave(code: int) -> None:
    """End the worker process now: its last words are sent, and nothing of Python's exit path is wanted."""
    try:
        sys.stdout.flush()
    except Exception:
        pass
    os._exit(code)


def _report_crash(sock: socket.socket, exc: BaseException) -> None:
    """Best effort, for a failure outside the agent loop: one frame, no traceback."""
    from protocol import encode

    if sock.fileno() == -1:
        return
    try:
        sock.setblocking(True)
        sock.settimeout(1.0)
        sock.sendall(encode(_crash(exc)))
    except Exception:
        pass


def _crash(exc: BaseException) -> "Error":
    """The frame that says a worker failed outside its agent loop: one line, no traceback."""
    from protocol import Error
    from workers.agent_loop import describe_exception

    return Error(kind="crash", message=describe_exception(exc), fatal=True)


# The forkserver imports this module before it forks any worker: what every worker would work out for
# itself on its way to ready is worked out once, here, and shared.
warm()
