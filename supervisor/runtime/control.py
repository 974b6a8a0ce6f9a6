"""Requests from the program embedding a run, handed to the supervisor's loop.

The loop owns every decision and runs in one thread; other threads (or the
program's own event callbacks) only queue a request and wake the loop through
a socket pair, the same way signals reach it. Nothing here touches a worker.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from supervisor.config import TeamConfig

from supervisor.runtime.wakeup import WakeupPipe


@dataclass(frozen=True)
class InterruptRequest:
    """Stop one agent (`agent`) or the whole team (None); source PROGRAMMATIC."""

    mode: str
    message: str
    agent: Optional[str] = None


@dataclass(frozen=True)
class AgentsRequest:
    """Start (`start`) or restart (`restart`) these agents; `done` gets None once the loop has acted."""

    command: str
    agents: tuple[str, ...]
    done: "Future[Any]" = field(default_factory=Future)


@dataclass(frozen=True)
class ReloadRequest:
    """Apply a validated config; `done` gets (added, removed, changed), or the UserError that changed nothing."""

    config: TeamConfig
    done: "Future[Any]" = field(default_factory=Future)


@dataclass(frozen=True)
class AnswerRequest:
    """A person's answer for `agent`; `done` gets None once it is durable, or the UserError saying why not."""

    agent: str
    text: str
    done: "Future[Any]" = field(default_factory=Future)


Request = Union[InterruptRequest, AgentsRequest, ReloadRequest, AnswerRequest]


class ControlQueue:
    def __init__(self) -> None:
        self._pending: deque[Request] = deque()
        self._lock = threading.Lock()
        self._wakeup = WakeupPipe()
        self.closed = False

    def fileno(self) -> int:
        return self._wakeup.fileno()

    def put(self, request: Request) -> None:
        with self._lock:
            if self.closed:
                raise RuntimeError("the run has ended")
            self._pending.append(request)
            self._wakeup.wake()

    def drain(self) -> list[Request]:
        self._wakeup.clear()
        with self._lock:
            requests = list(self._pending)
            self._pending.clear()
        return requests

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._wakeup.close()
