"""`report CONFIG`: the run's timeline as one self-contained HTML file.

An operator who was not watching wants to see afterwards what each agent did
and when: its cycles, checkpoints, interrupts, crashes and restarts. The page
is rendered here, in Python, as inline SVG and CSS, so it opens from a file
with no network and no JavaScript (a Content-Security-Policy forbids any fetch
anyway). Every string taken from an event is escaped: messages and replies
are user and model text, so markup shows as text and control characters as
visible escapes (`\x1b`), never reaching a browser or a terminal raw.

Three steps: `read_runs` turns the events into plain dataclasses,
`timeline_lines` draws one run as SVG, `page_parts` puts the page together.

A long history must not cost its size in memory: the latest run is drawn in
full and each earlier one is a line of facts (start, status, exit code,
duration, cycles, interrupts). `read_runs` reads the file twice on one open
handle: the first pass tallies every run's facts and notes where the last one
starts, the second goes back there and builds that run alone. The page is
written to disk piece by piece.
"""

from __future__ import annotations

import argparse
import html
import math
import os
import tempfile
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

from supervisor.config import TeamConfig
from supervisor.storage import EVENTS_FILE, REPORT_FILE, run_is_live
from supervisor.terminal.text import neutralise
from supervisor.tools.events import STARTED, EventReader, name_of
from supervisor.tools.stores import storage_error
from supervisor.tools.text import error, print_lines, short_time, warn
from supervisor.vocabulary import NOT_STARTED, event_number, parse_timestamp

# Geometry in CSS pixels; the browser test finds the lanes by LANE_PITCH.
WIDTH = 1200
LABEL_WIDTH = 200
RIGHT_PAD = 24
LABEL_CHARS = 28  # a longer "group / agent" label is cut (the whole one is its hover title)
AXIS_HEIGHT = 36
LANE_PITCH = 32
BAR_HEIGHT = 14

# Cycle bars: one colour per lane in config order (repeating after eight). No
# marker uses these, so a lane can be found in a screenshot by its colour.
LANE_COLOURS = ("#4e79a7", "#59a14f", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#a0cbe8")
TEAM_INTERRUPT_COLOUR = "#e15759"
ALIVE_COLOUR = "#e8ebf0"
DETAIL_MAX = 240  # a long field (a reply, a message) is cut to this in a hover title
EARLIER_SHOWN = 1000  # earlier runs listed, newest first; older ones are counted
STRAYS_SHOWN = 20  # agent ids the config does not name, listed under a run; more are only mentioned
MESSAGE_COLOUR = "#6b5bd2"
ARROWS_SHOWN = 2000  # messages drawn per run; more are counted, not drawn (the page stays light)

# Marker kinds, in legend order: what each one means.
MARKS = {
    "checkpoint": "checkpoint saved",
    "interrupt": "interrupt received (interrupt_initiated)",
    "stopped": "stopped on the interrupt (interrupt_completed)",
    "exit": "worker or group exited",
    "crash": "exited failed (crash, kill, hang)",
    "restart": "restarted",
    "hung": "hung (no heartbeat)",
    "failed": "restart limit reached",
    "corrupt": "corrupt checkpoint skipped",
}


# ---- the model: events grouped by run and agent --------------------------------


@dataclass
class Cycle:
    number: int
    start: float  # seconds since the run started
    end: float
    title: str


@dataclass
class Mark:
    kind: str  # a key of MARKS, or "team" for the supervisor's own interrupt
    at: float
    title: str


@dataclass
class Lane:
    agent: str
    group: Optional[str]
    max_cycles: int
    cycles: list[Cycle] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    alive: list[list[Optional[float]]] = field(default_factory=list)  # [started, exited or None]
    status: str = NOT_STARTED
    last_cycle: Optional[int] = None
    tokens: Optional[int] = None  # None: the provider reports none
    cost_usd: float = 0.0
    interrupts: int = 0
    restarts: int = 0


@dataclass
class RunFacts:
    """What one run amounts to: the latest run's header, and the one line of each earlier run."""

    number: int
    started: str  # timestamps as logged
    stopped: Optional[str] = None
    status: str = "unfinished"
    exit_code: Optional[int] = None
    duration: float = 0.0  # seconds, start to the stop (or the last event)
    cycles: int = 0  # of the agents the config names
    interrupts: int = 0  # the supervisor's own


@dataclass(frozen=True)
class Arrow:
    """A message between two lanes: from its sender when it was sent to its receiver when it was held."""

    sender: str
    receiver: str
    seq: int
    sent: float  # seconds from the run's start; the delivery's own time when it was sent in an earlier run
    delivered: float


@dataclass
class Run:
    facts: RunFacts
    lanes: list[Lane]
    arrows: list[Arrow] = field(default_factory=list)
    more_arrows: int = 0
    team_marks: list[Mark] = field(default_factory=list)  # the supervisor's own interrupts: a line across every lane
    resumed: list[str] = field(default_factory=list)
    strays: list[str] = field(default_factory=list)  # agent ids in the events that the config does not name
    more_strays: bool = False  # more of them than STRAYS_SHOWN


def _tokens(value: Any) -> Optional[int]:
    """`tokens` is {prompt, completion} from the ollama path; a plain count is taken too."""
    if isinstance(value, dict):
        counts = [event_number(v) for v in value.values()]
        return int(sum(c for c in counts if c is not None))
    count = event_number(value)
    return None if count is None else int(count)


def _details(event: dict[str, Any]) -> str:
    """The hover text: the event, its time and its other fields, one per line."""
    lines = [f"{event.get('event')} — {event.get('agent_id', '-')}", short_time(event.get("timestamp", "-"))]
    for key, value in event.items():
        if key in ("timestamp", "level", "event", "agent_id"):
            continue
        text = str(value)
        lines.append(f"{key}: {text if len(text) <= DETAIL_MAX else text[: DETAIL_MAX - 1] + '…'}")
    return "\n".join(lines)


class RunTally:
    """Counts one run's facts event by event and keeps nothing else: cheap enough for every run in the file."""

    def __init__(self, number: int, head: dict[str, Any], config: TeamConfig, live: bool) -> None:
        self.facts = RunFacts(number, str(head.get("timestamp", "-")), status="running" if live else "unfinished")
        self._t0 = parse_timestamp(head.get("timestamp"))
        self._team = config.team
        self._agents = frozenset(a.name for a in config.all_agents())

    def add(self, event: dict[str, Any]) -> Optional[float]:
        """Count an event of the run; its time in seconds from the start, or None when it has no time to place it."""
        when = parse_timestamp(event.get("timestamp"))
        if when is None or self._t0 is None:
            return None
        at = max(0.0, (when - self._t0).total_seconds())
        facts = self.facts
        facts.duration = max(facts.duration, at)
        name, agent = name_of(event), event.get("agent_id")
        if not isinstance(agent, str):
            return at
        if agent == self._team:
            if name == "supervisor_stopped":
                facts.stopped, facts.status = str(event.get("timestamp")), str(event.get("status", "?"))
                code = event_number(event.get("exit_code"))
                facts.exit_code = None if code is None else int(code)
            elif name == "interrupt_initiated" and "agents" not in event:
                facts.interrupts += 1
        elif name == "cycle_completed" and agent in self._agents:
            facts.cycles += 1
        return at


def build_run(number: int, head: dict[str, Any], rest: Iterable[dict[str, Any]], config: TeamConfig, live: bool) -> Run:
    """One run in full, from its supervisor_started line `head`; lanes in config order. `live`: a supervisor holds the storage now."""
    tally = RunTally(number, head, config, live)
    groups = {a.name: g.name for g in config.groups for a in g.agents}
    lanes = {a.name: Lane(a.name, groups.get(a.name), a.max_cycles) for a in config.all_agents()}
    members = {g.name: [lanes[a.name] for a in g.agents] for g in config.groups}
    run = Run(tally.facts, list(lanes.values()))
    sent: dict[tuple[str, str, int], float] = {}
    if isinstance(head.get("resumed"), list):
        run.resumed = [str(name) for name in head["resumed"]]
    for event in rest:
        at = tally.add(event)
        if at is None:
            continue
        name, agent = name_of(event), event.get("agent_id")
        if not isinstance(agent, str):
            continue
        if agent == config.team:
            if name == "interrupt_initiated" and "agents" not in event:  # aimed ones show on their agents' lanes
                run.team_marks.append(Mark("team", at, _details(event)))
            continue
        if name in ("message_sent", "message_delivered") and agent in lanes:
            _on_message(run, sent, lanes, name, event, at)
        if agent in lanes:
            _on_agent_event(lanes[agent], name, event, at)
        elif agent in members:
            for lane in members[agent]:
                _on_group_event(lane, name, event, at)
        elif agent not in run.strays:
            if len(run.strays) < STRAYS_SHOWN:
                run.strays.append(agent)
            else:
                run.more_strays = True
    for lane in run.lanes:
        if lane.alive and lane.alive[-1][1] is None:
            lane.status = "running" if live else "no exit logged"
    return run


# Events drawn as a marker and nothing more, with the marker's kind.
MARKED = {
    "checkpoint_saved": "checkpoint", "interrupt_initiated": "interrupt", "interrupt_completed": "stopped",
    "worker_restarted": "restart", "group_restarted": "restart", "worker_hung": "hung",
    "restart_limit_reached": "failed", "checkpoint_corrupt": "corrupt",
}


def _on_message(run: Run, sent: dict[tuple[str, str, int], float], lanes: dict[str, Lane], name: Optional[str],
                event: dict[str, Any], at: float) -> None:
    """A message's two ends, matched by (sender, receiver, seq); only lanes the config names are drawn."""
    seq = event_number(event.get("seq"))
    receiver = event.get("to")
    sender = event.get("agent_id") if name == "message_sent" else event.get("from")
    if seq is None or not isinstance(sender, str) or not isinstance(receiver, str) or receiver not in lanes:
        return
    key = (sender, receiver, int(seq))
    if name == "message_sent":
        if len(sent) < ARROWS_SHOWN * 2:  # bounded, whatever the file holds
            sent[key] = at
        return
    if sender not in lanes:
        return
    if len(run.arrows) >= ARROWS_SHOWN:
        run.more_arrows += 1
        return
    run.arrows.append(Arrow(sender, receiver, int(seq), sent.pop(key, at), at))


def _on_agent_event(lane: Lane, name: Optional[str], event: dict[str, Any], at: float) -> None:
    if name == "worker_started":
        lane.alive.append([at, None])
        lane.status = "running"
    elif name == "cycle_completed":
        number = event_number(event.get("cycle"))
        duration = (event_number(event.get("duration_ms")) or 0.0) / 1000
        lane.cycles.append(Cycle(int(number or 0), max(0.0, at - duration), at, _details(event)))
        lane.last_cycle = int(number) if number is not None else lane.last_cycle
        tokens = _tokens(event.get("tokens"))
        if tokens is not None:
            lane.tokens = (lane.tokens or 0) + tokens
        lane.cost_usd += event_number(event.get("cost_usd")) or 0.0
    elif name == "worker_exited":
        lane.status = str(event.get("status", "exited"))
        lane.marks.append(Mark("crash" if lane.status == "failed" else "exit", at, _details(event)))
        if lane.alive and lane.alive[-1][1] is None:
            lane.alive[-1][1] = at
    elif name in MARKED:
        lane.interrupts += name == "interrupt_initiated"
        lane.restarts += name == "worker_restarted"
        lane.marks.append(Mark(MARKED[name], at, _details(event)))


def _on_group_event(lane: Lane, name: Optional[str], event: dict[str, Any], at: float) -> None:
    """What happens to a group (its exit, its restart) happens to each of its agents' lanes."""
    if name == "group_exited":
        lane.marks.append(Mark("crash" if event.get("status") == "failed" else "exit", at, _details(event)))
    elif name in MARKED:
        lane.restarts += name == "group_restarted"
        lane.marks.append(Mark(MARKED[name], at, _details(event)))


def read_runs(reader: EventReader, config: TeamConfig, live: bool) -> tuple[Optional[Run], list[RunFacts], int]:
    """The latest run in full, the facts of the earlier ones (the newest EARLIER_SHOWN, oldest first), and how many runs.

    Two passes on the one open file, so memory is the latest run's whatever
    the history: the first tallies each run and notes where the last one
    starts, the second goes back there and builds it. Lines before the first
    supervisor_started belong to no run. Only the latest run can be the live one.
    """
    facts: deque[RunFacts] = deque(maxlen=EARLIER_SHOWN + 1)
    tally: Optional[RunTally] = None
    start = None
    runs = 0
    for event in reader.finish():
        if event.get("event") == STARTED:
            runs += 1
            tally = RunTally(runs, event, config, live=False)
            facts.append(tally.facts)
            start = reader.position
        elif tally is not None:
            tally.add(event)
    if start is None:
        return None, [], 0
    reader.rewind(start, warn=lambda _text: None)  # each line from there was read, and warned about, once already
    events = reader.finish()
    head = next(events, None)
    if head is None or head.get("event") != STARTED:
        raise error(f"{reader.path} changed while it was read (truncated?): run report again", 1)
    facts.pop()
    return build_run(runs, head, _until_next_run(events), config, live), list(facts), runs


def _until_next_run(events: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The events up to the next supervisor_started: a run started since the first pass is not the one counted."""
    for event in events:
        if event.get("event") == STARTED:
            return
        yield event


# ---- SVG -------------------------------------------------------------------------


def _esc(value: Any) -> str:
    """Event text as HTML text: markup escaped, control characters shown (newlines kept for hover titles)."""
    return html.escape(neutralise(value, lines=True), quote=True)


def _span(seconds: float) -> str:
    """A duration as people say it: 350ms, 1.5s, 2m05s, 1h04m."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def _tick_step(duration: float) -> float:
    for step in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600):
        if duration / step <= 10:
            return step
    return 3600 * max(1, round(duration / 36000))


GLYPH_OFFSET = {"checkpoint": BAR_HEIGHT / 2 + 3, "interrupt": -BAR_HEIGHT / 2 - 4.5}  # shapes set off the lane's middle


def glyph(kind: str, x: float, mid: float) -> str:
    """The shape of a marker at time position x on a lane whose middle is `mid`."""
    top, bottom = mid - BAR_HEIGHT / 2, mid + BAR_HEIGHT / 2
    shapes = {
        "checkpoint": f'<path d="M{x:.1f} {bottom - 1:.1f}l4 4-4 4-4-4z" fill="#222"/>',
        "interrupt": f'<path d="M{x - 5:.1f} {top - 8:.1f}h10l-5 7z" fill="#f28e2b"/>',
        "stopped": f'<rect x="{x - 4:.1f}" y="{mid - 4:.1f}" width="8" height="8" fill="none" stroke="#f28e2b" stroke-width="2.5"/>',
        "exit": f'<line x1="{x:.1f}" y1="{top - 4:.1f}" x2="{x:.1f}" y2="{bottom + 4:.1f}" stroke="#333" stroke-width="2"/>',
        "crash": f'<path d="M{x - 5:.1f} {mid - 5:.1f}l10 10m0-10l-10 10" stroke="#b10f2e" stroke-width="2.5"/>',
        "restart": f'<circle cx="{x:.1f}" cy="{mid:.1f}" r="5" fill="#fff" stroke="#6b3fa0" stroke-width="2"/>',
        "hung": f'<path d="M{x - 6:.1f} {mid + 5:.1f}h12l-6-11z" fill="#fff" stroke="#b10f2e" stroke-width="2"/>',
        "failed": f'<rect x="{x - 5:.1f}" y="{mid - 5:.1f}" width="10" height="10" fill="#b10f2e"/>',
        "corrupt": f'<circle cx="{x:.1f}" cy="{mid:.1f}" r="3.5" fill="#b10f2e"/>',
    }
    return shapes[kind]


def _arrowhead(x1: float, y1: float, x2: float, y2: float, size: float = 6.0) -> str:
    """A small filled triangle at (x2, y2) pointing along the line: drawn inline, nothing referenced."""
    length = math.hypot(x2 - x1, y2 - y1) or 1.0
    ux, uy = (x2 - x1) / length, (y2 - y1) / length
    bx, by = x2 - ux * size, y2 - uy * size
    px, py = -uy * size / 2, ux * size / 2
    return (f'<path d="M{x2:.1f} {y2:.1f}L{bx + px:.1f} {by + py:.1f}L{bx - px:.1f} {by - py:.1f}z" '
            f'fill="{MESSAGE_COLOUR}"/>')


def timeline_lines(run: Run) -> Iterator[str]:
    """One run as an SVG, line by line: a time axis, then one lane per agent with its bars and markers."""
    plot = WIDTH - LABEL_WIDTH - RIGHT_PAD
    duration = max(run.facts.duration, 0.001)
    height = AXIS_HEIGHT + LANE_PITCH * len(run.lanes) + 6

    def x(at: float) -> float:
        return LABEL_WIDTH + plot * min(at, duration) / duration

    yield f'<svg class="timeline" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" role="img">'
    for i, _lane in enumerate(run.lanes):
        y = AXIS_HEIGHT + i * LANE_PITCH
        yield f'<rect x="0" y="{y}" width="{WIDTH}" height="{LANE_PITCH}" fill="{"#fff" if i % 2 else "#f7f8fa"}"/>'
    step = _tick_step(duration)
    for k in range(int(duration / step) + 1):
        tx = x(k * step)
        yield f'<line x1="{tx:.1f}" y1="{AXIS_HEIGHT - 6}" x2="{tx:.1f}" y2="{height - 6}" stroke="#dde1e6"/>'
        yield f'<text x="{tx:.1f}" y="{AXIS_HEIGHT - 10}" class="tick">+{_esc(_span(k * step))}</text>'
    for i, lane in enumerate(run.lanes):
        mid = AXIS_HEIGHT + i * LANE_PITCH + LANE_PITCH / 2
        label = f"{lane.group} / {lane.agent}" if lane.group else lane.agent
        shown = label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"
        group = shown[: len(lane.group) + 3] if lane.group else ""
        yield (f'<text x="8" y="{mid + 4:.1f}" class="lane"><title>{_esc(label)}</title>'
               f'<tspan class="group">{_esc(group)}</tspan>{_esc(shown[len(group):])}</text>')
        for start, end in lane.alive:
            sx, ex = x(start or 0.0), x(duration if end is None else end)
            yield (f'<rect x="{sx:.1f}" y="{mid - BAR_HEIGHT / 2 - 4:.1f}" width="{max(ex - sx, 1):.1f}" '
                   f'height="{BAR_HEIGHT + 8}" fill="{ALIVE_COLOUR}"><title>worker alive</title></rect>')
        colour = LANE_COLOURS[i % len(LANE_COLOURS)]
        for cycle in lane.cycles:
            sx, ex = x(cycle.start), x(cycle.end)
            width = max(ex - sx - (1 if ex - sx > 3 else 0), 1.5)  # a hairline gap between adjacent cycles
            yield (f'<rect class="cycle" x="{sx:.1f}" y="{mid - BAR_HEIGHT / 2:.1f}" width="{width:.1f}" '
                   f'height="{BAR_HEIGHT}" fill="{colour}"><title>{_esc(cycle.title)}</title></rect>')
        for mark in lane.marks:
            yield f'<g class="mark {mark.kind}"><title>{_esc(mark.title)}</title>{glyph(mark.kind, x(mark.at), mid)}</g>'
    row = {lane.agent: i for i, lane in enumerate(run.lanes)}
    for arrow in run.arrows:
        y1 = AXIS_HEIGHT + row[arrow.sender] * LANE_PITCH + LANE_PITCH / 2
        y2 = AXIS_HEIGHT + row[arrow.receiver] * LANE_PITCH + LANE_PITCH / 2
        title = f"message {arrow.seq} from {arrow.sender} to {arrow.receiver}"
        yield (f'<g class="message"><title>{_esc(title)}</title><line x1="{x(arrow.sent):.1f}" y1="{y1:.1f}" '
               f'x2="{x(arrow.delivered):.1f}" y2="{y2:.1f}" stroke="{MESSAGE_COLOUR}" stroke-width="1.2" '
               f'stroke-opacity="0.8"/>{_arrowhead(x(arrow.sent), y1, x(arrow.delivered), y2)}</g>')
    for mark in run.team_marks:
        tx = x(mark.at)
        yield (f'<g class="mark team-interrupt"><title>{_esc(mark.title)}</title>'
               f'<line x1="{tx:.1f}" y1="{AXIS_HEIGHT - 4}" x2="{tx:.1f}" y2="{height - 4}" '
               f'stroke="{TEAM_INTERRUPT_COLOUR}" stroke-width="2.5"/>'
               f'<path d="M{tx - 6:.1f} {AXIS_HEIGHT - 8}h12l-6 7z" fill="{TEAM_INTERRUPT_COLOUR}"/></g>')
    yield "</svg>"


# ---- the page --------------------------------------------------------------------

CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 16px 24px; color: #1f2328; background: #fff; }
h1 { font-size: 20px; margin: 0 0 6px; } h2 { font-size: 16px; margin: 18px 0 6px; }
.facts span { margin-right: 18px; } .facts b { font-weight: 600; }
.status { padding: 1px 7px; border-radius: 9px; background: #eee; }
.status.completed { background: #d3f0d9; } .status.interrupted { background: #fde3c8; }
.status.failed, .status.unfinished { background: #f9d0d4; } .status.running { background: #d6e6fb; }
svg.timeline { display: block; margin: 10px 0 4px; }
svg text { font: 12px system-ui, sans-serif; fill: #1f2328; } svg text.tick { fill: #667; text-anchor: middle; font-size: 11px; }
svg tspan.group { fill: #8a8f98; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 16px; font-size: 12px; color: #444; margin: 4px 0 8px; }
.legend svg { vertical-align: middle; }
table { border-collapse: collapse; font-size: 13px; } th, td { padding: 3px 12px 3px 0; text-align: left; }
th { border-bottom: 1px solid #ccd; font-weight: 600; } td.num { text-align: right; }
ul.earlier { margin: 4px 0; padding-left: 20px; } .note { color: #667; font-size: 12px; }
"""


def _legend() -> str:
    swatch = "".join(f'<rect x="{2 + 6 * i}" y="2" width="5" height="10" fill="{c}"/>' for i, c in enumerate(LANE_COLOURS[:4]))
    items = [f'<span><svg width="26" height="14">{swatch}</svg>cycle (one colour per lane)</span>',
             f'<span><svg width="26" height="14"><rect x="2" y="1" width="22" height="12" fill="{ALIVE_COLOUR}"/>'
             "</svg>worker alive</span>",
             f'<span><svg width="16" height="22"><line x1="8" y1="1" x2="8" y2="21" stroke="{TEAM_INTERRUPT_COLOUR}" '
             'stroke-width="2.5"/></svg>the supervisor\'s interrupt (all agents)</span>',
             f'<span><svg width="26" height="14"><line x1="2" y1="12" x2="22" y2="3" stroke="{MESSAGE_COLOUR}" '
             'stroke-width="1.5"/></svg>a message, from sent to held by its receiver</span>']
    for kind, meaning in MARKS.items():
        mid = 13 - GLYPH_OFFSET.get(kind, 0.0)  # centre each shape in its swatch
        items.append(f'<span><svg width="18" height="26">{glyph(kind, 9, mid)}</svg>{_esc(meaning)}</span>')
    return '<div class="legend">' + "".join(items) + "</div>"


def _summary_table(run: Run) -> str:
    rows = []
    for lane in run.lanes:
        cycles = f"{len(lane.cycles)}" + (f" (reached {lane.last_cycle}/{lane.max_cycles})" if lane.last_cycle else "")
        rows.append(
            f"<tr><td>{_esc(lane.agent)}</td><td>{_esc(lane.group or '')}</td>"
            f'<td><span class="status {_esc(lane.status)}">{_esc(lane.status)}</span></td>'
            f'<td class="num">{_esc(cycles)}</td>'
            f'<td class="num">{"-" if lane.tokens is None else f"{lane.tokens:,}"}</td>'
            f'<td class="num">${lane.cost_usd:.4f}</td><td class="num">{lane.interrupts}</td>'
            f'<td class="num">{lane.restarts}</td></tr>'
        )
    head = "".join(f"<th>{h}</th>" for h in ("agent", "group", "status", "cycles", "tokens", "dollars",
                                             "interrupts", "restarts"))
    return f'<table class="summary"><tr>{head}</tr>{"".join(rows)}</table>'


def _run_facts(run: Run) -> str:
    facts = run.facts
    code = "-" if facts.exit_code is None else str(facts.exit_code)
    shown = [("started", short_time(facts.started)), ("ended", short_time(facts.stopped) if facts.stopped else "-"),
             ("duration", _span(facts.duration)), ("exit code", code)]
    spans = "".join(f"<span>{name} <b>{_esc(value)}</b></span>" for name, value in shown)
    resumed = f"<span>resumed <b>{len(run.resumed)}</b> of {len(run.lanes)}</span>" if run.resumed else ""
    return (f'<div class="facts"><span>status <span class="status {_esc(facts.status)}">{_esc(facts.status)}</span></span>'
            f"{spans}{resumed}</div>")


def _strays(run: Run) -> str:
    note = (f'<p class="note">{run.more_arrows} more messages than the {ARROWS_SHOWN} drawn</p>'
            if run.more_arrows else "")
    if not run.strays:
        return note
    names = ", ".join(run.strays) + (", and more" if run.more_strays else "")
    return note + f'<p class="note">Events for agents not in this config (not shown): {_esc(names)}</p>'


def earlier_line(facts: RunFacts) -> str:
    """One earlier run in a line: when, how it ended, how long, how much it did."""
    ended = short_time(facts.stopped) if facts.stopped else "?"
    code = "-" if facts.exit_code is None else facts.exit_code
    return (f"run {facts.number}: {short_time(facts.started)} → {ended} ({_span(facts.duration)}), {facts.status}, "
            f"exit code {code}, {facts.interrupts} interrupt(s), {facts.cycles} cycle(s)")


def page_parts(config: TeamConfig, latest: Run, earlier: list[RunFacts], runs: int, skipped: int) -> Iterator[str]:
    """The whole page, piece by piece: the latest run in full, then one line per earlier run, newest first."""
    number = latest.facts.number
    yield "\n".join([
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        f"<title>{_esc(config.team)}: run {number} report</title><style>{CSS}</style></head><body>",
        f"<header><h1>Team {_esc(config.team)} — run {number} of {runs}</h1>{_run_facts(latest)}</header>",
        "",
    ])
    for index, line in enumerate(timeline_lines(latest)):
        yield line if index == 0 else "\n" + line
    yield _legend() + _strays(latest) + _summary_table(latest) + "\n"
    if runs > 1:
        yield f'<h2>Earlier runs ({runs - 1})</h2>\n<ul class="earlier">\n'
        for facts in reversed(earlier):
            yield f'<li id="run-{facts.number}">{_esc(earlier_line(facts))}</li>\n'
        older = runs - 1 - len(earlier)
        if older:
            yield f"<li>and {older} older run(s)</li>\n"
        yield "</ul>\n"
    note = f"; {skipped} unreadable line(s) skipped" if skipped else ""
    yield (f'<p class="note">From {_esc(config.storage / EVENTS_FILE)}{_esc(note)}. '
           "Hover over a bar or a marker for its details.</p></body></html>\n")


# ---- the command -----------------------------------------------------------------


def _write_atomically(path: Path, parts: Iterable[str]) -> None:
    """Temp file in the same folder, then rename: a reader never sees half a report."""
    fd, temp = tempfile.mkstemp(prefix=".report-", suffix=".tmp", dir=path.parent)  # created 0600
    try:
        # A lone surrogate (JSON can name half a UTF-16 pair) has no UTF-8 form: written as `\\ud800`.
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as handle:
            for part in parts:
                handle.write(part)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


def report_command(config: TeamConfig, args: argparse.Namespace) -> int:
    """Read events.jsonl, write the latest run's report, print the path written."""
    path = config.storage / EVENTS_FILE
    skipped = 0

    def count_and_warn(text: str) -> None:
        nonlocal skipped
        skipped += 1
        warn(text)

    reader = EventReader(path, count_and_warn)
    try:
        if not reader.open():
            command = f"python -m supervisor {getattr(args, 'config', config.source)}"
            raise error(f"no events in {path}: run the team first ({command})", 1)
        live = run_is_live(config.storage)
        latest, earlier, runs = read_runs(reader, config, live)
    except OSError as exc:
        raise storage_error(config, exc) from exc
    finally:
        reader.close()
    if latest is None:
        raise error(f"no run in {path} (no supervisor_started line)", 1)
    output = Path(args.output) if args.output else config.storage / REPORT_FILE
    try:
        _write_atomically(output, page_parts(config, latest, earlier, runs, skipped))
    except OSError as exc:
        raise error(f"cannot write {output}: {exc.strerror or exc}", 2 if args.output else 3) from exc
    print_lines(str(output))
    return 0
