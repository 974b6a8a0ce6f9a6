"""The one event stream: structlog processors writing JSON Lines.

The supervisor is the only writer of `events.jsonl`; workers' reports arrive
over their pipes and are logged here. Interrupt events are written, as the
very same line, to `interrupt_metrics.jsonl` too (the reference example's
metrics log). Each line is one `os.write` to an O_APPEND file, so a reader
never sees half a line and a crash loses at most the line being written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

import structlog
from structlog.typing import EventDict

from supervisor.storage import EVENTS_FILE, METRICS_FILE

INTERRUPT_EVENTS = frozenset({"interrupt_initiated", "interrupt_completed"})
LEADING_KEYS = ("timestamp", "level", "event", "agent_id")

EventSink = Callable[[dict[str, Any]], None]


def _open_append(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)


class JsonlFiles:
    """The structlog 'logger': appends rendered lines to the stream files.

    A failing write (disk full, storage gone) must not stop the team: the
    agents' work is in their checkpoints, and killing them over a log line
    would lose the cycles in flight. The first failure is kept in `failure`;
    the run ends with exit code 3 and says why.
    """

    def __init__(self, storage: Path) -> None:
        self._events = _open_append(storage / EVENTS_FILE)
        self._metrics = _open_append(storage / METRICS_FILE)
        self.failure: Optional[str] = None

    def msg(self, line: str, interrupt: bool = False) -> None:
        data = (line + "\n").encode("utf-8")
        for fd, wanted in ((self._events, True), (self._metrics, interrupt)):
            if not wanted:
                continue
            try:
                os.write(fd, data)
            except OSError as exc:
                if self.failure is None:
                    name = EVENTS_FILE if fd == self._events else METRICS_FILE
                    self.failure = f"cannot write {name}: {exc.strerror or exc}"

    info = warning = error = critical = debug = msg

    def close(self) -> None:
        for fd in (self._events, self._metrics):
            try:
                os.fsync(fd)
            except OSError:
                pass
            os.close(fd)


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

    def __init__(self, storage: Path, sinks: Optional[list[EventSink]] = None) -> None:
        self.files = JsonlFiles(storage)
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

    def close(self) -> None:
        self.files.close()
