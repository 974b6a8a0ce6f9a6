"""The runtime's parts as plain logic: the exit table, the timer table, the stop path.

No processes here: each part is exercised through its own interface, with the
children as data, so a rule that breaks shows up in about a millisecond.
"""

from __future__ import annotations

import time
from typing import Any, Optional

import pytest

from protocol import COMPLETED, FAILED, GRACEFUL, IMMEDIATE, INTERRUPTED, PROGRAMMATIC, SYSTEM, USER, Stopped, decode_payload
from supervisor.config import TeamConfig
from supervisor.runtime.children import Child, Phase, StopIntent, classify_exit, describe_exit
from supervisor.runtime.reactor import Reactor
from supervisor.runtime.shutdown import Shutdown, StopOrder


def stopped(status: str, reason: str = "") -> Stopped:
    return Stopped(status=status, cycle=3, checkpoint_id="c", budget_spent_usd=0.0, interrupt_id=None,
                   total_interrupts=0, graceful_interrupts=0, immediate_interrupts=0, reason=reason)


# ---- classify_exit: one row per case ------------------------------------------------------

@pytest.mark.parametrize(
    ("last_word", "failure", "killed", "intent", "exitcode", "expected"),
    [
        (stopped(COMPLETED), None, False, StopIntent.NONE, 0, (COMPLETED, COMPLETED)),
        (stopped(INTERRUPTED, "graceful"), None, False, StopIntent.ALONE, 0, (INTERRUPTED, "graceful")),
        (stopped(INTERRUPTED), None, True, StopIntent.NONE, -9, (INTERRUPTED, INTERRUPTED)),  # its word wins over our kill
        (None, None, True, StopIntent.NONE, -9, (INTERRUPTED, "killed after the immediate timeout")),
        (None, None, False, StopIntent.WITH_SIBLING, -9, (INTERRUPTED, "stopped to restart with a sibling")),
        (None, None, False, StopIntent.NONE, -9, (FAILED, "killed by SIGKILL")),
        (None, None, False, StopIntent.ALONE, 1, (FAILED, "exited with code 1 without reporting")),
        (None, None, False, StopIntent.NONE, None, (FAILED, "exit status unknown")),
        (None, "hung: no heartbeat", True, StopIntent.NONE, -9, (FAILED, "hung: no heartbeat")),  # our kill of a hung one
        (stopped(COMPLETED), "protocol error: x", False, StopIntent.NONE, 0, (FAILED, "protocol error: x")),
        (None, "agent: boom", False, StopIntent.WITH_SIBLING, 0, (FAILED, "agent: boom")),
    ],
)
def test_an_exit_is_classified_by_one_table(last_word, failure, killed, intent, exitcode, expected) -> None:
    assert classify_exit(last_word, failure, killed, intent, exitcode) == expected


def test_an_unknown_signal_number_is_still_described() -> None:
    assert describe_exit(-200) == "killed by signal 200"


# ---- the reactor's timers -------------------------------------------------------------------

def test_timers_fire_earliest_first_and_a_replaced_or_cancelled_one_does_not() -> None:
    reactor = Reactor()
    fired: list[str] = []
    now = time.monotonic()
    reactor.at("b", now - 0.001, lambda: fired.append("b"))
    reactor.at("a", now - 0.002, lambda: fired.append("a"))
    reactor.at("c", now - 0.003, lambda: fired.append("c-old"))
    reactor.at("c", now + 60, lambda: fired.append("c-new"))  # replaced: not due
    reactor.at("d", now - 0.004, lambda: fired.append("d"))
    reactor.cancel("d")
    reactor.at("e", now - 0.0005, lambda: reactor.cancel("f"))  # a timer may cancel a later one of the same tick
    reactor.at("f", now - 0.0001, lambda: fired.append("f"))
    reactor.tick()
    assert fired == ["a", "b"]
    assert reactor.when("c") == pytest.approx(now + 60)
    assert 59 < (reactor.timeout(time.monotonic()) or 0) <= 60
    reactor.close()


def test_a_timer_set_by_a_timer_for_now_fires_on_the_next_tick_not_this_one() -> None:
    reactor = Reactor()
    fired: list[str] = []
    now = time.monotonic()

    def again() -> None:
        fired.append("again")
        reactor.at("again", now - 1, again)  # due at once, forever: one run per tick, never a loop within one

    reactor.at("again", now - 1, again)
    reactor.at("later", now - 0.5, lambda: fired.append("later"))
    reactor.tick()
    assert fired == ["again", "later"]
    reactor.tick()
    assert fired == ["again", "later", "again"]
    reactor.close()


def test_a_thousand_timers_moved_again_and_again_keep_their_order_and_a_bounded_table() -> None:
    """Every worker's hang timer moves at each heartbeat: the loop's cost must not grow with the moves."""
    reactor = Reactor()
    fired: list[int] = []
    now = time.monotonic()
    for beat in range(20):
        for index in range(1000):
            reactor.at(f"hang:{index}", now + 60 + beat + index / 1000, lambda index=index: fired.append(index))
    assert len(reactor._heap) <= 2 * 1000 + 64
    assert reactor.timeout(now) == pytest.approx(79, abs=0.01)  # the earliest is hang:0's latest move
    for index in range(0, 1000, 2):
        reactor.at(f"hang:{index}", now - 1 - index / 1000, lambda index=index: fired.append(index))
    reactor.tick()
    assert fired == list(range(998, -1, -2))  # the due ones, earliest first; the others wait
    reactor.close()


def test_a_signal_taken_during_a_pass_is_seen_before_the_next_descriptor_is_served() -> None:
    """Three pipes ready at once; the first one's callback is interrupted by a real signal.

    The look between callbacks sees it before the second pipe is read: a Ctrl+C does not wait for a
    pass over a thousand busy workers (16 flooding ones kept it waiting 0.5-1.3 s).
    """
    import os
    import signal
    import socket

    from supervisor.runtime.signals import SignalQueue

    previous = signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    queue = SignalQueue((signal.SIGUSR1,))
    reactor = Reactor()
    pairs = [socket.socketpair() for _ in range(3)]
    served: list[str] = []
    try:
        queue.install()

        def read(index: int) -> None:
            pairs[index][0].recv(16)
            served.append(f"pipe {index}")
            if len(served) == 1:
                os.kill(os.getpid(), signal.SIGUSR1)  # handled between two bytecodes, right here

        for index, (ours, theirs) in enumerate(pairs):
            reactor.watch(ours, lambda mask, index=index: read(index))
            theirs.send(b"x")
        reactor.between_callbacks(lambda: served.extend(f"signal {n}" for n in queue.drain()) if queue.pending else None)
        reactor.tick()
        assert len(served) == 4 and served[1] == f"signal {int(signal.SIGUSR1)}", served
        assert sorted(served[0:1] + served[2:]) == ["pipe 0", "pipe 1", "pipe 2"]
    finally:
        queue.restore()
        signal.signal(signal.SIGUSR1, previous)
        reactor.close()
        for ours, theirs in pairs:
            ours.close()
            theirs.close()


def test_a_timer_weeks_away_is_waited_for_in_hour_long_steps() -> None:
    """select() takes at most ~24.8 days in epoll's milliseconds; a longer wait must not overflow it."""
    reactor = Reactor()
    now = time.monotonic()
    reactor.at("team-timeout", now + 60 * 86400, lambda: None)
    assert reactor.timeout(now) == 3600.0
    reactor.close()


def test_a_descriptor_callback_runs_before_the_timers_that_are_due() -> None:
    """What waits in a pipe is read before any deadline is judged (a paused loop must not misjudge)."""
    import socket

    reactor = Reactor()
    ours, theirs = socket.socketpair()
    order: list[str] = []
    reactor.watch(ours, lambda mask: (order.append("read"), ours.recv(10)))
    reactor.at("hang:a", time.monotonic() - 1, lambda: order.append("deadline"))
    theirs.send(b"beat")
    reactor.tick()
    assert order == ["read", "deadline"]
    reactor.close()
    ours.close()
    theirs.close()


# ---- the stop path ------------------------------------------------------------------------------

class FakeWorker:
    """Stands in for a process: the stop path only sends frames and kills."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.killed = False

    def send_frame(self, frame: bytes) -> None:
        self.frames.append(frame)

    def kill_tree(self, ppids: object = None) -> None:
        self.killed = True


class Log:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.failure: Optional[str] = None

    def emit(self, event: str, *, level: str = "info", **fields: Any) -> None:
        self.events.append({"event": event, "level": level, **fields})


def stop_path(names=("a", "b")) -> tuple[Shutdown, dict[str, Child], Reactor, Log]:
    config = TeamConfig.from_mapping(
        {"team": "t", "storage": "s", "shutdown": {"graceful_timeout": 30, "immediate_timeout": 2},
         "agents": [{"name": n, "task": "x", "max_cycles": 3} for n in names]},
        source=__import__("pathlib").Path("/tmp/t.yaml"), base_dir=__import__("pathlib").Path("/tmp"),
    )
    children = {n: Child(name=n, max_cycles=3) for n in names}
    for child in children.values():
        child.worker = FakeWorker()  # type: ignore[assignment]
        child.phase = Phase.RUNNING
    reactor = Reactor()
    log = Log()
    shutdown = Shutdown(config, children, {}, reactor, log, lambda c, f: c.worker.send_frame(f),  # type: ignore[union-attr]
                        lambda: None, is_group=False)
    return shutdown, children, reactor, log


def sent(child: Child) -> list[Any]:
    return [decode_payload(f[4:]) for f in child.worker.frames]  # type: ignore[union-attr]  # Interrupt messages


def test_first_ctrl_c_is_graceful_second_immediate_third_kills() -> None:
    import signal

    shutdown, children, reactor, log = stop_path()
    shutdown.on_signal(signal.SIGINT)
    assert shutdown.mode == GRACEFUL and reactor.when("graceful") is not None
    shutdown.on_signal(signal.SIGINT)
    assert shutdown.mode == IMMEDIATE and reactor.when("graceful") is None and reactor.when("kill") is not None
    assert shutdown.forced
    assert [m.mode for m in sent(children["a"])] == [GRACEFUL, IMMEDIATE]
    shutdown.on_signal(signal.SIGINT)
    assert all(c.worker.killed and c.killed for c in children.values())  # type: ignore[union-attr]
    initiated = [e for e in log.events if e["event"] == "interrupt_initiated"]
    assert [(e["mode"], e["source"], e["trigger"]) for e in initiated] == [(GRACEFUL, USER, "Ctrl+C"), (IMMEDIATE, USER, "Ctrl+C")]
    assert [e["trigger"] for e in log.events if e["event"] == "workers_killed"] == ["Ctrl+C"]


def test_sighup_never_escalates() -> None:
    import signal

    shutdown, children, reactor, log = stop_path()
    shutdown.on_signal(signal.SIGHUP)
    shutdown.on_signal(signal.SIGHUP)
    assert shutdown.mode == GRACEFUL and not shutdown.forced
    assert len(sent(children["a"])) == 1
    assert not any(c.killed for c in children.values())


def test_the_graceful_deadline_escalates_and_the_immediate_one_kills() -> None:
    shutdown, children, reactor, log = stop_path()
    shutdown.request(StopOrder(GRACEFUL, PROGRAMMATIC, "enough", "program"))
    reactor.at("graceful", time.monotonic() - 1, reactor._timers["graceful"][1])  # the deadline has passed
    reactor.tick()
    assert shutdown.mode == IMMEDIATE
    assert log.events[-1]["trigger"] == "graceful_timeout" and log.events[-1]["source"] == SYSTEM
    reactor.at("kill", time.monotonic() - 1, reactor._timers["kill"][1])
    reactor.tick()
    assert all(c.killed for c in children.values())
    assert [e["trigger"] for e in log.events if e["event"] == "workers_killed"] == ["immediate_timeout"]


def test_an_aimed_stop_reaches_its_agent_alone_and_marks_it_never_to_restart() -> None:
    shutdown, children, reactor, log = stop_path()
    assert shutdown.request(StopOrder(GRACEFUL, PROGRAMMATIC, "its budget", "agent", agents=("a",)))
    assert children["a"].intent is StopIntent.ALONE and children["b"].intent is StopIntent.NONE
    assert sent(children["a"])[0].agents == ["a"] and sent(children["b"]) == []
    assert reactor.when("kill:a") is not None
    assert not shutdown.request(StopOrder(GRACEFUL, PROGRAMMATIC, "again", "agent", agents=("a",)))  # once
    assert shutdown.mode is None  # the team runs on


def test_while_the_team_stops_an_aimed_stop_changes_nothing() -> None:
    shutdown, children, reactor, log = stop_path()
    shutdown.request(StopOrder(GRACEFUL, USER, "Ctrl+C", "Ctrl+C"))
    assert not shutdown.request(StopOrder(GRACEFUL, PROGRAMMATIC, "timeout", "timeout", agents=("a",)))
    assert children["a"].intent is StopIntent.NONE


def test_a_team_stop_cancels_the_restarts_that_were_waiting() -> None:
    shutdown, children, reactor, log = stop_path()
    children["b"].phase = Phase.RESTARTING
    reactor.at("restart:b", time.monotonic() + 5, lambda: None)
    shutdown.request(StopOrder(GRACEFUL, SYSTEM, "SIGTERM", "SIGTERM"))
    assert children["b"].phase is Phase.EXITED and children["b"].status == INTERRUPTED
    assert reactor.when("restart:b") is None
    assert len(sent(children["b"])) == 0 and len(sent(children["a"])) == 1


def test_the_live_scan_answers_as_any_over_every_child_would_as_children_come_and_go() -> None:
    from supervisor.runtime.children import LiveScan

    children = {name: Child(name=name, max_cycles=1) for name in "abcd"}
    scan = LiveScan(children)
    rng = __import__("random").Random(7)
    phases = [Phase.PENDING, Phase.RUNNING, Phase.EXITED, Phase.HELD]
    for step in range(400):
        if step % 50 == 49:  # a reload adds one
            children[f"n{step}"] = Child(name=f"n{step}", max_cycles=1)
        rng.choice(list(children.values())).phase = rng.choice(phases)
        assert scan.any() == any(c.live for c in children.values())
    for child in children.values():
        child.phase = Phase.EXITED
    assert scan.any() is False


def test_a_timer_that_raises_loses_no_other_timer() -> None:
    reactor = Reactor()
    fired: list[str] = []
    now = time.monotonic()

    def broken() -> None:
        raise RuntimeError("a bug in a timer")

    # "first" sets "next" for the past: it is taken off the heap and put aside for the next tick,
    # then "broken" raises before the tick ends.
    reactor.at("first", now - 2, lambda: reactor.at("next", now - 3, lambda: fired.append("next")))
    reactor.at("broken", now - 1, broken)
    with pytest.raises(RuntimeError):
        reactor.tick()
    assert reactor.timeout(time.monotonic()) == 0  # "next" is still waiting, due now (lost, the loop would sleep forever)
    reactor.tick()
    assert fired == ["next"]
    reactor.close()


def test_every_signal_a_handler_saw_is_drained_once_even_under_a_storm() -> None:
    """A handler may run between any two bytecodes, drain's included: none of its signals may be lost.

    Real signals from a second thread, each handled before the next is sent, while the main thread drains.
    Before drain took them one at a time, about a quarter were lost here. A lost SIGCHLD leaves an
    adopted orphan a zombie until a later exit wakes the reaper; a lost SIGINT is a Ctrl+C ignored.
    """
    import os
    import signal
    import threading

    from supervisor.runtime.signals import SignalQueue

    seen = 0

    class Counting(SignalQueue):
        def _handle(self, signum: int, frame: Any) -> None:
            nonlocal seen
            seen += 1
            super()._handle(signum, frame)

    previous = signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # what the queue restores: a late signal is dropped
    queue = Counting((signal.SIGUSR1,))
    queue.install()
    done, stop = threading.Event(), threading.Event()

    def storm() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})  # delivered to the draining thread
        give_up = time.monotonic() + 30  # a hang guard only
        for sent in range(1, 2001):
            if stop.is_set():
                break
            os.kill(os.getpid(), signal.SIGUSR1)
            while seen < sent and not stop.is_set() and time.monotonic() < give_up:  # handled before the next
                time.sleep(0)
        done.set()

    drained: list[int] = []
    sender = threading.Thread(target=storm)
    try:
        sender.start()
        while not done.is_set():
            drained += queue.drain()
        time.sleep(0.05)  # the last handler calls: they run in this thread, between bytecodes
        drained += queue.drain()
    finally:
        stop.set()  # a drain that raised must not leave signals coming after the handler is gone
        sender.join()
        queue.restore()
        signal.signal(signal.SIGUSR1, previous)
    assert seen == 2000
    assert drained == [signal.SIGUSR1] * seen


LEAN_STRUCTLOG = """
import json, sys
import supervisor.runtime.events
loaded = [name for name in ("rich", "rich.traceback", "rich.pretty", "pygments") if name in sys.modules]
import rich.traceback  # still importable: the live view and anyone else may use it
print(json.dumps({"loaded": loaded, "later": "rich.traceback" in sys.modules,
                  "hidden_left": [n for n, m in sys.modules.items() if m is None and n.startswith("rich")]}))
"""


@pytest.mark.e2e  # a fresh interpreter: this one has long imported structlog and rich
def test_the_event_log_imports_structlog_without_richs_tracebacks_and_leaves_rich_importable() -> None:
    """structlog loads rich's traceback renderer and pretty-printer for console output we never use."""
    from harness import fresh_python

    assert fresh_python(LEAN_STRUCTLOG) == {"loaded": [], "later": True, "hidden_left": []}
