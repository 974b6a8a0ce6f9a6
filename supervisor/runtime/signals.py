"""Signal capture for the supervisor's loop: a queue plus a self-pipe wake-up.

Handlers do nothing but remember the signal number; the kernel-level wake-up
fd makes the loop's `select` return, and the loop handles the queue in
ordinary code. Previous handlers are restored on exit, so embedding programs
get their own behaviour back.
"""

from __future__ import annotations

import signal
import threading
from collections import deque
from contextlib import contextmanager
from types import FrameType
from typing import Any, Iterator, Optional

from supervisor.runtime.wakeup import WakeupPipe

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class SignalQueue:
    def __init__(self, signals: tuple[int, ...] = HANDLED) -> None:
        self.signals = signals
        self.pending: deque[int] = deque()
        self._wakeup = WakeupPipe()
        self._previous: dict[int, Any] = {}
        self._previous_wakeup: Optional[int] = None

    def fileno(self) -> int:
        return self._wakeup.fileno()

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        self.pending.append(signum)

    def install(self) -> None:
        if not self.signals:
            return  # a run in a program's background thread: signals are that program's (and only its main thread's)
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, self._handle)
        self._previous_wakeup = signal.set_wakeup_fd(self._wakeup.write_fileno(), warn_on_full_buffer=False)

    def drain(self) -> list[int]:
        """Empty the wake-up pipe and return the signals received, in order."""
        self._wakeup.clear()
        received = []
        while self.pending:  # one at a time: a handler may run between any two bytecodes, even here
            received.append(self.pending.popleft())
        return received

    def restore(self, *, run_over: bool = False) -> None:
        """Give the previous handlers back; `run_over`: ignore the stop signals instead.

        A process that exists only for this run (the CLI, a group) has nothing
        left to stop once its loop is done; a Ctrl+C or SIGTERM landing in the
        last milliseconds before it exits must not turn a finished run's exit
        code into 130 or 143.
        """
        if self._previous_wakeup is not None:
            signal.set_wakeup_fd(self._previous_wakeup)
            self._previous_wakeup = None
        for signum, handler in self._previous.items():
            if run_over and signum in HANDLED:
                handler = signal.SIG_IGN
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()
        self._wakeup.close()


@contextmanager
def signals_ignored(signals: tuple[int, ...] = HANDLED) -> Iterator[None]:
    """Ignore `signals` while starting helper processes.

    A process exec'd while SIGINT is ignored keeps ignoring it (CPython installs
    its KeyboardInterrupt handler only when SIGINT is at its default), so the
    forkserver and every worker forked from it never see the terminal's Ctrl+C,
    not even in the instant before a worker sets up its own handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may touch handlers; workers still leave the terminal's signals to us (lineage)
        return
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in signals}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
