"""The one reader of events.jsonl that every tool uses.

`status`, `logs` (once or following), and `report` all read the event stream
through `EventReader`: whole lines only, numbered, bad ones skipped with a
warning. `read_events` reads the file once and tags each event with the run it
belongs to; `follow_events` keeps reading as the file grows, and moves on to
the new file when the run rotates it or `run --fresh` archives the old one.

The stream is `events.jsonl` and the rotated files before it,
`events.jsonl.N` ... `events.jsonl.1` (the higher the number, the older): the
reader opens them all at once, oldest first, and reads them as one, so a
rotation while it reads moves no file out from under it.

The file may hold what another process or person wrote, so reading it is
bounded: a line longer than MAX_LINE_BYTES is dropped as it is read (never
held whole), and one nested deeper than MAX_DEPTH is skipped before anything
recurses into it (parsing, printing or rendering it could exhaust the stack).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, NamedTuple, Optional

from protocol.storage_files import UntrustedStorage, open_file, open_folder
from supervisor.storage import rotated_numbers
from supervisor.tools.text import warn as _warn

POLL_SECONDS = 0.2
CHUNK_BYTES = 1 << 20
MAX_LINE_BYTES = 1 << 20  # the supervisor's lines are a few hundred bytes (replies are previews)
MAX_DEPTH = 64  # events are flat records with a few small lists and objects in them
_TOO_LONG = f"longer than {MAX_LINE_BYTES >> 20} MiB"
STARTED = "supervisor_started"  # the line that opens a run: runs are numbered by it, from 1
MAX_PARTS = 100  # rotated files read at most (the newest); the writer keeps at most this many
OPEN_PATIENCE = 5.0  # seconds of rotations while the files are being opened before taking them as they are


class Position(NamedTuple):
    """Where a line starts: its byte offset in its file, its line number there (from 1), which file of the stream."""

    offset: int
    line: int
    part: int = 0


class Part(NamedTuple):
    """One open file of the stream."""

    handle: BinaryIO
    name: str
    inode: tuple[int, int]


def _inode(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_dev, stat.st_ino


def open_stream(path: Path, warn: Callable[[str], None] = _warn) -> list[Part]:
    """The stream's files, open, oldest first: `path.N` ... `path.1`, then `path` (each one that is there).

    Never through a symlink (UntrustedStorage), never a FIFO (OSError). The
    writer rotates by renaming one name after another, so a reader can list the
    names midway and open them after the rotation has ended, missing a file or
    taking one twice. Once all are open, the folder is looked at again: the
    same names must be there, each naming what was opened, or they are opened
    again (after a pause that grows, so a busy writer gets to finish).
    """
    folder = open_folder(path.parent)
    if folder is None:
        return []
    try:
        give_up, pause = time.monotonic() + OPEN_PATIENCE, 0.001
        while True:
            listed = sorted(rotated_numbers(folder, path.name), reverse=True)
            parts, skipped = _open_parts(folder, path, listed[-MAX_PARTS:])
            if _still_the_stream(folder, path.name, listed, parts, skipped):
                break
            if time.monotonic() > give_up:
                warn(f"{path.name}: rotated all the while its files were opened; a line may be missed or read twice")
                break
            for part in parts:
                part.handle.close()
            time.sleep(pause)
            pause = min(2 * pause, 0.05)
        if len(listed) > MAX_PARTS:
            warn(f"{len(listed) - MAX_PARTS} rotated files older than {path.name}.{listed[-MAX_PARTS]} not read")
        for name, why in skipped.items():
            warn(f"{name}: {why}; skipped")
        return parts
    finally:
        os.close(folder)


def _open_parts(folder: int, path: Path, numbers: list[int]) -> tuple[list[Part], dict[str, str]]:
    """The files `path.N` for each of `numbers`, then `path`, open; and the names found that are not the run's, why."""
    parts: list[Part] = []
    skipped: dict[str, str] = {}
    try:
        for name in [*(f"{path.name}.{number}" for number in numbers), path.name]:
            try:
                fd = open_file(folder, name, path.parent / name, os.O_RDONLY)
            except FileNotFoundError:
                continue  # rotated away, or a gap a crash mid-rotation left
            except OSError as exc:
                if name == path.name:
                    raise  # the live file: the tool says what is wrong with it
                # A rotated name that is a symlink, a FIFO, a folder: not the run's, skipped.
                skipped[name] = str(exc if isinstance(exc, UntrustedStorage) else exc.strerror or exc)
                continue
            parts.append(Part(open(fd, "rb"), name, _inode(os.fstat(fd))))
    except BaseException:
        for part in parts:
            part.handle.close()
        raise
    return parts, skipped


def _still_the_stream(folder: int, name: str, listed: list[int], parts: list[Part], skipped: dict[str, str]) -> bool:
    """Whether the folder still holds what was opened: the same rotated names, each naming the same file.

    A rename by the writer either moves a name that was opened onto another
    file, takes it away, or adds a name (its new `.1`, its new live file).
    """
    if sorted(rotated_numbers(folder, name), reverse=True) != listed:
        return False
    names = {part.name for part in parts} | skipped.keys()
    if (name in names) != (_inode_at(folder, name) is not None):
        return False  # the live file came or went
    if any(f"{name}.{number}" not in names for number in listed[-MAX_PARTS:]):
        return False  # a name that was listed was not there to open: it has come back since
    return all(_inode_at(folder, part.name) == part.inode for part in parts)


def _inode_at(folder: int, name: str) -> Optional[tuple[int, int]]:
    """What `name` names in the folder now (never followed), or None if nothing does."""
    try:
        return _inode(os.stat(name, dir_fd=folder, follow_symlinks=False))
    except FileNotFoundError:
        return None


class EventReader:
    """Reads the event stream incrementally: whole lines only, numbered, bad ones skipped.

    A line whose newline has not arrived yet is kept back until it does: a
    reader polling a growing file can catch a write half done. `finish()`
    takes that last piece too, for a one-shot read, where a tail without its
    newline is all there will ever be (often torn by a crash); a rotated file
    is complete, so its tail is taken when the reader moves past it.
    `position` is where the line of the last event read starts; `rewind` goes
    back to it, on the same open files, for a second look at part of them.
    """

    def __init__(self, path: Path, warn: Callable[[str], None] = _warn) -> None:
        self.path = path
        self._warn = warn
        self._parts: list[Part] = []
        self._index = 0  # the part being read
        self._file: Optional[BinaryIO] = None
        self._pending = b""  # the start of a line whose newline has not been read yet
        self._pending_size = 0  # how many bytes of that line were read, kept back or dropped
        self._overlong = False  # the line being read is past MAX_LINE_BYTES: its rest is dropped
        self._next_at = 0  # the offset where that line starts
        self._line = 0
        self.position = Position(0, 0)

    def open(self) -> bool:
        """Open the stream's files from the start of the oldest; False if there are none (yet)."""
        return self._use(open_stream(self.path, self._warn))

    def move_on(self) -> bool:
        """After `replaced()` and the old files drained: open what came after the live file that was read.

        The files rotated since are read first, oldest first, then the new
        live file. If the old one is gone from the stream (archived by `run
        --fresh`, or rotated past `keep`), everything there is is new. If it is
        still the live file (it shrank), it is read again from its start.
        """
        live = self._parts[-1].inode if self._parts else None
        parts = open_stream(self.path, self._warn)
        at = next((index for index, part in enumerate(parts) if part.inode == live), None)
        keep = parts if at is None else parts[at:] if at == len(parts) - 1 else parts[at + 1:]
        for part in parts:
            if part not in keep:
                part.handle.close()
        return self._use(keep)

    def _use(self, parts: list[Part]) -> bool:
        if not parts:
            return False
        self.close()
        self._parts, self._index, self._file = parts, 0, parts[0].handle
        self._restart(Position(0, 1, 0))
        return True

    def rewind(self, position: Position, warn: Optional[Callable[[str], None]] = None) -> None:
        """Read again from the line at `position` (of these same files, even if they have been moved since).

        `warn`: where warnings go from now on (lines read once already were warned about then).
        """
        if self._file is None:
            raise ValueError("rewind before open")
        self._index = position.part
        self._file = self._parts[position.part].handle
        self._file.seek(position.offset)
        self._restart(position)
        if warn is not None:
            self._warn = warn

    def _restart(self, position: Position) -> None:
        self._pending, self._pending_size, self._overlong = b"", 0, False
        self._next_at, self._line = position.offset, position.line - 1
        self.position = position

    def close(self) -> None:
        for part in self._parts:
            part.handle.close()
        self._parts, self._file = [], None

    def read(self) -> Iterator[dict[str, Any]]:
        """The events in the complete lines appended since the last call, across the stream's files."""
        while self._file is not None:
            yield from self._read_part()
            if self._index + 1 >= len(self._parts):
                return
            yield from self._take_tail()  # a rotated file has all it will ever have
            self._index += 1
            self._file = self._parts[self._index].handle
            self._file.seek(0)
            self._restart(Position(0, 1, self._index))

    def _read_part(self) -> Iterator[dict[str, Any]]:
        assert self._file is not None
        while True:
            chunk = self._file.read(CHUNK_BYTES)
            if not chunk:
                return
            lines = chunk.split(b"\n")
            tail = lines.pop()  # after the last newline: the start of the next line, if any
            for index, raw in enumerate(lines):
                size = len(raw)
                if index == 0:  # ends the line kept back from earlier reads
                    size += self._pending_size
                    raw, self._pending, self._pending_size = self._pending + raw, b"", 0
                at, self._next_at = self._next_at, self._next_at + size + 1
                if index == 0 and self._overlong:
                    self._overlong = False
                    self._skip_overlong()
                    continue
                event = self._parse(raw, at)
                if event is not None:
                    yield event
            self._keep_back(tail)

    def finish(self) -> Iterator[dict[str, Any]]:
        """Read to the end, taking a last line that has no newline as it is."""
        yield from self.read()
        yield from self._take_tail()

    def _take_tail(self) -> Iterator[dict[str, Any]]:
        if self._overlong:
            self._overlong = False
            self._skip_overlong()
        elif self._pending:
            raw, self._pending, self._pending_size = self._pending, b"", 0
            event = self._parse(raw, self._next_at)
            if event is not None:
                yield event

    def _keep_back(self, piece: bytes) -> None:
        """Hold the start of an unfinished line, unless it is already too long to be one."""
        self._pending_size += len(piece)
        if self._overlong:
            return
        self._pending += piece
        if len(self._pending) > MAX_LINE_BYTES:
            self._pending, self._overlong = b"", True

    def _skip_overlong(self) -> None:
        self._line += 1
        self._skip_line(_TOO_LONG)

    def replaced(self) -> bool:
        """Whether the path now names another file (rotated, or archived by `run --fresh`) or ours shrank."""
        if self._file is None:
            return self.path.exists()
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return False  # moved away, the new one is not there yet: keep draining the old
        live = self._parts[-1]
        if _inode(stat) != live.inode:
            return True
        return self._index == len(self._parts) - 1 and stat.st_size < self._file.tell()

    def _parse(self, raw: bytes, at: int) -> Optional[dict[str, Any]]:
        self._line += 1
        if len(raw) > MAX_LINE_BYTES:
            self._skip_line(_TOO_LONG)
            return None
        text = raw.decode("utf-8", errors="replace").strip()
        if not text:
            return None
        problem = None
        try:
            event = json.loads(text)
        except RecursionError:
            problem = f"nested deeper than {MAX_DEPTH} levels"
        except ValueError:
            problem = "not valid JSON"
        else:
            if not isinstance(event, dict):
                problem = "not a JSON object"
            elif raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _deeper_than(event, MAX_DEPTH):
                problem = f"nested deeper than {MAX_DEPTH} levels"  # parsed, but printing it could recurse that deep
        if problem is not None:
            self._skip_line(problem)
            return None
        self.position = Position(at, self._line, self._index)
        return event

    def _skip_line(self, why: str) -> None:
        name = self._parts[self._index].name if self._parts else self.path.name
        self._warn(f"{name} line {self._line}: {why}, skipped")


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether lists and objects in `value` nest more than `limit` levels (counted without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def name_of(event: dict[str, Any]) -> Optional[str]:
    """The event's name, or None when it has none that is a string (a damaged or foreign line may hold a list there)."""
    name = event.get("event")
    return name if isinstance(name, str) else None


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
    missed; run numbers go on counting across files. A rotation is the same
    move: the old file is drained where it now lies, then every file rotated
    since it, then the new live one.
    """
    reader = EventReader(path, warn)
    run = 0
    reader.open()
    try:
        while not stopped():
            last_look = until is not None and time.time() > until  # read once more, then stop
            if reader.replaced():
                for event in reader.finish():
                    run += event.get("event") == STARTED
                    yield run, event
                if not reader.move_on():
                    reader.close()
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
