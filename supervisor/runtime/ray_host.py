"""What runs on a Ray node for one child of the team: its process, and its frames to and from the supervisor.

A `ChildHost` is a Ray actor with no Ray dependency of its own (Ray wraps the
class when the backend creates it), so this module imports without Ray. It
plays the forkserver's part on a node: it starts the child by its entry
point's dotted name (a worker, or a group's sub-supervisor with a local
forkserver of its own) as a child process of the actor, on a socket pair, and
relays that socket's bytes: the child's frames go up as the items of one
streaming call (`frames`, the exit code last), the supervisor's come down as
`push` calls. The child itself runs exactly as it does on one machine: its own
session, SIGINT ignored, and dead with its parent, so killing this actor (or
losing its node) takes the child with it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from typing import Any, AsyncIterator, Optional

# The child's interpreter: the supervisor's import path, every descriptor but the pipe closed, the entry run.
BOOT = (
    "import os, sys, json, importlib, socket; sys.path[:0] = json.loads(sys.argv[1]); fd = int(sys.argv[3]); "
    "os.closerange(3, fd); os.closerange(fd + 1, 1 << 20); "
    "module, _, name = sys.argv[2].partition(':'); "
    "getattr(importlib.import_module(module), name)(socket.socket(fileno=fd), int(sys.argv[4]))"
)
CHUNK = 256 * 1024


class ChildHost:
    """One child process of the team on this node, and the relay of its frames."""

    def __init__(self) -> None:
        self.pid = 0
        self.sock: Optional[socket.socket] = None
        self.code: Optional[int] = None

    async def start(self, entry: str, first: bytes, paths: list[str], env: dict[str, str]) -> dict[str, Any]:
        """Start the child with `first` (its Start frame) already waiting in its pipe; its pid and node."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            os.set_inheritable(theirs.fileno(), True)
            argv = [sys.executable, "-P", "-c", BOOT, json.dumps(paths), entry, str(theirs.fileno()), str(os.getpid())]
            self.pid = os.posix_spawn(sys.executable, argv, {**os.environ, **env})
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self.sock = ours
        if first:
            await asyncio.get_running_loop().sock_sendall(ours, first)
        return {"pid": self.pid, "node": _node_id()}

    async def frames(self) -> AsyncIterator[Any]:
        """The child's bytes as they come (bytes items), then its exit code (an int), then the end."""
        sock = self.sock
        loop = asyncio.get_running_loop()
        if sock is not None:
            while True:
                try:
                    data = await loop.sock_recv(sock, CHUNK)
                except OSError:
                    data = b""
                if not data:
                    break
                yield data
        yield await loop.run_in_executor(None, self._wait)

    async def push(self, data: bytes) -> bool:
        """The supervisor's frames, in order; False once the child no longer reads."""
        if self.sock is None:
            return False
        try:
            await asyncio.get_running_loop().sock_sendall(self.sock, data)
        except OSError:
            return False
        return True

    async def kill(self) -> None:
        """SIGKILL the child, its process group, now (the actor stays to report the exit)."""
        if self.pid:
            for kill, target in ((os.killpg, self.pid), (os.kill, self.pid)):
                try:
                    kill(target, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass

    def _wait(self) -> int:
        if self.code is None:
            if not self.pid:
                self.code = 70
            else:
                try:
                    _, status = os.waitpid(self.pid, 0)
                    self.code = os.waitstatus_to_exitcode(status)
                except ChildProcessError:
                    self.code = 255
        return self.code


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
