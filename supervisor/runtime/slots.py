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

A request may name a pool of servers: the bank picks the one with the fewest
calls in flight across the tree (a pool's calls are counted whether or not a
cap applies, since the choice needs the counts) and names it in the grant.
A server whose call failed (the worker says so when it gives the slot back)
rests for a cool-down, 30 s and doubling while it keeps failing, during which
the pool's other servers get its calls; after it, the next call is let
through to try it again, and a success ends the rest. A pool whose servers
all rest still gets calls, to the least busy: a waiting call would help no one.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from typing import Callable, Optional, Protocol

from protocol import Message, SlotGrant, SlotRelease, SlotRequest
from supervisor.runtime.events import EventWriter

Ticket = tuple[str, int]  # (agent, request_id): one call of one agent's current worker
Send = Callable[[str, Message], bool]  # to the named agent's worker, wherever it runs; False: not reachable now


class SlotRoute(Protocol):
    """What the loop does with an agent's slot requests: grant them (the root) or pass them up (a group)."""

    def request(self, agent: str, request: SlotRequest) -> None: ...

    def release(self, agent: str, release: SlotRelease) -> None: ...

    def gone(self, agent: str) -> None: ...


COOL_DOWN = 30.0  # seconds a failed server of a pool is skipped; doubled for each failure in a row
COOL_DOWN_MAX = 480.0
MAX_POOL = 64  # servers in one request's pool; the config allows no more


@dataclasses.dataclass
class Waiting:
    servers: tuple[str, ...]  # one server, or a pool to choose from
    since: float
    pooled: bool


@dataclasses.dataclass
class Rest:
    until: float  # monotonic time the server may be tried again
    length: float  # this rest's length: the next failure in a row doubles it


class SlotBank:
    def __init__(self, log: EventWriter, send: Send, caps: Callable[[], dict[str, int]],
                 cool_down: Optional[float] = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.log = log
        self.send = send
        self.caps = caps  # server -> max_concurrent, as the config says now (a reload may change it)
        self.cool_down = COOL_DOWN if cool_down is None else cool_down  # read now, so a test can shorten it
        self.clock = clock
        self.held: dict[str, set[Ticket]] = {}  # per server, the calls holding its slots
        self.holding: dict[Ticket, str] = {}  # which server each counted call holds
        self.queued: collections.OrderedDict[Ticket, Waiting] = collections.OrderedDict()  # in arrival order
        self.resting: dict[str, Rest] = {}

    def request(self, agent: str, request: SlotRequest) -> None:
        ticket = (agent, request.request_id)
        pool = tuple(dict.fromkeys(s for s in request.pool[:MAX_POOL] if isinstance(s, str)))  # a worker's word
        pooled = len(pool) > 1
        servers = pool if pooled else (request.server,)
        if not pooled and self.caps().get(servers[0]) is None:
            # one server without a cap (a reload took it away): nothing to count, nothing kept
            self.send(agent, SlotGrant(request_id=request.request_id))
            return
        if ticket in self.holding or ticket in self.queued:
            return  # asked twice: one slot, one grant
        self.queued[ticket] = Waiting(servers, self.clock(), pooled)
        self._serve(fresh=ticket)
        waiting = self.queued.get(ticket)
        if waiting is not None:
            ahead = sum(1 for other, w in self.queued.items() if other != ticket and set(w.servers) & set(servers))
            self.log.emit("agent_queued", agent_id=agent, server=",".join(servers), ahead=ahead,
                          in_flight=sum(self.in_flight(server) for server in servers))

    def release(self, agent: str, release: SlotRelease) -> None:
        ticket = (agent, release.request_id)
        self.queued.pop(ticket, None)  # a wait that a stop ended
        server = self.holding.pop(ticket, None)  # the server the root granted, whatever the release says
        if server is not None:
            self._let_go(server, ticket)
        if release.failed and server is not None:
            self._rest(agent, server)
        elif server is not None and server in self.resting and self.resting[server].until <= self.clock():
            del self.resting[server]  # tried again after its rest, and it served
            self.log.emit("server_recovered", agent_id=agent, server=server)
        self._serve()

    def gone(self, agent: str) -> None:
        """The agent's worker has exited: the slots it held are free, and its waits are over."""
        for ticket in [t for t in self.holding if t[0] == agent]:
            self._let_go(self.holding.pop(ticket), ticket)
        for ticket in [t for t in self.queued if t[0] == agent]:
            del self.queued[ticket]
        self._serve()

    def _let_go(self, server: str, ticket: Ticket) -> None:
        held = self.held[server]
        held.discard(ticket)
        if not held:  # a server with no call in flight keeps no entry: a worker's made-up names do not pile up
            del self.held[server]

    def in_flight(self, server: str) -> int:
        return len(self.held.get(server, ()))

    def rest(self, servers: list[str]) -> None:
        """Servers known to be down (the pre-flight said so): they rest a first cool-down, unannounced."""
        for server in servers:
            self.resting[server] = Rest(self.clock() + self.cool_down, self.cool_down)

    def _rest(self, agent: str, server: str) -> None:
        """A server failed a call: skipped for a cool-down, longer each time in a row (not for calls already out)."""
        now = self.clock()
        rest = self.resting.get(server)
        if rest is not None and rest.until > now:
            return  # the calls that were out when it failed fail too: one rest for them all
        length = self.cool_down if rest is None else min(COOL_DOWN_MAX, rest.length * 2)
        self.resting[server] = Rest(now + length, length)
        self.log.emit("server_failed", level="warning", agent_id=agent, server=server, cool_down_s=length)

    def _choose(self, servers: tuple[str, ...], caps: dict[str, int], now: float) -> Optional[str]:
        """The server for a call: the least busy of those with a free slot, those resting only if all rest."""
        free = [s for s in servers if caps.get(s) is None or self.in_flight(s) < caps[s]]
        awake = [s for s in servers if s not in self.resting or self.resting[s].until <= now]
        candidates = [s for s in free if s in awake] if awake else free
        if not candidates:
            return None
        return min(candidates, key=lambda s: (self.in_flight(s), servers.index(s)))

    def _serve(self, fresh: Optional[Ticket] = None) -> None:
        """Free slots go to the longest waiting requests, in order; a request whose servers are full waits on."""
        caps, now, full = self.caps(), self.clock(), set()
        for ticket, waiting in list(self.queued.items()):
            if waiting.servers in full:
                continue  # an earlier request found these servers full: so does this one
            server = self._choose(waiting.servers, caps, now)
            if server is None:
                full.add(waiting.servers)
                continue
            del self.queued[ticket]
            if self._grant(server, ticket, waiting.pooled) and ticket != fresh:
                self.log.emit("slot_granted", agent_id=ticket[0], server=server,
                              queued_ms=round((self.clock() - waiting.since) * 1000.0, 3))

    def _grant(self, server: str, ticket: Ticket, pooled: bool) -> bool:
        """The slot is the ticket's if its worker can be told; else nobody holds it."""
        if not self.send(ticket[0], SlotGrant(request_id=ticket[1], server=server if pooled else "")):
            return False
        self.held.setdefault(server, set()).add(ticket)
        self.holding[ticket] = server
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
