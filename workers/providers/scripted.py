"""A deterministic stand-in for an LLM, for tests, demos and dry runs.

The reply of cycle k begins with `cycle k:` (the contract), and the rest is a
pure function of k, so exactly-once can be checked by reading a conversation.
The wait is an `asyncio.sleep`, so an IMMEDIATE interrupt cancels it mid-reply.
It stands in for the model, so its wait is reported as the model's own time
(`model_ms`), as a real backend's would be: metrics and traces of a scripted
team show model calls.

Offered tools, it asks for one before it answers, as a model would: the first
tool, with every required parameter filled in from the cycle number. Once the
conversation ends with that tool's result, it answers the cycle's reply
followed by what the tool said, so a test can read that the result came back.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Optional, Sequence

from workers.providers.base import Reply, ToolCall


def scripted_reply(cycle: int) -> str:
    """Cycle k counts the five numbers 5k-4 .. 5k, like the reference example."""
    first = 5 * (cycle - 1) + 1
    numbers = ", ".join(str(n) for n in range(first, first + 5))
    return f"cycle {cycle}: counting from {first} to {first + 4}... {numbers}"


class ScriptedProvider:
    def __init__(self, latency: float = 0.2, cost_per_reply: float = 0.0) -> None:
        self.latency = latency
        self.cost_per_reply = cost_per_reply

    async def chat(self, messages: list[dict], *, cycle: int, tools: Optional[Sequence[dict[str, Any]]] = None) -> Reply:
        began = time.monotonic()
        await asyncio.sleep(self.latency)
        model_ms = (time.monotonic() - began) * 1000.0
        last = messages[-1] if messages else {}
        if tools and last.get("role") != "tool":
            schema = tools[0]["function"]
            call = ToolCall(id=f"call-{cycle}", name=schema["name"], arguments=json.dumps(scripted_arguments(schema, cycle)))
            return Reply(content="", cost_usd=self.cost_per_reply, model_ms=model_ms, tool_calls=(call,))
        text = scripted_reply(cycle)
        if last.get("role") == "tool":
            text = f"{text} [{last.get('name')} said: {last.get('content')}]"
        return Reply(content=text, tokens=None, cost_usd=self.cost_per_reply, model_ms=model_ms)

    async def aclose(self) -> None:
        return None


def scripted_arguments(schema: dict[str, Any], cycle: int) -> dict[str, Any]:
    """Every required parameter of a tool, filled in from the cycle number by its JSON type."""
    by_type: dict[str, Any] = {"string": f"cycle {cycle}", "integer": cycle, "number": float(cycle),
                               "boolean": True, "array": [], "object": {}}
    parameters = schema.get("parameters", {})
    properties = parameters.get("properties", {})
    return {name: by_type.get(properties.get(name, {}).get("type", "string")) for name in parameters.get("required", [])}
