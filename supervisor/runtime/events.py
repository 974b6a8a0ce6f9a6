"""The one event stream: structlog processors writing JSON Lines.

The supervisor is the only writer of `events.jsonl`; workers' reports arrive
over their pipes and are logged here. Interrupt events are written, as the
very same line, to `interrupt_metrics.jsonl` too (the metrics log).

Lines are whole or absent: each is appended to an O_APPEND file, and a write
cut short (a full disk) is cut back, through the descriptor, to where the line
began. A file that does not end with a newline (torn by a crash or an older
version) gets one before our first line, so no run is glued onto another's
half line. Both files are opened in the checked storage folder without
following a symlink.

Each file is rotated before a line would take it past `max_bytes`:
`events.jsonl` becomes `events.jsonl.1`, `.1` becomes `.2`, and so on up to
`keep`, the oldest dropped. Rotation happens between two appends, so a line is
never split across files. The order makes a crash at any point lose nothing:
the full file is fsynced, the older files are renamed oldest first (each
rename atomic, replacing only the one being dropped), then the live file,
then the new file is created (O_EXCL, 0600, never through a symlink) and the
folder fsynced before the first line goes into it. Interrupted midway, the
files left are still in order by number, with at most a gap, which readers
skip.
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

from supervisor.runtime.lean_imports import without_rich_tracebacks

with without_rich_tracebacks():  # structlog's console tracebacks are never used: JSON Lines only
    import structlog
    from structlog.typing import EventDict

from protocol.storage_files import open_file, open_folder
from supervisor.storage import EVENTS_FILE, METRICS_FILE, rotated_numbers

INTERRUPT_EVENTS = frozenset({"interrupt_initiated", "interrupt_completed"})
LEADING_KEYS = ("timestamp", "level", "event", "agent_id")

EventSink = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Rotation:
    """Rotate a stream file before it passes `max_bytes`; keep `keep` old ones (`.1` the newest)."""

    max_bytes: int = 50 * 10**6
    keep: int = 5


def _open_append(folder: int, name: str, path: Path, flags: int = os.O_CREAT) -> int:
    """O_RDWR so that the last byte can be read back: does the file end a line?"""
    return open_file(folder, name, path, os.O_RDWR | os.O_APPEND | flags, 0o600)


def _rename_if_there(folder: int, old: str, new: str) -> None:
    try:
        os.rename(old, new, src_dir_fd=folder, dst_dir_fd=folder)  # a symlink is moved as the link it is
    except FileNotFoundError:
        pass  # a gap (a crash mid-rotation, or fewer files than keep): nothing to move


def _ends_a_line(fd: int) -> bool:
    size = os.fstat(fd).st_size
    return size == 0 or os.pread(fd, 1, size - 1) == b"\n"


class JsonlFiles:
    """The structlog 'logger': appends rendered lines to the stream files.

    A failing write (disk full, storage gone) must not stop the team: the
    agents' work is in their checkpoints, and killing them over a log line
    would lose the cycles in flight. The first failure is kept in `failure`;
    the run ends with exit code 3 and says why. The line that failed is lost,
    whole; the next one may succeed once there is room again.
    """

    def __init__(self, storage: Path, rotation: Rotation = Rotation()) -> None:
        folder = open_folder(storage)
        if folder is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(storage))
        self._storage = storage
        self._folder = folder  # kept open: rotation renames by name relative to it
        self._rotation = rotation
        try:
            self._events = _open_append(folder, EVENTS_FILE, storage / EVENTS_FILE)
            try:
                self._metrics = _open_append(folder, METRICS_FILE, storage / METRICS_FILE)
            except BaseException:
                os.close(self._events)
                raise
        except BaseException:
            os.close(folder)
            raise
        # A file whose last line has no newline: ours starts with one, so it stays a line of its own.
        self._torn = {fd: not _ends_a_line(fd) for fd in (self._events, self._metrics)}
        self._retry_at: dict[int, int] = {}  # after a failed rotation: the size at which to try again
        self.failure: Optional[str] = None
        self.unrotated: Optional[str] = None  # why a rotation failed, until the log has said so

    def msg(self, line: str, interrupt: bool = False) -> None:
        data = (line + "\n").encode("utf-8")
        self._write(EVENTS_FILE, data)
        if interrupt:
            self._write(METRICS_FILE, data)

    def _write(self, name: str, data: bytes) -> None:
        fd = self._events if name == EVENTS_FILE else self._metrics
        try:
            self._append(fd, name, data)
        except OSError as exc:
            if self.failure is None:
                self.failure = f"cannot write {name}: {exc.strerror or exc}"

    def _append(self, fd: int, name: str, data: bytes) -> None:
        """All of `data` at the end of the file, or nothing: a short write is cut back to where it began."""
        start = os.lseek(fd, 0, os.SEEK_END)  # the one writer: the O_APPEND writes land here
        if start and start + len(data) > self._rotation.max_bytes and start >= self._retry_at.get(fd, 0):
            try:
                fd, start = self._rotate(fd, name), 0
            except OSError as exc:  # the line goes to the old file: a full file loses nothing, a lost line would
                self._retry_at[fd] = start + self._rotation.max_bytes
                self.unrotated = f"cannot rotate {name}: {exc.strerror or exc}"
        if self._torn[fd]:
            data = b"\n" + data
        view = memoryview(data)
        try:
            while view:
                written = os.write(fd, view)
                if written <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                view = view[written:]
        except OSError:
            if len(view) < len(data):
                try:
                    os.ftruncate(fd, start)  # by descriptor: no path to swap underneath us
                except OSError:
                    self._torn[fd] = True  # the half line stays: the next line must start a new one
            raise
        self._torn[fd] = False

    def _rotate(self, fd: int, name: str) -> int:
        """`name` -> `name.1` -> ... -> `name.KEEP` (dropped past that); returns the new, empty file's descriptor.

        Any failure leaves the old file in use, and it is tried again once the
        file has grown by max_bytes more: nothing is lost but rotation.
        """
        folder, keep = self._folder, self._rotation.keep
        os.fsync(fd)  # its lines are on disk before its name changes
        for number in sorted(n for n in rotated_numbers(folder, name) if n > keep):
            os.unlink(f"{name}.{number}", dir_fd=folder)  # past keep (keep was lowered): the oldest go
        for number in range(keep - 1, 0, -1):
            _rename_if_there(folder, f"{name}.{number}", f"{name}.{number + 1}")  # replaces .KEEP, the oldest
        os.rename(name, f"{name}.1", src_dir_fd=folder, dst_dir_fd=folder)
        try:
            new = _open_append(folder, name, self._storage / name, os.O_CREAT | os.O_EXCL)
        except OSError:
            os.rename(f"{name}.1", name, src_dir_fd=folder, dst_dir_fd=folder)  # back: keep writing the old one
            raise
        os.fsync(folder)  # the renames and the new name are durable before a line lands in it
        os.close(fd)
        if name == EVENTS_FILE:
            self._events = new
        else:
            self._metrics = new
        self._torn[new] = False
        self._torn.pop(fd, None)
        return new

    info = warning = error = critical = debug = msg

    def close(self) -> None:
        for fd in (self._events, self._metrics):
            try:
                os.fsync(fd)
            except OSError:
                pass
            os.close(fd)
        os.close(self._folder)


def order_keys(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """Put timestamp, level, event and agent_id first, so lines read well."""
    ordered = {key: event_dict.pop(key) for key in LEADING_KEYS if key in event_dict}
    ordered.update(event_dict)
    return ordered


def fan_out(sinks: list[EventSink]) -> Callable[[Any, str, EventDict], EventDict]:
    """A processor that shows each finished event to in-process sinks (the console)."""

    def processor(_: Any, __: str, event_dict: EventDict) -> EventDict:
        for sink in sinks:
            sink(dict(event_dict))
        return event_dict

    return processor


def render_jsonl(_: Any, __: str, event_dict: EventDict) -> tuple[tuple[str], dict[str, bool]]:
    """Render one line and say whether it also belongs to the metrics log."""
    line = json.dumps(event_dict, ensure_ascii=False, default=str, separators=(", ", ": "))
    return (line,), {"interrupt": event_dict.get("event") in INTERRUPT_EVENTS}


class EventWriter(Protocol):
    """What the arbiter writes events to: this file's EventLog, or a group's relay to its parent."""

    @property
    def failure(self) -> Optional[str]: ...

    def emit(self, event: str, *, level: str = "info", **fields: Any) -> None: ...


class EventLog:
    """Emit events for one run: `log.emit("cycle_completed", agent_id=..., ...)`."""

    def __init__(self, storage: Path, sinks: Optional[list[EventSink]] = None, rotation: Rotation = Rotation(),
                 owner: str = "supervisor") -> None:
        self.files = JsonlFiles(storage, rotation)
        self.owner = owner  # the agent_id of the log's own warnings: the team's name
        self.sinks: list[EventSink] = list(sinks or [])
        self._logger = structlog.wrap_logger(
            self.files,
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                order_keys,
                fan_out(self.sinks),
                render_jsonl,
            ],
            cache_logger_on_first_use=True,
        )

    @property
    def failure(self) -> Optional[str]:
        """The first write that failed, if any."""
        return self.files.failure

    def emit(self, event: str, *, level: str = "info", **fields: Any) -> None:
        getattr(self._logger, level if level in ("info", "warning", "error", "debug", "critical") else "info")(event, **fields)
        if self.files.unrotated is not None:  # said once per failed rotation, right after the line it spared
            error, self.files.unrotated = self.files.unrotated, None
            self._logger.warning("events_not_rotated", agent_id=self.owner, error=error)

    def close(self) -> None:
        self.files.close()
