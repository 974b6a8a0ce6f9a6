"""An agent's mail: what it sends, what it holds, what a person answered; all of it checkpointed.

Exactly once, by the same rule as the conversation: nothing counts until the
cycle's checkpoint is durable.

* Sending: `send` inside a cycle only notes the message. When the cycle
  completes it joins the outbox with the next sequence number for its
  receiver; the outbox is saved with the cycle's checkpoint, and only then is
  the message posted. It stays in the outbox until the receiver's own durable
  checkpoint holds it (the supervisor says so with `Settled`), so a crash of
  either side, or of the supervisor, loses nothing: a new worker posts its
  outbox again and the receiver keeps only what it has not seen.
* Receiving: a delivered message is kept if it is the next one from its
  sender (`received` marks the highest kept per sender), and waits in the
  inbox. `take` hands it to the running cycle; if the cycle completes, the
  message is consumed; if not, it goes back to the front of the inbox. The
  inbox and the marks are saved with every checkpoint.
* Settling one checkpoint behind: a sender may forget a message only once
  the receiver's checkpoint *before* its latest holds it too (`prior`), so
  that a receiver whose newest checkpoint turns out corrupt, and which
  resumes from the one before, still finds every message it lacks.
* Asking: a person's answer is saved at once, in a checkpoint of the last
  completed cycle, before `ask` returns it; a rerun of the same cycle gets the
  same answers for the same questions without asking again. They are consumed
  with the cycle.

Pure data and rules: no I/O, no asyncio, so every rule is tested directly.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Optional

MAX_CONTENT_BYTES = 1024 * 1024  # one message's JSON; well under a frame, so it always travels
MAX_OUTBOX = 10_000  # messages sent and not yet held by their receivers: beyond, a receiver is not keeping up
MAX_CONTENT_DEPTH = 20  # nesting of one message's JSON: it travels inside frames and checkpoints with limits of their own


class MailError(ValueError):
    """A message the agent cannot send (unknown receiver, not JSON, too big); one line."""


class MailCorrupt(ValueError):
    """A checkpoint's mail section that does not have the shape this version writes."""


@dataclass
class Mailbox:
    me: str
    peers: frozenset[str]  # every agent of the team, in any group
    next_seq: dict[str, int] = field(default_factory=dict)  # last seq given to a message for each receiver
    outbox: list[dict[str, Any]] = field(default_factory=list)  # {to, seq, content}, not yet held by the receiver
    received: dict[str, int] = field(default_factory=dict)  # highest seq kept from each sender
    saved_marks: dict[str, int] = field(default_factory=dict)  # `received` as the latest durable checkpoint has it
    prior: dict[str, int] = field(default_factory=dict)  # ... and as the durable checkpoint before that had it
    inbox: deque[dict[str, Any]] = field(default_factory=deque)  # {from, seq, content}, kept and not consumed
    answers: list[dict[str, str]] = field(default_factory=list)  # {question, answer} of the cycle in progress
    asking: Optional[str] = None  # the question a stop interrupted, for `status`
    # The cycle in progress, never saved as such:
    sending: list[tuple[str, Any]] = field(default_factory=list)
    taken: list[dict[str, Any]] = field(default_factory=list)
    asked: int = 0  # questions asked so far by this cycle
    posted: dict[str, int] = field(default_factory=dict)  # highest seq this worker has posted, per receiver

    # ---- sending ------------------------------------------------------------------------

    def send(self, to: str, content: Any) -> None:
        """Note a message for the end of the cycle; refuse at once what could never be delivered."""
        if not isinstance(to, str) or to not in self.peers:
            raise MailError(f"message to {to!r}: the team has no such agent")
        try:
            encoded = json.dumps(content, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise MailError(f"message to {to}: content is not JSON: {exc}") from None
        if len(encoded.encode()) > MAX_CONTENT_BYTES:
            raise MailError(f"message to {to}: {len(encoded.encode())} bytes of JSON; the limit is {MAX_CONTENT_BYTES}")
        if _depth(content) > MAX_CONTENT_DEPTH:
            raise MailError(f"message to {to}: content nests deeper than {MAX_CONTENT_DEPTH} levels")
        if len(self.outbox) + len(self.sending) >= MAX_OUTBOX:
            waiting = sorted({m["to"] for m in self.outbox})
            raise MailError(f"{MAX_OUTBOX} messages wait for their receivers ({', '.join(waiting)}); none is taken")
        self.sending.append((to, json.loads(encoded)))  # a copy: later changes by the agent do not leak in

    def unposted(self) -> list[dict[str, Any]]:
        """Outbox messages this worker has not posted yet, in order; marked as posted."""
        out = [m for m in self.outbox if m["seq"] > self.posted.get(m["to"], 0)]
        for message in out:
            self.posted[message["to"]] = max(self.posted.get(message["to"], 0), message["seq"])
        return out

    def settle(self, receiver: str, seq: int) -> None:
        """`receiver` durably holds our messages up to `seq`: they leave the outbox at the next save."""
        self.outbox = [m for m in self.outbox if not (m["to"] == receiver and m["seq"] <= seq)]

    # ---- receiving ------------------------------------------------------------------------

    def accept(self, sender: str, seq: int, content: Any) -> bool:
        """Keep a delivered message if it is the next from its sender; anything else is a repeat or early."""
        if seq != self.received.get(sender, 0) + 1:
            return False
        self.received[sender] = seq
        self.inbox.append({"from": sender, "seq": seq, "content": content})
        return True

    def take(self) -> Optional[dict[str, Any]]:
        """The oldest message for the running cycle, or None."""
        if not self.inbox:
            return None
        message = self.inbox.popleft()
        self.taken.append(message)
        return message

    def marks(self) -> dict[str, int]:
        return dict(self.received)

    def saved(self, marks: dict[str, int]) -> None:
        """A checkpoint holding `marks` is durable: the one before it becomes the one a sender may settle by."""
        self.prior, self.saved_marks = self.saved_marks, dict(marks)

    # ---- asking ---------------------------------------------------------------------------

    def answered_before(self, question: str) -> Optional[str]:
        """The answer a person gave to this cycle's next question in an earlier run of the cycle."""
        index = self.asked
        if index < len(self.answers) and self.answers[index]["question"] == question:
            self.asked += 1
            return self.answers[index]["answer"]
        del self.answers[index:]  # the cycle went another way: later answers were to other questions
        return None

    def record_answer(self, question: str, answer: str) -> None:
        self.answers.append({"question": question, "answer": answer})
        self.asked += 1

    # ---- the cycle --------------------------------------------------------------------------

    def begin_cycle(self) -> None:
        self.sending, self.taken, self.asked, self.asking = [], [], 0, None

    def cycle_completed(self) -> None:
        """The cycle's sends join the outbox, numbered; what it took and was told is consumed."""
        for to, content in self.sending:
            seq = self.next_seq.get(to, 0) + 1
            self.next_seq[to] = seq
            self.outbox.append({"to": to, "seq": seq, "content": content})
        self.sending, self.taken, self.answers, self.asked = [], [], [], 0

    def cycle_dropped(self) -> None:
        """The cycle will not complete: its sends never happened, what it took goes back in front."""
        self.inbox.extendleft(reversed(self.taken))
        self.sending, self.taken, self.asked = [], [], 0

    # ---- checkpoints --------------------------------------------------------------------------

    def to_checkpoint(self) -> dict[str, Any]:
        """The mail as the last completed cycle left it; a cycle in progress counts as not done."""
        saved: dict[str, Any] = {
            "next_seq": dict(self.next_seq),
            "outbox": list(self.outbox),
            "received": dict(self.received),
            "prior": dict(self.saved_marks),
            "inbox": [*self.taken, *self.inbox],
        }
        if self.answers:
            saved["answers"] = list(self.answers)
        if self.asking is not None:
            saved["asking"] = self.asking
        return saved

    @classmethod
    def from_checkpoint(cls, me: str, peers: frozenset[str], saved: Any) -> "Mailbox":
        """A mailbox from a checkpoint's `mail`; absent (an older checkpoint) is empty mail."""
        box = cls(me=me, peers=peers)
        if saved is None:
            return box
        if not isinstance(saved, dict):
            raise MailCorrupt("mail is not an object")
        box.next_seq = _counts(saved.get("next_seq", {}), "next_seq")
        box.received = _counts(saved.get("received", {}), "received")
        box.saved_marks = dict(box.received)
        box.prior = _counts(saved.get("prior", {}), "prior")
        box.outbox = [_message(m, "to", "outbox") for m in _list(saved.get("outbox", []), "outbox")]
        box.inbox = deque(_message(m, "from", "inbox") for m in _list(saved.get("inbox", []), "inbox"))
        box.answers = [_answer(a) for a in _list(saved.get("answers", []), "answers")]
        asking = saved.get("asking")
        box.asking = asking if isinstance(asking, str) else None
        for message in box.outbox:
            if message["seq"] > box.next_seq.get(message["to"], 0):
                raise MailCorrupt(f"outbox seq {message['seq']} to {message['to']} beyond next_seq")
        for message in box.inbox:
            if message["seq"] > box.received.get(message["from"], 0):
                raise MailCorrupt(f"inbox seq {message['seq']} from {message['from']} beyond received")
        return box


def _depth(value: Any) -> int:
    """How deeply a JSON value nests, without recursion (a hostile value cannot exhaust the stack)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, level)
            if level > MAX_CONTENT_DEPTH:
                return level
            todo.extend((child, level + 1) for child in item)
    return deepest


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise MailCorrupt(f"mail.{what} is not a list")
    return value


def _counts(value: Any, what: str) -> dict[str, int]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0 for k, v in value.items()
    ):
        raise MailCorrupt(f"mail.{what} is not a map of agent to count")
    return dict(value)


def _message(value: Any, party: str, what: str) -> dict[str, Any]:
    if not (
        isinstance(value, dict)
        and isinstance(value.get(party), str)
        and isinstance(value.get("seq"), int)
        and not isinstance(value.get("seq"), bool)
        and value["seq"] >= 1
        and "content" in value
    ):
        raise MailCorrupt(f"mail.{what} holds a malformed message")
    return {party: value[party], "seq": value["seq"], "content": value["content"]}


def _answer(value: Any) -> dict[str, str]:
    if not (isinstance(value, dict) and isinstance(value.get("question"), str) and isinstance(value.get("answer"), str)):
        raise MailCorrupt("mail.answers holds a malformed answer")
    return {"question": value["question"], "answer": value["answer"]}
