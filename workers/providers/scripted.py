"""A deterministic stand-in for an LLM, for tests, demos and dry runs.

The reply of cycle k begins with `cycle k:` (the contract), and the rest is a
pure function of k, so exactly-once can be checked by reading a conversation.
The wait is an `asyncio.sleep`, so an IMMEDIATE interrupt cancels it mid-reply.
It stands in for the model, so its wait is reported as the model's own time
(`model_ms`), as a real backend's would be: metrics and traces of a scripted
team show model calls.
"""

from __future__ import annotations

import asyncio
import time

from workers.providers.base import Reply


def scripted_reply(cycle: int) -> str:
    """Cycle k counts the five numbers 5k-4 .. 5k, like the reference example."""
    first = 5 * (cycle - 1) + 1
    numbers = ", ".join(str(n) for n in range(first, first + 5))
    return f"cycle {cycle}: counting from {first} to {first + 4}... {numbers}"


class ScriptedProvider:
    def __init__(self, latency: float = 0.2, cost_per_reply: float = 0.0) -> None:
        self.latency = latency
        self.cost_per_reply = cost_per_reply

    async def chat(self, messages: list[dict], *, cycle: int) -> Reply:
        began = time.monotonic()
        await asyncio.sleep(self.latency)
        return Reply(content=scripted_reply(cycle), tokens=None, cost_usd=self.cost_per_reply,
                     model_ms=(time.monotonic() - began) * 1000.0)

    async def aclose(self) -> None:
        return None
