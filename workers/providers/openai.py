"""Any server with OpenAI's chat completions API, through the official client: streamed, cancellable, retried.

`provider: openai` (vLLM, llama.cpp's server, LM Studio, OpenAI itself) and
`provider: embedded` with `api: openai` come here. As with Ollama, the call
streams (server-sent events, usage in a last chunk), so an IMMEDIATE interrupt
cancels the cycle's task at a network read, the stream's context closes the
HTTP response, and the server sees the connection go.

The key is read from the environment variable the config names, in this
process, and is never put in a message: every line this module builds from
a server's or the client's words has the key masked, in case a server
echoes it back.

Failures are sorted into worth-retrying (`workers.providers.retries` does the
retrying, honouring Retry-After) and final: a connection refused or dropped, a
timeout, 5xx, 429, an error event mid-stream, a stream that stops before its
end or cannot be read are retried; any other 4xx fails at once, in one line.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import ssl
import sys
import time
from typing import Any, Optional, Sequence, TypeGuard

import openai

from protocol.specs import LLMSpec
from workers.providers.base import ProviderError, Reply, ToolCall
from workers.providers.retries import (
    RetryReport,
    Transient,
    detail,
    network_failure,
    retry_after,
    status_failure,
    with_retries,
)
from workers.providers.first_call import MODEL as REHEARSAL_MODEL, rehearse
from workers.providers.tls import SharedContext
from workers.providers.pool import ServerPool
from workers.slots import Slots
from workers.providers.window import context_budget, fit_context

NO_KEY = "no-key"  # the client insists on some key; servers that check none ignore it
MASK = "[key]"
MAX_COUNT = 2**53  # tokens in one call; a server's larger (or hostile) figure is not believed
MAX_MS = 1e9  # milliseconds of model time in one call (11 days): NaN, infinity and beyond are not believed
MAX_TOOL_CALLS = 128  # tool calls in one reply; a server's higher index is not believed
LOCAL_OPTIONS = frozenset({"num_ctx"})  # read here (the context size to fit), not sent: OpenAI would refuse it


def api_key(llm: LLMSpec) -> Optional[str]:
    """The key from the variable `api_key_env` names; None when no variable is named."""
    if llm.api_key_env is None:
        return None
    key = os.environ.get(llm.api_key_env)
    if not key:
        raise ProviderError(f"llm.api_key_env: the environment variable {llm.api_key_env} is not set (or empty)")
    return key


def _library_tls() -> ssl.SSLContext:
    """The default context of the httpx the openai client is built on (httpx2 now, httpx before), as it makes it."""
    library = sys.modules[openai.DefaultAsyncHttpxClient.__mro__[1].__module__.partition(".")[0]]
    return library.create_ssl_context()  # type: ignore[no-any-return]


TLS = SharedContext(_library_tls)


def warm() -> None:
    """In the forkserver: the TLS context every worker's clients share (`tls.py`), and their first calls made."""
    TLS.get()
    rehearse(lambda url: LLMSpec(provider="openai", host=url, base_url=url + "/v1", model=REHEARSAL_MODEL, api="openai"))


def _http_client() -> dict[str, Any]:
    """openai's own default HTTP client, on the shared TLS context; nothing if there is none."""
    arguments = TLS.client_arguments()
    return {"http_client": openai.DefaultAsyncHttpxClient(**arguments)} if arguments else {}


class OpenAIProvider:
    def __init__(self, llm: LLMSpec, on_retry: Optional[RetryReport] = None, slots: Optional[Slots] = None) -> None:
        if not llm.base_url:  # the spec requires it for the openai api
            raise ProviderError("llm.base_url: required for the openai api")
        self.llm = llm
        self.base_url = llm.base_url
        self.model = llm.model
        self.key = api_key(llm)
        self.body = {k: v for k, v in llm.options.items() if k not in LOCAL_OPTIONS}  # handed over as they are
        self.timeout = llm.request_timeout
        self.on_retry = on_retry or (lambda report: None)
        self.slots = slots  # the supervisor's slots of a capped server
        self.pool = ServerPool(llm, llm.hosts or (llm.base_url,), slots)
        self.rng = random.Random()
        self.context_budget = context_budget(dict(llm.options), ("max_completion_tokens", "max_tokens"))
        try:  # max_retries=0: the retries are ours (one policy, reported, cancellable)
            self.clients = {url: openai.AsyncOpenAI(base_url=url, api_key=self.key or NO_KEY, max_retries=0,
                                                    timeout=self.timeout, **_http_client())
                            for url in self.pool.urls.values()}
        except Exception as exc:  # noqa: BLE001 - the client's own checks: one line, the key masked
            raise ProviderError(self.masked(f"cannot set up the openai client: {detail(exc)}")) from None

    def masked(self, text: str) -> str:
        return text.replace(self.key, MASK) if self.key else text

    async def chat(self, messages: list[dict], *, cycle: int, tools: Optional[Sequence[dict[str, Any]]] = None) -> Reply:
        window = openai_messages(fit_context(messages, self.context_budget))
        offered = {"tools": list(tools)} if tools else {}  # no `tools` key at all without tools: some servers refuse []
        return await with_retries(lambda: self._attempt(window, offered), self.classify, cycle=cycle,
                                  on_retry=self.on_retry, rng=self.rng)

    async def _attempt(self, messages: list[dict], offered: dict[str, Any]) -> Reply:
        """One call in a slot of a server (waiting for it is not part of the call), bounded by request_timeout."""
        async with self.pool.attempt() as call:
            try:
                return await asyncio.wait_for(self._once(call.url, messages, offered), self.timeout)
            except Exception as exc:  # noqa: BLE001 - sorted here, where the server is known
                failure = self.classify(exc, call.url)
                call.failed(failure)
                raise failure from None

    async def _once(self, base_url: str, messages: list[dict], offered: dict[str, Any]) -> Reply:
        began = time.monotonic()
        reading = StreamReading()
        stream = await self.clients[base_url].chat.completions.create(  # type: ignore[call-overload]
            model=self.model, messages=messages, stream=True,
            stream_options={"include_usage": True}, extra_body=self.body or None, **offered,
        )
        async with stream:  # closes the response on every way out, a cancellation included
            try:
                async for chunk in stream:
                    reading.take(chunk)
            except json.JSONDecodeError as exc:
                raise Transient(f"malformed server-sent event from {base_url}: {exc.msg}") from None
            except openai.APITimeoutError:
                raise
            except openai.APIConnectionError as exc:  # the connection went mid-stream
                cause = exc.__cause__ or exc
                raise Transient(f"the stream from {base_url} broke off: {detail(cause) or type(cause).__name__}") from None
        if not reading.finished:
            raise Transient(f"the stream from {base_url} stopped before its end")
        tokens = None
        cost = 0.0
        if reading.usage is not None:
            prompt, completion = reading.usage
            tokens = {"prompt": prompt, "completion": completion}
            cost = self.llm.cost_usd(prompt, completion)
        return Reply(content="".join(reading.parts), tokens=tokens, cost_usd=cost,
                     model_ms=reading.model_ms or (time.monotonic() - began) * 1000.0, tool_calls=reading.tool_calls())

    def classify(self, exc: BaseException, where: Optional[str] = None) -> Exception:
        """A client failure as Transient (retry) or ProviderError (give up): one line, the key masked."""
        if isinstance(exc, ProviderError):  # already sorted, by the attempt that knew which server it called
            return exc
        failure = self._classify(exc, where or self.base_url)
        message = self.masked(str(failure))
        if isinstance(failure, Transient):
            return Transient(message, failure.retry_after, failure.busy)
        return ProviderError(message)

    def _classify(self, exc: BaseException, where: str) -> Exception:
        if isinstance(exc, openai.APIStatusError):
            code = exc.status_code
            text = detail(exc.message)
            if code == 404:
                return ProviderError(f"HTTP 404 from {where}: {text}: check llm.model ({self.model!r}) against "
                                     f"the models the server lists, and llm.base_url")
            if code in (401, 403):
                who = f"the key in ${self.llm.api_key_env}" if self.llm.api_key_env else "a key: set llm.api_key_env"
                return ProviderError(f"HTTP {code} from {where}: {text}: the server wants {who}")
            return status_failure(code, where, text, retry_after(exc.response.headers))
        if isinstance(exc, openai.APITimeoutError):
            return Transient(f"no answer from {where} in time")
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__
            return Transient(f"cannot reach {where}: {detail(cause or exc) or type(cause or exc).__name__}")
        if isinstance(exc, openai.APIError):  # an error event in the middle of the stream
            return Transient(f"error in the middle of the stream from {where}: {detail(exc.message)}")
        return network_failure(exc, where) or ProviderError(f"{type(exc).__name__}: {detail(exc)}")

    async def aclose(self) -> None:
        for client in self.clients.values():
            try:
                await client.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass


class StreamReading:
    """What the chunks of one stream have said so far: text, whether it finished, the usage, the model's time.

    The client builds chunks without validating them, so a field of the wrong
    shape is read as missing, and a stream made only of such chunks ends
    unfinished (and is retried).
    """

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.finished = False
        self.usage: Optional[tuple[int, int]] = None
        self.model_ms: Optional[float] = None
        self.calls: dict[int, dict[str, str]] = {}  # tool calls by index, their deltas joined

    def take(self, chunk: Any) -> None:
        choices = getattr(chunk, "choices", None)
        for choice in choices if isinstance(choices, list) else []:
            delta = getattr(choice, "delta", None)
            content = getattr(delta, "content", None)
            if isinstance(content, str):
                self.parts.append(content)
            self._take_calls(getattr(delta, "tool_calls", None))
            if getattr(choice, "finish_reason", None):
                self.finished = True
                self.model_ms = _model_ms(getattr(chunk, "model_extra", None))
        usage = getattr(chunk, "usage", None)
        prompt = getattr(usage, "prompt_tokens", None)
        completion = getattr(usage, "completion_tokens", None)
        if _count(prompt) and _count(completion):
            self.usage = (prompt, completion)


    def _take_calls(self, deltas: Any) -> None:
        """Tool-call deltas: the first of an index brings its id and name, the rest more of its arguments."""
        for delta in deltas if isinstance(deltas, list) else []:
            index = getattr(delta, "index", None)
            if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < MAX_TOOL_CALLS:
                continue
            call = self.calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
            function = getattr(delta, "function", None)
            for key, value in (("id", getattr(delta, "id", None)), ("name", getattr(function, "name", None))):
                if isinstance(value, str) and value:
                    call[key] = value
            arguments = getattr(function, "arguments", None)
            if isinstance(arguments, str):
                call["arguments"] += arguments

    def tool_calls(self) -> tuple[ToolCall, ...]:
        """The calls the model asked for, in order; one without a name is no call."""
        return tuple(ToolCall(id=call["id"] or f"call-{index + 1}", name=call["name"], arguments=call["arguments"])
                     for index, call in sorted(self.calls.items()) if call["name"])


def openai_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation as the API takes it: a tool result carries `tool_call_id`, not the tool's name."""
    return [{k: v for k, v in m.items() if k != "name"} if m.get("role") == "tool" else m for m in messages]


def _count(value: Any) -> TypeGuard[int]:
    """A token count worth believing: a whole number, not negative, not absurd (it travels to the supervisor)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < MAX_COUNT


def _model_ms(extra: Any) -> Optional[float]:
    """The model's own milliseconds from llama.cpp's `timings`, when the server sends them."""
    timings = extra.get("timings") if isinstance(extra, dict) else None
    if not isinstance(timings, dict):
        return None
    total = 0.0
    for key in ("prompt_ms", "predicted_ms"):
        value = timings.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < MAX_MS:
            total += float(value)
    return total or None
