"""The worker's side of an agent's mail and questions: deliveries in, waits that a stop ends.

`Mailbox` holds the rules; this adds what needs the event loop and the pipe:
a `receive` or `ask` that waits, and reports that it waits, until a message
or an answer arrives, a timeout passes, or a stop comes. Waiting is not
working: a graceful stop ends the wait at once with `WaitEnded`, which drops
the cycle in progress (its messages go back, its question is asked again next
run) instead of finishing it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable, Optional

from protocol import WAITING_FOR_MESSAGE, WAITING_FOR_PERSON, Answer, Answered, Deliver, Holding, Message, Post, Settled, Waiting
from workers.mailbox import Mailbox


class WaitEnded(BaseException):
    """A stop ended a wait: the cycle cannot complete. A BaseException, so an agent's `except Exception` lets it pass."""


class Correspondence:
    def __init__(
        self,
        box: Mailbox,
        send: Callable[[Message], None],
        stop: asyncio.Event,
        save: Callable[[], Awaitable[bool]],
    ) -> None:
        self.box = box
        self._send = send
        self._stop = stop  # set by any interrupt
        self._save = save  # a checkpoint of the last completed cycle with the mail as it is now; False: failed
        self._arrived = asyncio.Event()
        self._answer: Optional[asyncio.Future[str]] = None
        self._said: tuple[dict[str, int], dict[str, int]] = ({}, {})  # the marks and settle marks last told
        self.save_failed = False

    # ---- from the supervisor ----------------------------------------------------------------

    def on_deliver(self, message: Deliver) -> None:
        if self.box.accept(message.sender, message.seq, message.content):
            self._arrived.set()

    def on_settled(self, message: Settled) -> None:
        self.box.settle(message.receiver, message.seq)

    def on_answer(self, message: Answer) -> None:
        """A person's answer: taken if a question waits for one, else dropped (the supervisor checks first)."""
        if self._answer is not None and not self._answer.done():
            self._answer.set_result(message.text)

    # ---- to the supervisor -------------------------------------------------------------------

    def introduce(self) -> None:
        """A new worker's first word on mail: what its checkpoint holds, then its outbox again."""
        self._said = (self.box.marks(), dict(self.box.prior))
        self._send(Holding(marks=self._said[0], settle=self._said[1], fresh=True))
        for message in self.box.unposted():
            self._send(Post(to=message["to"], seq=message["seq"], content=message["content"], replay=True))

    def after_save(self) -> None:
        """A checkpoint is durable: what it sent may leave, and what it holds is settled."""
        for message in self.box.unposted():
            self._send(Post(to=message["to"], seq=message["seq"], content=message["content"]))
        marks = self.box.marks()
        self.box.saved(marks)
        said = (marks, dict(self.box.prior))
        if said != self._said:
            self._said = said
            self._send(Holding(marks=said[0], settle=said[1]))

    # ---- what an agent awaits ------------------------------------------------------------------

    async def receive(self, timeout: Optional[float]) -> Optional[dict[str, Any]]:
        """The next message, waiting up to `timeout` seconds (None: for as long as it takes)."""
        message = self.box.take()
        if message is not None:
            return _handed(message)
        if self._stop.is_set():
            raise WaitEnded()
        deadline = None if timeout is None else time.monotonic() + max(0.0, float(timeout))
        self._send(Waiting(what=WAITING_FOR_MESSAGE))
        outcome = "stopped"
        try:
            while True:
                self._arrived.clear()
                message = self.box.take()
                if message is not None:
                    outcome = "received"
                    return _handed(message)
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    outcome = "timeout"
                    return None
                await _first(self._arrived.wait(), self._stop.wait(), timeout=left)
                if self._stop.is_set():
                    raise WaitEnded()
        finally:
            self._send(Waiting(what="", outcome=outcome))

    async def ask(self, question: str) -> str:
        """A person's answer, saved before it is returned; an answer given to this cycle before comes back at once."""
        earlier = self.box.answered_before(question)
        if earlier is not None:
            return earlier
        if self._stop.is_set():
            self.box.asking = question
            raise WaitEnded()
        self._answer = asyncio.get_running_loop().create_future()
        self._send(Waiting(what=WAITING_FOR_PERSON, question=question))
        answered = False
        try:
            await _first(self._answer, self._stop.wait())
            if not self._answer.done():
                self.box.asking = question
                raise WaitEnded()
            answer = self._answer.result()
            self.box.record_answer(question, answer)
            if not await self._save():
                self.save_failed = True
                raise WaitEnded()
            answered = True
            self._send(Answered(question=question, answer=answer))
            return answer
        finally:
            self._answer = None
            if not answered:
                self._send(Waiting(what="", outcome="stopped"))


def _handed(message: dict[str, Any]) -> dict[str, Any]:
    return {"from": message["from"], "content": message["content"]}


async def _first(*waits: Awaitable[Any], timeout: Optional[float] = None) -> None:
    """Until the first of `waits` is done (or `timeout`); the tasks made here are cancelled, never left running.

    A future handed in (a person's answer) is the caller's: it is left as it is.
    """
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task, wait in zip(tasks, waits):
            if task is not wait:
                task.cancel()
