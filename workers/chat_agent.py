"""The built-in agent: one LLM call per cycle on the whole conversation.

Cycle 1 answers the task; each later cycle asks the model to continue with the
next step. It is an ordinary `Agent`: what it does, a custom agent can do.
"""

from __future__ import annotations

from workers.agent import Agent, Step


class ChatAgent(Agent):
    def continuation(self, k: int) -> str:
        return f"Continue with step {k} of {self.max_cycles}; do not repeat earlier steps."

    async def cycle(self, k: int) -> Step:
        prompt = None if k == 1 else self.continuation(k)
        turn = [] if prompt is None else [{"role": "user", "content": prompt}]
        reply = await self.chat([*self.messages, *turn])
        return Step(reply, prompt=prompt)
