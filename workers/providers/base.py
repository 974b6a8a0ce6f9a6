"""What every provider returns and raises, so the agent loop has one code path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol


@dataclass(frozen=True)
class Reply:
    """One assistant reply plus what it cost, when the backend says."""

    content: str
    tokens: Optional[dict] = None
    cost_usd: float = 0.0
    model_ms: Optional[float] = None  # the model's own time for the call, when the backend says


class ProviderError(Exception):
    """The backend failed in a way the agent cannot recover from this cycle."""


class Provider(Protocol):
    async def chat(self, messages: list[dict], *, cycle: int) -> Reply:
        """One LLM call on the conversation; must be cancellable at any await."""
        ...

    async def aclose(self) -> None:
        """Release connections; called once when the worker stops."""
        ...
