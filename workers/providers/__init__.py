"""LLM providers: one `chat` coroutine per cycle, cancellable at any await."""

from __future__ import annotations

from typing import Any, Callable, Optional

from protocol.specs import LLMSpec
from workers.providers.base import Provider, ProviderError, Reply, ToolCall
from workers.slots import Slots


def make_provider(
    llm: LLMSpec, on_retry: Optional[Callable[[dict[str, Any]], None]] = None, slots: Optional[Slots] = None
) -> Provider:
    """The provider named by an agent's merged `llm` config; `slots`: the supervisor's, for a capped server."""
    kind = llm.provider
    if kind == "scripted":
        from workers.providers.scripted import ScriptedProvider

        return ScriptedProvider(latency=llm.latency, cost_per_reply=llm.cost_per_reply)
    if kind in ("ollama", "embedded", "openai") and llm.api == "openai":  # the embedded server speaks both APIs
        from workers.providers.openai import OpenAIProvider

        return OpenAIProvider(llm, on_retry=on_retry, slots=slots)
    if kind in ("ollama", "embedded"):
        from workers.providers.ollama import OllamaProvider

        return OllamaProvider(llm, on_retry=on_retry, slots=slots)
    raise ProviderError(f"provider {kind!r} is not available in this version")


__all__ = ["Provider", "ProviderError", "Reply", "ToolCall", "make_provider"]
