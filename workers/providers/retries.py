"""Retries for the providers that call a model server over the network: one policy, whatever the API.

A call is made of attempts. An attempt that fails transiently (a refused or
dropped connection, a timeout, HTTP 5xx or 429, a stream that breaks off or
cannot be read) is tried again, a bounded number of times, after a wait
drawn with exponential backoff and full jitter, or as long as the server's
`Retry-After` asks (bounded too). Each retry is reported; anything else fails
the cycle at once with one line. The wait is an `asyncio.sleep`, so an
interrupt cancels it like a call.

The provider hands `with_retries` one coroutine function per attempt; that
attempt is the unit a caller may wrap (a concurrency slot, a choice among
servers) without touching the policy here.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any, Awaitable, Callable, Optional

import httpx

from protocol.specs import LLMSpec
from workers.providers.base import ProviderError, Reply
from workers.slots import Slots

MAX_ATTEMPTS = 4  # one call and three retries
BACKOFF_BASE = 0.5  # seconds; the cap of attempt n's wait is base * 2**n
BACKOFF_CAP = 8.0
RETRY_AFTER_CAP = 30.0  # seconds: a server's Retry-After is honoured up to this, never longer
DETAIL_MAX = 300  # characters of a server's own error text in a line

RetryReport = Callable[[dict[str, Any]], None]


class Transient(Exception):
    """A failure worth another attempt; `retry_after` is the server's own wait, in seconds, when it gave one.

    `busy`: the server is well but full (HTTP 429), so a pool does not rest it.
    """

    def __init__(self, message: str, retry_after: Optional[float] = None, busy: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.busy = busy


def slot_for(slots: Optional[Slots], llm: LLMSpec) -> contextlib.AbstractAsyncContextManager[None]:
    """What an attempt holds while it calls the server: a slot of its cap, or nothing when uncapped."""
    if slots is None or llm.max_concurrent is None:
        return contextlib.nullcontext()
    return slots.slot(llm.server, llm.max_concurrent)


def backoff(attempt: int, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**attempt)] (AWS's recommendation)."""
    return rng.uniform(0.0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt))


def retry_delay(failure: Transient, attempt: int, rng: random.Random) -> float:
    """The server's Retry-After when it gave one (bounded), else the jittered backoff."""
    if failure.retry_after is not None:
        return min(max(0.0, failure.retry_after), RETRY_AFTER_CAP)
    return backoff(attempt, rng)


def retry_after(headers: Optional[Mapping[str, str]]) -> Optional[float]:
    """Seconds from `Retry-After-Ms`, or `Retry-After` as seconds or an HTTP date; None if absent or unreadable."""
    if not headers:
        return None
    try:
        millis = headers.get("retry-after-ms")
        if millis is not None:
            return max(0.0, float(millis) / 1000.0)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


def detail(text: object) -> str:
    """A server's error text as one short line."""
    line = " ".join(str(text).split())
    return line if len(line) <= DETAIL_MAX else line[: DETAIL_MAX - 3] + "..."


def network_failure(exc: BaseException, where: str) -> Optional[Transient]:
    """A timeout or a connection failure of any client as Transient; None if `exc` is neither."""
    if isinstance(exc, Transient):  # the provider's own finding, e.g. a stream that ended early
        return exc
    if isinstance(exc, (asyncio.TimeoutError, httpx.TimeoutException)):
        return Transient(f"no answer from {where} in time ({type(exc).__name__})")
    if isinstance(exc, (ConnectionError, httpx.TransportError)):
        return Transient(f"cannot reach {where}: {exc or type(exc).__name__}")
    return None


def status_failure(code: int, where: str, text: str, wait: Optional[float] = None) -> Exception:
    """An HTTP error status: 5xx and 429 are worth another attempt, any other fails at once."""
    if code >= 500 or code == 429:
        return Transient(f"HTTP {code} from {where}: {text}", retry_after=wait, busy=code == 429)
    return ProviderError(f"HTTP {code} from {where}: {text}")


async def with_retries(
    attempt: Callable[[], Awaitable[Reply]],
    classify: Callable[[BaseException], Exception],
    *,
    cycle: int,
    on_retry: RetryReport,
    rng: random.Random,
) -> Reply:
    """`attempt()` until it returns, a failure is final, or MAX_ATTEMPTS are spent; ProviderError then."""
    for number in range(MAX_ATTEMPTS):
        try:
            return await attempt()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every client failure is classified
            failure = classify(exc)
            if not isinstance(failure, Transient):
                raise (failure if isinstance(failure, ProviderError) else ProviderError(str(failure))) from None
            if number == MAX_ATTEMPTS - 1:
                raise ProviderError(f"{failure} (gave up after {MAX_ATTEMPTS} attempts)") from None
            delay = retry_delay(failure, number, rng)
            on_retry({"attempt": number + 1, "delay_s": round(delay, 3), "error": str(failure), "cycle": cycle})
            await asyncio.sleep(delay)
    raise ProviderError("unreachable")  # pragma: no cover - the loop returns or raises
