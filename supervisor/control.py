"""Requests from the program embedding a run, handed to the supervisor's loop.

The loop owns every decision and runs in one thread; other threads (or the
program's own event callbacks) only queue a request and wake the loop through
a socket pair, the same way signals reach it. Nothing here touches a worker.
"""

from __future__ import annotations

import socket
import threading
from collections import deque
from dataclasses import dataclass
from typing import Optional


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
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self.closed = False

    def fileno(self) -> int:
        return self._reader.fileno()

    def put(self, request: InterruptRequest) -> None:
        with self._lock:
            if self.closed:
                raise RuntimeError("the run has ended")
            self._pending.append(request)
            try:
                self._writer.send(b"!")
            except BlockingIOError:
                pass  # the loop has wake-ups pending already

    def drain(self) -> list[InterruptRequest]:
        try:
            while self._reader.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        with self._lock:
            requests = list(self._pending)
            self._pending.clear()
        return requests

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._reader.close()
            self._writer.close()
