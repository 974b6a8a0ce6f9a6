"""Which server an attempt calls: the agent's one server, or the one of its pool the supervisor names.

Each attempt of a call (a retry is a new attempt) takes a `Call`: the URL to
use, and a flag the provider sets when that server failed the attempt (it
could not be reached, answered 5xx, or did not answer in time). For a pool,
the supervisor picks the server as it grants the slot, from the calls in
flight across the whole tree and the servers resting after a failure; the
flag goes back with the slot. A provider built without the supervisor's
slots (a program or benchmark calling it directly) picks the server with the
fewest of its own calls in flight.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import AsyncIterator, Optional

from protocol.specs import LLMSpec, server_key
from workers.providers.base import ProviderError
from workers.providers.retries import Transient, slot_for
from workers.slots import Lease, Slots


@dataclass
class Call:
    url: str
    lease: Optional[Lease] = field(default=None, repr=False)

    def failed(self, failure: Exception) -> None:
        """The attempt ended in `failure`: the server is to rest if the failure was its own (not 429, not 4xx)."""
        if self.lease is not None and isinstance(failure, Transient) and not failure.busy:
            self.lease.failed = True


class ServerPool:
    def __init__(self, llm: LLMSpec, urls: tuple[str, ...], slots: Optional[Slots]) -> None:
        if not urls:
            raise ProviderError("no model server to call")
        self.llm = llm
        self.slots = slots
        self.urls = {server_key(url): url for url in urls}
        self.in_flight = dict.fromkeys(self.urls, 0)  # this worker's own calls, for a choice without the supervisor

    @property
    def first(self) -> str:
        return next(iter(self.urls.values()))

    @contextlib.asynccontextmanager
    async def attempt(self) -> AsyncIterator[Call]:
        if len(self.urls) == 1:
            async with slot_for(self.slots, self.llm):
                yield Call(self.first)
            return
        if self.slots is None:
            server = min(self.in_flight, key=lambda key: self.in_flight[key])
            self.in_flight[server] += 1
            try:
                yield Call(self.urls[server])
            finally:
                self.in_flight[server] -= 1
            return
        async with self.slots.pooled(tuple(self.urls)) as lease:
            yield Call(self.urls.get(lease.server, self.first), lease)
