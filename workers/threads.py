"""A user's blocking function (a hook, a tool), awaited from the worker's loop without blocking it."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable, Optional


def in_daemon_thread(call: Callable[[], Any], name: str) -> "asyncio.Future[Any]":
    """Run `call()` in a daemon thread; the future settles with what it returns or raises.

    A daemon thread, not one of asyncio's executor threads: a thread cannot be
    killed, so one that hangs is abandoned when its wait is cancelled or times
    out, and the worker never waits for it on its way out.
    """
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, error: Optional[BaseException]) -> None:
        if outcome.done():  # the wait was cancelled or timed out
            return
        if error is not None:
            outcome.set_exception(error)
        else:
            outcome.set_result(result)

    def work() -> None:
        try:
            result, error = call(), None
        except BaseException as exc:  # noqa: BLE001 - carried back to the waiting task
            result, error = None, exc
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:  # the loop has closed: nobody waits any more
            pass

    threading.Thread(target=work, name=name, daemon=True).start()
    return outcome
