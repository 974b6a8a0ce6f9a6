"""Messages between agents: the root routes them, a group passes them up and down.

Nothing here is the truth about a message: that is in the checkpoints. A
sender's outbox holds each message until the receiver's durable checkpoint
holds it; a receiver's checkpoint says, per sender, the highest seq it holds.
The `Postmaster` only carries what the two sides say to each other, so it can
die with the supervisor and lose nothing:

* `Post` (a message durable at its sender) is kept while its receiver does not
  hold it, and handed to the receiver's worker once that worker has said what
  it holds (a fresh `Holding`), in order, each at most once per worker;
* `Holding` after a receiver's checkpoint says what it now holds (logged as
  delivered, once) and what its checkpoint before that held too (settled:
  forgotten here, and the sender told with `Settled`, so that its outbox
  forgets it too; one checkpoint behind, so that a receiver whose newest
  checkpoint is lost still finds every message it lacks);
* a new worker of either side starts the exchange over from its checkpoint:
  the sender posts its outbox again (`replay`), the receiver says what it
  holds, and whatever either already had is dropped as a repeat.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Protocol

from protocol import Deliver, Holding, Message, Post, ProtocolError, Settled, encode
from supervisor.runtime.events import EventWriter

Pair = tuple[str, str]  # (sender, receiver)
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
        self.pending: dict[Pair, dict[int, Any]] = {}  # seq -> content, until the receiver settles it
        self.settled: dict[Pair, int] = {}  # the receiver's settle mark: at or below it, a post is a repeat
        self.logged: dict[Pair, int] = {}  # the highest seq logged as delivered
        self.handed: dict[Pair, int] = {}  # the highest seq handed to the receiver's current worker
        self.listening: set[str] = set()  # receivers whose current worker has said what it holds

    def post(self, sender: str, post: Post) -> None:
        receiver = post.to
        problem = self._undeliverable(sender, post)
        if problem:
            self.log.emit("message_rejected", level="warning", agent_id=sender, to=receiver, seq=post.seq, error=problem)
            return
        key = (sender, receiver)
        settled = self.settled.get(key, 0)
        if post.seq <= settled:  # the receiver has it for good: the sender's new worker may forget it
            self.send(sender, Settled(receiver=receiver, seq=settled))
            return
        waiting = self.pending.setdefault(key, {})
        if post.seq in waiting:
            return
        waiting[post.seq] = post.content
        if not post.replay:
            self.log.emit("message_sent", agent_id=sender, to=receiver, seq=post.seq)
        self._hand_over(key)

    def holding(self, receiver: str, holding: Holding) -> None:
        marks, settle = _marks(holding.marks), _marks(holding.settle)
        if holding.fresh:  # a new worker: it has exactly what its checkpoint holds, and no more
            self.listening.add(receiver)
            for key in [k for k in self.handed if k[1] == receiver]:
                del self.handed[key]
            self.handed.update({(sender, receiver): mark for sender, mark in marks.items()})
        for sender, mark in marks.items():
            self._delivered((sender, receiver), mark, log=not holding.fresh)
        for sender, mark in settle.items():
            self._settle((sender, receiver), mark)
        if holding.fresh:
            for key in [k for k in self.pending if k[1] == receiver]:
                self._hand_over(key)

    def gone(self, agent: str) -> None:
        """The agent's worker has exited: what it was handed but did not save comes again to its next one."""
        self.listening.discard(agent)
        for key in [k for k in self.handed if k[1] == agent]:
            del self.handed[key]

    def _undeliverable(self, sender: str, post: Post) -> str:
        if post.to not in self.agents():
            return f"no agent {post.to!r} in the team"
        try:  # what the receiver will be sent, in its largest form: refused now rather than stuck later
            encode(Deliver(sender=sender, seq=post.seq, content=post.content, agent=post.to))
        except ProtocolError as exc:
            return str(exc)
        return ""

    def _delivered(self, key: Pair, mark: int, *, log: bool) -> None:
        """The receiver's latest checkpoint holds up to `mark`: logged once per message (a fresh worker's, not again)."""
        logged = self.logged.get(key, 0)
        if mark <= logged:
            return
        self.logged[key] = mark
        if log:
            sender, receiver = key
            for seq in sorted(s for s in self.pending.get(key, {}) if logged < s <= mark):
                self.log.emit("message_delivered", agent_id=receiver, **{"from": sender}, to=receiver, seq=seq)

    def _settle(self, key: Pair, mark: int) -> None:
        """The receiver's checkpoint before its latest holds up to `mark` too: now the sender may forget them."""
        if mark <= self.settled.get(key, 0):
            return
        self.settled[key] = mark
        waiting = self.pending.get(key, {})
        for seq in [s for s in waiting if s <= mark]:
            del waiting[seq]
        if not waiting:
            self.pending.pop(key, None)
        self.send(key[0], Settled(receiver=key[1], seq=mark))

    def _hand_over(self, key: Pair) -> None:
        sender, receiver = key
        if receiver not in self.listening:
            return
        handed = self.handed.get(key, 0)
        for seq in sorted(s for s in self.pending.get(key, {}) if s > handed):
            if not self.send(receiver, Deliver(sender=sender, seq=seq, content=self.pending[key][seq])):
                return
            self.handed[key] = handed = seq


def _marks(value: dict[str, Any]) -> dict[str, int]:
    """Marks as a worker reported them; anything not a count is ignored (the worker is not trusted)."""
    return {s: m for s, m in value.items() if isinstance(m, int) and not isinstance(m, bool) and m >= 0}


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
