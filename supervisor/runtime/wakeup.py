"""A self-pipe: the way anything outside the supervisor's loop wakes its `select`.

Signal handlers (through `signal.set_wakeup_fd`) and other threads (the Python
API) write a byte to one end; the loop watches the other and, once woken,
drains it and handles its own queue in ordinary code.
"""

from __future__ import annotations

import socket


class WakeupPipe:
    def __init__(self) -> None:
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)

    def fileno(self) -> int:
        """The end the loop watches."""
        return self._reader.fileno()

    def write_fileno(self) -> int:
        """The end that wakes it (for `signal.set_wakeup_fd`)."""
        return self._writer.fileno()

    def wake(self) -> None:
        try:
            self._writer.send(b"!")
        except BlockingIOError:
            pass  # the loop has wake-ups pending already

    def clear(self) -> None:
        try:
            while self._reader.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def close(self) -> None:
        self._reader.close()
        self._writer.close()
