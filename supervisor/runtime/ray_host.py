"""What runs on a Ray node for the team: its children's processes, and their frames to and from the supervisor.

A `ChildHost` is a Ray actor with no Ray dependency of its own (Ray wraps the
class when the backend creates it), so this module imports without Ray. It
plays the forkserver's part on a node: it starts each child by its entry
point's dotted name (a worker, or a group's sub-supervisor with a local
forkserver of its own) as a child process of the actor, on a socket pair, and
relays that socket's bytes.

One host serves many children (every agent on its node that reserves nothing
of the node for itself), so a stop of N agents wakes one actor, not N, and its
frames travel in batches: up, one streaming call (`frames`) yields lists of
`(child, bytes)` and, last for each child, `(child, exit code)`; down, each
`push` call carries every frame the supervisor wrote since the last one. The
child itself runs exactly as it does on one machine: its own session, SIGINT
ignored, and dead with its parent, so killing this actor (or losing its node)
takes every child it hosts with it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Optional

# The child's interpreter: the supervisor's import path, every descriptor but the pipe closed, the entry run.
BOOT = (
    "import os, sys, json, importlib, socket; sys.path[:0] = json.loads(sys.argv[1]); fd = int(sys.argv[3]); "
    "os.closerange(3, fd); os.closerange(fd + 1, 1 << 20); "
    "module, _, name = sys.argv[2].partition(':'); "
    "getattr(importlib.import_module(module), name)(socket.socket(fileno=fd), int(sys.argv[4]))"
)
CHUNK = 256 * 1024
MAX_UNREAD = 64 * 1024 * 1024  # bytes pushed to one child and not yet read by it: beyond, it is cut off
Item = tuple[int, "bytes | int"]  # (child, its bytes) or, last, (child, its exit code)


@dataclass
class _Hosted:
    """One child process of this host: its pid, and the host's end of its socket pair."""

    pid: int
    sock: socket.socket
    relay: Optional["asyncio.Task[None]"] = field(default=None, repr=False)
    pending: bytearray = field(default_factory=bytearray, repr=False)  # pushed, not yet all taken by the child
    writer: Optional["asyncio.Task[None]"] = field(default=None, repr=False)
    broken: bool = False  # its socket failed, or it left too much unread: nothing more goes to it


class ChildHost:
    """The team's children on this node, and the relay of their frames."""

    def __init__(self) -> None:
        self.children: dict[int, _Hosted] = {}
        self.killed: set[int] = set()  # asked to be killed before (or while) being started
        self._items: Optional[asyncio.Queue[Item]] = None

    @property
    def items(self) -> "asyncio.Queue[Item]":
        if self._items is None:  # made inside the actor's event loop, on first use
            self._items = asyncio.Queue()
        return self._items

    async def start(self, child: int, entry: str, first: bytes, paths: list[str], env: dict[str, str]
                    ) -> dict[str, Any]:
        """Start `child` with `first` (its Start frame) already waiting in its pipe; its pid and node."""
        if child in self.killed:
            raise RuntimeError(f"child {child} was killed before it started")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            os.set_inheritable(theirs.fileno(), True)
            argv = [sys.executable, "-P", "-c", BOOT, json.dumps(paths), entry, str(theirs.fileno()), str(os.getpid())]
            pid = os.posix_spawn(sys.executable, argv, {**os.environ, **env})
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        hosted = self.children[child] = _Hosted(pid, ours)
        if first:
            await asyncio.get_running_loop().sock_sendall(ours, first)
        hosted.relay = asyncio.create_task(self._relay(child, hosted))
        return {"pid": pid, "node": _node_id()}

    async def frames(self) -> AsyncIterator[list[Item]]:
        """Every child's bytes as they come, in batches; for each child, its exit code after its last bytes.

        Never ends by itself: the supervisor holds it open for as long as this host lives.
        """
        while True:
            batch = [await self.items.get()]
            while not self.items.empty():
                batch.append(self.items.get_nowait())
            yield batch

    async def push(self, batch: list[tuple[int, bytes]]) -> list[int]:
        """The supervisor's frames, in order for each child; the children that no longer take them.

        Each child has a writer of its own, so one that does not read (its loop blocked by its agent's
        code) holds up only its own frames, never an Interrupt to the others on this node.
        """
        gone: list[int] = []
        for child, data in batch:
            hosted = self.children.get(child)
            if hosted is None or hosted.broken:
                if child not in gone:
                    gone.append(child)
                continue
            hosted.pending += data
            if len(hosted.pending) > MAX_UNREAD:
                hosted.broken = True
                hosted.pending.clear()
                gone.append(child)
                continue
            if hosted.writer is None or hosted.writer.done():
                hosted.writer = asyncio.create_task(self._write(hosted))
        return gone

    async def _write(self, hosted: _Hosted) -> None:
        loop = asyncio.get_running_loop()
        while hosted.pending and not hosted.broken:
            data = bytes(hosted.pending)  # what is being written stays counted as unread until it is
            try:
                await loop.sock_sendall(hosted.sock, data)
            except OSError:
                hosted.broken = True
                hosted.pending.clear()
                return
            del hosted.pending[: len(data)]

    async def kill(self, child: int) -> None:
        """SIGKILL the child and its process group, now (its exit code still comes up its stream)."""
        self.killed.add(child)
        hosted = self.children.get(child)
        if hosted is not None:
            _kill_group(hosted.pid)

    async def _relay(self, child: int, hosted: _Hosted) -> None:
        """Its bytes up until it has exited (a tool that inherited its socket cannot hold it open), then its code."""
        loop = asyncio.get_running_loop()
        exited = asyncio.ensure_future(_exit_code(hosted.pid))
        while True:
            reading = asyncio.ensure_future(loop.sock_recv(hosted.sock, CHUNK))
            await asyncio.wait({reading, exited}, return_when=asyncio.FIRST_COMPLETED)
            if not reading.done():
                reading.cancel()
                self._drain(child, hosted.sock)
                break
            try:
                data = reading.result()
            except OSError:
                data = b""
            if not data:
                break
            self.items.put_nowait((child, data))
        code = await exited
        _kill_group(hosted.pid, leader=False)  # what it left behind in its group, as the supervisor buries it locally
        hosted.sock.close()
        self.children.pop(child, None)
        self.killed.discard(child)
        self.items.put_nowait((child, code))

    def _drain(self, child: int, sock: socket.socket) -> None:
        """What an exited child wrote last and is still in its socket."""
        while True:
            try:
                data = sock.recv(CHUNK)
            except OSError:  # nothing more (BlockingIOError), or broken
                return
            if not data:
                return
            self.items.put_nowait((child, data))


async def _exit_code(pid: int) -> int:
    """Reap `pid` once it has exited, without a thread: its pidfd turns readable."""
    loop = asyncio.get_running_loop()
    try:
        fd = os.pidfd_open(pid)
    except OSError:  # a kernel without pidfds: a thread waits instead
        fd = -1
    if fd >= 0:
        exited: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            if not exited.done():
                exited.set_result(None)

        loop.add_reader(fd, readable)
        try:
            await exited
        finally:
            loop.remove_reader(fd)
            os.close(fd)
    try:
        if fd >= 0:
            _, status = os.waitpid(pid, 0)
        else:
            _, status = await loop.run_in_executor(None, os.waitpid, pid, 0)
        return os.waitstatus_to_exitcode(status)
    except ChildProcessError:
        return 255


def _kill_group(pid: int, leader: bool = True) -> None:
    """SIGKILL the process group `pid` leads and, unless it is already reaped (`leader` False), `pid` itself."""
    kills = [os.killpg, os.kill] if leader else [os.killpg]
    for kill in kills:
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _node_id() -> str:
    try:
        import ray

        return str(ray.get_runtime_context().get_node_id())
    except Exception:  # noqa: BLE001 - outside Ray (a test of the host itself): no node to name
        return ""


def probe_storage(folder: str, token: str) -> dict[str, Any]:
    """A task for every node: write a probe file into the team's storage (the supervisor reads it back)."""
    path = os.path.join(folder, f".probe-{token}-{_node_id() or os.getpid()}")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, token.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        return {"node": _node_id(), "path": path, "error": f"{type(exc).__name__}: {exc.strerror or exc}"}
    return {"node": _node_id(), "path": path, "error": None}
