"""Concurrency caps: how many calls may be in flight to each model server, across the whole tree.

A worker asks for a slot before each call to a capped server (`SlotRequest`),
makes the call once it is granted (`SlotGrant`), and gives the slot back when
the call ends, however it ends (`SlotRelease`; a release of a request still
queued withdraws it). The root's `SlotBank` owns the counts and grants first
come, first served; a group's `SlotRelay` only passes its agents' requests up,
as it does their mail. A worker that exits cannot give its slots back, so its
exit does: at the root for its own agents, from a group's `worker_exited`
event for a group's.

Only a wait is worth an event: `agent_queued` when a request finds the server
full, `slot_granted` (with how long it waited) when that request's turn comes.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from typing import Callable, Protocol

from protocol import Message, SlotGrant, SlotRelease, SlotRequest
from supervisor.runtime.events import EventWriter

Ticket = tuple[str, int]  # (agent, request_id): one call of one agent's current worker
Send = Callable[[str, Message], bool]  # to the named agent's worker, wherever it runs; False: not reachable now


class SlotRoute(Protocol):
    """What the loop does with an agent's slot requests: grant them (the root) or pass them up (a group)."""

    def request(self, agent: str, request: SlotRequest) -> None: ...

    def release(self, agent: str, release: SlotRelease) -> None: ...

    def gone(self, agent: str) -> None: ...


class SlotBank:
    def __init__(self, log: EventWriter, send: Send, caps: Callable[[], dict[str, int]]) -> None:
        self.log = log
        self.send = send
        self.caps = caps  # server -> max_concurrent, as the config says now (a reload may change it)
        self.held: dict[str, set[Ticket]] = {}
        self.queued: dict[str, collections.OrderedDict[Ticket, float]] = {}  # in arrival order, with when it came

    def request(self, agent: str, request: SlotRequest) -> None:
        server, ticket = request.server, (agent, request.request_id)
        cap = self.caps().get(server)
        if cap is None:  # a server without a cap (a reload took it away): nothing to count, nothing kept
            self.send(agent, SlotGrant(request_id=request.request_id))
            return
        held = self.held.setdefault(server, set())
        queue = self.queued.setdefault(server, collections.OrderedDict())
        if ticket in held or ticket in queue:
            return  # asked twice: one slot, one grant
        if len(held) < cap and not queue:
            self._grant(server, ticket)
            return
        queue[ticket] = time.monotonic()
        self.log.emit("agent_queued", agent_id=agent, server=server, ahead=len(queue) - 1, in_flight=len(held))

    def release(self, agent: str, release: SlotRelease) -> None:
        server, ticket = release.server, (agent, release.request_id)
        queue, held = self.queued.get(server), self.held.get(server)
        if queue is None or held is None:
            return  # a server never capped
        queue.pop(ticket, None)  # a wait that a stop ended
        held.discard(ticket)
        self._serve(server)

    def gone(self, agent: str) -> None:
        """The agent's worker has exited: the slots it held are free, and its waits are over."""
        for server in list(self.held):
            self.held[server] = {t for t in self.held[server] if t[0] != agent}
            queue = self.queued.setdefault(server, collections.OrderedDict())
            for ticket in [t for t in queue if t[0] == agent]:
                del queue[ticket]
            self._serve(server)

    def in_flight(self, server: str) -> int:
        return len(self.held.get(server, ()))

    def _serve(self, server: str) -> None:
        """Free slots go to the longest waiting requests, in order."""
        queue = self.queued.get(server)
        cap = self.caps().get(server)
        while queue and (cap is None or len(self.held[server]) < cap):
            ticket, since = queue.popitem(last=False)
            if self._grant(server, ticket):
                self.log.emit("slot_granted", agent_id=ticket[0], server=server,
                              queued_ms=round((time.monotonic() - since) * 1000.0, 3))

    def _grant(self, server: str, ticket: Ticket) -> bool:
        """The slot is the ticket's if its worker can be told; else nobody holds it."""
        if not self.send(ticket[0], SlotGrant(request_id=ticket[1])):
            return False
        self.held.setdefault(server, set()).add(ticket)
        return True


class SlotRelay:
    """A group's side: its agents' requests and releases go up to the root, stamped with who they are."""

    def __init__(self, up: Callable[[Message], None]) -> None:
        self.up = up

    def request(self, agent: str, request: SlotRequest) -> None:
        self.up(dataclasses.replace(request, agent=agent))

    def release(self, agent: str, release: SlotRelease) -> None:
        self.up(dataclasses.replace(release, agent=agent))

    def gone(self, agent: str) -> None:
        return None  # the root learns it from the group's worker_exited event
