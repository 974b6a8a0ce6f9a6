"""The loop's machinery: descriptors with callbacks, and named timers in one table.

Every wait of the supervisor is a named timer ("graceful", "kill", "reap",
"restart:NAME", "kill:NAME", "hang:NAME", "timeout:NAME", "team-timeout", "sweep",
"beat", "model-server"); the loop sleeps in `select` until the earliest one or
until a descriptor is ready, runs the descriptors' callbacks first (what is
waiting in a pipe is read before any deadline is judged), then the timers that
are due, earliest first. Timers are data, as in OTP, not a poll.

The table is a dict by name beside a heap by time, so a tick costs the same
with a thousand workers' hang timers as with one: a timer moved or cancelled
leaves its old heap entry behind, skipped when it comes up (and the heap is
rebuilt when such entries outnumber the live ones).
"""

from __future__ import annotations

import heapq
import itertools
import selectors
import time
from typing import Any, Callable, Optional

MAX_WAIT = 3600.0  # the longest single wait: a later timer is simply waited for again
Callback = Callable[[], None]
FdCallback = Callable[[int], None]


class Reactor:
    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self._timers: dict[str, tuple[float, Callback, int]] = {}  # name -> (when, callback, its heap entry's number)
        self._heap: list[tuple[float, int, str]] = []  # (when, number, name), stale entries included
        self._numbers = itertools.count()
        self._after_tick: list[Callback] = []
        self._between: list[Callback] = []

    # ---- descriptors -----------------------------------------------------------------

    def watch(self, fileobj: Any, callback: FdCallback, events: int = selectors.EVENT_READ) -> None:
        self.selector.register(fileobj, events, callback)

    def modify(self, fileobj: Any, callback: FdCallback, events: int) -> None:
        self.selector.modify(fileobj, events, callback)

    def unwatch(self, fileobj: Any) -> None:
        """Stop watching; safe for a descriptor that is not watched or already closed."""
        try:
            self.selector.unregister(fileobj)
        except (KeyError, ValueError):
            pass

    def watching(self, fileobj: Any) -> bool:
        try:
            self.selector.get_key(fileobj)
        except (KeyError, ValueError):
            return False
        return True

    # ---- timers ------------------------------------------------------------------------

    def at(self, name: str, when: float, callback: Callback) -> None:
        """Run `callback` at monotonic time `when`; a timer of the same name is replaced."""
        number = next(self._numbers)
        self._timers[name] = (when, callback, number)
        heapq.heappush(self._heap, (when, number, name))
        if len(self._heap) > 2 * len(self._timers) + 64:  # mostly moved or cancelled timers: start afresh
            self._heap = [(when, number, name) for name, (when, _, number) in self._timers.items()]
            heapq.heapify(self._heap)

    def cancel(self, name: str) -> None:
        self._timers.pop(name, None)

    def when(self, name: str) -> Optional[float]:
        timer = self._timers.get(name)
        return None if timer is None else timer[0]

    def _earliest(self) -> Optional[float]:
        """When the next live timer is due (stale heap entries on top are dropped on the way)."""
        heap = self._heap
        while heap:
            when, number, name = heap[0]
            timer = self._timers.get(name)
            if timer is not None and timer[2] == number:
                return when
            heapq.heappop(heap)
        return None

    def after_each_tick(self, callback: Callback) -> None:
        self._after_tick.append(callback)

    def between_callbacks(self, callback: Callback) -> None:
        """Run `callback` after each descriptor's callback: a look that must not wait for the pass to end.

        A pass serves every ready descriptor, and with a thousand busy children it can take a
        second on a loaded machine; a cheap check here (a signal taken, say) is acted on at once.
        """
        self._between.append(callback)

    # ---- the loop's one step ---------------------------------------------------------

    def timeout(self, now: float) -> Optional[float]:
        """Seconds until the earliest timer, at most MAX_WAIT (epoll counts in 32-bit milliseconds)."""
        earliest = self._earliest()
        if earliest is None:
            return None
        return min(MAX_WAIT, max(0.0, earliest - now))

    def tick(self, wait: bool = True) -> None:
        """Wait for a descriptor or the earliest timer; run what is ready, then what is due.

        `wait=False`: only what is ready or due now (a look between two batches of a big start).

        Before a timer is judged, whatever became ready meanwhile is read too: a
        wait that ended on the first ready descriptor (as it does after the
        process was stopped and continued) must not leave the others' news unread
        while their deadlines are judged.
        """
        self._serve(self.selector.select(self.timeout(time.monotonic()) if wait else 0))
        if self._any_due(time.monotonic()):
            self._serve(self.selector.select(0))
        self._fire_due(time.monotonic())
        for callback in self._after_tick:
            callback()

    def _serve(self, ready: list[tuple[selectors.SelectorKey, int]]) -> None:
        for key, mask in ready:
            try:
                current = self.selector.get_map().get(key.fileobj)
            except ValueError:  # closed by an earlier callback of this tick
                continue
            if current is None or current.data is not key.data:
                continue  # unwatched (or re-watched) by an earlier callback of this tick
            key.data(mask)
            for callback in self._between:
                callback()

    def _any_due(self, now: float) -> bool:
        earliest = self._earliest()
        return earliest is not None and earliest <= now

    def _fire_due(self, now: float) -> None:
        """Every timer due by `now`, earliest first; one a callback sets for `now` or earlier waits for the next tick."""
        last = next(self._numbers)  # timers set from here on are not this tick's
        later: list[tuple[float, int, str]] = []
        try:
            while True:
                earliest = self._earliest()
                if earliest is None or earliest > now:
                    break
                entry = heapq.heappop(self._heap)
                if entry[1] > last:
                    later.append(entry)
                    continue
                _, callback, _ = self._timers.pop(entry[2])
                callback()
        finally:  # even past a callback that raised, the timers put aside are still in the heap
            for entry in later:
                heapq.heappush(self._heap, entry)

    def close(self) -> None:
        self.selector.close()
