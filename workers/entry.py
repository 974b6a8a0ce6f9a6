"""The worker process's entry point: detach from the terminal, watch the parent, run.

A worker acts only on messages from its pipe. The terminal's signals belong to
the supervisor: the worker leaves the terminal's process group (its own session,
so a Ctrl+C never reaches it and its own children can be killed as one group)
and ignores SIGINT in any case. If the supervisor dies, even by SIGKILL, the
worker goes too: pipe EOF wakes the agent loop, and on Linux the kernel's
parent-death signal covers a worker too busy to read its pipe. (The worker's
parent is the forkserver, which exits when the supervisor does, once no worker
holds the forkserver's 'alive' pipe open.)
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import socket
import sys

PR_SET_PDEATHSIG = 1


def _set_parent_death_signal(signum: int) -> bool:
    """Ask Linux to send `signum` when our parent dies; False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _release_forkserver() -> None:
    """Drop our copy of the forkserver's 'alive' pipe.

    multiprocess hands every forkserver child the write end of the pipe whose
    EOF tells the forkserver that its client is gone. While any worker holds
    it, the forkserver outlives a killed supervisor, so the workers' parent
    never dies and the parent-death signal never fires. Workers start no
    processes through the forkserver, so they have no use for it.
    """
    try:
        from multiprocess import forkserver

        fd = forkserver._forkserver._forkserver_alive_fd
        if fd is not None:
            forkserver._forkserver._forkserver_alive_fd = None
            os.close(fd)
    except (ImportError, AttributeError, OSError):
        pass


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
    _set_parent_death_signal(signal.SIGKILL)
    _release_forkserver()
    # The parent may have died before prctl took effect: check once after it.
    if os.getppid() != parent or not _pid_alive(supervisor_pid):
        os._exit(0)


def run_worker(sock: socket.socket, supervisor_pid: int) -> None:
    """Target of the worker process: one agent, one pipe, then exit."""
    detach(supervisor_pid)
    code = 70
    try:
        from workers.agent_loop import AgentWorker

        async def main() -> int:
            return await AgentWorker(sock).run()

        code = asyncio.run(main())
    except BaseException as exc:  # a worker never dies with a traceback on a terminal
        _report_crash(sock, exc)
    finally:
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
