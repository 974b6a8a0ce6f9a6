"""The closing statistics of `logs`: one run's (or every run's) status, counts and interrupts.

Also used wherever interrupts are counted from the event stream, so that an
interrupt acknowledged by many agents counts once everywhere.
"""

from __future__ import annotations

import statistics
from typing import Any, Optional

from protocol.messages import GRACEFUL, IMMEDIATE, RUNNING, SOURCES
from supervisor.terminal.console import RULE
from supervisor.tools.events import name_of
from supervisor.tools.text import short_time
from supervisor.vocabulary import NOT_STARTED, event_number



class InterruptSummary:
    """Counts distinct interrupts: one per (run, interrupt_id), however many agents acknowledged it.

    The supervisor logs an interrupt once under the team's name and each agent
    once more as it acknowledges; interrupt ids restart at 1 every run. Runs
    come in order, so only the current run's ids are remembered.
    """

    def __init__(self) -> None:
        self._run: Optional[int] = None
        self._seen: set[tuple[int, Any]] = set()
        self._lines = 0
        self.total = 0
        self.graceful = 0
        self.immediate = 0
        self.by_source: dict[str, int] = {source: 0 for source in SOURCES}

    def add(self, run: int, event: dict[str, Any]) -> None:
        if event.get("event") != "interrupt_initiated":
            return
        if run != self._run:
            self._run = run
            self._seen.clear()
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
        name = name_of(event)
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
