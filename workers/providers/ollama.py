"""An Ollama server through the official client: streamed, cancellable, retried.

Both `provider: ollama` (a user's own server) and `provider: embedded` (the
model server the supervisor starts) come here. The call streams, so the
cycle's task is awaiting a network read almost all the time: an IMMEDIATE
interrupt cancels the task, the client's stream context closes the HTTP
response, and the server sees the connection go. A GRACEFUL interrupt does
not touch the task, so the call finishes.

Transient failures (refused or dropped connections, timeouts, 5xx, an error
line in the middle of a stream) are retried by `workers.providers.retries`;
anything else (a missing model, a bad request) fails the cycle at once.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any, Optional, Sequence

import httpx
import ollama

from protocol.specs import LLMSpec
from workers.providers.base import ProviderError, Reply, ToolCall
from workers.providers.pool import ServerPool
from workers.providers.retries import RetryReport, Transient, network_failure, status_failure, with_retries
from workers.providers.first_call import MODEL as REHEARSAL_MODEL, rehearse
from workers.providers.tls import SharedContext
from workers.slots import Slots
from workers.providers.window import context_budget, estimate_tokens, fit_context

__all__ = ["OllamaProvider", "Transient", "classify", "estimate_tokens", "fit_context"]


def classify(exc: BaseException, host: str, model: str) -> Exception:
    """A client failure as Transient (retry) or ProviderError (give up), in one line."""
    if isinstance(exc, ProviderError):  # already sorted, by the attempt that knew which server it called
        return exc
    if isinstance(exc, ollama.ResponseError):
        code = exc.status_code
        if code == -1:
            return Transient(f"error in the middle of the stream: {exc.error}")
        if code == 404:
            return ProviderError(f"model {model!r} is not on {host}: run `ollama pull {model}`")
        return status_failure(code, host, exc.error)
    return network_failure(exc, host) or ProviderError(f"{type(exc).__name__}: {exc}")


TLS = SharedContext(httpx.create_ssl_context)  # ollama's client is httpx's


def warm() -> None:
    """In the forkserver: the TLS context every worker's clients share (`tls.py`), and their first calls made."""
    TLS.get()
    rehearse(lambda url: LLMSpec(provider="ollama", host=url, model=REHEARSAL_MODEL))


class OllamaProvider:
    def __init__(self, llm: LLMSpec, on_retry: Optional[RetryReport] = None, slots: Optional[Slots] = None) -> None:
        self.llm = llm
        self.host = llm.host
        self.model = llm.model
        self.options: dict[str, Any] = dict(llm.options)
        self.timeout = llm.request_timeout
        self.on_retry = on_retry or (lambda report: None)
        self.slots = slots  # the supervisor's slots of a capped server
        self.pool = ServerPool(llm, llm.hosts or (llm.host,), slots)
        self.clients = {url: ollama.AsyncClient(host=url, timeout=self.timeout, **TLS.client_arguments())
                        for url in self.pool.urls.values()}
        self.rng = random.Random()
        self.context_budget = context_budget(self.options, ("num_predict",))

    async def chat(self, messages: list[dict], *, cycle: int, tools: Optional[Sequence[dict[str, Any]]] = None) -> Reply:
        window = ollama_messages(fit_context(messages, self.context_budget))
        offered = list(tools) if tools else None
        return await with_retries(lambda: self._attempt(window, offered), lambda exc: classify(exc, self.host, self.model),
                                  cycle=cycle, on_retry=self.on_retry, rng=self.rng)

    async def _attempt(self, messages: list[dict], tools: Optional[list[dict[str, Any]]]) -> Reply:
        """One call in a slot of a server (waiting for it is not part of the call), bounded by request_timeout."""
        async with self.pool.attempt() as call:
            try:
                return await asyncio.wait_for(self._once(self.clients[call.url], messages, tools), self.timeout)
            except Exception as exc:  # noqa: BLE001 - sorted here, where the server is known
                failure = classify(exc, call.url, self.model)
                call.failed(failure)
                raise failure from None

    async def _once(self, client: ollama.AsyncClient, messages: list[dict], tools: Optional[list[dict[str, Any]]]) -> Reply:
        began = time.monotonic()
        parts: list[str] = []
        calls: list[ToolCall] = []
        final: Any = None
        stream = await client.chat(model=self.model, messages=messages, tools=tools, options=self.options or None,
                                   stream=True)
        async for chunk in stream:
            parts.append(chunk.message.content or "")
            for call in chunk.message.tool_calls or ():  # Ollama sends each call whole; it gives them no ids
                calls.append(ToolCall(id=f"call-{len(calls) + 1}", name=call.function.name,
                                      arguments=json.dumps(dict(call.function.arguments or {}), ensure_ascii=False)))
            if chunk.done:
                final = chunk
        if final is None:
            raise Transient("the stream ended without its final message")
        prompt = int(final.prompt_eval_count or 0)
        completion = int(final.eval_count or 0)
        model_ms = (final.total_duration or 0) / 1e6 or (time.monotonic() - began) * 1000.0
        return Reply(
            content="".join(parts),
            tokens={"prompt": prompt, "completion": completion},
            cost_usd=self.llm.cost_usd(prompt, completion),
            model_ms=model_ms,
            tool_calls=tuple(calls),
        )

    async def aclose(self) -> None:
        for client in self.clients.values():
            try:
                await client._client.aclose()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass


def ollama_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation in Ollama's shape: tool-call arguments as objects, tool results named by `tool_name`."""
    shaped: list[dict[str, Any]] = []
    for message in messages:
        if message.get("tool_calls"):
            calls = [{"function": {"name": call["function"]["name"], "arguments": _arguments(call["function"]["arguments"])}}
                     for call in message["tool_calls"]]
            shaped.append({"role": "assistant", "content": message.get("content", ""), "tool_calls": calls})
        elif message.get("role") == "tool":
            shaped.append({"role": "tool", "content": message.get("content", ""), "tool_name": message.get("name", "")})
        else:
            shaped.append(message)
    return shaped


def _arguments(text: Any) -> dict[str, Any]:
    """Arguments the model wrote as JSON text, as the object Ollama wants back (anything else as none)."""
    try:
        value = json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
