"""The worker's side of a model server's concurrency cap: a slot around each call, granted by the supervisor.

A provider wraps each attempt of a call in `slot()`: the request goes up the
pipe, the attempt waits for its grant, and the slot goes back when the
attempt ends, however it ends (success, failure, a timeout, a cancel). The
wait is outside the request's timeout, and it is not a call in flight: any
stop ends it at once with `WaitEnded`, which drops the cycle as a wait for a
message does. The time spent waiting is added up per cycle (`queued_ms`).

A pool of servers asks for a slot of any of them (`pooled`), capped or not,
since only the supervisor sees every call of the tree and can send each to
the least busy; the grant names the server, and the release says whether the
server failed the call, so that the supervisor rests it for a while.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Optional

from protocol import Message, SlotGrant, SlotRelease, SlotRequest
from workers.correspondence import WaitEnded


@dataclass
class Lease:
    """A slot of one server for one attempt: which server, and whether it failed the call (set by the caller)."""

    server: str
    failed: bool = False


class Slots:
    def __init__(self, send: Callable[[Message], None], stop: asyncio.Event) -> None:
        self._send = send
        self._stop = stop  # set by any interrupt
        self._ids = itertools.count(1)
        self._grants: dict[int, asyncio.Future[str]] = {}
        self.queued_ms = 0.0  # waited for slots since the cycle began (the loop resets it)
        self.used = False  # some call took a slot since the cycle began: the cycle reports queued_ms

    def begin_cycle(self) -> None:
        self.queued_ms, self.used = 0.0, False

    def on_grant(self, grant: SlotGrant) -> None:
        """The supervisor's grant: taken by the waiting request, dropped if that wait has ended."""
        waiting = self._grants.get(grant.request_id)
        if waiting is not None and not waiting.done():
            waiting.set_result(grant.server)

    @contextlib.asynccontextmanager
    async def slot(self, server: str, cap: Optional[int]) -> AsyncIterator[None]:
        """A slot of `server` for the duration of the block; no wait at all when the server has no cap."""
        if cap is None:
            yield
            return
        async with self._held(server, []):
            yield

    @contextlib.asynccontextmanager
    async def pooled(self, servers: tuple[str, ...]) -> AsyncIterator[Lease]:
        """A slot of whichever of `servers` the supervisor chooses, for the duration of the block."""
        async with self._held(servers[0], list(servers)) as lease:
            yield lease

    @contextlib.asynccontextmanager
    async def _held(self, server: str, pool: list[str]) -> AsyncIterator[Lease]:
        request_id = next(self._ids)
        granted: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._grants[request_id] = granted
        self.used = True
        began = time.monotonic()
        lease = Lease(server)
        self._send(SlotRequest(server=server, request_id=request_id, pool=pool))
        try:
            stop = asyncio.ensure_future(self._stop.wait())
            try:
                waits: list[asyncio.Future[Any]] = [granted, stop]
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
            self.queued_ms += (time.monotonic() - began) * 1000.0
            if not granted.done():  # a stop came first: waiting is not working, the cycle is dropped
                raise WaitEnded()
            if granted.result() in pool:
                lease.server = granted.result()
            yield lease
        finally:
            del self._grants[request_id]
            self._send(SlotRelease(server=lease.server, request_id=request_id, failed=lease.failed))
