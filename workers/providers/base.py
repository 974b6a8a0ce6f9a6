"""What every provider returns and raises, so the agent loop has one code path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Protocol, Sequence


@dataclass(frozen=True)
class ToolCall:
    """One call the model asks for: `arguments` as the model wrote them (JSON text, possibly invalid)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Reply:
    """One assistant reply plus what it cost, when the backend says; with `tool_calls`, a request to run tools."""

    content: str
    tokens: Optional[dict] = None
    cost_usd: float = 0.0
    model_ms: Optional[float] = None  # the model's own time for the call, when the backend says
    tool_calls: tuple[ToolCall, ...] = ()


class ProviderError(Exception):
    """The backend failed in a way the agent cannot recover from this cycle."""


class Provider(Protocol):
    async def chat(self, messages: list[dict], *, cycle: int, tools: Optional[Sequence[dict[str, Any]]] = None) -> Reply:
        """One LLM call on the conversation, offering `tools` (JSON schemas); must be cancellable at any await.

        Messages are in OpenAI's shape: an assistant message may hold
        `tool_calls` ({"id", "type": "function", "function": {"name",
        "arguments": JSON text}}), answered by `{"role": "tool",
        "tool_call_id", "name", "content"}` messages; each provider translates.
        """
        ...

    async def aclose(self) -> None:
        """Release connections; called once when the worker stops."""
        ...
