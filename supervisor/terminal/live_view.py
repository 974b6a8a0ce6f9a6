"""Which console a run shows: a live view on a terminal, plain lines elsewhere.

The live view is the plain console's lines (banner, replies, notices) printed
above a table that stays at the bottom of the terminal: one row per agent with
its status, cycle k/N and a bar, its last event, tokens and dollars, under a
header with the elapsed time and over a footer with the interrupt state. When
the run ends the table's last state stays on screen and the outcome and the
statistics follow it as plain lines.

Rendering never happens in the supervisor's loop: the event sink only updates
a few fields under a lock and wakes one daemon thread, which draws at most
`refresh_per_second` times a second when something changed and once every
`idle_refresh` seconds otherwise (for the clock), so a busy team costs a few
renders a second and an idle one almost nothing. When a stop begins (graceful,
then again for immediate) the drawer holds back for `STOP_QUIET` seconds: the
stop is the person's priority, a second Ctrl+C usually comes within that time,
and an immediate stop is usually over by then; its last frame is drawn once,
when the processes are gone (`stop`). Nothing here installs a
signal handler; Ctrl+C stays the supervisor's. Any failure to render (a bug, a
terminal that went away) is swallowed: the view gives up and the run goes on
with plain lines, and stopping always shows the cursor again.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Mapping, Optional, TextIO, cast

from rich.console import Console as RichConsole
from rich.console import ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.segment import Segment
from rich.text import Span, Text

from supervisor.config import TeamConfig
from supervisor.terminal.console import Console
from supervisor.terminal.text import neutralise
from supervisor.vocabulary import NOT_STARTED, event_number

PLAIN_TERMS = frozenset({"", "dumb", "unknown"})
FINAL = frozenset({"completed", "interrupted", "failed"})
STATUS_STYLE = {
    "starting": "dim",
    NOT_STARTED: "dim",
    "running": "green",
    "stopping": "yellow",
    "completed": "bold green",
    "interrupted": "yellow",
    "failed": "bold red",
    "restarting": "magenta",
    "waiting": "cyan",
    "queued": "blue",
    "held": "dim",
}
BAR_WIDTH = 10
STATUS_WIDTH = len("interrupted")
MIN_LAST_WIDTH, MAX_LAST_WIDTH = 10, 40
STOP_QUIET = 0.3  # seconds without a frame once a stop begins: the CPU is the stop's
TABLE_OVERHEAD = 9  # header line, column heads, rules, totals, footer line, the blank line and two to spare


def wants_live(*, plain: bool = False, stream: Optional[TextIO] = None, environ: Optional[Mapping[str, str]] = None) -> bool:
    """A live view only for a person at a real terminal that can move its cursor."""
    if plain:
        return False
    env = os.environ if environ is None else environ
    if env.get("TERM", "").strip().lower() in PLAIN_TERMS:
        return False
    out = sys.stdout if stream is None else stream
    try:
        return bool(out.isatty())
    except (AttributeError, OSError, ValueError):
        return False


def choose_console(config: TeamConfig, *, plain: bool = False, stream: Optional[TextIO] = None) -> Console:
    """The live view on a terminal; today's plain lines on a pipe, a file, TERM=dumb or with --plain."""
    if wants_live(plain=plain, stream=stream):
        try:
            return LiveConsole(config, stream=stream)
        except Exception:  # whatever rich makes of this terminal, the run goes on with plain lines
            pass
    return Console(stream)


@dataclass
class AgentRow:
    """What the table shows of one agent, kept from the event stream."""

    name: str
    group: str
    max_cycles: int
    status: str = "starting"
    cycle: int = 0
    last: str = "waiting for worker"
    tokens: Optional[int] = None
    cost: Optional[float] = None


def _elapsed(seconds: float) -> str:
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _short(text: str, width: int) -> str:
    text = neutralise(" ".join(str(text).split()))
    return text if len(text) <= width else text[: width - 1] + "…"


class LiveConsole(Console):
    """The plain console's interface, drawn as a live table on a terminal."""

    def __init__(
        self,
        config: TeamConfig,
        *,
        stream: Optional[TextIO] = None,
        console: Optional[RichConsole] = None,
        refresh_per_second: float = 4.0,
        idle_refresh: float = 1.0,
        redirect: bool = True,
    ) -> None:
        if stream is None and console is not None:
            stream = cast(TextIO, console.file)
        super().__init__(stream)
        self.team = config.team
        self.rich = console if console is not None else RichConsole(file=self.stream)
        self.min_interval = 1.0 / refresh_per_second
        self.idle_refresh = idle_refresh
        self.redirect = redirect
        group_of = {a.name: g.name for g in config.groups for a in g.agents}
        self.rows = {a.name: AgentRow(a.name, group_of.get(a.name, ""), a.max_cycles) for a in config.all_agents()}
        self.members: dict[str, list[str]] = {g.name: [a.name for a in g.agents] for g in config.groups}
        self.started_at = time.monotonic()
        self.stopped_at: Optional[float] = None
        self.final_status: Optional[str] = None
        self.interrupt_mode: Optional[str] = None
        self.interrupt_source = ""
        self.interrupt_what = ""
        self.broken = False  # rendering failed once: plain lines from then on
        self.renders = 0
        self._lock = threading.Lock()  # the rows and pending lines, between the supervisor's thread and the drawer
        self._pending: list[str] = []
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._live: Optional[Live] = None
        self._thread: Optional[threading.Thread] = None
        self._render_cost = 0.0
        self._armed = False
        self._quieted: set[str] = set()  # the stop modes whose pause has been taken

    # ---- the display's life --------------------------------------------------

    @property
    def active(self) -> bool:
        return self._live is not None and not self.broken

    def start(self) -> None:
        """Show the table (idempotent); the run's first event after the banner does this."""
        if self._live is not None or self.broken:
            return
        try:
            self.started_at = time.monotonic()
            self._live = Live(
                self.view(),
                console=self.rich,
                auto_refresh=False,  # our own drawer below: on change, at most refresh_per_second
                transient=False,
                redirect_stdout=self.redirect,
                redirect_stderr=self.redirect,
                vertical_overflow="ellipsis",
            )
            self._live.start(refresh=False)
            atexit.register(self.stop)  # an error that ends the run early must not leave the cursor hidden
            self._thread = threading.Thread(target=self._draw_loop, name="live-view", daemon=True)
            self._thread.start()
            self._wake.set()
        except Exception:
            self._give_up()

    def stop(self) -> None:
        """Draw the last state, leave it on screen and give the terminal back (cursor shown). Idempotent."""
        self._armed = False  # once stopped, the table does not come back
        self._closing.set()
        self._wake.set()
        live = self._live
        if live is None:
            return
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)
            if thread.is_alive():  # stuck in a write the terminal does not take (^S?): leave the display alone
                self.broken = True
                self._live = None
                return
        try:
            if not self.broken:
                # One frame, laid out once: the lines not yet shown above the table, then the table.
                # (Printing them first would redraw the old table under them, a second layout.)
                with self._lock:
                    lines, self._pending = self._pending, []
                    for row in self.rows.values():
                        if row.status == "starting":  # the run is over and no worker ever came for it
                            row.status, row.last = NOT_STARTED, "the run ended before it started"
                final = self.view(final=True)
                above = Lines([Text(line) for line in "\n".join(lines).split("\n")], wrap=True)
                live.update(Group(above, final) if lines else final)
        except Exception:
            self.broken = True
        finally:
            self._release(live)

    def _release(self, live: Live) -> None:
        try:
            live.stop()  # its last refresh, then: stdout/stderr restored, cursor shown, a new line
        except Exception:
            try:
                self.rich.show_cursor(True)
            except Exception:
                pass
        self._live = None
        try:
            atexit.unregister(self.stop)
        except Exception:
            pass
        with self._lock:
            lines, self._pending = self._pending, []
        if lines:  # the drawer gave up before printing these: they still belong on screen
            self._print(*lines)

    def _give_up(self) -> None:
        """Rendering failed: stop trying, keep the run going with plain lines."""
        self.broken = True
        live = self._live
        if live is not None:
            self._release(live)

    def _draw_loop(self) -> None:
        """The drawer: wakes on a change or once a second, draws, then rests a moment."""
        live = self._live
        if live is None:
            return
        while not self._closing.is_set():
            self._wake.wait(max(self.idle_refresh, 20 * self._render_cost))
            self._wake.clear()
            if self._closing.is_set():
                return
            if self._holding_back():
                self._closing.wait(STOP_QUIET)
                if self._closing.is_set():
                    return
            began = time.monotonic()
            try:
                self._print_pending(live)
                live.update(self.view(), refresh=True)
                self.renders += 1
            except Exception:
                self._give_up()
                return
            self._render_cost = time.monotonic() - began
            # Rest: no more than refresh_per_second draws, and rendering at most ~10% of a core on a huge team.
            self._closing.wait(max(self.min_interval, 10 * self._render_cost))

    def _holding_back(self) -> bool:
        """A stop has just begun: a frame now would compete with it.

        Measured in a pseudo-terminal at 32 agents: a frame drawn just after
        the first Ctrl+C held the supervisor's main thread off the CPU for
        20-40 ms, so a second Ctrl+C pressed then waited that long to be
        handled. People press it within a fraction of a second, so each stop
        mode gets one pause before the view moves again.
        """
        with self._lock:
            mode = self.interrupt_mode
            if mode is None or mode in self._quieted:
                return False
            self._quieted.add(mode)
            return True

    def _print_pending(self, live: Live) -> None:
        with self._lock:
            lines, self._pending = self._pending, []
        if lines:
            live.console.print(Text("\n".join(lines)), soft_wrap=True)  # above the table; the terminal wraps

    # ---- the plain console's hooks -----------------------------------------------

    def _print(self, *lines: str) -> None:
        if self.active:
            with self._lock:
                self._pending.extend(lines)
            self._wake.set()
        else:
            try:
                super()._print(*lines)  # before the table, after it, or when it gave up: exactly the plain lines
            except Exception:
                pass

    def banner(self, team: str, storage: str, llm: str, agents: int, resumed: dict[str, int]) -> None:
        super().banner(team, storage, llm, agents, resumed)
        self._armed = True  # the table appears with the run's first event: a run that fails to start shows none

    def interrupt_notice(self, mode: str, source: str, reason: str) -> None:
        what = reason.removesuffix(" detected").removeprefix("Second ")
        with self._lock:
            self._set_interrupt(mode, source, what)
        super().interrupt_notice(mode, source, reason)
        self._wake.set()

    def outcome(self, status: str, interrupt: Optional[dict[str, Any]]) -> None:
        self.stop()  # the table's last state stays above the outcome and the statistics
        super().outcome(status, interrupt)

    def statistics(
        self, status: str, rows: list[dict[str, Any]], interrupts: dict[str, int], storage: str, config: str = "CONFIG"
    ) -> None:
        self.stop()
        super().statistics(status, rows, interrupts, storage, config)

    # ---- the event sink ---------------------------------------------------------

    def __call__(self, event: dict[str, Any]) -> None:
        try:
            if self._armed and self._live is None:
                self.start()
            with self._lock:
                self._track(event)
            super().__call__(event)  # the plain line, if the event has one, above the table
            self._wake.set()
        except Exception:
            pass  # an odd event must never break the event log that calls us

    def _set_interrupt(self, mode: str, source: str, what: str) -> None:
        if self.interrupt_mode == "IMMEDIATE" and mode != "IMMEDIATE":
            return
        self.interrupt_mode = mode
        self.interrupt_source = source
        self.interrupt_what = what

    def _track(self, event: dict[str, Any]) -> None:
        name = str(event.get("event", ""))
        agent = str(event.get("agent_id", ""))
        row = self.rows.get(agent)
        if agent == self.team and row is None:
            self._track_team(name, event)
        if agent in self.members and row is None:
            self._track_group(name, agent, event)
            return
        if row is None:
            return
        cycle = event.get("cycle")
        if isinstance(cycle, int) and not isinstance(cycle, bool) and name in (
            "worker_started", "cycle_completed", "checkpoint_saved", "interrupt_completed", "worker_restarted"
        ):
            row.cycle = cycle
        if name == "worker_started":
            status = str(event.get("status") or "running")
            row.status = status if status in STATUS_STYLE else "running"
            row.last = f"resumed at cycle {row.cycle}" if event.get("resumed") else f"started, pid {event.get('pid')}"
        elif name == "cycle_completed":
            if row.status in ("starting", "restarting", "queued"):
                row.status = "running"
            tokens = event.get("tokens")
            if isinstance(tokens, dict):
                counted = [event_number(tokens.get(k)) for k in ("prompt", "completion")]
                row.tokens = (row.tokens or 0) + int(sum(n for n in counted if n is not None))
            cost = event_number(event.get("cost_usd"))
            if cost is not None:
                row.cost = (row.cost or 0.0) + cost
            duration = event_number(event.get("duration_ms"))
            row.last = f"cycle {row.cycle} done" + (f", {duration / 1000:.1f}s" if duration is not None else "")
        elif name == "checkpoint_saved":
            row.last = f"checkpoint {row.cycle} saved"
        elif name == "interrupt_initiated":
            if row.status not in FINAL:
                row.status = "stopping"
            row.last = "cancelling the cycle" if event.get("mode") == "IMMEDIATE" else "finishing the cycle"
        elif name == "interrupt_completed":
            row.status = "interrupted"
            row.last = "stopped, saved"
        elif name == "worker_exited":
            status = str(event.get("status") or "")
            if status == "interrupted" and row.status == "interrupted":
                return  # "stopped, saved" says more
            if status in STATUS_STYLE:
                row.status = status
            row.last = "completed" if status == "completed" else f"exited: {event.get('reason') or status}"
        elif name == "worker_restarted":
            row.status = "restarting"
            row.last = f"restart {event.get('attempt', '')}".strip()
        elif name == "restart_limit_reached":
            row.status = "failed"
            row.last = "restart limit reached"
        elif name == "worker_hung":
            row.last = "hung: no heartbeat"
        elif name == "worker_error":
            row.last = f"{event.get('kind', 'worker')} error"
        elif name == "llm_retry":
            row.last = f"LLM retry {event.get('attempt', '')}".strip()
        elif name == "checkpoint_corrupt":
            row.last = "corrupt checkpoint skipped"
        elif name == "worker_event":
            row.last = str(event.get("name", "event"))
        elif name == "agent_waiting":
            row.status, row.last = "waiting", "waiting for a message"
        elif name == "question_asked":
            row.status, row.last = "waiting", f"❓ {event.get('question', '')}"
        elif name in ("wait_ended", "question_answered"):
            if row.status == "waiting":
                row.status = "running"
            row.last = "answered" if name == "question_answered" else f"wait ended: {event.get('outcome', '')}"
        elif name == "agent_queued":
            row.status, row.last = "queued", "waiting for a model server slot"
        elif name == "slot_granted":
            if row.status == "queued":
                row.status = "running"
            row.last = "slot granted"
        elif name == "agent_held":
            row.status, row.last = "held", "after " + ", ".join(str(a) for a in event.get("after") or [])
        elif name == "agent_released":
            row.status, row.last = "starting", "released"
        elif name == "agent_not_started":
            row.status, row.last = NOT_STARTED, "after " + ", ".join(str(a) for a in event.get("after") or [])

    def _track_team(self, name: str, event: dict[str, Any]) -> None:
        if name == "interrupt_initiated":
            message = str(event.get("message", ""))
            if message.startswith("restarting with "):
                return  # siblings stopped to restart with a failed agent (the strategy), not a team stop
            self._set_interrupt(str(event.get("mode", "")), str(event.get("source", "")), message)
        elif name == "supervisor_stopped":
            self.final_status = str(event.get("status", ""))
            self.stopped_at = time.monotonic()

    def _track_group(self, name: str, group: str, event: dict[str, Any]) -> None:
        """A group's own events speak for its agents when the group itself starts over or dies."""
        for member in self.members[group]:
            row = self.rows[member]
            if name == "group_restarted":
                row.status = "restarting"
                row.last = "group restarted"
            elif name == "group_exited" and row.status not in FINAL:
                status = str(event.get("status") or "")
                if status in STATUS_STYLE:
                    row.status = status
                row.last = f"group exited: {event.get('reason') or status}"

    # ---- the picture ---------------------------------------------------------------

    def header(self) -> str:
        end = self.stopped_at if self.stopped_at is not None else time.monotonic()
        counts: dict[str, int] = {}
        for row in self.rows.values():
            counts[row.status] = counts.get(row.status, 0) + 1
        states = ", ".join(f"{n} {status}" for status, n in counts.items())
        state = f" · {self.final_status}" if self.final_status else ""
        return f"team {self.team}{state} · elapsed {_elapsed(end - self.started_at)} · {states}"

    def interrupt_state(self) -> str:
        mode = self.interrupt_mode
        what = f"{self.interrupt_source}: {self.interrupt_what}" if self.interrupt_source else self.interrupt_what
        if mode == "GRACEFUL":
            if self.final_status is not None:
                return f"interrupt: graceful stop ({what})"
            return f"interrupt: graceful stop requested ({what}) — Ctrl+C again to force"
        if mode == "IMMEDIATE":
            return f"interrupt: immediate stop ({what})"
        if self.final_status is not None:
            return "interrupt: none"
        return "interrupt: none — Ctrl+C to stop gracefully"

    def view(self, *, final: bool = False) -> RenderableType:
        """The table as it stands (built under the lock; drawn later, outside it)."""
        with self._lock:
            lines = self._table()
        # While live, an empty last line keeps the cursor off the table: a ^C the terminal echoes lands there.
        return Lines(lines if final else [*lines, Text("")])

    def _table(self) -> list[Text]:
        """The table as lines of styled text, every column's width decided here.

        Not a rich Table: its general layout (measuring and wrapping every
        cell) cost ~25 ms for 32 agents, and the last frame is drawn while the
        person waits for the terminal. Each column's width is known before a
        cell is written, so each row is one Text, padded or cut to fit.
        """
        rows = list(self.rows.values())
        entries: list[tuple[str, Optional[AgentRow]]] = []  # ("", row) an agent; (group, None) a group's heading
        heading = ""
        for row in rows:
            if row.group and row.group != heading:
                heading = row.group
                entries.append((heading, None))
            entries.append(("", row))
        width, height = self.rich.size
        budget = max(2, height - TABLE_OVERHEAD)
        hidden: list[AgentRow] = []
        if len(entries) > budget:
            hidden = [r for _, r in entries[budget - 1 :] if r is not None]
            entries = entries[: budget - 1]

        cycles = sum(r.cycle for r in rows)
        most = sum(r.max_cycles for r in rows)
        tokens = [r.tokens for r in rows if r.tokens is not None]
        costs = [r.cost for r in rows if r.cost is not None]
        total_tokens = str(sum(tokens)) if tokens else "-"
        total_cost = f"${sum(costs):.4f}" if costs else "-"
        number_width = max([len(f"{cycles}/{most}")] + [len(f"{r.cycle}/{r.max_cycles}") for r in rows])
        indent = "  " if self.members else ""
        name_width = max([len("agent"), len("total")] + [len((indent if r.group else "") + r.name) for r in rows])
        token_width = max([len("tokens"), len(total_tokens)] + [len(str(r.tokens)) for r in rows if r.tokens is not None])
        cost_width = max(len("cost"), len(total_cost), 7)
        cycle_width = number_width + 1 + BAR_WIDTH
        fixed = name_width + STATUS_WIDTH + cycle_width + token_width + cost_width + 2 * 5
        last_width = max(MIN_LAST_WIDTH, min(MAX_LAST_WIDTH, width - fixed - 1))
        columns = Columns((name_width, STATUS_WIDTH, cycle_width, last_width, token_width, cost_width),
                          right=frozenset({4, 5}))

        lines = [
            Text(neutralise(self.header()), style="bold", no_wrap=True, overflow="ellipsis"),
            columns.row([Text(h) for h in ("agent", "status", "cycle", "last event", "tokens", "cost")], style="bold"),
            Text("─" * columns.width, no_wrap=True),
        ]
        for group, entry in entries:
            if entry is None:
                lines.append(columns.row([Text(group, style="dim italic"), Text("group", style="dim")]))
                continue
            lines.append(columns.row([
                Text(indent + entry.name if entry.group else entry.name, style="bold"),
                Text(entry.status, style=STATUS_STYLE.get(entry.status, "")),
                _cycle_cell(entry.cycle, entry.max_cycles, number_width, failed=entry.status == "failed"),
                Text(_short(entry.last, last_width)),  # Text: a reason's "[...]" is not markup
                Text(str(entry.tokens) if entry.tokens is not None else "-"),
                Text(f"${entry.cost:.4f}" if entry.cost is not None else "-"),
            ]))
        if hidden:
            counts: dict[str, int] = {}
            for row in hidden:
                counts[row.status] = counts.get(row.status, 0) + 1
            more = ", ".join(f"{n} {status}" for status, n in counts.items())
            lines.append(columns.row([Text(f"+{len(hidden)} more", style="dim"), Text(""), Text(""),
                                      Text(more, style="dim")]))
        lines.append(Text(""))
        lines.append(columns.row([Text("total"), Text(""), _cycle_cell(cycles, most, number_width), Text(""),
                                  Text(total_tokens), Text(total_cost)], style="bold"))
        lines.append(Text(neutralise(self.interrupt_state()), style="bold yellow" if self.interrupt_mode else "dim",
                          no_wrap=True, overflow="ellipsis"))
        return lines


class Lines:
    """Lines already laid out to the width: each is drawn as it is, cut at the edge, never wrapped.

    A Group of Texts would have rich wrap, split and pad every row again;
    the table's last frame is drawn while the person waits for the terminal.
    With `wrap` (messages, not the table), a line wider than the terminal is
    wrapped by rich as before, and only that line: most fit, and for a line
    that fits, rich's word-wrapper changes nothing but costs the most.
    """

    def __init__(self, lines: list[Text], *, wrap: bool = False) -> None:
        self.lines = lines
        self.wrap = wrap

    def __rich_console__(self, console: RichConsole, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        for line in self.lines:
            if self.wrap and (line.cell_len > width or "\t" in line.plain):
                yield from console.render(line, options)  # wrapped (tabs expanded) as a Text is; ends its line
                continue
            if line.cell_len > width:
                line = line.copy()
                line.truncate(width, overflow=line.overflow or "crop")
            if line.spans:
                yield from line.render(console)
            else:  # rich's Text.render leaves out the line's own style when it has no spans
                yield Segment(line.plain, console.get_style(line.style) if line.style else None)
            yield Segment.line()


@dataclass(frozen=True)
class Columns:
    """Fixed column widths, two spaces apart: a row is one Text, each cell padded or cut to its width."""

    widths: tuple[int, ...]
    right: frozenset[int] = frozenset()  # the columns aligned to the right

    @property
    def width(self) -> int:
        return sum(self.widths) + 2 * (len(self.widths) - 1)

    def row(self, cells: list[Text], style: str = "") -> Text:
        """One Text: the cells' text and padding joined once, their styles as spans at their offsets.

        (Appending cell by cell copied and re-measured the line at each step: most of a frame's layout.)
        """
        parts: list[str] = []
        spans: list[Span] = []
        offset = 0
        last = len(self.widths) - 1
        for index, width in enumerate(self.widths):
            cell = cells[index] if index < len(cells) else Text("")
            size = cell.cell_len
            if size > width:
                cell = cell.copy()
                cell.truncate(width, overflow="ellipsis")
                size = cell.cell_len
            room = width - size
            lead = ("  " if index else "") + (" " * room if index in self.right else "")
            plain = cell.plain
            offset += len(lead)
            parts += (lead, plain)
            if cell.style:
                spans.append(Span(offset, offset + len(plain), cell.style))
            spans += (Span(start + offset, end + offset, span_style) for start, end, span_style in cell.spans)
            offset += len(plain)
            if index not in self.right and index < last:
                parts.append(" " * room)
                offset += room
        return Text("".join(parts), style=style, no_wrap=True, overflow="crop", spans=spans)


def _cycle_cell(done: int, total: int, width: int, *, failed: bool = False) -> Text:
    """`3/10 ━━━───────`: k/N and a bar, one cell (heavy for done, light for to do, so it reads without colour)."""
    filled = 0 if total <= 0 else min(BAR_WIDTH, round(BAR_WIDTH * done / total))
    cell = Text(f"{done}/{total}".rjust(width) + " ")
    style = "red" if failed else ("bright_green" if done >= total else "green")
    cell.append("━" * filled, style=style)
    cell.append("─" * (BAR_WIDTH - filled), style="grey30")
    return cell
