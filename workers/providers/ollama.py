"""An Ollama server through the official client: streamed, cancellable, retried.

Both `provider: ollama` (a user's own server) and `provider: embedded` (the
model server the supervisor starts) come here. The call streams, so the
cycle's task is awaiting a network read almost all the time: an IMMEDIATE
interrupt cancels the task, the client's stream context closes the HTTP
response, and the server sees the connection go. A GRACEFUL interrupt does
not touch the task, so the call finishes.

Transient failures (refused or dropped connections, timeouts, 5xx, an error
line in the middle of a stream) are retried a bounded number of times with
exponential backoff and full jitter; each retry is reported, and the wait is an
`asyncio.sleep`, so an interrupt cancels it like a call. Anything else (a
missing model, a bad request) fails the cycle at once.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any, Callable, Optional

import httpx
import ollama

from protocol.specs import LLMSpec
from workers.providers.base import ProviderError, Reply

MAX_ATTEMPTS = 4  # one call and three retries
BACKOFF_BASE = 0.5  # seconds; the cap of attempt n's wait is base * 2**n
BACKOFF_CAP = 8.0
DEFAULT_NUM_CTX = 2048  # Ollama's own default when options.num_ctx is not set
DEFAULT_REPLY_RESERVE = 256  # tokens kept free for the reply when num_predict is unbounded
CHARS_PER_TOKEN = 4  # a rough, tokenizer-free estimate; errs on the side of trimming

RetryReport = Callable[[dict[str, Any]], None]


class Transient(Exception):
    """A failure worth another attempt."""


def estimate_tokens(message: dict[str, Any]) -> int:
    return len(str(message.get("content", ""))) // CHARS_PER_TOKEN + 4  # + role and framing


def fit_context(messages: list[dict[str, Any]], budget: int) -> list[dict[str, Any]]:
    """The system prompt, the task and the newest turns that fit in `budget` tokens.

    The first two messages (system prompt, task) always stay: without them the
    model no longer knows what it is doing. Then turns are taken from the newest
    back while they fit; the checkpoint keeps the full history regardless.
    """
    head = messages[:2]
    rest = messages[2:]
    left = budget - sum(estimate_tokens(m) for m in head)
    kept: list[dict[str, Any]] = []
    for message in reversed(rest):
        cost = estimate_tokens(message)
        if cost > left and kept:
            break
        kept.append(message)  # the newest turn is always sent, even if alone it is too long
        left -= cost
    return head + kept[::-1]


def backoff(attempt: int, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**attempt)] (AWS's recommendation)."""
    return rng.uniform(0.0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt))


def classify(exc: BaseException, host: str, model: str) -> Exception:
    """A client failure as Transient (retry) or ProviderError (give up), in one line."""
    if isinstance(exc, Transient):  # our own finding, e.g. a stream that ended without its final message
        return exc
    if isinstance(exc, ollama.ResponseError):
        code = exc.status_code
        if code == -1:
            return Transient(f"error in the middle of the stream: {exc.error}")
        if code >= 500 or code == 429:
            return Transient(f"HTTP {code} from {host}: {exc.error}")
        if code == 404:
            return ProviderError(f"model {model!r} is not on {host}: run `ollama pull {model}`")
        return ProviderError(f"HTTP {code} from {host}: {exc.error}")
    if isinstance(exc, (asyncio.TimeoutError, httpx.TimeoutException)):
        return Transient(f"no answer from {host} in time ({type(exc).__name__})")
    if isinstance(exc, (ConnectionError, httpx.TransportError)):
        return Transient(f"cannot reach {host}: {exc or type(exc).__name__}")
    return ProviderError(f"{type(exc).__name__}: {exc}")


class OllamaProvider:
    def __init__(self, llm: LLMSpec, on_retry: Optional[RetryReport] = None) -> None:
        self.host = llm.host
        self.model = llm.model
        self.options: dict[str, Any] = dict(llm.options)
        self.timeout = llm.request_timeout
        self.price = llm.price_per_1k_tokens
        self.on_retry = on_retry or (lambda report: None)
        self.client = ollama.AsyncClient(host=self.host, timeout=self.timeout)
        self.rng = random.Random()
        num_ctx = int(self.options.get("num_ctx") or DEFAULT_NUM_CTX)
        num_predict = int(self.options.get("num_predict") or -1)
        self.context_budget = num_ctx - (num_predict if num_predict > 0 else DEFAULT_REPLY_RESERVE)

    async def chat(self, messages: list[dict], *, cycle: int) -> Reply:
        window = fit_context(messages, self.context_budget)
        for attempt in range(MAX_ATTEMPTS):
            try:
                return await asyncio.wait_for(self._once(window), self.timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every client failure is classified
                failure = classify(exc, self.host, self.model)
                if isinstance(failure, ProviderError):
                    raise failure from None
                if attempt == MAX_ATTEMPTS - 1:
                    raise ProviderError(f"{failure} (gave up after {MAX_ATTEMPTS} attempts)") from None
                delay = backoff(attempt, self.rng)
                self.on_retry({"attempt": attempt + 1, "delay_s": round(delay, 3), "error": str(failure), "cycle": cycle})
                await asyncio.sleep(delay)
        raise ProviderError("unreachable")  # pragma: no cover - the loop returns or raises

    async def _once(self, messages: list[dict]) -> Reply:
        began = time.monotonic()
        parts: list[str] = []
        final: Any = None
        stream = await self.client.chat(model=self.model, messages=messages, options=self.options or None, stream=True)
        async for chunk in stream:
            parts.append(chunk.message.content or "")
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
            cost_usd=(prompt + completion) / 1000.0 * self.price,
            model_ms=model_ms,
        )

    async def aclose(self) -> None:
        try:
            await self.client._client.aclose()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass
