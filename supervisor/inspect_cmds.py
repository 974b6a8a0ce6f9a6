"""The read-only commands: `status`, `logs` and `checkpoints`.

They look at what a run left in storage (checkpoints and events.jsonl) and
never change it: no folder is created, no temp file cleaned, no lock taken,
so they are safe to run next to a live supervisor. Every command returns the
exit code; `--json` prints exactly one JSON document on stdout and sends
warnings to stderr, so scripts can pipe it straight into a parser.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Optional

from protocol.messages import GRACEFUL, IMMEDIATE, INTERRUPTED, RUNNING, SOURCES
from supervisor.config import TeamConfig
from supervisor.events import EVENTS_FILE
from workers.checkpoints import Checkpoint, CheckpointCorrupt, CheckpointStore

NOT_STARTED = "not started"
POLL_SECONDS = 0.2
VALUE_MAX = 80  # a long string field (a reply, a message) is cut to this in text output
LEVEL_WIDTH = 7  # "warning"; a rare "critical" just pushes its line one column right
_SHOWN_FIRST = ("timestamp", "level", "agent_id", "event")
_ISO_RE = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|\+00:00)\Z")
_BARE_RE = re.compile(r"[^\s\"'=\\]+\Z")


def _supervisor_error(message: str, exit_code: int) -> Exception:
    """Build the CLI's one-line error; supervisor.run is imported only when needed."""
    from supervisor.errors import SupervisorError

    return SupervisorError(message, exit_code)


def _warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr, flush=True)


def _print_json(document: Any, indent: Optional[int] = 2) -> None:
    print(json.dumps(document, indent=indent, ensure_ascii=False, default=str))


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    """Left-aligned columns two spaces apart; the last column is not padded."""
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    lines = []
    for row in [headers, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths)] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
    return lines


def _store(config: TeamConfig, agent: str) -> CheckpointStore:
    return CheckpointStore(config.storage, agent, keep=config.checkpoint.keep, compress=config.checkpoint.compress)


def _storage_error(config: TeamConfig, exc: OSError) -> Exception:
    """Unreadable storage is a backend problem (exit 3), said in one line."""
    return _supervisor_error(f"storage {config.storage}: cannot read it: {exc.strerror or exc}", 3)


# ---- the event stream --------------------------------------------------------


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
            if event.get("event") == "supervisor_started":
                run += 1
            yield run, event
    finally:
        reader.close()


class InterruptSummary:
    """Counts distinct interrupts: one per (run, interrupt_id), however many agents acknowledged it.

    The supervisor logs an interrupt once under the team's name and each agent
    once more as it acknowledges; interrupt ids restart at 1 every run.
    """

    def __init__(self) -> None:
        self._seen: set[tuple[int, Any]] = set()
        self._lines = 0
        self.total = 0
        self.graceful = 0
        self.immediate = 0
        self.by_source: dict[str, int] = {source: 0 for source in SOURCES}

    def add(self, run: int, event: dict[str, Any]) -> None:
        if event.get("event") != "interrupt_initiated":
            return
        interrupt_id = event.get("interrupt_id")
        if interrupt_id is None:  # cannot be matched with its other lines: count the line itself
            self._lines += 1
            key: tuple[int, Any] = (run, ("line", self._lines))
        else:
            key = (run, interrupt_id if isinstance(interrupt_id, (int, str)) else repr(interrupt_id))
        if key in self._seen:
            return
        self._seen.add(key)
        self.total += 1
        mode = event.get("mode")
        if mode == GRACEFUL:
            self.graceful += 1
        elif mode == IMMEDIATE:
            self.immediate += 1
        source = str(event.get("source"))
        self.by_source[source] = self.by_source.get(source, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "graceful": self.graceful,
            "immediate": self.immediate,
            "by_source": dict(self.by_source),
        }

    def line(self) -> str:
        sources = ", ".join(f"{source} {count}" for source, count in self.by_source.items())
        return (
            f"Interrupts: total {self.total}, graceful {self.graceful}, immediate {self.immediate}; "
            f"by source: {sources}"
        )


def short_time(value: Any) -> str:
    """ISO UTC time to the millisecond, as the log lines show it; anything else as it is."""
    text = str(value)
    match = _ISO_RE.match(text)
    if not match:
        return text
    fraction = (match.group(2) or "").ljust(3, "0")[:3]
    return f"{match.group(1)}.{fraction}Z"


def _show_value(value: Any) -> str:
    """A field value for a k=v pair: bare when safe, quoted when it has spaces, cut when long."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if abs(value) >= 1 else f"{value:.6g}"
    if isinstance(value, int):
        return str(value)
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    if len(text) > VALUE_MAX:
        text = text[: VALUE_MAX - 3] + "..."
    if isinstance(value, str) and _BARE_RE.match(text):
        return text
    return json.dumps(text, ensure_ascii=False) if isinstance(value, str) else text


def format_event(event: dict[str, Any], agent_width: int = 0) -> str:
    """One readable line: time, level, agent, event, then the other fields as k=v."""
    head = [
        short_time(event.get("timestamp", "-")),
        str(event.get("level", "-")).ljust(LEVEL_WIDTH),
        str(event.get("agent_id", "-")).ljust(agent_width),
        str(event.get("event", "-")),
    ]
    fields = " ".join(f"{key}={_show_value(value)}" for key, value in event.items() if key not in _SHOWN_FIRST)
    return "  ".join(head + [fields]).rstrip()


# ---- status ------------------------------------------------------------------


def _last_interrupts(path: Path) -> dict[str, dict[str, Any]]:
    """The last interrupt_initiated line of each agent_id (quietly skipping bad lines)."""
    last: dict[str, dict[str, Any]] = {}
    for _, event in read_events(path, warn=lambda _text: None):
        if event.get("event") == "interrupt_initiated" and "agent_id" in event:
            last[str(event["agent_id"])] = {
                "mode": event.get("mode"),
                "source": event.get("source"),
                "message": event.get("message"),
                "timestamp": event.get("timestamp"),
            }
    return last


def status(config: TeamConfig, args: argparse.Namespace) -> int:
    """One row per agent, from the newest valid checkpoint and the event stream."""
    try:
        interrupts = _last_interrupts(config.storage / EVENTS_FILE)
        live = run_is_live(config.storage)
        rows: list[dict[str, Any]] = []
        for agent in config.all_agents():
            corrupt: list[str] = []
            checkpoint: Optional[Checkpoint] = None
            if config.storage.is_dir():
                checkpoint = _store(config, agent.name).load_latest(on_corrupt=lambda cid, _why: corrupt.append(cid))
            rows.append(
                {
                    "agent": agent.name,
                    "status": _status_word(checkpoint, live),
                    "cycle": checkpoint.cycle if checkpoint else 0,
                    "max_cycles": agent.max_cycles,
                    "checkpoint_id": checkpoint.checkpoint_id if checkpoint else None,
                    "budget_spent_usd": checkpoint.budget_spent_usd if checkpoint else 0.0,
                    "last_interrupt": interrupts.get(agent.name),
                    "corrupt": corrupt,
                }
            )
    except OSError as exc:
        raise _storage_error(config, exc) from exc
    if args.json:
        _print_json(rows)
        return 0
    table = [
        [
            row["agent"],
            row["status"],
            f"{row['cycle']}/{row['max_cycles']}",
            row["checkpoint_id"] or "-",
            f"${row['budget_spent_usd']:.4f}",
            _describe_interrupt(row["last_interrupt"]),
        ]
        for row in rows
    ]
    for line in _table(["AGENT", "STATUS", "CYCLES", "CHECKPOINT", "BUDGET", "LAST INTERRUPT"], table):
        print(line)
    for row in rows:
        if row["corrupt"]:
            print(f"{row['agent']}: skipped corrupt checkpoint(s): {', '.join(row['corrupt'])}")
    return 0


def run_is_live(storage: Path) -> bool:
    """Whether a supervisor holds the storage lock now (a shared probe, nothing written)."""
    from supervisor.run import LOCK_FILE

    try:
        fd = os.open(storage / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _status_word(checkpoint: Optional[Checkpoint], live: bool) -> str:
    """A checkpoint left `running` by an immediate stop or a crash is not running now."""
    if checkpoint is None:
        return NOT_STARTED
    if checkpoint.status == RUNNING and not live:
        return INTERRUPTED
    return checkpoint.status


def _describe_interrupt(interrupt: Optional[dict[str, Any]]) -> str:
    if not interrupt:
        return "-"
    text = f"{interrupt['mode']} {interrupt['source']} at {short_time(interrupt['timestamp'])}"
    if interrupt.get("message"):
        text += f": {_show_value(interrupt['message'])}"
    return text


# ---- logs --------------------------------------------------------------------


class _StopFlag:
    """Set by Ctrl+C or SIGTERM while following, so output stops between two lines, never mid-line."""

    def __init__(self) -> None:
        self.set = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_StopFlag":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, _signum: int, _frame: Any) -> None:
        self.set = True

    def __exit__(self, *_exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def logs(config: TeamConfig, args: argparse.Namespace) -> int:
    """Print the event stream, filtered, then the interrupt summary; `--follow` keeps reading."""
    path = config.storage / EVENTS_FILE
    agent_width = max(len(name) for name in [config.team, *(a.name for a in config.all_agents())])
    summary = InterruptSummary()
    collected: list[dict[str, Any]] = []
    follow_json = args.follow and args.json

    def show(run: int, event: dict[str, Any]) -> None:
        if args.agent is not None and event.get("agent_id") != args.agent:
            return
        summary.add(run, event)  # the summary ignores --event: `--event cycle_completed` still ends with the interrupts
        if args.event is not None and event.get("event") != args.event:
            return
        out = sys.stdout
        if follow_json:
            out.write(json.dumps(event, ensure_ascii=False, default=str) + "\n")
            out.flush()
        elif args.json:
            collected.append(event)
        else:
            out.write(format_event(event, agent_width) + "\n")
            if args.follow:
                out.flush()

    def finish() -> int:
        if follow_json:
            print(json.dumps({"summary": summary.as_dict()}), flush=True)
        elif args.json:
            _print_json({"events": collected, "summary": summary.as_dict()})
        else:
            print(summary.line(), flush=True)
        return 0

    if not args.follow:
        if not path.exists():
            print(f"no events yet ({path})", file=sys.stderr)
        try:
            for run, event in read_events(path):
                show(run, event)
        except BrokenPipeError:
            raise  # `logs | head`: the CLI treats it as a normal end
        except OSError as exc:
            raise _storage_error(config, exc) from exc
        return finish()

    with _StopFlag() as stop:
        try:
            _follow(path, show, stop)
        except KeyboardInterrupt:  # Ctrl+C where no handler could be installed (not the main thread)
            pass
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise _storage_error(config, exc) from exc
        return finish()


def _follow(path: Path, show: Callable[[int, dict[str, Any]], None], stop: _StopFlag) -> None:
    """Print what is there, then poll for appended lines until stopped.

    When the file is replaced (`run --fresh` moves it to the archive and the
    next run starts a new one) the old file is drained and the new one read
    from its start, so nothing is shown twice and nothing is missed.
    """
    reader = EventReader(path)
    run = 0
    if not reader.open():
        print(f"no events yet ({path})", file=sys.stderr, flush=True)
    try:
        while not stop.set:
            if reader.replaced():
                for event in list(reader.finish()):
                    run += event.get("event") == "supervisor_started"
                    show(run, event)
                reader.close()
                reader.open()
            for event in reader.read():
                run += event.get("event") == "supervisor_started"
                show(run, event)
                if stop.set:
                    return
            time.sleep(POLL_SECONDS)
    finally:
        reader.close()


# ---- checkpoints -------------------------------------------------------------


def _agent_names(config: TeamConfig, agent: Optional[str]) -> list[str]:
    names = [a.name for a in config.all_agents()]
    if agent is None:
        return names
    if agent not in names:
        raise _supervisor_error(f"{config.source}: no agent named '{agent}' in team '{config.team}'", 2)
    return [agent]


def checkpoints(config: TeamConfig, args: argparse.Namespace) -> int:
    """List checkpoints (cheap: names and sizes), verify them, or show one."""
    if args.show is not None:
        if args.agent is None:
            raise _supervisor_error("--show needs --agent", 2)
        _agent_names(config, args.agent)
        return _show(config, args.agent, args.show)
    rows: list[dict[str, Any]] = []
    try:
        for name in _agent_names(config, args.agent):
            store = _store(config, name)
            for info in store.list():
                row = {
                    "agent": name,
                    "checkpoint_id": info.checkpoint_id,
                    "cycle": info.cycle,
                    "size_bytes": info.size_bytes,
                    "valid": None,
                    "error": None,
                }
                if args.verify:
                    try:
                        store.verify(info.checkpoint_id)
                        row["valid"] = True
                    except CheckpointCorrupt as exc:
                        if exc.reason == "missing":
                            continue  # removed by a live run's retention since it was listed: gone, not corrupt
                        row["valid"] = False
                        row["error"] = exc.reason
                rows.append(row)
    except OSError as exc:
        raise _storage_error(config, exc) from exc
    bad = sum(1 for row in rows if row["valid"] is False)
    if args.json:
        _print_json(rows)
    elif not rows:
        print(f"no checkpoints yet ({config.storage})")
    else:
        headers = ["AGENT", "CHECKPOINT", "CYCLE", "BYTES"] + (["VERDICT"] if args.verify else [])
        table: list[list[str]] = []
        for row in rows:
            cells: list[str] = [str(row["agent"]), str(row["checkpoint_id"]), str(row["cycle"]), str(row["size_bytes"])]
            if args.verify:
                cells.append("ok" if row["valid"] else f"corrupt: {row['error']}")
            table.append(cells)
        for line in _table(headers, table):
            print(line)
        if args.verify:
            print(f"verified {len(rows)} checkpoint(s): {bad} corrupt")
    return 1 if bad else 0


def _show(config: TeamConfig, agent: str, which: str) -> int:
    """Print one checkpoint's whole state as a single JSON object."""
    store = _store(config, agent)
    try:
        if which == "latest":
            checkpoint = store.load_latest(
                on_corrupt=lambda cid, why: _warn(f"checkpoint {cid} of agent '{agent}' is corrupt: {why}, skipped")
            )
            if checkpoint is None:
                raise _supervisor_error(f"agent '{agent}' has no valid checkpoint", 1)
        else:
            try:
                checkpoint = store.load(which)
            except ValueError as exc:  # not a checkpoint name at all (a typo, or a path)
                print(f"error: agent '{agent}': {exc}", file=sys.stderr)
                return 1
            except CheckpointCorrupt as exc:  # reason "missing" when no such file
                print(f"error: checkpoint {which} of agent '{agent}' is corrupt: {exc.reason}", file=sys.stderr)
                return 1
    except OSError as exc:
        raise _storage_error(config, exc) from exc
    _print_json(checkpoint.to_dict())
    return 0


COMMANDS: dict[str, Callable[[TeamConfig, argparse.Namespace], int]] = {
    "status": status,
    "logs": logs,
    "checkpoints": checkpoints,
}
