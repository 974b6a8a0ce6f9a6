"""The stop path as data: every deadline, frame, event and count `Shutdown` promises.

No processes: children are plain `Child` records with a recording stand-in for
their process, the reactor is real, and a timer "runs out" by being moved into
the past and ticked. Each test pins a rule whose break would change an exit
code, an event the console renders, or what a worker is told.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

from protocol import (
    GRACEFUL,
    IMMEDIATE,
    INTERRUPTED,
    PROGRAMMATIC,
    SYSTEM,
    USER,
    Interrupt,
    decode_payload,
)
from supervisor.config import GROUP, TeamConfig
from supervisor.runtime.children import (
    BACKLOG_READ,
    Child,
    MessageRate,
    Phase,
    StopIntent,
    describe_exit,
)
from supervisor.runtime.reactor import Reactor
from supervisor.runtime.shutdown import REAP_GRACE, Shutdown, StopOrder, iso

GRACEFUL_TIMEOUT = 30.0
IMMEDIATE_TIMEOUT = 2.0


class FakeProcess:
    """Stands in for a worker's process: the stop path only sends frames and kills."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.killed = False

    def kill_tree(self, ppids: object = None) -> None:
        self.killed = True


class Log:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def emit(self, event: str, *, level: str = "info", **fields: Any) -> None:
        self.events.append({"event": event, "level": level, **fields})

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == event]


class StopPath:
    """A `Shutdown` over agents `a`, `b` and (with `group=True`) group `g` holding agent `x`."""

    def __init__(self, *, group: bool = False, is_group: bool = False) -> None:
        mapping: dict[str, Any] = {
            "team": "t", "storage": "s",
            "shutdown": {"graceful_timeout": GRACEFUL_TIMEOUT, "immediate_timeout": IMMEDIATE_TIMEOUT},
            "agents": [{"name": n, "task": "x", "max_cycles": 3} for n in ("a", "b")],
        }
        if group:
            mapping["groups"] = [{"name": "g", "agents": [{"name": "x", "task": "x", "max_cycles": 3}]}]
        self.config = TeamConfig.from_mapping(mapping, source=Path("/tmp/t.yaml"), base_dir=Path("/tmp"))
        self.children = {n: Child(name=n, max_cycles=3) for n in ("a", "b")}
        speaks_for: dict[str, set[str]] = {}
        if group:
            self.children["g"] = Child(name="g", max_cycles=0, kind=GROUP)
            speaks_for["g"] = {"g", "x"}
        for child in self.children.values():
            child.worker = FakeProcess()  # type: ignore[assignment]
            child.phase = Phase.RUNNING
        self.reactor = Reactor()
        self.log = Log()
        self.reap_timeouts = 0
        self.shutdown = Shutdown(self.config, self.children, speaks_for, self.reactor, self.log,  # type: ignore[arg-type]
                                 lambda child, frame: child.worker.frames.append(frame),  # type: ignore[union-attr]
                                 self._reap_timeout, is_group=is_group)

    def _reap_timeout(self) -> None:
        self.reap_timeouts += 1

    def sent(self, name: str) -> list[Interrupt]:
        return [decode_payload(f[4:]) for f in self.children[name].worker.frames]  # type: ignore[union-attr,misc]

    def run_out(self, timer: str) -> None:
        """The deadline `timer` has passed: move it into the past and let the loop fire it."""
        when = self.reactor.when(timer)
        assert when is not None, f"timer {timer} is not armed"
        self.reactor.at(timer, time.monotonic() - 1, self.reactor._timers[timer][1])
        self.reactor.tick()

    def armed_in(self, timer: str) -> float:
        """Seconds from now until `timer` runs out."""
        when = self.reactor.when(timer)
        assert when is not None, f"timer {timer} is not armed"
        return when - time.monotonic()


def relayed(mode: str, interrupt_id: int, issued_at: float) -> Interrupt:
    return Interrupt(interrupt_id=interrupt_id, mode=mode, source=USER, message=f"parent {mode}", issued_at=issued_at)


# ---- the whole team ---------------------------------------------------------------------------

def test_a_team_stop_arms_the_graceful_deadline_then_the_immediate_one() -> None:
    p = StopPath()
    assert p.shutdown.request(StopOrder(GRACEFUL, USER, "stop", "Ctrl+C"))
    assert GRACEFUL_TIMEOUT - 1 < p.armed_in("graceful") <= GRACEFUL_TIMEOUT
    assert p.reactor.when("kill") is None
    assert p.shutdown.request(StopOrder(IMMEDIATE, USER, "now", "Ctrl+C"))
    assert IMMEDIATE_TIMEOUT - 1 < p.armed_in("kill") <= IMMEDIATE_TIMEOUT
    assert p.reactor.when("graceful") is None


def test_a_repeated_stop_changes_nothing_and_sends_nothing() -> None:
    p = StopPath()
    assert p.shutdown.request(StopOrder(GRACEFUL, USER, "stop", "Ctrl+C"))
    assert not p.shutdown.request(StopOrder(GRACEFUL, SYSTEM, "again", "SIGTERM"))
    assert p.shutdown.request(StopOrder(IMMEDIATE, USER, "now", "Ctrl+C"))
    assert not p.shutdown.request(StopOrder(IMMEDIATE, USER, "now again", "Ctrl+C"))
    assert not p.shutdown.request(StopOrder(GRACEFUL, USER, "late graceful", "Ctrl+C"))
    assert [m.mode for m in p.sent("a")] == [GRACEFUL, IMMEDIATE]
    assert len(p.log.named("interrupt_initiated")) == 2


def test_the_graceful_deadline_escalates_with_its_own_words() -> None:
    p = StopPath()
    p.shutdown.request(StopOrder(GRACEFUL, USER, "stop", "Ctrl+C"))
    p.run_out("graceful")
    last = p.sent("a")[-1]
    assert (last.mode, last.source, last.message) == (IMMEDIATE, SYSTEM, "Graceful shutdown timed out after 30s")


def test_sigterm_twice_is_graceful_then_immediate_from_the_system() -> None:
    p = StopPath()
    p.shutdown.on_signal(signal.SIGTERM)
    p.shutdown.on_signal(signal.SIGTERM)
    assert [(m.mode, m.source) for m in p.sent("a")] == [(GRACEFUL, SYSTEM), (IMMEDIATE, SYSTEM)]
    assert [e["trigger"] for e in p.log.named("interrupt_initiated")] == ["SIGTERM", "SIGTERM"]


def test_an_immediate_stop_with_nobody_running_is_not_forced() -> None:
    """`forced` makes the run exit 1: only when an immediate stop reached a running child."""
    p = StopPath()
    for child in p.children.values():
        child.phase = Phase.EXITED
    p.shutdown.request(StopOrder(IMMEDIATE, USER, "now", "Ctrl+C"))
    assert p.shutdown.forced is False
    assert p.log.named("interrupt_initiated")[0]["workers"] == 0


def test_the_interrupt_event_carries_every_field_the_console_renders() -> None:
    p = StopPath()
    p.shutdown.request(StopOrder(GRACEFUL, PROGRAMMATIC, "team budget reached", "budget"))
    frame = p.sent("a")[0]
    assert frame == p.sent("b")[0]
    assert (frame.interrupt_id, frame.agents) == (1, [])
    assert p.log.events == [{
        "event": "interrupt_initiated", "level": "info", "agent_id": "t", "source": PROGRAMMATIC, "mode": GRACEFUL,
        "message": "team budget reached", "interrupt_id": 1, "issued_at": frame.issued_at, "workers": 2,
        "trigger": "budget",
    }]


def test_interrupt_ids_count_up_and_counts_and_the_shown_interrupt_follow() -> None:
    """A relayed interrupt keeps the parent's time and id; nothing is logged twice."""
    p = StopPath(is_group=True)
    assert p.shutdown.shown() is None
    assert p.shutdown.counts() == {"total": 0, "graceful": 0, "immediate": 0}
    p.shutdown.request(StopOrder(GRACEFUL, USER, "parent GRACEFUL", "parent", relayed=relayed(GRACEFUL, 7, 100.0)))
    p.shutdown.request(StopOrder(IMMEDIATE, USER, "parent IMMEDIATE", "parent", relayed=relayed(IMMEDIATE, 8, 200.0)))
    assert [(m.interrupt_id, m.issued_at) for m in p.sent("a")] == [(1, 100.0), (2, 200.0)]
    assert [i.public_id for i in p.shutdown.interrupts.values()] == [7, 8]
    assert p.log.events == []  # the parent logged them
    assert p.reactor.when("graceful") is None  # the parent escalates, not the group
    assert p.shutdown.counts() == {"total": 2, "graceful": 1, "immediate": 1}
    assert p.shutdown.shown() == {"mode": IMMEDIATE, "source": USER, "message": "parent IMMEDIATE",
                                  "timestamp": "1970-01-01T00:01:40Z"}
    assert [m.mode for m in p.shutdown.team_frames()] == [GRACEFUL, IMMEDIATE]


def test_counts_tell_graceful_from_immediate_interrupts() -> None:
    p = StopPath()
    p.shutdown.request(StopOrder(GRACEFUL, PROGRAMMATIC, "its budget", "agent", agents=("a",)))
    p.shutdown.request(StopOrder(GRACEFUL, USER, "stop", "Ctrl+C"))
    p.shutdown.request(StopOrder(IMMEDIATE, USER, "now", "Ctrl+C"))
    assert p.shutdown.counts() == {"total": 3, "graceful": 2, "immediate": 1}


def test_a_groups_own_interrupts_are_named_after_it() -> None:
    p = StopPath(is_group=True)
    p.shutdown.request(StopOrder(GRACEFUL, SYSTEM, "restart", "strategy"))
    assert p.log.named("interrupt_initiated")[0]["interrupt_id"] == "t.1"
    assert p.sent("a")[0].interrupt_id == 1


def test_iso_is_utc_with_a_z() -> None:
    assert iso(0.5) == "1970-01-01T00:00:00.500000Z"


# ---- one agent --------------------------------------------------------------------------------

@pytest.mark.parametrize(("mode", "grace"), [(GRACEFUL, GRACEFUL_TIMEOUT + IMMEDIATE_TIMEOUT), (IMMEDIATE, IMMEDIATE_TIMEOUT)])
def test_an_aimed_stop_gets_its_own_deadline_and_is_killed_when_it_runs_out(mode: str, grace: float) -> None:
    p = StopPath()
    p.reactor.at("timeout:a", time.monotonic() + 60, lambda: None)
    assert p.shutdown.request(StopOrder(mode, PROGRAMMATIC, "its timeout", "timeout", agents=("a",)))
    assert p.reactor.when("timeout:a") is None  # its own timeout cannot fire a second stop
    assert grace - 1 < p.armed_in("kill:a") <= grace
    assert p.shutdown.team_frames() == []  # a child that starts later is not told
    assert p.log.events[-1]["agents"] == ["a"] and p.log.events[-1]["workers"] == 1
    p.run_out("kill:a")
    assert p.children["a"].killed and p.children["a"].worker.killed  # type: ignore[union-attr]
    assert not p.children["b"].killed and p.shutdown.mode is None


def test_a_late_kill_spares_a_child_that_has_exited() -> None:
    p = StopPath()
    p.shutdown.request(StopOrder(GRACEFUL, PROGRAMMATIC, "its budget", "agent", agents=("a",)))
    p.children["a"].phase = Phase.EXITED
    p.run_out("kill:a")
    assert not p.children["a"].killed and not p.children["a"].worker.killed  # type: ignore[union-attr]


def test_a_stop_to_restart_with_a_sibling_is_immediate_and_killed_at_the_immediate_deadline() -> None:
    p = StopPath()
    order = StopOrder(IMMEDIATE, SYSTEM, "restarting with b (one_for_all)", "strategy", agents=("a",),
                      intent=StopIntent.WITH_SIBLING)
    assert p.shutdown.request(order)
    assert p.children["a"].intent is StopIntent.WITH_SIBLING
    assert IMMEDIATE_TIMEOUT - 1 < p.armed_in("kill:a") <= IMMEDIATE_TIMEOUT
    frame = p.sent("a")[0]
    assert (frame.mode, frame.agents) == (IMMEDIATE, [])  # to the child itself, all of it
    assert p.shutdown.team_frames() == []
    assert "agents" not in p.log.events[-1]
    p.run_out("kill:a")
    assert p.children["a"].killed


def test_an_agent_waiting_to_restart_stays_stopped_when_stopped_alone() -> None:
    p = StopPath()
    a = p.children["a"]
    a.phase, a.status = Phase.RESTARTING, "restarting"
    p.reactor.at("restart:a", time.monotonic() + 5, lambda: None)
    assert not p.shutdown.request(StopOrder(GRACEFUL, PROGRAMMATIC, "operator", "program", agents=("a",)))
    assert (a.phase, a.status, a.intent) == (Phase.EXITED, INTERRUPTED, StopIntent.ALONE)
    assert p.reactor.when("restart:a") is None
    assert p.sent("a") == []


def test_a_stopped_agent_that_has_exited_is_left_alone() -> None:
    p = StopPath()
    p.children["a"].phase = Phase.EXITED
    assert not p.shutdown.request(StopOrder(GRACEFUL, PROGRAMMATIC, "operator", "program", agents=("a",)))
    assert p.children["a"].phase is Phase.EXITED and p.children["a"].intent is StopIntent.NONE


def test_an_agent_inside_a_group_is_stopped_through_its_group() -> None:
    p = StopPath(group=True)
    assert p.shutdown.request(StopOrder(GRACEFUL, PROGRAMMATIC, "its budget", "agent", agents=("x",)))
    frame = p.sent("g")[0]
    assert (frame.mode, frame.agents) == (GRACEFUL, ["x"])
    assert p.sent("a") == [] and p.sent("b") == []
    assert p.shutdown.team_frames() == []
    event = p.log.named("interrupt_initiated")[0]
    assert (event["agents"], event["workers"], event["message"]) == (["x"], 1, "its budget")
    assert p.children["g"].intent is StopIntent.NONE  # the group itself runs on


@pytest.mark.parametrize("name", ["g", "nobody"])
def test_a_group_or_an_unknown_name_cannot_be_stopped_alone(name: str) -> None:
    p = StopPath(group=True)
    assert not p.shutdown.request(StopOrder(GRACEFUL, PROGRAMMATIC, "operator", "program", agents=(name,)))
    assert all(p.sent(n) == [] for n in p.children) and p.log.events == []


def test_an_agent_of_a_group_that_is_not_running_is_not_stopped() -> None:
    p = StopPath(group=True)
    p.children["g"].phase = Phase.STOPPED
    assert not p.shutdown.request(StopOrder(GRACEFUL, PROGRAMMATIC, "operator", "program", agents=("x",)))
    assert p.sent("g") == []


def test_a_group_restarting_with_a_sibling_is_stopped_whole() -> None:
    p = StopPath(group=True)
    assert p.shutdown.request(StopOrder(IMMEDIATE, SYSTEM, "restarting with a", "strategy", agents=("g",),
                                        intent=StopIntent.WITH_SIBLING))
    assert p.sent("g")[0].agents == [] and p.children["g"].intent is StopIntent.WITH_SIBLING


# ---- the last resort --------------------------------------------------------------------------

def test_kill_all_kills_what_runs_or_is_leaving_and_reports_them_once() -> None:
    p = StopPath()
    p.children["c"] = Child(name="c", max_cycles=3)  # never started: no process
    p.children["b"].phase = Phase.STOPPED
    p.shutdown.kill_all(trigger="Ctrl+C")
    assert p.children["a"].worker.killed and p.children["b"].worker.killed  # type: ignore[union-attr]
    assert not p.children["c"].killed
    assert p.log.events == [{"event": "workers_killed", "level": "warning", "agent_id": "t", "trigger": "Ctrl+C",
                             "agents": ["a", "b"]}]
    assert REAP_GRACE - 1 < p.armed_in("reap") <= REAP_GRACE
    p.run_out("reap")
    assert p.reap_timeouts == 1


def test_kill_all_keeps_the_first_reap_deadline_and_reports_only_kills_it_was_asked_to_name() -> None:
    p = StopPath()
    p.shutdown.kill_all()  # no trigger: the caller reports the exits itself
    assert all(c.worker.killed for c in p.children.values())  # type: ignore[union-attr]
    assert p.log.events == []
    first = p.reactor.when("reap")
    for child in p.children.values():
        child.phase = Phase.EXITED
    p.children["c"] = Child(name="c", max_cycles=3)  # still to start: the run is not over
    p.shutdown.kill_all(trigger="immediate_timeout")
    assert p.log.events == []  # nothing was left to kill
    assert p.reactor.when("reap") == first


def test_kill_all_with_nothing_left_arms_nothing() -> None:
    p = StopPath()
    for child in p.children.values():
        child.phase = Phase.EXITED
    p.shutdown.kill_all(trigger="Ctrl+C")
    assert p.log.events == [] and p.reactor.when("reap") is None
    assert not any(c.worker.killed for c in p.children.values())  # type: ignore[union-attr]


# ---- a child's record -------------------------------------------------------------------------

def test_a_restarted_child_starts_clean_but_keeps_its_progress() -> None:
    child = Child(name="a", max_cycles=5, cycle=3, checkpoint_id="c3", intent=StopIntent.WITH_SIBLING,
                  failure="boom", killed=True)
    worker: Any = type("W", (), {"pid": 4242})()
    child.started(worker, now=12.5)
    assert (child.worker, child.pid, child.last_heartbeat) == (worker, 4242, 12.5)
    assert (child.phase, child.stopped, child.failure, child.killed) == (Phase.RUNNING, None, None, False)
    assert child.intent is StopIntent.NONE
    assert child.row() == {"agent": "a", "status": "starting", "cycle": 3, "max_cycles": 5, "checkpoint_id": "c3",
                           "budget_spent_usd": 0.0}
    alone = Child(name="b", max_cycles=1, intent=StopIntent.ALONE)
    alone.started(worker, now=0.0)
    assert alone.intent is StopIntent.ALONE  # stopped alone stays so


def test_a_last_word_moves_a_running_child_to_stopped_only() -> None:
    from protocol import Stopped

    word = Stopped(status=INTERRUPTED, cycle=1, checkpoint_id=None, budget_spent_usd=0.0)
    child = Child(name="a", max_cycles=1, phase=Phase.RUNNING)
    child.said_last_word(word)
    assert child.stopped == word and child.phase is Phase.STOPPED
    exited = Child(name="b", max_cycles=1, phase=Phase.EXITED)
    exited.said_last_word(word)
    assert exited.phase is Phase.EXITED


def test_messages_are_counted_per_one_second_window() -> None:
    rate = MessageRate()
    assert rate.count(3, now=10.0) == 3
    assert rate.count(2, now=10.5) == 5
    assert rate.count(1, now=11.0) == 1  # a new window at exactly one second
    assert rate.count(4, now=11.9) == 5


def test_a_child_is_flooding_when_a_full_pipe_waits_at_every_read_for_a_second() -> None:
    rate = MessageRate()
    assert not rate.keeps_ahead(BACKLOG_READ, now=10.0)
    assert not rate.keeps_ahead(BACKLOG_READ, now=10.4)
    assert not rate.keeps_ahead(BACKLOG_READ, now=10.9)  # three reads, but not a second yet
    assert rate.keeps_ahead(BACKLOG_READ, now=11.0)
    exactly = MessageRate()  # the third full read, a second after the first: caught there
    assert not exactly.keeps_ahead(BACKLOG_READ, now=20.0) and not exactly.keeps_ahead(BACKLOG_READ, now=20.5)
    assert exactly.keeps_ahead(BACKLOG_READ, now=21.0)
    two = MessageRate()  # two full reads, however far apart, are not yet a streak
    assert not two.keeps_ahead(BACKLOG_READ, now=30.0) and not two.keeps_ahead(BACKLOG_READ, now=35.0)
    calm = MessageRate()
    for now in (10.0, 10.6, 11.2):  # a full pipe after each long pause of the loop, drained in between
        assert not calm.keeps_ahead(5000, now=now)
        assert not calm.keeps_ahead(40, now=now + 0.1)
    assert not calm.keeps_ahead(BACKLOG_READ - 1, now=12.0) and calm.backlog_reads == 0


def test_exit_code_zero_without_a_word_is_described_as_an_exit() -> None:
    assert describe_exit(0) == "exited with code 0 without reporting"
    assert describe_exit(-signal.SIGTERM) == "killed by SIGTERM"


# ---- the reactor ------------------------------------------------------------------------------

def test_a_descriptor_dropped_by_an_earlier_callback_is_skipped_and_the_rest_still_run() -> None:
    """An earlier callback may unwatch, re-watch or close another ready descriptor within the same tick."""
    import selectors
    import socket

    reactor = Reactor()
    pairs = {name: socket.socketpair() for name in "abcde"}
    ran: list[tuple[str, int]] = []

    def on(name: str):
        def callback(mask: int) -> None:
            ran.append((name, mask))
            pairs[name][0].recv(10)
            if name == "a":  # drops b, re-watches c with a new callback, drops and closes e
                reactor.unwatch(pairs["b"][0])
                reactor.unwatch(pairs["c"][0])
                reactor.watch(pairs["c"][0], lambda mask: ran.append(("c-new", mask)))
                reactor.unwatch(pairs["e"][0])
                pairs["e"][0].close()
        return callback

    for name in "abced":  # d last: whichever skip comes first, d must still run after it
        reactor.watch(pairs[name][0], on(name))
        pairs[name][1].send(b"x")
    reactor.tick()
    names = [name for name, _ in ran]
    assert "a" in names and "d" in names  # whatever the order, the untouched one runs
    assert all(mask == selectors.EVENT_READ for _, mask in ran)
    after_a = names[names.index("a") + 1:]
    assert not {"b", "c", "c-new", "e"} & set(after_a)
    assert not reactor.watching(pairs["b"][0]) and reactor.watching(pairs["c"][0])
    reactor.close()
    for ours, theirs in pairs.values():
        ours.close()
        theirs.close()


def test_a_timer_cancelled_by_an_earlier_one_does_not_stop_the_later_ones() -> None:
    reactor = Reactor()
    fired: list[str] = []
    now = time.monotonic()

    def first() -> None:
        fired.append("first")
        reactor.cancel("second")

    reactor.at("first", now - 0.003, first)
    reactor.at("second", now - 0.002, lambda: fired.append("second"))
    reactor.at("third", now - 0.001, lambda: fired.append("third"))
    reactor.tick()
    assert fired == ["first", "third"]
    reactor.close()


def test_after_tick_callbacks_run_once_per_tick() -> None:
    reactor = Reactor()
    ticks: list[int] = []
    reactor.after_each_tick(lambda: ticks.append(1))
    reactor.at("now", time.monotonic() - 1, lambda: None)
    reactor.tick()
    assert ticks == [1]
    reactor.close()


def test_modify_changes_the_callback_and_unwatch_is_safe_twice() -> None:
    import selectors
    import socket

    reactor = Reactor()
    ours, theirs = socket.socketpair()
    seen: list[str] = []
    reactor.watch(ours, lambda mask: seen.append("old"))

    def new(mask: int) -> None:
        seen.append("new")
        ours.recv(10)

    reactor.modify(ours, new, selectors.EVENT_READ)
    theirs.send(b"x")
    reactor.tick()
    assert seen == ["new"]
    assert reactor.watching(ours)
    reactor.unwatch(ours)
    reactor.unwatch(ours)
    assert not reactor.watching(ours)
    reactor.close()
    ours.close()
    theirs.close()
