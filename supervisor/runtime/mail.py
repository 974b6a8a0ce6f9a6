"""Messages between agents: the root routes them, a group passes them up and down.

Nothing here is the truth about a message: that is in the checkpoints. A
sender's outbox holds each message until the receiver's durable checkpoint
holds it; a receiver's checkpoint says, per sender, the highest seq it holds.
The `Postmaster` only carries what the two sides say to each other, so it can
die with the supervisor and lose nothing:

* `Post` (a message durable at its sender) is kept while its receiver does not
  hold it, and handed to the receiver's worker once that worker has said what
  it holds (a fresh `Holding`), in order, each at most once per worker;
* `Holding` after a receiver's checkpoint settles what it now holds: logged as
  delivered, forgotten here, and the sender told (`Settled`) so that its
  outbox forgets it too;
* a new worker of either side starts the exchange over from its checkpoint:
  the sender posts its outbox again (`replay`), the receiver says what it
  holds, and whatever either already had is dropped as a repeat.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Protocol

from protocol import Deliver, Holding, Message, Post, ProtocolError, Settled, encode
from supervisor.runtime.events import EventWriter

Send = Callable[[str, Message], bool]  # to the named agent's worker, wherever it runs; False: not reachable now


class MailRoute(Protocol):
    """What the loop does with an agent's mail: route it (the root) or pass it up (a group)."""

    def post(self, sender: str, post: Post) -> None: ...

    def holding(self, receiver: str, holding: Holding) -> None: ...

    def gone(self, agent: str) -> None: ...


class Postmaster:
    def __init__(self, log: EventWriter, send: Send, agents: Callable[[], set[str]]) -> None:
        self.log = log
        self.send = send
        self.agents = agents  # the team's agents now (a reload may change them)
        self.pending: dict[tuple[str, str], dict[int, Any]] = {}  # (sender, receiver) -> seq -> content
        self.held: dict[tuple[str, str], int] = {}  # the receiver's durable mark, as last said
        self.handed: dict[tuple[str, str], int] = {}  # the highest seq handed to the receiver's current worker
        self.listening: set[str] = set()  # receivers whose current worker has said what it holds

    def post(self, sender: str, post: Post) -> None:
        receiver = post.to
        if receiver not in self.agents():
            self.log.emit("message_rejected", level="warning", agent_id=sender, to=receiver, seq=post.seq,
                          error=f"no agent {receiver!r} in the team")
            return
        try:  # what the receiver will be sent, in its largest form: refused now rather than stuck later
            encode(Deliver(sender=sender, seq=post.seq, content=post.content, agent=receiver))
        except ProtocolError as exc:
            self.log.emit("message_rejected", level="warning", agent_id=sender, to=receiver, seq=post.seq,
                          error=str(exc))
            return
        key = (sender, receiver)
        held = self.held.get(key, 0)
        if post.seq <= held:  # the receiver has it already: the sender's new worker may forget it
            self.send(sender, Settled(receiver=receiver, seq=held))
            return
        waiting = self.pending.setdefault(key, {})
        if post.seq in waiting:
            return
        waiting[post.seq] = post.content
        if not post.replay:
            self.log.emit("message_sent", agent_id=sender, to=receiver, seq=post.seq)
        self._hand_over(key)

    def holding(self, receiver: str, holding: Holding) -> None:
        marks = {s: m for s, m in holding.marks.items() if isinstance(m, int) and not isinstance(m, bool) and m >= 0}
        if holding.fresh:  # a new worker: it has exactly what its checkpoint holds, and no more
            self.listening.add(receiver)
            for key in [k for k in self.handed if k[1] == receiver]:
                del self.handed[key]
            for sender, mark in marks.items():
                self.handed[(sender, receiver)] = mark
        for sender, mark in marks.items():
            self._settle((sender, receiver), mark, log=not holding.fresh)
        if holding.fresh:
            for key in [k for k in self.pending if k[1] == receiver]:
                self._hand_over(key)

    def gone(self, agent: str) -> None:
        """The agent's worker has exited: what it was handed but did not save comes again to its next one."""
        self.listening.discard(agent)
        for key in [k for k in self.handed if k[1] == agent]:
            del self.handed[key]

    def waiting_for(self, receiver: str) -> int:
        """Messages routed to `receiver` that its checkpoints do not hold yet."""
        return sum(len(v) for k, v in self.pending.items() if k[1] == receiver)

    def _settle(self, key: tuple[str, str], mark: int, *, log: bool) -> None:
        sender, receiver = key
        if mark <= self.held.get(key, 0):
            return
        self.held[key] = mark
        waiting = self.pending.get(key, {})
        for seq in sorted(s for s in waiting if s <= mark):
            del waiting[seq]
            if log:
                self.log.emit("message_delivered", agent_id=receiver, **{"from": sender}, to=receiver, seq=seq)
        if not waiting:
            self.pending.pop(key, None)
        self.send(sender, Settled(receiver=receiver, seq=mark))

    def _hand_over(self, key: tuple[str, str]) -> None:
        sender, receiver = key
        if receiver not in self.listening:
            return
        handed = self.handed.get(key, 0)
        for seq in sorted(s for s in self.pending.get(key, {}) if s > handed):
            if not self.send(receiver, Deliver(sender=sender, seq=seq, content=self.pending[key][seq])):
                return
            self.handed[key] = handed = seq


class Relay:
    """A group's side: its agents' mail goes up to the root, stamped with who they are."""

    def __init__(self, up: Callable[[Message], None]) -> None:
        self.up = up

    def post(self, sender: str, post: Post) -> None:
        self.up(dataclasses.replace(post, sender=sender))

    def holding(self, receiver: str, holding: Holding) -> None:
        self.up(dataclasses.replace(holding, agent=receiver))

    def gone(self, agent: str) -> None:
        return None  # the root learns it from the group's worker_exited event
