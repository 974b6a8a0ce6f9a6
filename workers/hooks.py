"""Hooks: the config's functions, called by the worker at points of an agent's life.

Each hook gets one plain dict (`hook`, `agent`, `cycle`, and what the point
knows: `checkpoint_id`, `status`, `reply`, `interrupt`). A coroutine function is
awaited; a plain function runs in a daemon thread of its own, so a slow one
neither blocks the worker's loop (heartbeats, interrupts) nor holds up its exit.
A hook that raises, cannot be imported, or overruns its `timeout` is reported
(`hook_failed`, `hook_timeout`) and skipped: hooks never break a cycle or a stop.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import time
from collections.abc import Sequence
from typing import Any, Callable, Optional

from protocol.specs import HookSpec
from workers.threads import in_daemon_thread

Report = Callable[[str, dict[str, Any]], None]  # (event, fields) to the supervisor's stream


def _resolve(call: str) -> Callable[..., Any]:
    module, _, name = call.partition(":")
    function = getattr(importlib.import_module(module), name)
    if not callable(function):
        raise TypeError(f"{call} is not callable")
    return function  # type: ignore[no-any-return]


class Hooks:
    def __init__(self, hooks: Sequence[HookSpec], report: Report) -> None:
        """`hooks` come sorted by priority from the supervisor; the order is kept."""
        self.hooks = list(hooks)
        self.report = report
        self._functions: dict[str, Callable[..., Any]] = {}

    def __bool__(self) -> bool:
        return bool(self.hooks)

    async def run(self, point: str, *, limit: Optional[float] = None, **payload: Any) -> None:
        """Every hook of `point`, in order; `limit` bounds them all together (an immediate stop)."""
        deadline = None if limit is None else time.monotonic() + limit
        for hook in self.hooks:
            if hook.on != point:
                continue
            timeout = hook.timeout if deadline is None else min(hook.timeout, deadline - time.monotonic())
            if timeout <= 0:
                self.report("hook_timeout", {"hook": hook.on, "call": hook.call, "timeout_s": 0.0})
                continue
            await self._run_one(hook, timeout, {"hook": point, **payload})

    async def _run_one(self, hook: HookSpec, timeout: float, payload: dict[str, Any]) -> None:
        where = {"hook": hook.on, "call": hook.call}
        began = time.monotonic()
        try:
            function = self._functions.get(hook.call) or _resolve(hook.call)
            self._functions[hook.call] = function
            if asyncio.iscoroutinefunction(function):
                await asyncio.wait_for(function(payload), timeout)
            else:
                await asyncio.wait_for(asyncio.shield(in_daemon_thread(functools.partial(function, payload), "hook")), timeout)
        except asyncio.TimeoutError:
            self.report("hook_timeout", {**where, "timeout_s": round(timeout, 3)})
        except asyncio.CancelledError:
            raise  # an immediate stop: the hook is abandoned with the cycle
        except Exception as exc:  # noqa: BLE001 - a hook's bug is the hook's, never the agent's
            message = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            self.report("hook_failed", {**where, "error": message,
                                        "duration_ms": round((time.monotonic() - began) * 1000.0, 3)})
