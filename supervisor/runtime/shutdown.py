"""Every stop, from any source, through one path: issue, escalate, kill, one event.

A signal, the embedding program, the parent of a group, an agent's own
request, a budget, a timeout, a restart strategy and the graceful deadline all
build the same `StopOrder` and hand it to `Shutdown.request`. A stop of the
whole team is two stages: GRACEFUL arms `graceful_timeout`, IMMEDIATE (a
second signal, or that timeout) arms `immediate_timeout`, and when that runs
out whatever is left is killed, process group and all. A stop aimed at some
agents leaves the rest running, and an agent stopped alone is never restarted.

Each stop that takes effect is logged once, as `interrupt_initiated`, after
the frames have gone out; the console and the live view render that event.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Optional, Union

from protocol import GRACEFUL, IMMEDIATE, INTERRUPTED, SYSTEM, USER, Interrupt, encode
from supervisor.config import AGENT, GROUP, TeamConfig
from supervisor.runtime.children import Child, Phase, StopIntent
from supervisor.runtime.events import EventWriter
from supervisor.runtime.reactor import Reactor
from supervisor.runtime.reaper import parents

# signal: (source, what people call it, graceful message, immediate message or None: it never escalates)
SIGNAL_WORDS: dict[int, tuple[str, str, str, Optional[str]]] = {
    signal.SIGINT: (
        USER,
        "Ctrl+C",
        "User requested graceful shutdown (Ctrl+C)",
        "User requested immediate shutdown (double Ctrl+C)",
    ),
    signal.SIGTERM: (
        SYSTEM,
        "SIGTERM",
        "SIGTERM received (e.g. docker stop): graceful shutdown",
        "Second SIGTERM received: immediate shutdown",
    ),
    signal.SIGHUP: (SYSTEM, "SIGHUP", "Terminal closed (SIGHUP): graceful shutdown", None),
}
REAP_GRACE = 5.0  # seconds to wait for the kernel after SIGKILL before giving up on a pid



@dataclass(frozen=True)
class StopOrder:
    """What to stop, how, and who asked.

    `trigger` says what started it, for the event and its rendering: a signal's
    name ("Ctrl+C", "SIGTERM", "SIGHUP"), "program", "budget", "timeout",
    "agent", "restart_limit", "model_server", "graceful_timeout", "strategy" or
    "parent". `agents` empty means the whole team.
    """

    mode: str
    source: str
    message: str
    trigger: str
    agents: tuple[str, ...] = ()
    relayed: Optional[Interrupt] = None  # the parent's interrupt, passed down by a group
    intent: StopIntent = StopIntent.ALONE  # for aimed stops: alone, or to restart with a sibling


@dataclass
class IssuedInterrupt:
    message: Interrupt
    timestamp: str
    public_id: Union[int, str]  # the id in the event stream: the root's, across the whole tree
    team_wide: bool = True  # False: sent to some children only
    reached: set[str] = field(default_factory=set)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")


class Shutdown:
    """The stop in progress (`mode`: None, GRACEFUL, IMMEDIATE) and the interrupts issued this run."""

    def __init__(
        self,
        config: TeamConfig,
        children: dict[str, Child],
        speaks_for: dict[str, set[str]],
        reactor: Reactor,
        log: EventWriter,
        send: Callable[[Child, bytes], None],
        on_reap_timeout: Callable[[], None],
        is_group: bool,
    ) -> None:
        self.config = config
        self.children = children
        self.speaks_for = speaks_for
        self.reactor = reactor
        self.log = log
        self.send = send
        self.on_reap_timeout = on_reap_timeout
        self.is_group = is_group
        self.mode: Optional[str] = None
        self.forced = False  # an immediate stop reached a running child: the run exits 1
        self.interrupts: dict[int, IssuedInterrupt] = {}

    # ---- what asks for a stop ----------------------------------------------------------

    def on_signal(self, signum: int) -> None:
        """First SIGINT/SIGTERM: graceful; second: immediate; third: kill now.

        SIGHUP (the terminal went away) only ever starts a graceful stop: nobody
        asked for work to be thrown away.
        """
        words = SIGNAL_WORDS.get(signum)
        if words is None:
            return
        source, what, graceful, immediate = words
        if self.mode is None:
            self.request(StopOrder(GRACEFUL, source, graceful, what))
        elif immediate is None:
            return
        elif self.mode == GRACEFUL:
            self.request(StopOrder(IMMEDIATE, source, immediate, what))
        else:
            self.kill_all(trigger=what)

    def request(self, order: StopOrder) -> bool:
        """Carry out one stop; False when it changes nothing (already stopping so, or nobody to stop)."""
        if not order.agents:
            return self._stop_team(order)
        if self.mode is not None and order.relayed is None and order.intent is StopIntent.ALONE:
            return False  # the team's own stop is on its way to them already
        taken = [name for name in order.agents if self._stop_one(name, order)]
        return bool(taken)

    # ---- the team ----------------------------------------------------------------------

    def _stop_team(self, order: StopOrder) -> bool:
        if self.mode == IMMEDIATE or (self.mode == GRACEFUL and order.mode == GRACEFUL):
            return False
        self.mode = order.mode
        for child in self.children.values():
            if child.phase is Phase.RESTARTING:  # the team is stopping: what was to restart stays stopped
                self._cancel_restart(child)
        running = [c for c in self.children.values() if c.running]
        self._issue(order, running, team_wide=True)
        shutdown = self.config.shutdown
        now = time.monotonic()
        if order.mode == GRACEFUL:
            if order.relayed is None:  # a group's escalation is its parent's to make
                self.reactor.at("graceful", now + shutdown.graceful_timeout, self._graceful_ran_out)
        else:
            self.forced = self.forced or bool(running)
            self.reactor.cancel("graceful")
            self.reactor.at("kill", now + shutdown.immediate_timeout, self._immediate_ran_out)
        return True

    def _graceful_ran_out(self) -> None:
        timeout = self.config.shutdown.graceful_timeout
        self.request(StopOrder(IMMEDIATE, SYSTEM, f"Graceful shutdown timed out after {timeout:g}s", "graceful_timeout"))

    def _immediate_ran_out(self) -> None:
        self.kill_all(trigger="immediate_timeout")

    # ---- one agent -------------------------------------------------------------------------

    def _stop_one(self, name: str, order: StopOrder) -> bool:
        """Stop one child on purpose, the rest running on; an agent inside a group through its group."""
        child = self.children.get(name)
        if child is not None and (child.kind == AGENT or order.intent is StopIntent.WITH_SIBLING):
            return self._stop_child(child, order)
        group = next((c for c in self.children.values() if c.kind == GROUP and name in self.speaks_for[c.name]), None)
        if group is None or not group.running or name == group.name:
            return False
        self._issue(order, [group], team_wide=False, targets=[name])
        return True

    def _stop_child(self, child: Child, order: StopOrder) -> bool:
        if order.intent is StopIntent.WITH_SIBLING:  # at once: its last checkpoint is its truth
            child.intent = StopIntent.WITH_SIBLING
            self.reactor.at(f"kill:{child.name}", time.monotonic() + self.config.shutdown.immediate_timeout,
                            lambda: self._kill_late(child))
            self._issue(order, [child], team_wide=False)  # to the child itself: for a group, all of it
            return True
        if not child.running or child.intent is StopIntent.ALONE:
            if child.phase is Phase.RESTARTING:  # between a crash and its restart: it stays stopped
                self._cancel_restart(child)
                child.intent = StopIntent.ALONE
            return False
        child.intent = StopIntent.ALONE
        self.reactor.cancel(f"timeout:{child.name}")
        self.reactor.at(f"kill:{child.name}", time.monotonic() + self.grace(order.mode), lambda: self._kill_late(child))
        self._issue(order, [child], team_wide=False, targets=[child.name])
        return True

    def grace(self, mode: str) -> float:
        """How long an agent stopped alone has before it is killed: its cycle's end (GRACEFUL), then its exit."""
        shutdown = self.config.shutdown
        return shutdown.immediate_timeout + (shutdown.graceful_timeout if mode == GRACEFUL else 0.0)

    def _kill_late(self, child: Child) -> None:
        """Stopped alone or to restart, and not gone by its deadline: killed; its last checkpoint stays its truth."""
        if child.phase in (Phase.RUNNING, Phase.STOPPED):
            child.killed = True
            child.process.kill_tree()

    def _cancel_restart(self, child: Child) -> None:
        self.reactor.cancel(f"restart:{child.name}")
        child.phase, child.status, child.failure = Phase.EXITED, INTERRUPTED, None

    # ---- sending and logging -------------------------------------------------------------

    def _issue(
        self, order: StopOrder, children: list[Child], *, team_wide: bool, targets: Optional[list[str]] = None
    ) -> None:
        """One interrupt to `children`: the fan-out first, then the log line (it can wait a millisecond)."""
        relayed = order.relayed
        issued_at = relayed.issued_at if relayed is not None else time.time()
        local_id = len(self.interrupts) + 1
        if relayed is not None:
            public_id: Union[int, str] = relayed.interrupt_id
        else:  # a group's own interrupt (a restart, its own failure) must not collide with the root's ids
            public_id = f"{self.config.team}.{local_id}" if self.is_group else local_id
        msg = Interrupt(interrupt_id=local_id, mode=order.mode, source=order.source, message=order.message,
                        issued_at=issued_at, agents=list(targets or []))
        self.interrupts[local_id] = IssuedInterrupt(message=msg, timestamp=iso(issued_at), public_id=public_id,
                                                    team_wide=team_wide)
        frame = encode(msg)  # one encoding for every child
        for child in children:
            self.send(child, frame)
        if relayed is not None:
            return  # the parent has logged it already
        aimed: dict[str, Any] = {"agents": list(targets)} if targets else {}
        self.log.emit(
            "interrupt_initiated",
            agent_id=self.config.team,
            source=order.source,
            mode=order.mode,
            message=order.message,
            interrupt_id=public_id,
            issued_at=issued_at,
            workers=len(children),
            trigger=order.trigger,
            **aimed,
        )

    def team_frames(self) -> list[Interrupt]:
        """The team-wide interrupts so far, for a child that starts while the team stops."""
        return [issued.message for issued in self.interrupts.values() if issued.team_wide]

    # ---- the last resort -------------------------------------------------------------------

    def kill_all(self, trigger: Optional[str] = None) -> None:
        """SIGKILL every child process still up; give the kernel a bounded moment to report the exits."""
        killed = []
        doomed = [c for c in self.children.values() if c.worker is not None and c.phase in (Phase.RUNNING, Phase.STOPPED)]
        ppids = parents() if doomed else {}  # one scan of the machine for the whole team, not one per child
        for child in doomed:
            child.killed = True
            child.process.kill_tree(ppids)
            killed.append(child.name)
        if trigger is not None and killed:
            self.log.emit("workers_killed", level="warning", agent_id=self.config.team, trigger=trigger, agents=killed)
        if any(c.live for c in self.children.values()) and self.reactor.when("reap") is None:
            self.reactor.at("reap", time.monotonic() + REAP_GRACE, self.on_reap_timeout)

    # ---- counts -------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        issued = self.interrupts.values()
        return {
            "total": len(self.interrupts),
            "graceful": sum(1 for i in issued if i.message.mode == GRACEFUL),
            "immediate": sum(1 for i in issued if i.message.mode == IMMEDIATE),
        }

    def shown(self) -> Optional[dict[str, Any]]:
        """The interrupt the outcome names: the last one's words, the first one's time."""
        if not self.interrupts:
            return None
        first = self.interrupts.get(1)
        last = self.interrupts[max(self.interrupts)]
        msg = last.message
        return {"mode": msg.mode, "source": msg.source, "message": msg.message, "timestamp": (first or last).timestamp}
