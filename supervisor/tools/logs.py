"""`logs CONFIG`: the event stream, filtered, then the run's statistics; `--follow` keeps reading.

`--agent`, `--event`, `--level`, `--since` and `--until` choose the lines
printed; the closing statistics (`RunStats`) count the run whatever `--event`
and `--level` say. `--json` prints one document `{events, summary}`, written
as the events are read so that memory stays flat however long the file; with
`--follow`, one JSON object a line, the last one the summary.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from datetime import datetime
from typing import Any, Optional, TextIO

from supervisor.config import TeamConfig
from supervisor.storage import EVENTS_FILE, run_is_live
from supervisor.tools.events import follow_events, name_of, read_events
from supervisor.tools.stats import RunStats
from supervisor.tools.stores import storage_error
from supervisor.tools.text import error, format_event, json_text, print_lines, warn
from supervisor.vocabulary import LEVELS, parse_timestamp


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


class _JsonDocument:
    """`{"events": [...], "summary": {...}}` written event by event, laid out as `json.dumps(indent=2)` lays it out.

    Nothing is written before the first event or the summary, so a command
    that fails before reading anything prints no half document. (JSON strings
    hold no raw newline, so re-indenting an event's own lines is safe.)
    """

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.events = 0

    def add(self, event: dict[str, Any]) -> None:
        self.out.write(('{\n  "events": [\n    ' if not self.events else ",\n    ") + _indented(event, 4))
        self.events += 1

    def close(self, summary: dict[str, Any]) -> None:
        self.out.write(('\n  ],\n' if self.events else '{\n  "events": [],\n') + '  "summary": ' + _indented(summary, 2) + "\n}\n")
        self.out.flush()


def _indented(value: Any, by: int) -> str:
    return json_text(value, indent=2).replace("\n", "\n" + " " * by)


def _names(values: Optional[list[str]]) -> Optional[frozenset[str]]:
    """`--agent a --agent b,c` as {a, b, c}; None when the option was not given."""
    if values is None:
        return None
    return frozenset(name.strip() for value in values for name in value.split(",") if name.strip())


def _level_rank(level: Any) -> int:
    """debug 0 < info 1 < warning 2 < error 3 < critical 4; a missing or unknown level counts as info."""
    text = str(level).lower()
    return LEVELS.index(text) if text in LEVELS else LEVELS.index("info")


def logs_command(config: TeamConfig, args: argparse.Namespace) -> int:
    """Print the event stream, filtered, then the run's statistics; `--follow` keeps reading."""
    path = config.storage / EVENTS_FILE
    agent_width = max(len(name) for name in [config.team, *(a.name for a in config.all_agents())])
    agents, names = _names(args.agent), _names(args.event)
    for option, chosen in (("--agent", agents), ("--event", names)):
        if chosen is not None and not chosen:
            raise error(f"{option} needs at least one name", 2)
    since: Optional[datetime] = args.since
    until: Optional[datetime] = args.until
    if since is not None and until is not None and since > until:
        raise error(
            f"--since ({since.isoformat(timespec='seconds')}) is after --until ({until.isoformat(timespec='seconds')})", 2
        )
    if agents is not None:
        known = {config.team, *(a.name for a in config.all_agents()), *(g.name for g in config.groups)}
        for name in sorted(agents - known):
            warn(f"no agent or group named '{name}' in team '{config.team}' (showing its events, if any)")
    min_rank = _level_rank(args.level) if args.level else 0
    stats = RunStats(agents, all_runs=args.all_runs)
    document = _JsonDocument(sys.stdout)
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
        if names is not None and name_of(event) not in names:
            return
        if min_rank and _level_rank(event.get("level")) < min_rank:
            return
        out = sys.stdout
        if follow_json:
            out.write(json_text(event, indent=None) + "\n")
            out.flush()
        elif args.json:
            document.add(event)
        else:
            out.write(format_event(event, agent_width) + "\n")
            if args.follow:
                out.flush()

    def finish() -> int:
        live = run_is_live(config.storage)
        if follow_json:
            print(json_text({"summary": stats.as_dict(live)}, indent=None), flush=True)
        elif args.json:
            document.close(stats.as_dict(live))
        else:
            print_lines(*stats.lines(live), flush=True)
        return 0

    if not path.exists():
        print_lines(f"no events yet ({path})", file=sys.stderr, flush=True)
    if not args.follow:
        try:
            for run, event in read_events(path):
                show(run, event)
        except BrokenPipeError:
            raise  # `logs | head`: the CLI treats it as a normal end
        except OSError as exc:
            raise storage_error(config, exc) from exc
        return finish()

    with _StopFlag() as stop:
        try:
            for run, event in follow_events(path, lambda: stop.set, until.timestamp() if until is not None else None):
                show(run, event)
        except KeyboardInterrupt:  # Ctrl+C where no handler could be installed (not the main thread)
            pass
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise storage_error(config, exc) from exc
        return finish()
