"""Children on a Ray cluster: hosted by `ChildHost` actors, their frames bridged to local sockets.

The loop must not tell a Ray child from a local one, so each gets what a
forked child has: a socket pair whose far end a carrier thread serves, and a
status pipe on which the carrier writes the exit code once the child is gone.
Frames are the protocol's, byte for byte; only the carrier differs.

Where children live: every child that reserves nothing of a node (the
default: no CPUs, GPUs or resources of its own) shares its node's host, one
actor per node, so a stop of 32 agents wakes one actor per node rather than
32 of them, and the frames of all of them travel in one call each way. A child
placed anywhere goes to the node whose host holds the fewest children; a child
pinned to a node goes to that node's host. A child that reserves resources
gets a host of its own, so Ray accounts for them and places it where they are.

The carrier (`ray_carrier`) runs one asyncio loop for every host: one `frames`
stream per host, one `push` at a time per host. Ray's own restarts are off
(`max_restarts=0`): the supervisor's rules decide, as on one machine. A host
that dies (its node was lost, Ray killed it) takes its children with it; each
is reported lost, and a lost child's restart is not charged to it.
"""

from __future__ import annotations

import itertools
import os
import socket
import sys
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

from supervisor.runtime.backend import ChildProcess, Job
from supervisor.runtime.ray_carrier import Carrier, Placement, RayChild

if TYPE_CHECKING:
    from supervisor.config import TeamConfig
    from supervisor.runtime.events import EventLog

INSTALL = "pip install 'agent-supervisor[ray]'"
_KEPT: list[Carrier] = []  # carriers of a process that exits next: their handles must outlive Ray's threads


def require_ray() -> None:
    """Nothing, or the one line that says how to install Ray (found without importing it: its set-up comes first)."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        from supervisor.errors import SupervisorError

        raise SupervisorError(f"backend: ray needs Ray, which is not installed: {INSTALL}", 2)


class RayBackend:
    """The team's children as Ray actors: started, carried, watched and killed through Ray."""

    name = "ray"

    def __init__(self, config: "TeamConfig") -> None:
        self.config = config
        require_ray()
        self.ray: Any = None
        self.carrier: Optional[Carrier] = None
        self.numbers = itertools.count(1)
        self.paths = [p for p in sys.path if p]

    def open(self, log: "EventLog") -> dict[str, Any]:
        """Connect (or start a local Ray), prove every node sees storage; where the team runs, to announce."""
        from supervisor.runtime.ray_cluster import connect, probe_storage
        from supervisor.runtime.ray_host import ChildHost

        config = self.config
        log.emit("ray_connecting", agent_id=config.team,
                 address=config.ray.address if config.ray is not None and config.ray.address else "local")
        try:
            self.ray, address = connect(config)
            nodes = probe_storage(self.ray, config.storage)
        except BaseException:
            self.close()
            raise
        self.carrier = Carrier(self.ray, self.ray.remote(ChildHost))
        return {"ray_address": address, "ray_nodes": nodes}

    def close(self, leaving: bool = False) -> None:
        """Leave Ray; `leaving`: the process exits next, which does it faster (`ray_cluster.disconnect`).

        The carrier, and the actor handles it holds, are let go only after Ray is: a handle dropped while a
        call on it is in flight (every host's `frames` stream is) can abort the process in Ray's own
        threads (Ray 2.60: `Check failed: it != client_queues_.end()`). When leaving, they are kept to the
        process's end.
        """
        carrier, self.carrier = self.carrier, None
        if carrier is not None:
            carrier.close()
            if leaving:
                _KEPT.append(carrier)
        from supervisor.runtime.ray_cluster import disconnect

        disconnect(self.ray, leaving)

    # ---- the seam -----------------------------------------------------------------------------

    def start_many(self, jobs: list[Job], first: Optional[Callable[[int], bytes]] = None, pack: int = 1
                   ) -> Iterator["ChildProcess | OSError"]:
        """Each job in an actor of its own: `pack` is the process tree's (a Ray actor holds one agent)."""
        for index, (name, entry) in enumerate(jobs):
            try:
                yield self._start(name, entry, first(index) if first is not None else b"")
            except OSError as exc:
                yield exc

    def start(self, name: str, entry: str) -> ChildProcess:
        return self._start(name, entry, b"")

    def _start(self, name: str, entry: str, first: bytes) -> RayChild:
        if self.carrier is None:
            raise OSError("the Ray backend is not open")
        placement = self._placement(name)
        ours, bridge = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        status_r, status_w = os.pipe()
        ours.setblocking(False)
        bridge.setblocking(False)
        os.set_blocking(status_r, False)
        child = RayChild(sock=ours, name=name, status_fd=status_r, started_at=time.monotonic(),
                         cid=next(self.numbers), _kill=self._kill)
        self.carrier.carry(child, placement, bridge, status_w, entry, first, self.paths)
        return child

    def _placement(self, name: str) -> Placement:
        """A child that reserves nothing shares its node's host; one that reserves CPUs, GPUs or resources has its own."""
        from supervisor.runtime.ray_cluster import actor_options, node_id

        wanted = self.config.ray_placement(name)
        if wanted.num_cpus or wanted.num_gpus or wanted.resources:
            return Placement(options=actor_options(self.ray, self.config, name))
        return Placement(node=node_id(self.ray, wanted.node) if wanted.node is not None else None)

    def _kill(self, child: RayChild) -> None:
        if child.exitcode() is not None or self.carrier is None:
            return
        child.killed = True
        self.carrier.kill(child)

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

    def bury(self, child: ChildProcess) -> None:
        pass  # its host killed the child's group, on its node

