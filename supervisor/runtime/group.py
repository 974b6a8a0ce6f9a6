"""A group's sub-supervisor: the team's arbiter, one level down, reporting up a pipe.

The parent starts a group by this entry point, exactly as it starts a worker,
and hands it in the Start message the group's config as plain data (and the
worker entry point to use). The group then runs its agents by the same rules
as the team (restart kinds and intensity, its own strategy, hang detection,
whole-tree kill) from a forkserver of its own, so that its workers die with it.

It owns no terminal and writes no file: interrupts come down its parent's pipe
(and are passed on to its workers), and every event it would log travels up
as an Event message to the one writer at the root. Its last word is a Stopped
message with the group's outcome, which the parent handles as a worker's exit.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any, Optional

from protocol import Error, Event, Message, ProtocolError, Start
from protocol.lineage import detach
from protocol.specs import GroupSpec
from supervisor.runtime.process import FramedPipe

START_TIMEOUT = 10.0  # seconds for the parent's Start; it is sent right after the fork


class RelayLog:
    """The EventLog a group uses: each event becomes a message to the parent."""

    def __init__(self, parent: FramedPipe) -> None:
        self.parent = parent

    @property
    def failure(self) -> Optional[str]:
        return None  # the root's log owns the files and their failures

    def emit(self, event: str, *, level: str = "info", **fields: Any) -> None:
        self.parent.send(Event(event=event, level=level, fields=fields))

    def close(self) -> None:
        return None


def run_group(sock: socket.socket, parent_pid: int) -> None:
    """Target of a group's process: one sub-team, one pipe to the parent, then exit."""
    detach(parent_pid)
    pipe = FramedPipe(sock)
    code = 70
    try:
        code = _serve(pipe)
    except BaseException as exc:  # a group never dies with a traceback on a terminal
        _report_crash(pipe, exc)
    os._exit(code)


def _serve(pipe: FramedPipe) -> int:
    first = _read_start(pipe)
    if first is None:
        return 0  # the parent went away before telling us what to run
    start, backlog = first
    from supervisor.runtime.arbiter import Arbiter
    from supervisor.config import TeamConfig
    from supervisor.runtime.process import preload_for, worker_context

    spec = GroupSpec.from_wire(start.spec)
    config = TeamConfig.from_spec(spec.config)
    worker_context()  # our own forkserver: our workers are our descendants and die with us
    preload_for(config)
    pipe.sock.setblocking(False)
    traceparent = spec.traceparent
    arbiter = Arbiter(config, RelayLog(pipe), {}, entry=spec.worker_entry, own_process=True, parent=pipe,
                      model_host=spec.model_host, parent_backlog=backlog, trace_parent=lambda: traceparent)
    arbiter.announce()
    return arbiter.run().exit_code


def _read_start(pipe: FramedPipe) -> Optional[tuple[Start, list[Message]]]:
    """Block for the first message, which must be the parent's Start.

    What came with it (an interrupt sent while we booted) is returned too: the
    arbiter acts on it before it starts a single worker.
    """
    pipe.sock.settimeout(START_TIMEOUT)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            data = pipe.sock.recv(65536)
        except socket.timeout:
            break
        if not data:
            return None
        messages = pipe.decoder.feed(data)
        if messages:
            first = messages[0]
            if not isinstance(first, Start):
                raise ProtocolError(f"a group expects start first, got {first.type}")
            return first, messages[1:]
    raise ProtocolError(f"no start message within {START_TIMEOUT:g}s")


def _report_crash(pipe: FramedPipe, exc: BaseException) -> None:
    """Best effort: one frame saying what went wrong, no traceback."""
    if pipe.sock.fileno() == -1:
        return
    message = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
    try:
        pipe.sock.setblocking(False)
        pipe.outbox.clear()
        pipe.pipe_open = pipe.writable = True
        pipe.send(Error(kind="crash", message=message, fatal=True))
        pipe.drain(timeout=1.0)
    except Exception:
        pass
