"""The agents `bench_messages.py` runs: senders and receivers that time what they receive."""

from __future__ import annotations

import asyncio
import time

from workers.agent import Agent


class Sender(Agent):
    """One message per cycle to `params.to`, then a pause so that messages do not queue behind each other."""

    async def cycle(self, k: int) -> str:
        await self.send(self.params["to"], {"n": k})
        await asyncio.sleep(float(self.params.get("pause", 0.05)))
        return f"cycle {k}: sent"


class Receiver(Agent):
    """Records, for each message, the sender's cycle and the wall clock when `receive` returned it."""

    def setup(self) -> None:
        self.state.setdefault("got", [])

    async def cycle(self, k: int) -> str:
        message = await self.receive()
        now = time.time()
        assert message is not None
        self.state["got"].append([message["from"], message["content"]["n"], now])
        return f"cycle {k}: got"
