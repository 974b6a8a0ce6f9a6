"""Requests from the program embedding a run, handed to the supervisor's loop.

The loop owns every decision and runs in one thread; other threads (or the
program's own event callbacks) only queue a request and wake the loop through
a socket pair, the same way signals reach it. Nothing here touches a worker.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Optional

from supervisor.runtime.wakeup import WakeupPipe


@dataclass(frozen=True)
class InterruptRequest:
    """Stop one agent (`agent`) or the whole team (None); source PROGRAMMATIC."""

    mode: str
    message: str
    agent: Optional[str] = None


class ControlQueue:
    def __init__(self) -> None:
        self._pending: deque[InterruptRequest] = deque()
        self._lock = threading.Lock()
        self._wakeup = WakeupPipe()
        self.closed = False

    def fileno(self) -> int:
        return self._wakeup.fileno()

    def put(self, request: InterruptRequest) -> None:
        with self._lock:
            if self.closed:
                raise RuntimeError("the run has ended")
            self._pending.append(request)
            self._wakeup.wake()

    def drain(self) -> list[InterruptRequest]:
        self._wakeup.clear()
        with self._lock:
            requests = list(self._pending)
            self._pending.clear()
        return requests

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._wakeup.close()
