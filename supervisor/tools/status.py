"""`status CONFIG [--json] [--watch]`: is a run live, then one row per agent.

Each row comes from the agent's newest valid checkpoint (status, cycles,
budget) and the event stream (its last interrupt). A live run is asked too,
over its control socket: its own status, cycle and checkpoint win, and it adds
what each agent is doing now and its last event. Read-only: safe next to a
live supervisor. `--watch` shows the run's live table, fed by its events.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Optional

from protocol.checkpoints import Checkpoint
from protocol.messages import INTERRUPTED, RUNNING
from supervisor.config import TeamConfig
from supervisor.storage import EVENTS_FILE, run_is_live
from supervisor.tools.control import live_status, watch
from supervisor.tools.events import read_events
from supervisor.tools.stats import UNKNOWN
from supervisor.vocabulary import NOT_STARTED
from supervisor.tools.stores import checkpoint_store, storage_error
from supervisor.tools.text import print_json, print_lines, short_time, show_value, table


def _scan_for_status(
    path: Path, agents: frozenset[str]
) -> tuple[dict[str, dict[str, Any]], Optional[dict[str, Any]], Optional[dict[str, Any]]]:
    """The last interrupt_initiated line of each of `agents`, and the newest run's start and stop lines.

    Only what a row shows is kept, so memory does not grow with the file (nor
    with the agent ids a damaged or foreign file may hold).

    Bad lines are skipped with a warning on stderr; the stop line is None when the newest run has none (yet).
    """
    last: dict[str, dict[str, Any]] = {}
    started: Optional[dict[str, Any]] = None
    stopped: Optional[dict[str, Any]] = None
    for _, event in read_events(path):
        name, agent = event.get("event"), event.get("agent_id")
        if name == "interrupt_initiated" and isinstance(agent, str) and agent in agents:
            last[agent] = {
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


def status_command(config: TeamConfig, args: argparse.Namespace) -> int:
    """One row per agent, from the newest valid checkpoint and the event stream, under a line on the run."""
    if getattr(args, "watch", False):
        return watch_command(config)
    try:
        names = frozenset(agent.name for agent in config.all_agents())
        interrupts, started, stopped = _scan_for_status(config.storage / EVENTS_FILE, names)
        live = run_is_live(config.storage)
        rows: list[dict[str, Any]] = []
        for agent in config.all_agents():
            corrupt: list[str] = []
            checkpoint: Optional[Checkpoint] = None
            if config.storage.is_dir():
                checkpoint = checkpoint_store(config, agent.name).load_latest(
                    on_corrupt=lambda cid, _why: corrupt.append(cid)
                )
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
                    "question": _pending_question(checkpoint),
                }
            )
    except OSError as exc:
        raise storage_error(config, exc) from exc
    own = live_status(config) if live else None
    if own is not None:
        _merge(rows, own)
    if args.json:
        print_json(rows)
        return 0
    print_lines(_run_line(config, live, started, stopped))
    cells = [
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
    if own is not None:
        headers.append("NOW")
        for cells_of_row, row in zip(cells, rows, strict=True):
            cells_of_row.append(_describe_now(row))
    print_lines(*table(headers, cells, right=frozenset({2, 4})))
    for row in rows:
        if row["question"] and own is None:
            print_lines(f"{row['agent']}: will ask again on resume: {show_value(row['question'])}")
        if row["corrupt"]:
            print_lines(f"{row['agent']}: skipped corrupt checkpoint(s): {', '.join(row['corrupt'])}")
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


def _pending_question(checkpoint: Optional[Checkpoint]) -> Optional[str]:
    """The question a stop interrupted, which the next run asks again."""
    mail = checkpoint.extra.get("mail") if checkpoint is not None else None
    asking = mail.get("asking") if isinstance(mail, dict) else None
    return asking if isinstance(asking, str) else None


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
        text += f": {show_value(interrupt['message'])}"
    return text


def _merge(rows: list[dict[str, Any]], own: dict[str, Any]) -> None:
    """The live run's own view over the files': it knows what has not reached a checkpoint yet."""
    by_name = {row.get("agent"): row for row in own.get("agents", []) if isinstance(row, dict)}
    for row in rows:
        mine = by_name.get(row["agent"])
        if mine is None:
            continue
        for key in ("status", "cycle", "checkpoint_id", "budget_spent_usd"):
            if mine.get(key) is not None:
                row[key] = mine[key]
        row["now"] = mine.get("now")
        row["last_event"] = mine.get("last_event")


def _describe_now(row: dict[str, Any]) -> str:
    now = str(row.get("now") or "-")
    last = row.get("last_event")
    if isinstance(last, dict) and last.get("event"):
        now += f" (last: {last['event']} at {short_time(last.get('timestamp'))})"
    return now


def watch_command(config: TeamConfig) -> int:
    """The run's own live table (plain lines off a terminal), fed by its events, until the run ends."""
    from supervisor.terminal.live_view import choose_console

    console = choose_console(config)
    ended: list[dict[str, Any]] = []

    def show(event: dict[str, Any]) -> None:
        console(event)
        if event.get("event") == "supervisor_stopped":
            ended.append(event)

    try:
        code = watch(config, show)
    finally:
        console.stop()
    if ended:
        print_lines(f"team {config.team}: the run ended {ended[-1].get('status', UNKNOWN)} "
                    f"(exit {ended[-1].get('exit_code', '?')})")
    else:
        print_lines(f"team {config.team}: the run is gone (no supervisor_stopped seen)")
    return code
