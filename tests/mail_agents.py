"""Agents for the tests of agents working together: a numbered pipeline, and one that asks a person.

`Producer` sends one numbered message per cycle to `params.to`; `Relay` takes
one message per cycle and passes it on; `Consumer` takes one per cycle and
records what it got in its state, so a test can check exactly-once and order
from the checkpoint alone. `params.pause` slows a cycle down so that a test's
signals land in the middle of things.
"""

from __future__ import annotations

import asyncio

from workers.agent import Agent


class Producer(Agent):
    async def cycle(self, k: int) -> str:
        await asyncio.sleep(float(self.params.get("pause", 0)))
        await self.send(self.params["to"], {"n": k, "by": self.name})
        return f"cycle {k}: sent {k}"


class Relay(Agent):
    async def cycle(self, k: int) -> str:
        message = await self.receive()
        assert message is not None
        await asyncio.sleep(float(self.params.get("pause", 0)))
        await self.send(self.params["to"], {**message["content"], "via": self.name})
        return f"cycle {k}: passed {message['content']['n']}"


class Consumer(Agent):
    def setup(self) -> None:
        self.state.setdefault("got", [])

    async def cycle(self, k: int) -> str:
        message = await self.receive()
        assert message is not None
        await asyncio.sleep(float(self.params.get("pause", 0)))
        self.state["got"].append(message["content"]["n"])
        return f"cycle {k}: got {message['content']['n']} from {message['from']}"


class Asker(Agent):
    """Cycle 2 asks a person; the answer goes into the state and the reply."""

    def setup(self) -> None:
        self.state.setdefault("answers", [])

    async def cycle(self, k: int) -> str:
        if k == 2:
            answer = await self.ask(self.params.get("question", "Go on?"))
            self.state["answers"].append(answer)
            return f"cycle {k}: told {answer}"
        return f"cycle {k}: worked"


class Waiter(Agent):
    """Waits for a message nobody sends, with an optional timeout."""

    async def cycle(self, k: int) -> str:
        timeout = self.params.get("timeout")
        message = await self.receive(timeout=timeout)
        return f"cycle {k}: {'nothing' if message is None else message['content']}"


class Stranger(Agent):
    """Sends what `params` says: to an agent the team may not have, or content that is not JSON."""

    async def cycle(self, k: int) -> str:
        content = self.params.get("content", "hi")
        if self.params.get("not_json"):
            content = {1, 2}  # a set: not JSON
        await self.send(self.params["to"], content)
        return f"cycle {k}: sent"
