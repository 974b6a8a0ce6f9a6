"""The one reader of events.jsonl that every tool uses.

`status`, `logs` (once or following), and `report` all read the event stream
through `EventReader`: whole lines only, numbered, bad ones skipped with a
warning. `read_events` reads the file once and tags each event with the run it
belongs to; `follow_events` keeps reading as the file grows, and moves on to
the new file when `run --fresh` archives the old one.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Optional

from supervisor.tools.text import warn as _warn

POLL_SECONDS = 0.2
STARTED = "supervisor_started"  # the line that opens a run: runs are numbered by it, from 1


class EventReader:
    """Reads events.jsonl incrementally: whole lines only, numbered, bad ones skipped.

    A line whose newline has not arrived yet is kept back until it does: a
    reader polling a growing file can catch a write half done. `finish()`
    takes that last piece too, for a one-shot read, where a tail without its
    newline is all there will ever be (often torn by a crash).
    """

    def __init__(self, path: Path, warn: Callable[[str], None] = _warn) -> None:
        self.path = path
        self._warn = warn
        self._file: Optional[BinaryIO] = None
        self._inode: Optional[tuple[int, int]] = None
        self._pending = b""
        self._line = 0

    def open(self) -> bool:
        """Open the file from its start; False if it does not exist (yet)."""
        try:
            handle = open(self.path, "rb")
        except FileNotFoundError:
            return False
        stat = os.fstat(handle.fileno())
        self.close()
        self._file, self._inode = handle, (stat.st_dev, stat.st_ino)
        self._pending, self._line = b"", 0
        return True

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def read(self) -> Iterator[dict[str, Any]]:
        """The events in the complete lines appended since the last call."""
        if self._file is None:
            return
        while True:
            chunk = self._file.read(1 << 20)
            if not chunk:
                return
            lines = (self._pending + chunk).split(b"\n")
            self._pending = lines.pop()
            for raw in lines:
                event = self._parse(raw)
                if event is not None:
                    yield event

    def finish(self) -> Iterator[dict[str, Any]]:
        """Read to the end, taking a last line that has no newline as it is."""
        yield from self.read()
        if self._pending:
            raw, self._pending = self._pending, b""
            event = self._parse(raw)
            if event is not None:
                yield event

    def replaced(self) -> bool:
        """Whether the path now names another file (`run --fresh` archived it) or ours shrank."""
        if self._file is None:
            return self.path.exists()
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return False  # moved away, the new one is not there yet: keep draining the old
        if (stat.st_dev, stat.st_ino) != self._inode:
            return True
        return stat.st_size < self._file.tell()

    def _parse(self, raw: bytes) -> Optional[dict[str, Any]]:
        self._line += 1
        text = raw.decode("utf-8", errors="replace").strip()
        if not text:
            return None
        try:
            event = json.loads(text)
        except ValueError:
            self._warn(f"{self.path.name} line {self._line}: not valid JSON, skipped")
            return None
        if not isinstance(event, dict):
            self._warn(f"{self.path.name} line {self._line}: not a JSON object, skipped")
            return None
        return event


def read_events(path: Path, warn: Callable[[str], None] = _warn) -> Iterator[tuple[int, dict[str, Any]]]:
    """Every event of the file with the number of the run it belongs to (0 before the first start)."""
    reader = EventReader(path, warn)
    if not reader.open():
        return
    run = 0
    try:
        for event in reader.finish():
            if event.get("event") == STARTED:
                run += 1
            yield run, event
    finally:
        reader.close()


def follow_events(
    path: Path,
    stopped: Callable[[], bool],
    until: Optional[float] = None,
    warn: Callable[[str], None] = _warn,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """What is there, then what is appended, polling until `stopped()` (or the clock passes `until`).

    `stopped` is asked between two events, so a consumer stops between lines,
    never mid-line. When the file is replaced (`run --fresh` moves it to the
    archive and the next run starts a new one) the old file is drained and the
    new one read from its start, so nothing is shown twice and nothing is
    missed; run numbers go on counting across files.
    """
    reader = EventReader(path, warn)
    run = 0
    reader.open()
    try:
        while not stopped():
            last_look = until is not None and time.time() > until  # read once more, then stop
            if reader.replaced():
                for event in list(reader.finish()):
                    run += event.get("event") == STARTED
                    yield run, event
                reader.close()
                reader.open()
            for event in reader.read():
                run += event.get("event") == STARTED
                yield run, event
                if stopped():
                    return
            if last_look:
                return
            time.sleep(POLL_SECONDS)
    finally:
        reader.close()
