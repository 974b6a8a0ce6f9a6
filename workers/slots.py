"""The worker's side of a model server's concurrency cap: a slot around each call, granted by the supervisor.

A provider wraps each attempt of a call in `slot()`: the request goes up the
pipe, the attempt waits for its grant, and the slot goes back when the
attempt ends, however it ends (success, failure, a timeout, a cancel). The
wait is outside the request's timeout, and it is not a call in flight: any
stop ends it at once with `WaitEnded`, which drops the cycle as a wait for a
message does. The time spent waiting is added up per cycle (`queued_ms`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from typing import AsyncIterator, Callable, Optional

from protocol import Message, SlotGrant, SlotRelease, SlotRequest
from workers.correspondence import WaitEnded


class Slots:
    def __init__(self, send: Callable[[Message], None], stop: asyncio.Event) -> None:
        self._send = send
        self._stop = stop  # set by any interrupt
        self._ids = itertools.count(1)
        self._grants: dict[int, asyncio.Future[None]] = {}
        self.queued_ms = 0.0  # waited for slots since the cycle began (the loop resets it)
        self.used = False  # some call took a slot since the cycle began: the cycle reports queued_ms

    def begin_cycle(self) -> None:
        self.queued_ms, self.used = 0.0, False

    def on_grant(self, grant: SlotGrant) -> None:
        """The supervisor's grant: taken by the waiting request, dropped if that wait has ended."""
        waiting = self._grants.get(grant.request_id)
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

    @contextlib.asynccontextmanager
    async def slot(self, server: str, cap: Optional[int]) -> AsyncIterator[None]:
        """A slot of `server` for the duration of the block; no wait at all when the server has no cap."""
        if cap is None:
            yield
            return
        request_id = next(self._ids)
        granted = asyncio.get_running_loop().create_future()
        self._grants[request_id] = granted
        self.used = True
        began = time.monotonic()
        self._send(SlotRequest(server=server, request_id=request_id))
        try:
            stop = asyncio.ensure_future(self._stop.wait())
            try:
                await asyncio.wait([granted, stop], return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
            self.queued_ms += (time.monotonic() - began) * 1000.0
            if not granted.done():  # a stop came first: waiting is not working, the cycle is dropped
                raise WaitEnded()
            yield
        finally:
            del self._grants[request_id]
            self._send(SlotRelease(server=server, request_id=request_id))
