"""Garbage on the wire, both ways, between real processes.

A worker that sends garbage is stopped and reported; the supervisor neither
crashes nor hangs. A worker that receives garbage exits cleanly with its
checkpoints intact.
"""

from __future__ import annotations

import time

import pytest

import wire_faults
from harness import by_event
from protocol import FrameDecoder, Heartbeat, ProtocolError, encode
from run_entry import run_with_entry
from supervisor.runtime.process import WorkerProcess


@pytest.mark.parametrize("fault", ["random_bytes", "oversized_frame", "unknown_message", "truncated_then_exit", "wrong_direction"])
def test_a_worker_sending_garbage_is_stopped_and_reported(make_team, fault):
    team = make_team(agents=2, max_cycles=2, restart="temporary")
    began = time.monotonic()
    code, console = run_with_entry(team, f"wire_faults:{fault}")
    assert time.monotonic() - began < 10  # the bad workers sleep 30 s: they were killed, not awaited
    assert code == 3
    events = team.events()
    assert len(by_event(events, "protocol_error")) == 2
    for exited in by_event(events, "worker_exited"):
        assert exited["status"] == "failed" and "protocol error" in exited["reason"]
    assert by_event(events, "supervisor_stopped")[0]["exit_code"] == 3


def test_the_random_garbage_is_refused_on_arrival() -> None:
    """What the garbage tests rely on: it is refused at once, not read as the start of a long frame to wait for."""
    for sent in (encode(Heartbeat(sent_at=0.0)) + wire_faults.garbage(64), wire_faults.garbage(256)):
        with pytest.raises(ProtocolError):
            FrameDecoder().feed(sent)


@pytest.mark.parametrize("garbage", [wire_faults.garbage(256), b"\x7f\xff\xff\xff", b"\x00\x00\x00\x05\xc1\xc1\xc1\xc1\xc1"])
def test_a_worker_receiving_garbage_exits_cleanly(make_team, garbage):
    team = make_team(agents=1, max_cycles=3, latency=0.05)
    assert team.run().proc.returncode == 0  # leave a completed checkpoint behind
    before = team.latest("agent-a")
    worker = WorkerProcess.start("agent-a")
    try:
        worker.sock.setblocking(True)
        worker.sock.sendall(garbage)
        assert worker.wait(5) is not None, "worker hung on garbage"
        assert worker.exitcode() in (0, 3)
    finally:
        worker.kill_tree()
        worker.close()
    after = team.latest("agent-a")
    assert after == before


def test_a_crashing_worker_reports_one_line_not_a_traceback(make_team, capfd):
    team = make_team(agents=1, max_cycles=2, restart="temporary")
    code, console = run_with_entry(team, "wire_faults:crash_in_agent_loop")
    assert code == 3
    (error,) = by_event(team.events(), "worker_error")
    assert error["kind"] == "crash" and "RuntimeError: a bug in the agent loop" in error["message"]
    exited = by_event(team.events(), "worker_exited")[0]
    assert exited["status"] == "failed" and "a bug in the agent loop" in exited["reason"]
    assert "Traceback" not in capfd.readouterr().err
    assert "a bug in the agent loop" in console


def test_an_unusable_agent_folder_is_exit_3_before_anything_starts(make_team):
    team = make_team(agents=2, max_cycles=2, latency=0.01)
    team.storage.mkdir()
    (team.storage / "agent-a").write_text("a file where the agent's checkpoint folder should be")
    run = team.run()
    assert run.proc.returncode == 3, run.output
    assert run.output.strip().splitlines() == [f"error: storage {team.storage / 'agent-a'}: cannot use it: Not a directory"]


def test_storage_failing_mid_run_fails_that_agent_and_loses_nothing(make_team):
    team = make_team(agents=2, max_cycles=6, latency=0.3, restart="temporary")
    run = team.start()
    run.wait_for(lambda ev: by_event(ev, "checkpoint_saved", "agent-a"), "agent-a's first checkpoint")
    folder = team.storage / "agent-a"
    folder.rename(team.storage / "agent-a.moved")
    folder.write_text("the disk went away")  # every later save of agent-a fails
    assert run.wait() == 3, run.output
    (error,) = by_event(run.new_events(), "worker_error", "agent-a")
    assert error["kind"] == "storage" and "agent-a" in error["message"]
    assert by_event(run.new_events(), "worker_exited", "agent-a")[0]["status"] == "failed"
    assert "Traceback" not in run.output
    team.assert_exactly_once("agent-b", 6)
    folder.unlink()  # the disk comes back: what was durable before the failure is intact
    (team.storage / "agent-a.moved").rename(folder)
    assert team.assert_exactly_once("agent-a").cycle >= 1


def test_a_worker_cannot_forge_the_supervisors_events(make_team):
    team = make_team(agents=1, max_cycles=1, restart="temporary")
    code, _ = run_with_entry(team, "wire_faults:forged_events")
    assert code == 3  # it exited without reporting a stop
    forged = by_event(team.events(), "worker_event")
    assert [e["name"] for e in forged] == ["interrupt_completed", "supervisor_stopped"]
    assert all(e["agent_id"] == "agent-a" and e["timestamp"] != "1970" for e in forged)
    assert len(by_event(team.events(), "supervisor_stopped")) == 1
    assert team.events("interrupt_metrics.jsonl") == []


def test_a_wedged_worker_still_dies_with_its_supervisor(make_team):
    """Pipe EOF cannot reach a worker that never reads; the parent-death signal does."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from harness import HANG, wait_gone

    team = make_team(agents=1, max_cycles=1)
    here = Path(__file__).resolve().parent
    script = (
        "import sys; from run_entry import run_with_entry; from harness import Team; from pathlib import Path\n"
        f"team = Team.__new__(Team); team.config = Path({str(team.config)!r})\n"
        "run_with_entry(team, 'wire_faults:deaf_worker')\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=here, env={**__import__("os").environ, "PYTHONPATH": f"{here}:{here.parent}"})
    try:
        deadline = time.monotonic() + HANG
        started = []
        while not started and time.monotonic() < deadline:
            started = by_event(team.events(), "worker_started")
            time.sleep(0.02)
        assert started, "the deaf worker never reported ready"
        pid = started[0]["pid"]
        proc.send_signal(signal.SIGKILL)
        proc.wait(HANG)
        assert wait_gone([pid], 2) < 2
    finally:
        proc.kill()
        proc.wait()


def test_a_worker_that_stops_beating_is_killed_as_hung(make_team):
    team = make_team(agents=1, max_cycles=1, latency=0.01, restart="temporary")
    team.data["agents"][0]["hang_timeout"] = 2  # its own, below the team's generous default
    team.write()
    began = time.monotonic()
    code, console = run_with_entry(team, "wire_faults:deaf_worker")  # Ready once, then silence
    assert code == 3
    (hung,) = by_event(team.events(), "worker_hung")
    assert hung["agent_id"] == "agent-a" and hung["silent_s"] >= 2
    exited = by_event(team.events(), "worker_exited", "agent-a")[0]
    assert exited["status"] == "failed" and "hung" in exited["reason"]
    assert time.monotonic() - began < 2 + 10  # found at its deadline, not by some long poll


def test_a_slow_reply_is_not_a_hang(make_team):
    """Heartbeats come from the worker's event loop, which stays free while a reply is awaited."""
    team = make_team(agents=1, max_cycles=1, latency=3.0)
    team.data["hang_timeout"] = 2
    team.write()
    run = team.run()
    assert run.proc.returncode == 0, run.output
    assert by_event(run.new_events(), "worker_hung") == []


def test_a_failed_write_leaves_the_last_words_readable() -> None:
    """A child that said `stopped` and exited: our next write fails, its last words must still be read.

    Seen in the chaos test: a second Ctrl+C relayed to a worker that had just
    exited marked the pipe closed, its unread `stopped` was lost, and the
    agent was reported failed ("exited with code 0 without reporting").
    """
    import socket

    from protocol import Interrupt, Stopped, encode
    from supervisor.runtime.process import FramedPipe

    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    pipe = FramedPipe(ours)
    theirs.sendall(encode(Stopped(status="interrupted", cycle=3, checkpoint_id="c3", budget_spent_usd=0.0)))
    theirs.close()  # the child exits
    for _ in range(3):  # the first send may still be buffered; a later one fails with EPIPE
        pipe.send(Interrupt(interrupt_id=2, mode="IMMEDIATE", source="USER", message="now", issued_at=0.0))
    assert not pipe.writable
    [stopped] = pipe.receive()
    assert isinstance(stopped, Stopped) and stopped.checkpoint_id == "c3"
    assert not pipe.pipe_open  # and then the end of the stream
