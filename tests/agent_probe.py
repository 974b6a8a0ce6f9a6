"""Agent classes the custom-agent tests name in their configs (`tests.agent_probe:...`).

`Probe` makes two LLM calls a cycle (so a cycle's cost and tokens are sums),
records every cycle it completes in its state, and misbehaves on request via
`params`, one way per key, so each failure path runs in a real worker.
"""

from __future__ import annotations

import asyncio

from workers.agent import Agent, Step
from workers.chat_agent import ChatAgent


class Probe(Agent):
    def setup(self) -> None:
        if self.params.get("fail_in_setup"):
            raise ValueError("setup refused")
        self.state.setdefault("done", [])
        self.state["runs"] = self.state.get("runs", 0) + 1

    async def cycle(self, k: int) -> object:
        self.state["partial"] = k  # a cycle that never completes must not leave this on disk
        draft = await self.chat([*self.messages, {"role": "user", "content": f"draft {k}"}])
        await self.chat([{"role": "user", "content": f"check {k}"}])  # a second call, counted too
        if k == self.params.get("hang_at"):
            await asyncio.sleep(3600)  # until an immediate stop cancels it
        if k == self.params.get("raise_at"):
            raise RuntimeError(f"probe failed in cycle {k}")
        if k == self.params.get("bad_return_at"):
            return 42
        if k == self.params.get("bad_state_at"):
            self.state["when"] = object()
        if k == self.params.get("stop_at"):
            self.request_stop(f"probe {self.name} is done at {k}")
        del self.state["partial"]
        self.state["done"].append(k)
        return Step(draft, prompt=f"draft {k}")


class NotAnAgent:
    async def cycle(self, k: int) -> str:
        return f"cycle {k}: not an agent"


class AsyncProbe(Probe):
    async def setup(self) -> None:  # type: ignore[override]
        await asyncio.sleep(0.01)  # e.g. opening a client
        super().setup()
        self.state["opened"] = True


HOSTILE = (
    "cycle {k}: \x1b]52;c;QUJD\x07 clipboard, \x1b]0;pwned\x07 title, \x1b[2J clear,"
    " \x9b31m C1, \u202eesrever bidi, \x00 nul"
)


class Hostile(Agent):
    """A prompt-injected model: its replies carry escape sequences meant for the operator's terminal."""

    async def cycle(self, k: int) -> str:
        return HOSTILE.format(k=k)


class TraceProbe(Agent):
    """Records the trace context its worker was given, as the agent sees it and as $TRACEPARENT."""

    async def cycle(self, k: int) -> str:
        import os

        self.state["traceparent"] = self.traceparent
        self.state["environ"] = os.environ.get("TRACEPARENT")
        return f"cycle {k}: traced"


class Blocker(ChatAgent):
    """Blocks its worker's whole event loop once, in cycle `block_at` (a call that never yields).

    `marker`: a file it creates first, so that the run after the kill goes through.
    """

    async def cycle(self, k: int) -> Step:
        import time
        from pathlib import Path

        marker = Path(str(self.params["marker"]))
        if k == self.params.get("block_at") and not marker.exists():
            marker.touch()
            time.sleep(float(self.params.get("block_s", 60)))  # type: ignore[arg-type]
        return await super().cycle(k)
