"""The loop's machinery: descriptors with callbacks, and named timers in one table.

Every wait of the supervisor is a named timer ("graceful", "kill", "reap",
"restart:NAME", "kill:NAME", "hang:NAME", "timeout:NAME", "team-timeout", "sweep",
"beat", "model-server"); the loop sleeps in `select` until the earliest one or
until a descriptor is ready, runs the descriptors' callbacks first (what is
waiting in a pipe is read before any deadline is judged), then the timers that
are due, earliest first. Timers are data, as in OTP, not a poll.
"""

from __future__ import annotations

import heapq
import selectors
import time
from typing import Any, Callable, Optional

MAX_WAIT = 3600.0  # the longest single wait: a later timer is simply waited for again
Callback = Callable[[], None]
FdCallback = Callable[[int], None]


class Reactor:
    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self._timers: dict[str, tuple[float, Callback]] = {}
        self._after_tick: list[Callback] = []

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
        self._timers[name] = (when, callback)

    def cancel(self, name: str) -> None:
        self._timers.pop(name, None)

    def when(self, name: str) -> Optional[float]:
        timer = self._timers.get(name)
        return None if timer is None else timer[0]

    def after_each_tick(self, callback: Callback) -> None:
        self._after_tick.append(callback)

    # ---- the loop's one step ---------------------------------------------------------

    def timeout(self, now: float) -> Optional[float]:
        """Seconds until the earliest timer, at most MAX_WAIT (epoll counts in 32-bit milliseconds)."""
        if not self._timers:
            return None
        return min(MAX_WAIT, max(0.0, min(when for when, _ in self._timers.values()) - now))

    def tick(self) -> None:
        """Wait for a descriptor or the earliest timer; run what is ready, then what is due.

        Before a timer is judged, whatever became ready meanwhile is read too: a
        wait that ended on the first ready descriptor (as it does after the
        process was stopped and continued) must not leave the others' news unread
        while their deadlines are judged.
        """
        self._serve(self.selector.select(self.timeout(time.monotonic())))
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

    def _any_due(self, now: float) -> bool:
        return any(when <= now for when, _ in self._timers.values())

    def _fire_due(self, now: float) -> None:
        due = [(when, name) for name, (when, _) in self._timers.items() if when <= now]
        heapq.heapify(due)
        while due:
            when, name = heapq.heappop(due)
            timer = self._timers.get(name)
            if timer is None or timer[0] != when:
                continue  # cancelled or moved by an earlier timer of this tick
            del self._timers[name]
            timer[1]()

    def close(self) -> None:
        self.selector.close()
