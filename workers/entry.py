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

from protocol.lineage import detach
from protocol.specs import warm


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
    from protocol import Error, encode
    from workers.agent_loop import describe_exception

    if sock.fileno() == -1:
        return
    try:
        sock.setblocking(True)
        sock.settimeout(1.0)
        sock.sendall(encode(Error(kind="crash", message=describe_exception(exc), fatal=True)))
    except Exception:
        pass


# The forkserver imports this module before it forks any worker: what every worker would work out for
# itself on its way to ready is worked out once, here, and shared.
warm()
