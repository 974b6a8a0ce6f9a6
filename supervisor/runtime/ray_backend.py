"""Children on a Ray cluster: each one a `ChildHost` actor, its frames bridged to a local socket.

The loop must not tell a Ray child from a local one, so each gets what a
forked child has: a socket pair whose far end a carrier thread serves, and a
status pipe on which the carrier writes the exit code once the child is gone.
The carrier runs one asyncio loop for every child: it forwards what the loop
writes into the socket as `push` calls, in order, and writes what the child's
`frames` stream yields back into the socket. Frames are the protocol's, byte for
byte; only the carrier differs.

Ray's own restarts are off (`max_restarts=0`): the supervisor's rules decide,
as on one machine. An actor that dies without the child's exit code (its node
was lost, Ray killed it) is reported lost, and a lost child's restart is not
charged to it.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

from supervisor.runtime.backend import ChildProcess, Job
from supervisor.runtime.forkserver import LOST_STATUS, STATUS
from supervisor.runtime.process import StatusPipeChild

if TYPE_CHECKING:
    from supervisor.config import TeamConfig

INSTALL = "pip install 'agent-supervisor[ray]'"
CHUNK = 256 * 1024
KILLED = -9  # the exit code of a child whose actor we killed: SIGKILL, as on one machine
START_TIMEOUT = 300.0  # seconds an actor may take to be placed and to start its child


def require_ray() -> None:
    """Nothing, or the one line that says how to install Ray (found without importing it: its set-up comes first)."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        from supervisor.errors import SupervisorError

        raise SupervisorError(f"backend: ray needs Ray, which is not installed: {INSTALL}", 2)


@dataclass(kw_only=True)
class RayChild(StatusPipeChild):
    """One child of the team on Ray, as the loop sees it: a socket, a sentinel, an exit code, a kill.

    Its status pipe is written by the carrier, once the child's actor has said its exit code (or died).
    """

    pid: int = 0  # the child's process on its node, once its actor has started it
    node: str = ""
    actor: Any = None
    killed: bool = False  # we killed its actor
    lost_node: bool = False  # its actor died without its child's exit code: its node (or Ray) lost it
    lost_why: str = ""
    _kill: Callable[["RayChild"], None] = field(default=lambda child: None, repr=False)

    def kill_tree(self, ppids: Optional[dict[int, int]] = None) -> None:
        """Kill its actor: the child dies with its parent, its own children with their group."""
        self._kill(self)


class Carrier:
    """One thread, one asyncio loop: every Ray child's frames between its local socket and its actor."""

    def __init__(self, ray: Any) -> None:
        self.ray = ray
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="ray-carrier", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def carry(self, child: RayChild, bridge: socket.socket, status_w: int, entry: str, first: bytes,
              paths: list[str]) -> None:
        asyncio.run_coroutine_threadsafe(self._carry(child, bridge, status_w, entry, first, paths), self.loop)

    async def _carry(self, child: RayChild, bridge: socket.socket, status_w: int, entry: str, first: bytes,
                     paths: list[str]) -> None:
        loop = asyncio.get_running_loop()
        code = LOST_STATUS
        down: Optional[asyncio.Task[None]] = None
        try:
            info = await asyncio.wait_for(child.actor.start.remote(entry, first, paths, {}), START_TIMEOUT)
            child.pid, child.node = int(info["pid"]), str(info["node"])
            down = asyncio.create_task(self._down(child, bridge))
            async for ref in child.actor.frames.remote():
                item = await ref
                if isinstance(item, (bytes, bytearray)):
                    await loop.sock_sendall(bridge, item)
                else:
                    code = int(item)
        except Exception as exc:  # noqa: BLE001 - the actor died (killed, its node lost) or could not start
            if child.killed:
                code = KILLED
            else:
                child.lost_node = True
                child.lost_why = _one_line(exc)
                try:  # an actor still waiting to be placed, or that failed its start, must not linger
                    self.ray.kill(child.actor, no_restart=True)
                except Exception:  # noqa: BLE001 - gone already
                    pass
        finally:
            if down is not None:
                down.cancel()
            bridge.close()  # the loop reads the child's last words, then end-of-file
            try:
                os.write(status_w, STATUS.pack(code))
            except OSError:
                pass
            os.close(status_w)

    async def _down(self, child: RayChild, bridge: socket.socket) -> None:
        """What the loop writes for the child, to its actor in order, one call at a time."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await loop.sock_recv(bridge, CHUNK)
            except OSError:
                return
            if not data:
                return
            try:
                if not await child.actor.push.remote(data):
                    return
            except Exception:  # noqa: BLE001 - its actor is gone: the frames stream says how
                return

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5.0)


class RayBackend:
    """The team's children as Ray actors: started, carried, watched and killed through Ray."""

    name = "ray"

    def __init__(self, config: "TeamConfig") -> None:
        self.config = config
        require_ray()
        self.ray: Any = None
        self.carrier: Optional[Carrier] = None
        self.host: Any = None
        self.paths = [p for p in sys.path if p]

    def open(self) -> str:
        """Connect (or start a local Ray) and be ready to start children; the address joined."""
        from supervisor.runtime.ray_cluster import connect
        from supervisor.runtime.ray_host import ChildHost

        self.ray, address = connect(self.config)
        self.host = self.ray.remote(ChildHost)
        self.carrier = Carrier(self.ray)
        return address

    def node_count(self) -> int:
        return sum(1 for node in self.ray.nodes() if node.get("Alive"))

    def close(self, leaving: bool = False) -> None:
        """Leave Ray; `leaving`: the process exits next, which does it faster (`ray_cluster.disconnect`)."""
        if self.carrier is not None:
            self.carrier.close()
            self.carrier = None
        from supervisor.runtime.ray_cluster import disconnect

        disconnect(self.ray, leaving)

    # ---- the seam -----------------------------------------------------------------------------

    def start_many(self, jobs: list[Job], first: Optional[Callable[[int], bytes]] = None
                   ) -> Iterator["ChildProcess | OSError"]:
        for index, (name, entry) in enumerate(jobs):
            try:
                yield self._start(name, entry, first(index) if first is not None else b"")
            except OSError as exc:
                yield exc

    def start(self, name: str, entry: str) -> ChildProcess:
        return self._start(name, entry, b"")

    def _start(self, name: str, entry: str, first: bytes) -> RayChild:
        if self.carrier is None or self.host is None:
            raise OSError("the Ray backend is not open")
        ours, bridge = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        status_r, status_w = os.pipe()
        ours.setblocking(False)
        bridge.setblocking(False)
        os.set_blocking(status_r, False)
        from supervisor.runtime.ray_cluster import actor_options

        actor = self.host.options(**actor_options(self.ray, self.config, name)).remote()
        child = RayChild(sock=ours, name=name, status_fd=status_r, started_at=time.monotonic(), actor=actor,
                         _kill=self._kill)
        self.carrier.carry(child, bridge, status_w, entry, first, self.paths)
        return child

    def _kill(self, child: RayChild) -> None:
        if child.actor is None or child.exitcode() is not None:
            return
        child.killed = True
        try:
            self.ray.kill(child.actor, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass

    def starter_died(self) -> tuple[Optional[int], Optional[str]]:
        return None, None  # Ray places each actor itself: there is no single starter to lose

    def start_again(self) -> None:
        pass

    def lost(self, child: ChildProcess, said_last_word: bool) -> bool:
        """Its actor died under a child that was running (its node was lost): not the agent's doing.

        An actor that never started its child is not lost: that start failed, and counts as the agent's
        restart like any other, so a cluster that cannot place it is not retried forever.
        """
        return bool(getattr(child, "lost_node", False)) and child.pid != 0 and not said_last_word

    def lost_reason(self, child: ChildProcess) -> str:
        why = getattr(child, "lost_why", "")
        return f"lost with its Ray node or actor ({why})" if why else "lost with its Ray node or actor"

    def helper_pids(self) -> set[int]:
        from supervisor.runtime.ray_cluster import local_ray_pids

        return local_ray_pids()

    def bury(self, pid: int) -> None:
        pass  # the child's group died with its actor, on its node


def _one_line(exc: BaseException) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= 300 else text[:300] + "..."
