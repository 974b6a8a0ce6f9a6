"""Ray children's frames between the loop's sockets and their hosts: one thread, one asyncio loop.

The loop must not tell a Ray child from a local one, so each gets what a
forked child has: a socket pair whose far end the carrier serves, and a status
pipe on which the carrier writes the exit code once the child is gone. Frames
are the protocol's, byte for byte; only the carrier differs.

For every `ChildHost` actor the carrier holds one `frames` stream (each batch
dispatched to its children's sockets) and makes one `push` at a time with
every frame written since the last. A host that dies takes its children with
it: each is reported lost, unless the supervisor had killed it.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from protocol.lineage import EXIT_STATUS
from supervisor.runtime.forkserver import LOST_STATUS
from supervisor.runtime.process import StatusPipeChild
from supervisor.runtime.ray_cluster import live_nodes, one_line

CHUNK = 256 * 1024
KILLED = -9  # the exit code of a child killed by the supervisor: SIGKILL, as on one machine
START_TIMEOUT = 300.0  # seconds an actor may take to be placed and to start its child
KILL_GRACE = 3.0  # seconds a shared host has to kill one child before the whole host is killed
NODES_FRESH = 10.0  # seconds the list of live nodes is trusted before it is asked for again


@dataclass(kw_only=True)
class RayChild(StatusPipeChild):
    """One child of the team on Ray, as the loop sees it: a socket, a sentinel, an exit code, a kill.

    Its status pipe is written by the carrier, once the child's host has said its exit code (or died).
    """

    pid: int = 0  # the child's process on its node, once its host has started it
    node: str = ""
    cid: int = 0  # its number on its host
    killed: bool = False  # the supervisor killed it
    lost_node: bool = False  # its host died without its child's exit code: its node (or Ray) lost it
    lost_why: str = ""
    _kill: Callable[["RayChild"], None] = field(default=lambda child: None, repr=False)

    def kill_tree(self, ppids: Optional[dict[int, int]] = None) -> None:
        """Have its host SIGKILL it and its process group."""
        self._kill(self)


@dataclass(eq=False)
class _Carried:
    """A child on the carrier's side: the bridge to the loop's socket, and its status pipe."""

    child: RayChild
    bridge: socket.socket
    status_w: int
    up: "asyncio.Queue[bytes | int]" = field(default_factory=asyncio.Queue)  # its bytes, then its exit code
    down: Optional["asyncio.Task[None]"] = None
    placed: asyncio.Event = field(default_factory=asyncio.Event)  # its pid and node are known (or it failed)
    finished: bool = False


@dataclass(eq=False)
class _Host:
    """One `ChildHost` actor: the children it holds, and what waits to be pushed to them."""

    actor: Any
    node: str  # the node a shared host is pinned to; "" for a child's own host, which Ray places
    children: dict[int, _Carried] = field(default_factory=dict)
    outgoing: list[tuple[int, bytes]] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    killed: bool = False  # the supervisor killed it (its node is not lost)
    dead: bool = False


@dataclass(frozen=True)
class Placement:
    """Which host a child goes to: with Ray's `options`, one of its own; else its `node`'s shared one (None: any)."""

    options: Optional[dict[str, Any]] = None
    node: Optional[str] = None


class Carrier:
    """One thread, one asyncio loop: every Ray child's frames between its local socket and its host."""

    def __init__(self, ray: Any, host_class: Any) -> None:
        self.ray = ray
        self.host_class = host_class
        self.shared: dict[str, _Host] = {}  # node id -> its shared host
        self.lost_nodes: set[str] = set()  # nodes whose shared host died under us
        self.where: dict[int, _Host] = {}  # a started (or starting) child's host, by its number
        self.nodes: list[str] = []
        self.nodes_at = float("-inf")
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="ray-carrier", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def carry(self, child: RayChild, placement: Placement, bridge: socket.socket, status_w: int, entry: str,
              first: bytes, paths: list[str]) -> None:
        asyncio.run_coroutine_threadsafe(self._carry(child, placement, bridge, status_w, entry, first, paths),
                                         self.loop)

    def kill(self, child: RayChild) -> None:
        asyncio.run_coroutine_threadsafe(self._kill(child), self.loop)

    # ---- hosts --------------------------------------------------------------------------------

    def _host_for(self, placement: Placement) -> _Host:
        if placement.options is not None:
            return self._open(self.host_class.options(**placement.options).remote(), "")
        node = placement.node or self._least_loaded_node()
        host = self.shared.get(node)
        if host is None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            actor = self.host_class.options(max_restarts=0, max_task_retries=0, num_cpus=0,
                                            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)
                                            ).remote()
            host = self.shared[node] = self._open(actor, node)
        return host

    def _open(self, actor: Any, node: str) -> _Host:
        host = _Host(actor=actor, node=node)
        asyncio.ensure_future(self._up(host))
        asyncio.ensure_future(self._push(host))
        return host

    def _least_loaded_node(self) -> str:
        now = time.monotonic()
        if now - self.nodes_at > NODES_FRESH:
            self.nodes = [str(node["NodeID"]) for node in live_nodes(self.ray)]
            self.nodes_at = now
        live = [node for node in self.nodes if node not in self.lost_nodes] or self.nodes
        if not live:
            raise RuntimeError("no live node in the Ray cluster")
        return min(live, key=lambda node: len(self.shared[node].children) if node in self.shared else 0)

    def _forget(self, host: _Host) -> None:
        host.dead = True
        if host.node and self.shared.get(host.node) is host:
            del self.shared[host.node]
            if not host.killed:
                self.lost_nodes.add(host.node)
                self.nodes_at = float("-inf")  # ask Ray again which nodes are live

    # ---- one child ----------------------------------------------------------------------------

    async def _carry(self, child: RayChild, placement: Placement, bridge: socket.socket, status_w: int, entry: str,
                     first: bytes, paths: list[str]) -> None:
        carried = _Carried(child, bridge, status_w)
        asyncio.ensure_future(self._deliver(carried))
        if child.killed:
            self._finish(carried, KILLED)
            return
        try:
            host = self._host_for(placement)
        except Exception as exc:  # noqa: BLE001 - no node to place it on: a failed start
            child.lost_why = one_line(exc)
            self._finish(carried, LOST_STATUS)
            return
        host.children[child.cid] = carried
        self.where[child.cid] = host
        try:
            info = await asyncio.wait_for(host.actor.start.remote(child.cid, entry, first, paths, {}), START_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - its host died, could not be placed in time, or could not start it
            if not carried.finished:
                child.lost_why = one_line(exc)
                host.children.pop(child.cid, None)
                self._finish(carried, KILLED if child.killed else LOST_STATUS)
                if not host.node:  # its own host, still waiting for a place: it must not linger
                    self._kill_host(host)
                else:  # a shared host must not start it after all
                    self._call(host.actor.kill, child.cid)
            return
        child.pid, child.node = int(info["pid"]), str(info["node"])
        carried.placed.set()
        if not carried.finished:
            carried.down = asyncio.ensure_future(self._down(host, carried))
        if child.killed:
            await self._kill(child)

    async def _deliver(self, carried: _Carried) -> None:
        """What the child's host sent up, into the loop's socket; its exit code, into its status pipe."""
        loop = asyncio.get_running_loop()
        code = LOST_STATUS
        await carried.placed.wait()  # worker_started names its pid and node: they come before its first frame
        while True:
            item = await carried.up.get()
            if isinstance(item, int):
                code = item
                break
            try:
                await loop.sock_sendall(carried.bridge, item)
            except OSError:
                pass  # the loop closed its end: the child's words go nowhere, its exit code still comes
        if carried.down is not None:
            carried.down.cancel()
        carried.bridge.close()  # the loop reads the child's last words, then end-of-file
        try:
            os.write(carried.status_w, EXIT_STATUS.pack(code))
        except OSError:
            pass
        os.close(carried.status_w)

    def _finish(self, carried: _Carried, code: int) -> None:
        if not carried.finished:
            carried.finished = True
            self.where.pop(carried.child.cid, None)
            carried.placed.set()
            carried.up.put_nowait(code)

    async def _down(self, host: _Host, carried: _Carried) -> None:
        """What the loop writes for the child, queued for its host's next push."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await loop.sock_recv(carried.bridge, CHUNK)
            except OSError:
                return
            if not data:
                return
            host.outgoing.append((carried.child.cid, data))
            host.wake.set()

    # ---- one host -----------------------------------------------------------------------------

    async def _push(self, host: _Host) -> None:
        """Every frame written since the last push, in one call; one call at a time, so in order."""
        while not host.dead:
            await host.wake.wait()
            host.wake.clear()
            batch, host.outgoing = host.outgoing, []
            if not batch:
                continue
            try:
                gone = await host.actor.push.remote(batch)
            except Exception:  # noqa: BLE001 - its actor is gone: its frames stream says how
                return
            for cid in gone:  # no longer reading: stop taking its frames (its exit code is on the way)
                carried = host.children.get(cid)
                if carried is not None and carried.down is not None:
                    carried.down.cancel()

    async def _up(self, host: _Host) -> None:
        """The host's one frames stream: each batch to its children; when it fails, the host is gone."""
        why = "its frames stream ended"
        try:
            async for ref in host.actor.frames.remote():
                for cid, item in await ref:
                    carried = host.children.get(cid)
                    if carried is None:
                        continue
                    if isinstance(item, int):
                        del host.children[cid]
                        self._finish(carried, item)
                        if not host.node:  # a child's own host goes with it, and gives back what it reserved
                            self._kill_host(host)
                    else:
                        carried.up.put_nowait(item)
        except Exception as exc:  # noqa: BLE001 - the actor died: killed, or its node lost
            why = one_line(exc)
        self._forget(host)
        host.wake.set()
        for carried in list(host.children.values()):
            child = carried.child
            if not child.killed:
                child.lost_node, child.lost_why = True, why
            self._finish(carried, KILLED if child.killed else LOST_STATUS)
        host.children.clear()

    async def _kill(self, child: RayChild) -> None:
        """SIGKILL one child on its host; a host that does not do it in time is killed, and its children with it."""
        host = self.where.get(child.cid)
        if host is None:
            return  # not started yet (its start sees `killed`), or gone already
        if not host.node:
            self._kill_host(host)  # its own host: the quickest kill there is
            return
        self._call(host.actor.kill, child.cid)
        await asyncio.sleep(KILL_GRACE)
        carried = host.children.get(child.cid)
        if carried is not None and not carried.finished:
            self._kill_host(host)

    def _kill_host(self, host: _Host) -> None:
        host.killed = True
        try:
            self.ray.kill(host.actor, no_restart=True)
        except Exception:  # noqa: BLE001 - gone already
            pass

    def _call(self, method: Any, *args: Any) -> None:
        try:
            method.remote(*args)
        except Exception:  # noqa: BLE001 - its host is gone: its frames stream says how
            pass

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5.0)
