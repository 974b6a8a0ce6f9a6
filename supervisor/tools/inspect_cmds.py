"""The operator's commands: `status`, `logs` and `checkpoints`.

They look at what a run left in storage (checkpoints and events.jsonl) and,
but for `checkpoints --prune`, never change it: no folder is created, no temp
file cleaned, no lock taken, so they are safe to run next to a live
supervisor. `--prune` is the one writer: it takes the run lock for the few
milliseconds it deletes, so it is refused while a run is live and no run can
start under it. Every command returns the exit code; `--json` prints exactly
one JSON document on stdout and sends warnings to stderr, so scripts can pipe
it straight into a parser.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import signal
import statistics
import sys
import threading
import time
import zlib
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Optional

from protocol.messages import GRACEFUL, IMMEDIATE, INTERRUPTED, RUNNING, SOURCES
from supervisor.vocabulary import ISO_RE, LEVELS, event_number, parse_timestamp
from supervisor.config import TeamConfig
from supervisor.terminal.console import RULE
from supervisor.storage import EVENTS_FILE, exclusive_run_lock, open_storage_file, run_is_live
from protocol.checkpoints import MAX_CONTENT_BYTES, Checkpoint, CheckpointCorrupt, CheckpointInfo, CheckpointStore

NOT_STARTED = "not started"
POLL_SECONDS = 0.2
VALUE_MAX = 80  # a long string field (a reply, a message) is cut to this in text output
LEVEL_WIDTH = 7  # "warning"; a rare "critical" just pushes its line one column right
_SHOWN_FIRST = ("timestamp", "level", "agent_id", "event")

_BARE_RE = re.compile(r"[^\s\"'=\\]+\Z")


def _supervisor_error(message: str, exit_code: int) -> Exception:
    """Build the CLI's one-line error; supervisor.runtime.run is imported only when needed."""
    from supervisor.errors import SupervisorError

    return SupervisorError(message, exit_code)


def _warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr, flush=True)


def _print_json(document: Any, indent: Optional[int] = 2) -> None:
    print(json.dumps(document, indent=indent, ensure_ascii=False, default=str))


def _table(headers: list[str], rows: list[list[str]], right: frozenset[int] = frozenset()) -> list[str]:
    """Columns two spaces apart, left-aligned but for the `right` ones (numbers); the last column is not padded."""
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    lines = []
    for row in [headers, *rows]:
        cells = [
            cell.rjust(width) if index in right else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(row[:-1], widths))
        ] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
    return lines


def _size(count: int) -> str:
    """Bytes for people: exact below 1 KiB, else one decimal in KiB, MiB or GiB."""
    if count < 1024:
        return f"{count} B"
    value = float(count)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:.1f} {unit}"


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
            handle = open_storage_file(self.path)
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


RESTART_EVENTS = frozenset({"worker_restarted", "group_restarted", "model_server_restarted"})
UNKNOWN = "unknown"


class RunStats:
    """The closing EXECUTION STATISTICS of `logs`: one run's status, cycles, budget, interrupts and restarts.

    By default it covers the last run that has events inside the time window,
    the run an operator has just stopped or is watching; `all_runs` adds up
    every run in the window instead (status and times are then the last run's).
    `--agent` narrows what is counted (cycles, budget, interrupts, latency,
    restarts), while the run's own lines (`supervisor_started`,
    `supervisor_stopped`) always count, so the status is the run's whatever
    agent is asked for. `--event` and `--level` only choose which lines are
    printed and never change the statistics.

    Status: `supervisor_stopped`'s when it is in the window; `running` when the
    window ends (`--until`) before the run did, or when it is the newest run
    and a supervisor holds the storage lock now; else `unknown` (a supervisor
    killed before it could say how the run ended).
    """

    def __init__(self, agents: Optional[frozenset[str]] = None, all_runs: bool = False) -> None:
        self.agents = agents
        self.all_runs = all_runs
        self.runs = 0  # runs seen in the stream, in the window or not
        self.run: Optional[int] = None  # the run summed up (the last one when all_runs)
        self._reset_counts()
        self._reset_run()

    def _reset_counts(self) -> None:
        self.interrupts = InterruptSummary()
        self.cycles = 0
        self.budget = 0.0
        self.restarts = 0
        self.latencies: list[float] = []

    def _reset_run(self) -> None:
        self.started_at: Optional[str] = None
        self.stopped: Optional[dict[str, Any]] = None
        self.cut = False  # the window ended before this run did

    def add(self, run: int, event: dict[str, Any], where: str = "in") -> None:
        """One event of run `run`; `where` is "before", "in" or "after" the time window."""
        self.runs = max(self.runs, run)
        if where != "in":
            if where == "after" and run == self.run:
                self.cut = True
            return
        if run != self.run:
            if not self.all_runs:
                self._reset_counts()
            self._reset_run()
            self.run = run
        name = event.get("event")
        if name == "supervisor_started":
            self.started_at = str(event.get("timestamp", "")) or None
        elif name == "supervisor_stopped":
            self.stopped = event
        if self.agents is not None and str(event.get("agent_id")) not in self.agents:
            return
        self.interrupts.add(run, event)
        if name == "cycle_completed":
            self.cycles += 1
            self.budget += event_number(event.get("cost_usd")) or 0.0
        elif name == "interrupt_completed":
            latency = event_number(event.get("latency_ms"))
            if latency is not None:
                self.latencies.append(latency)
        elif name in RESTART_EVENTS:
            self.restarts += 1

    def status(self, live: bool) -> str:
        """`live`: whether a supervisor holds the storage lock now."""
        if self.run is None:
            return NOT_STARTED if self.runs == 0 else UNKNOWN
        if self.stopped is not None:
            return str(self.stopped.get("status", UNKNOWN))
        if self.cut or (live and self.run == self.runs and self.run > 0):
            return RUNNING
        return UNKNOWN

    def as_dict(self, live: bool = False) -> dict[str, Any]:
        latency: dict[str, Any] = {"median": None, "max": None, "count": len(self.latencies)}
        if self.latencies:
            latency["median"] = round(statistics.median(self.latencies), 3)
            latency["max"] = round(max(self.latencies), 3)
        stopped = self.stopped or {}
        return {
            **self.interrupts.as_dict(),
            "run": None if self.all_runs else self.run,
            "runs": self.runs,
            "status": self.status(live),
            "started_at": self.started_at,
            "stopped_at": stopped.get("timestamp"),
            "exit_code": stopped.get("exit_code"),
            "cycles": self.cycles,
            "budget_spent_usd": round(self.budget, 6),
            "restarts": self.restarts,
            "interrupt_latency_ms": latency,
        }

    def lines(self, live: bool = False) -> list[str]:
        data = self.as_dict(live)
        if self.run is None:
            scope = "no run in the events shown" if self.runs else "no run yet"
        elif self.all_runs:
            scope = f"all runs (1 to {self.runs})" if self.runs > 1 else "all runs (1)"
        else:
            scope = f"run {self.run} of {self.runs}" if self.run else "events before the first run"
        if data["started_at"] and not self.all_runs:
            scope += f", started {short_time(data['started_at'])}"
        if data["stopped_at"] and not self.all_runs:
            scope += f", stopped {short_time(data['stopped_at'])}"
        if self.agents is not None:
            scope += f"; agents: {', '.join(sorted(self.agents))}"
        sources = ", ".join(f"{source} {count}" for source, count in data["by_source"].items())
        latency = data["interrupt_latency_ms"]
        if latency["count"]:
            stops = f"{latency['count']} agent stop{'s' if latency['count'] != 1 else ''}"
            latency_text = f"median {latency['median']:.1f} ms, max {latency['max']:.1f} ms ({stops})"
        else:
            latency_text = "-"
        return [
            "",
            RULE,
            "📊 EXECUTION STATISTICS",
            RULE,
            f"Scope: {scope}",
            f"Status: {data['status']}",
            f"Cycles: {data['cycles']}",
            f"Budget Spent: ${data['budget_spent_usd']:.4f}",
            f"Restarts: {data['restarts']}",
            "",
            "Interrupt Metrics:",
            f"  Total Interrupts: {data['total']}",
            f"  Graceful: {data['graceful']}",
            f"  Immediate: {data['immediate']}",
            f"  By Source: {sources}",
            f"  Latency: {latency_text}",
            RULE,
        ]


def short_time(value: Any) -> str:
    """ISO UTC time to the millisecond, as the log lines show it; anything else as it is."""
    text = str(value)
    match = ISO_RE.match(text)
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


def _scan_for_status(path: Path) -> tuple[dict[str, dict[str, Any]], Optional[dict[str, Any]], Optional[dict[str, Any]]]:
    """The last interrupt_initiated line of each agent_id, and the newest run's start and stop lines.

    Bad lines are skipped quietly; the stop line is None when the newest run has none (yet).
    """
    last: dict[str, dict[str, Any]] = {}
    started: Optional[dict[str, Any]] = None
    stopped: Optional[dict[str, Any]] = None
    for _, event in read_events(path, warn=lambda _text: None):
        name = event.get("event")
        if name == "interrupt_initiated" and "agent_id" in event:
            last[str(event["agent_id"])] = {
                "mode": event.get("mode"),
                "source": event.get("source"),
                "message": event.get("message"),
                "timestamp": event.get("timestamp"),
            }
        elif name == "supervisor_started":
            started, stopped = event, None
        elif name == "supervisor_stopped":
            stopped = event
    return last, started, stopped


def status(config: TeamConfig, args: argparse.Namespace) -> int:
    """One row per agent, from the newest valid checkpoint and the event stream, under a line on the run."""
    try:
        interrupts, started, stopped = _scan_for_status(config.storage / EVENTS_FILE)
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
                    "run_live": live,
                }
            )
    except OSError as exc:
        raise _storage_error(config, exc) from exc
    if args.json:
        _print_json(rows)
        return 0
    print(_run_line(config, live, started, stopped))
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
    headers = ["AGENT", "STATUS", "CYCLES", "LATEST CHECKPOINT", "BUDGET SPENT", "LAST INTERRUPT"]
    for line in _table(headers, table, right=frozenset({2, 4})):
        print(line)
    for row in rows:
        if row["corrupt"]:
            print(f"{row['agent']}: skipped corrupt checkpoint(s): {', '.join(row['corrupt'])}")
    return 0


def _run_line(
    config: TeamConfig, live: bool, started: Optional[dict[str, Any]], stopped: Optional[dict[str, Any]]
) -> str:
    """What the team is doing now: a live run (pid, since when), or how the last one ended."""
    head = f"team {config.team}"
    if live:
        if started is not None and stopped is None:
            return f"{head}: RUN LIVE (pid {started.get('pid', '?')}, started {short_time(started.get('timestamp'))})"
        return f"{head}: RUN LIVE"
    if started is None:
        return f"{head}: no run live; none recorded yet"
    if stopped is None:
        when = short_time(started.get("timestamp"))
        return f"{head}: no run live; the last one, started {when}, left no supervisor_stopped (killed?)"
    return (
        f"{head}: no run live; the last one {stopped.get('status', UNKNOWN)} at {short_time(stopped.get('timestamp'))}"
        f" (exit {stopped.get('exit_code', '?')})"
    )


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


def _names(values: Optional[list[str]]) -> Optional[frozenset[str]]:
    """`--agent a --agent b,c` as {a, b, c}; None when the option was not given."""
    if values is None:
        return None
    return frozenset(name.strip() for value in values for name in value.split(",") if name.strip())


def _level_rank(level: Any) -> int:
    """debug 0 < info 1 < warning 2 < error 3 < critical 4; a missing or unknown level counts as info."""
    text = str(level).lower()
    return LEVELS.index(text) if text in LEVELS else LEVELS.index("info")


def logs(config: TeamConfig, args: argparse.Namespace) -> int:
    """Print the event stream, filtered, then the run's statistics; `--follow` keeps reading."""
    path = config.storage / EVENTS_FILE
    agent_width = max(len(name) for name in [config.team, *(a.name for a in config.all_agents())])
    agents, names = _names(args.agent), _names(args.event)
    for option, chosen in (("--agent", agents), ("--event", names)):
        if chosen is not None and not chosen:
            raise _supervisor_error(f"{option} needs at least one name", 2)
    since: Optional[datetime] = args.since
    until: Optional[datetime] = args.until
    if since is not None and until is not None and since > until:
        raise _supervisor_error(
            f"--since ({since.isoformat(timespec='seconds')}) is after --until ({until.isoformat(timespec='seconds')})", 2
        )
    if agents is not None:
        known = {config.team, *(a.name for a in config.all_agents()), *(g.name for g in config.groups)}
        for name in sorted(agents - known):
            _warn(f"no agent or group named '{name}' in team '{config.team}' (showing its events, if any)")
    min_rank = _level_rank(args.level) if args.level else 0
    stats = RunStats(agents, all_runs=args.all_runs)
    collected: list[dict[str, Any]] = []
    follow_json = args.follow and args.json

    def where(event: dict[str, Any]) -> str:
        if since is None and until is None:
            return "in"
        when = parse_timestamp(event.get("timestamp"))
        if when is None or (since is not None and when < since):
            return "before"  # a line without a readable time cannot be placed in a window
        return "after" if until is not None and when > until else "in"

    def show(run: int, event: dict[str, Any]) -> None:
        place = where(event)
        stats.add(run, event, place)  # --event and --level pick lines to print, never what the statistics count
        if place != "in":
            return
        if agents is not None and str(event.get("agent_id")) not in agents:
            return
        if names is not None and event.get("event") not in names:
            return
        if min_rank and _level_rank(event.get("level")) < min_rank:
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
        live = run_is_live(config.storage)
        if follow_json:
            print(json.dumps({"summary": stats.as_dict(live)}, ensure_ascii=False, default=str), flush=True)
        elif args.json:
            _print_json({"events": collected, "summary": stats.as_dict(live)})
        else:
            print("\n".join(stats.lines(live)), flush=True)
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
            _follow(path, show, stop, until.timestamp() if until is not None else None)
        except KeyboardInterrupt:  # Ctrl+C where no handler could be installed (not the main thread)
            pass
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise _storage_error(config, exc) from exc
        return finish()


def _follow(
    path: Path, show: Callable[[int, dict[str, Any]], None], stop: _StopFlag, until: Optional[float] = None
) -> None:
    """Print what is there, then poll for appended lines until stopped (or the clock passes `until`).

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
            last_look = until is not None and time.time() > until  # read once more, then stop
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
            if last_look:
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


_GZIP_MAGIC = b"\x1f\x8b"
_FLAG_HCRC, _FLAG_EXTRA, _FLAG_NAME, _FLAG_COMMENT = 0x02, 0x04, 0x08, 0x10


def _compression(file: BinaryIO) -> tuple[str, Optional[int]]:
    """("gzip" or "none", uncompressed size or None if the file cannot be read through).

    A store with `compress: false` still writes the gzip format, with the
    deflate data "stored" (level 0), so the first deflate block's type tells
    compressed from not. The uncompressed size is counted by reading through
    gzip, up to what a checkpoint can hold; a damaged file gives None here
    (`--verify` says what is wrong). `file` is closed on return.
    """
    with file as handle:
        head = handle.read(4096)
        if head[:2] != _GZIP_MAGIC:
            return "none", os.fstat(handle.fileno()).st_size  # not gzip at all (and so not a valid checkpoint)
        flags, pos = head[3], 10
        try:
            if flags & _FLAG_EXTRA:
                pos += 2 + int.from_bytes(head[pos : pos + 2], "little")
            for flag in (_FLAG_NAME, _FLAG_COMMENT):
                if flags & flag:
                    pos = head.index(b"\0", pos) + 1
            if flags & _FLAG_HCRC:
                pos += 2
            method = "none" if (head[pos] >> 1) & 0b11 == 0 else "gzip"  # BTYPE 00: stored, not compressed
        except (ValueError, IndexError):
            return "gzip", None
        handle.seek(0)
        total = 0
        try:
            with gzip.GzipFile(fileobj=handle, mode="rb") as unzipped:
                while True:
                    chunk = unzipped.read(1 << 16)
                    if not chunk:
                        return method, total
                    total += len(chunk)
                    if total > MAX_CONTENT_BYTES:  # more than a checkpoint can hold: a bomb, not read through
                        return method, None
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError):
            return method, None


def checkpoints(config: TeamConfig, args: argparse.Namespace) -> int:
    """List checkpoints (names, sizes on disk, compression), verify them, show one, or prune."""
    if args.prune is not None:
        if args.show is not None or args.verify:
            raise _supervisor_error("--prune cannot be combined with --show or --verify", 2)
        return _prune(config, args)
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
                try:
                    method, plain = _compression(store.open_raw(info.checkpoint_id))
                except FileNotFoundError:
                    continue  # removed by a live run's retention since it was listed
                except CheckpointCorrupt:
                    method, plain = "none", None  # a symlink or not a file at all: --verify says which
                row: dict[str, Any] = {
                    "agent": name,
                    "checkpoint_id": info.checkpoint_id,
                    "cycle": info.cycle,
                    "size_bytes": info.size_bytes,
                    "uncompressed_bytes": plain,
                    "compression": method,
                    "ratio": round(plain / info.size_bytes, 2) if method == "gzip" and plain and info.size_bytes else None,
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
        headers = ["AGENT", "CHECKPOINT", "CYCLE", "SIZE", "UNCOMPRESSED", "COMPRESSION"] + (["VERDICT"] if args.verify else [])
        table: list[list[str]] = []
        for row in rows:
            cells: list[str] = [
                str(row["agent"]),
                str(row["checkpoint_id"]),
                str(row["cycle"]),
                _size(row["size_bytes"]),
                "?" if row["uncompressed_bytes"] is None else _size(row["uncompressed_bytes"]),
                _describe_compression(row),
            ]
            if args.verify:
                cells.append("ok" if row["valid"] else f"corrupt: {row['error']}")
            table.append(cells)
        for line in _table(headers, table, right=frozenset({2, 3, 4})):
            print(line)
        on_disk = sum(row["size_bytes"] for row in rows)
        agents = len({row["agent"] for row in rows})
        print(f"{len(rows)} checkpoint(s) of {agents} agent(s), {_size(on_disk)} on disk")
        if args.verify:
            print(f"verified {len(rows)} checkpoint(s): {bad} corrupt")
    return 1 if bad else 0


def _describe_compression(row: dict[str, Any]) -> str:
    if row["compression"] != "gzip":
        return "none"
    return f"gzip {row['ratio']:.1f}x" if row["ratio"] is not None else "gzip (unreadable)"


def _prune(config: TeamConfig, args: argparse.Namespace) -> int:
    """Delete all but the newest N checkpoints of each agent (never an agent's newest valid one)."""
    keep: int = args.prune
    names = _agent_names(config, args.agent)
    removed: list[dict[str, Any]] = []
    kept: list[dict[str, Any]] = []
    stuck: list[str] = []
    if config.storage.is_dir():
        try:
            with exclusive_run_lock(config):
                for name in names:
                    store = _store(config, name)
                    gone = store.prune(keep)
                    removed += [_info_row(name, info) for info in gone]
                    left = store.list()
                    kept += [_info_row(name, info) for info in left]
                    if len(left) > keep:  # the newest valid one may stay below the newest N; nothing else may
                        protected = store.load_latest()
                        stuck += [
                            f"{name}/{info.checkpoint_id}"
                            for info in left[:-keep]
                            if protected is None or info.checkpoint_id != protected.checkpoint_id
                        ]
        except OSError as exc:
            raise _storage_error(config, exc) from exc
    freed = sum(row["size_bytes"] for row in removed)
    if args.json:
        _print_json({"keep": keep, "removed": removed, "freed_bytes": freed, "kept": kept, "not_removed": stuck})
    else:
        for name in names:
            mine = [row for row in removed if row["agent"] == name]
            still = [row for row in kept if row["agent"] == name]
            if mine:
                cycles = f"cycle {mine[0]['cycle']}" if len(mine) == 1 else f"cycles {mine[0]['cycle']}-{mine[-1]['cycle']}"
                print(
                    f"{name}: removed {len(mine)} checkpoint(s) ({cycles}), {_size(sum(r['size_bytes'] for r in mine))} freed;"
                    f" kept {len(still)}, newest {still[-1]['checkpoint_id']}"
                )
            else:
                print(f"{name}: nothing to remove ({len(still)} checkpoint(s), keeping up to {keep})")
        print(f"removed {len(removed)} checkpoint(s), {_size(freed)} freed")
    if stuck:
        raise _supervisor_error(f"storage {config.storage}: could not delete {', '.join(stuck)}", 3)
    return 0


def _info_row(agent: str, info: CheckpointInfo) -> dict[str, Any]:
    return {"agent": agent, "checkpoint_id": info.checkpoint_id, "cycle": info.cycle, "size_bytes": info.size_bytes}


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
