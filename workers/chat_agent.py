"""The built-in agent: one LLM call per cycle on the whole conversation.

Cycle 1 answers the task; each later cycle asks the model to continue with the
next step. With the config's `tools`, the model may call those functions before it
answers (`Agent.chat`). It takes part in a team without code: with `send_to` it sends each
reply to those agents, and when others send to it, each cycle first waits for
the next message and answers it. It is an ordinary `Agent`: what it does, a
custom agent can do.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from workers.agent import Agent, Step


class ChatAgent(Agent):
    def continuation(self, k: int) -> str:
        return f"Continue with step {k} of {self.max_cycles}; do not repeat earlier steps."

    def incoming(self, message: dict[str, Any]) -> str:
        """A message from another agent, as this cycle's prompt."""
        content = message["content"]
        text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
        return f"Message from {message['from']}:\n{text}"

    async def cycle(self, k: int) -> Step:
        prompt: Optional[str] = None if k == 1 else self.continuation(k)
        if self.senders:
            message = await self.receive()
            if message is not None:
                prompt = self.incoming(message)
        turn = [] if prompt is None else [{"role": "user", "content": prompt}]
        reply = await self.chat([*self.messages, *turn], tools=self.tools)
        for to in self.send_to:
            await self.send(to, reply)
        return Step(reply, prompt=prompt)
