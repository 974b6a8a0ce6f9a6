"""LLM providers: one `chat` coroutine per cycle, cancellable at any await."""

from __future__ import annotations

import importlib
from typing import Any, Callable, Optional

from protocol.specs import LLMSpec
from workers.providers.base import Provider, ProviderError, Reply, ToolCall
from workers.providers.httpx_cli import keep_httpx_cli_out
from workers.slots import Slots


def provider_module(kind: str, api: str) -> Optional[str]:
    """The module of the provider an agent's `llm` names (`provider`, wire `api`); None: no such provider."""
    if kind == "scripted":
        return "workers.providers.scripted"
    if kind in ("ollama", "embedded", "openai") and api == "openai":  # the embedded server speaks both APIs
        return "workers.providers.openai"
    if kind in ("ollama", "embedded"):
        return "workers.providers.ollama"
    return None


def make_provider(
    llm: LLMSpec, on_retry: Optional[Callable[[dict[str, Any]], None]] = None, slots: Optional[Slots] = None
) -> Provider:
    """The provider named by an agent's merged `llm` config; `slots`: the supervisor's, for a capped server."""
    module = provider_module(llm.provider, llm.api)
    keep_httpx_cli_out()  # before a model client imports httpx (the forkserver's `preload` has done it already)
    if module == "workers.providers.scripted":
        from workers.providers.scripted import ScriptedProvider

        return ScriptedProvider(latency=llm.latency, cost_per_reply=llm.cost_per_reply)
    if module == "workers.providers.openai":
        from workers.providers.openai import OpenAIProvider

        return OpenAIProvider(llm, on_retry=on_retry, slots=slots)
    if module == "workers.providers.ollama":
        from workers.providers.ollama import OllamaProvider

        return OllamaProvider(llm, on_retry=on_retry, slots=slots)
    raise ProviderError(f"provider {llm.provider!r} is not available in this version")


def preload(kinds: list[list[str]]) -> None:
    """Import the providers of these (`provider`, `api`) pairs now: run in the forkserver, for every later worker."""
    keep_httpx_cli_out()
    for kind, api in kinds:
        module = provider_module(kind, api)
        if module is not None:
            warm = getattr(importlib.import_module(module), "warm", None)
            if warm is not None:
                warm()  # e.g. the TLS context its clients share (`tls.py`)


__all__ = ["Provider", "ProviderError", "Reply", "ToolCall", "make_provider", "preload", "provider_module"]
