"""A group's side of its parent's pipe: orders come down, beats and the last word go up.

A group's sub-supervisor takes its interrupts from its parent instead of from
signals, passes them down first and acknowledges them up, beats as a worker
does, and ends with a Stopped message that its parent handles as a worker's
exit. If the parent goes away, nobody is left to report to: everything stops.
"""

from __future__ import annotations

import selectors
import time
from typing import Callable, Optional

from protocol import (Ack, Answer, Deliver, Heartbeat, Interrupt, Message, ProtocolError, Settled, SlotGrant, StartAgents,
                      Stopped)
from supervisor.runtime.children import Child
from supervisor.runtime.process import FramedPipe
from supervisor.runtime.reactor import Reactor
from supervisor.runtime.shutdown import StopOrder

BEAT_INTERVAL = 1.0  # a group's heartbeat to its parent, as a worker's


class Uplink:
    def __init__(
        self,
        pipe: FramedPipe,
        reactor: Reactor,
        request: Callable[[StopOrder], bool],
        orphaned: Callable[[], None],
        start_agents: Callable[[list[str]], None],
        pass_down: Callable[[Message], None],
    ) -> None:
        self.pipe = pipe
        self.reactor = reactor
        self.request = request
        self.orphaned = orphaned
        self.start_agents = start_agents  # an operator's start of some of our agents
        self.pass_down = pass_down  # mail, answers and slot grants for one of our agents
        self.last_interrupt: Optional[int] = None  # the parent's last interrupt that reached us

    def open(self) -> None:
        self.reactor.watch(self.pipe.sock, self._on_ready)
        self.reactor.after_each_tick(self._watch_writes)  # events queued for the parent this tick
        self._beat()

    def on_interrupt(self, msg: Interrupt) -> None:
        """The parent's interrupt: pass it down first, then acknowledge it up."""
        self.last_interrupt = msg.interrupt_id
        self.request(StopOrder(msg.mode, msg.source, msg.message, "parent", agents=tuple(msg.agents), relayed=msg))
        self.pipe.send(Ack(interrupt_id=msg.interrupt_id, received_at=time.time()))

    def _on_ready(self, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self.pipe.flush()
        if mask & selectors.EVENT_READ:
            try:
                messages = self.pipe.receive()
            except ProtocolError:
                messages, self.pipe.pipe_open = [], False
            for message in messages:
                if isinstance(message, Interrupt):
                    self.on_interrupt(message)
                elif isinstance(message, StartAgents):
                    self.start_agents([str(name) for name in message.agents])
                elif isinstance(message, (Deliver, Settled, Answer, SlotGrant)):
                    self.pass_down(message)
            # Anything else from a parent is ignored: after Start it only sends interrupts, starts, mail and slots.
        if not self.pipe.pipe_open:
            self._lost()

    def _lost(self) -> None:
        self.reactor.unwatch(self.pipe.sock)
        self.reactor.cancel("beat")
        self.orphaned()

    def _watch_writes(self) -> None:
        if not self.pipe.pipe_open or not self.reactor.watching(self.pipe.sock):
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if self.pipe.outbox else 0)
        self.reactor.modify(self.pipe.sock, self._on_ready, events)

    def _beat(self) -> None:
        """About once a second and no more, while the parent listens."""
        if not self.pipe.pipe_open:
            return
        self.pipe.send(Heartbeat(sent_at=time.time()))
        self.reactor.at("beat", time.monotonic() + BEAT_INTERVAL, self._beat)

    def report(self, status: str, children: list[Child], counts: dict[str, int]) -> None:
        """A group's last word, as a worker's: its outcome, for its parent's restart rules."""
        failures = [f"{c.name}: {c.failure}" for c in children if c.status == "failed" and c.failure]
        self.pipe.send(
            Stopped(
                status=status,
                cycle=sum(c.cycle for c in children),
                checkpoint_id=None,
                budget_spent_usd=sum(c.budget_spent_usd for c in children),
                interrupt_id=self.last_interrupt,
                total_interrupts=counts["total"],
                graceful_interrupts=counts["graceful"],
                immediate_interrupts=counts["immediate"],
                reason="; ".join(failures),
            )
        )
        self.pipe.drain(timeout=1.0)
