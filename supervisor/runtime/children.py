"""One child of the supervisor (an agent's worker, or a group) as plain state.

A child's lifecycle is one `Phase`; why it is being stopped, if it is, is one
`StopIntent`. Every exit is classified by one pure function, `classify_exit`,
from what the child said last and what the supervisor did to it, so the rule is
readable as a table and testable without a process.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from protocol import FAILED, INTERRUPTED, Stopped
from supervisor.config import AGENT, GROUP
from supervisor.runtime.backend import ChildProcess


class Phase(Enum):
    PENDING = "pending"  # not started yet
    RUNNING = "running"  # its process is up and has not said its last word
    STOPPED = "stopped"  # it said its last word (Stopped); the process is on its way out
    EXITED = "exited"  # reaped, or it could not be started; nothing more will happen unless restarted
    RESTARTING = "restarting"  # exited, and a restart is scheduled
    HELD = "held"  # not started: it waits for its `after` agents to complete


class StopIntent(Enum):
    NONE = "none"  # nobody asked it to stop on its own: it stops with the team, or crashes
    ALONE = "alone"  # stopped on purpose by itself (its budget, its timeout, its request) or an operator: never restarted
    WITH_SIBLING = "with_sibling"  # stopped at once so that it restarts with a sibling (the strategy)


BACKLOG_READ = 2000  # messages in one read: half an hour of a healthy worker's heartbeats, or a full pipe
BACKLOG_READS = 3  # such reads in a row, over at least a second: a child that keeps ahead of the loop


@dataclass
class MessageRate:
    """Messages counted in one-second windows, to tell a busy child from a flooding one.

    The count is of what the loop reads, so it cannot exceed what the loop can read: with 16 children
    flooding at once, a pass took about a second, each child's count stayed near 8000 a second, and
    none was ever caught while they held the loop. So a child is also caught by its backlog: a full
    pipe of small messages at every read (at least BACKLOG_READ each, BACKLOG_READS reads in a row,
    over a second or more). A healthy worker after a long pause of the loop fills its pipe once, and
    the next read finds it drained.
    """

    window_start: float = 0.0
    in_window: int = 0
    backlog_since: float = 0.0
    backlog_reads: int = 0

    def count(self, messages: int, now: float) -> int:
        """Add `messages` at `now`; returns the count of the current window."""
        if now - self.window_start >= 1.0:
            self.window_start, self.in_window = now, 0
        self.in_window += messages
        return self.in_window

    def keeps_ahead(self, messages: int, now: float) -> bool:
        """One read of `messages` at `now`: whether the child has stayed a full pipe ahead of the loop."""
        if messages < BACKLOG_READ:
            self.backlog_reads = 0
            return False
        if self.backlog_reads == 0:
            self.backlog_since = now
        self.backlog_reads += 1
        return self.backlog_reads >= BACKLOG_READS and now - self.backlog_since >= 1.0


@dataclass
class Child:
    """The supervisor's view of one child during a run.

    An agent inside a group has one too, at the root, kept current from the
    group's events; it has no process of its own here.
    """

    name: str
    max_cycles: int
    kind: str = AGENT
    cycle: int = 0
    status: str = "starting"  # the word operators see: starting, running, completed, interrupted, failed, restarting
    checkpoint_id: Optional[str] = None
    budget_spent_usd: float = 0.0
    worker: Optional[ChildProcess] = None
    pid: Optional[int] = None
    phase: Phase = Phase.PENDING
    intent: StopIntent = StopIntent.NONE
    stopped: Optional[Stopped] = None  # its last word
    failure: Optional[str] = None  # why it failed, once something says so
    killed: bool = False  # the supervisor sent it SIGKILL (a deadline ran out, or the third Ctrl+C)
    last_heartbeat: float = 0.0
    readies: int = 0  # how many times its worker said it was ready this run (an operator's start waits for one more)
    waiting: str = ""  # what its agent waits for now: "message", "person" (then `question`), or nothing
    question: str = ""
    answers: int = 0  # questions answered this run (an operator's answer waits for one more)
    rate: MessageRate = field(default_factory=MessageRate)

    @property
    def process_noun(self) -> str:
        """What its process is called in events: worker_exited, group_exited, ..."""
        return "group" if self.kind == GROUP else "worker"

    @property
    def running(self) -> bool:
        """A process is up and has not said its last word."""
        return self.phase is Phase.RUNNING

    @property
    def live(self) -> bool:
        """Something may still happen to it in this run: it runs, is to start, or is to restart.

        A held agent is not: only a live agent's completion can release it.
        """
        return self.phase not in (Phase.EXITED, Phase.HELD)

    @property
    def process(self) -> ChildProcess:
        """The process of a child that was started (every handler's case)."""
        if self.worker is None:
            raise RuntimeError(f"{self.process_noun} {self.name} has no process")
        return self.worker

    @property
    def broke_protocol(self) -> bool:
        return self.failure is not None and self.failure.startswith("protocol error")

    def started(self, worker: ChildProcess, now: float) -> None:
        """A new process for this child; what the agent has done (cycle, checkpoint) stays."""
        self.worker, self.pid, self.last_heartbeat = worker, worker.pid, now
        self.phase, self.stopped, self.failure, self.killed = Phase.RUNNING, None, None, False
        self.waiting = self.question = ""
        if self.intent is StopIntent.WITH_SIBLING:
            self.intent = StopIntent.NONE

    def said_last_word(self, stopped: Stopped) -> None:
        self.stopped = stopped
        if self.phase is Phase.RUNNING:
            self.phase = Phase.STOPPED

    def row(self) -> dict[str, Any]:
        return {
            "agent": self.name,
            "status": self.status,
            "cycle": self.cycle,
            "max_cycles": self.max_cycles,
            "checkpoint_id": self.checkpoint_id,
            "budget_spent_usd": self.budget_spent_usd,
        }


def classify_exit(
    stopped: Optional[Stopped], failure: Optional[str], killed: bool, intent: StopIntent, exitcode: Optional[int]
) -> tuple[str, str]:
    """The status and reason of a child's exit.

    A failure anyone reported wins; then the child's own last word; then what
    the supervisor did to it on purpose; anything else is a crash.
    """
    if failure is None:
        if stopped is not None:
            return stopped.status, stopped.reason or stopped.status
        if killed:
            return INTERRUPTED, "killed after the immediate timeout"
        if intent is StopIntent.WITH_SIBLING:
            return INTERRUPTED, "stopped to restart with a sibling"
    return FAILED, failure or describe_exit(exitcode)


def describe_exit(exitcode: Optional[int]) -> str:
    """An exit the process did not explain, as a person would say it."""
    if exitcode is None:
        return "exit status unknown"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exited with code {exitcode} without reporting"


class LiveScan:
    """Whether any child is still live, asked once per pass of the loop.

    `any(c.live for c in children)` read the whole table on every pass: at
    1000 agents, with most already exited, that was a million checks in a
    stop. The scan starts where it last found a live child, so a pass costs
    one check until that child exits.
    """

    def __init__(self, children: dict[str, Child]) -> None:
        self.children = children
        self._order: list[Child] = []
        self._at = 0

    def any(self) -> bool:
        if len(self._order) != len(self.children):  # a reload added children (none is ever removed mid-run)
            self._order, self._at = list(self.children.values()), 0
        order, count = self._order, len(self._order)
        for step in range(count):
            index = (self._at + step) % count
            if order[index].live:
                self._at = index
                return True
        return False
