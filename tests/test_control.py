"""An operator steers a live team from another terminal: the real CLI against a real run.

Every test here drives `python -m supervisor stop/start/restart/status` as a
second process while the team runs, and judges by what the run wrote (events,
checkpoints) and what the command printed and returned.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable

import pytest
from harness import REPO, Run, Team, by_event, cli

from protocol import encode
from protocol.control import Reply, Status, Watch, answer_decoder, socket_address

SOCK = "control.sock"


def exits_of(events: list[dict[str, Any]], agent: str) -> list[dict[str, Any]]:
    return by_event(events, "worker_exited", agent)


def cycles_after(events: list[dict[str, Any]], agent: str, marker: dict[str, Any]) -> list[dict[str, Any]]:
    """cycle_completed lines of `agent` written after `marker`."""
    at = events.index(marker)
    return [e for e in events[at + 1 :] if e["event"] == "cycle_completed" and e["agent_id"] == agent]


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def started_team(make_team: Callable[..., Team], **kwargs: Any) -> tuple[Team, Run]:
    team = make_team(**{"agents": 3, "latency": 0.2, "max_cycles": 12, **kwargs})
    run = team.start()
    run.wait_all_started()
    return team, run


# ---- stop and start -------------------------------------------------------------------------


def test_stop_one_of_three_the_others_cycle_on_and_start_resumes_it_exactly_once(
    make_team: Callable[..., Team], backend: str,
) -> None:
    team, run = started_team(make_team, restart="permanent")  # its policy would restart it: an operator's stop must not
    run.wait_cycles(2, "agent-b")

    done = cli("stop", str(team.config), "agent-b")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("agent-b: interrupted")
    events = run.new_events()
    request = by_event(events, "control_request")[0]
    assert (request["command"], request["agents"]) == ("stop", ["agent-b"])
    assert isinstance(request["peer_pid"], int)
    issued = [e for e in by_event(events, "interrupt_initiated", team.team) if e.get("trigger") == "operator"]
    assert [(e["source"], e["mode"], e["agents"]) for e in issued] == [("USER", "GRACEFUL", ["agent-b"])]
    assert "stop agent-b" in issued[0]["message"]
    assert by_event(events, "interrupt_completed", "agent-b")
    (exited,) = exits_of(events, "agent-b")  # the command returned once it was gone
    assert exited["status"] == "interrupted"
    stopped_at = team.latest("agent-b")
    assert stopped_at is not None and stopped_at.cycle < team.max_cycles

    # The other two keep cycling; agent-b does nothing more, and its policy does not bring it back.
    run.wait_for(lambda ev: all(len(cycles_after(ev, n, exited)) >= 2 for n in ("agent-a", "agent-c")),
                 "two more cycles of agent-a and agent-c")
    events = run.new_events()
    assert cycles_after(events, "agent-b", exited) == []
    assert by_event(events, "worker_restarted") == []

    started = cli("start", str(team.config), "agent-b")
    assert started.returncode == 0, started.stderr
    events = run.new_events()
    again = by_event(events, "worker_started", "agent-b")
    assert len(again) == 2 and again[1]["cycle"] == stopped_at.cycle and again[1]["resumed"] is True
    assert run.wait() == 0  # an agent stopped by an operator stopped gracefully
    for name in team.names:
        team.assert_exactly_once(name, team.max_cycles)
    assert not (team.storage / SOCK).exists()  # removed when the run ends


def test_stop_now_json_and_no_wait(make_team: Callable[..., Team]) -> None:
    team, run = started_team(make_team, latency=0.5, max_cycles=8)
    run.wait_cycles(1, "agent-a")
    now = cli("stop", str(team.config), "agent-a", "--now", "--json")
    assert now.returncode == 0, now.stderr
    answer = json.loads(now.stdout)
    assert answer["code"] == 0 and [row["agent"] for row in answer["agents"]] == ["agent-a"]
    assert answer["agents"][0]["status"] == "interrupted"
    issued = [e for e in by_event(run.new_events(), "interrupt_initiated", team.team) if e.get("trigger") == "operator"]
    assert issued[0]["mode"] == "IMMEDIATE" and "--now" in issued[0]["message"]

    quick = cli("stop", str(team.config), "agent-c", "--no-wait")
    assert quick.returncode == 0, quick.stderr
    run.wait_for(lambda ev: exits_of(ev, "agent-c"), "agent-c's exit")
    assert run.wait() == 0
    team.assert_exactly_once("agent-a")  # an immediate stop keeps its last checkpoint's truth
    team.assert_exactly_once("agent-b", team.max_cycles)
    team.assert_exactly_once("agent-c")


def test_restart_stops_gracefully_then_starts_from_the_checkpoint(make_team: Callable[..., Team]) -> None:
    team, run = started_team(make_team)
    run.wait_cycles(2, "agent-c")
    done = cli("restart", str(team.config), "agent-c")
    assert done.returncode == 0, done.stderr
    events = run.new_events()
    assert len(by_event(events, "worker_started", "agent-c")) == 2
    assert len(exits_of(events, "agent-c")) == 1
    assert by_event(events, "interrupt_completed", "agent-c")[0]["source"] == "USER"
    assert run.wait() == 0
    for name in team.names:
        team.assert_exactly_once(name, team.max_cycles)


def test_an_agent_of_a_group_is_reached_through_its_group(make_team: Callable[..., Team]) -> None:
    team, run = started_team(make_team, agents=1, groups={"crew": {"agents": 2}})
    run.wait_cycles(1, "crew-a")
    done = cli("stop", str(team.config), "crew-a")
    assert done.returncode == 0, done.stderr
    exited = run.wait_for(lambda ev: exits_of(ev, "crew-a"), "crew-a's exit")[0]
    run.wait_for(lambda ev: len(cycles_after(ev, "crew-b", exited)) >= 2, "crew-b cycles on")
    assert cycles_after(run.new_events(), "crew-a", exited) == []

    started = cli("start", str(team.config), "crew-a")
    assert started.returncode == 0, started.stderr
    assert len(by_event(run.new_events(), "worker_started", "crew-a")) == 2
    assert run.wait() == 0
    for name in team.names:
        team.assert_exactly_once(name, team.max_cycles)


# ---- bad input ----------------------------------------------------------------------------------


def test_unknown_agent_no_live_run_and_a_team_already_stopping_get_one_line(make_team: Callable[..., Team]) -> None:
    team = make_team(agents=2, latency=0.3, max_cycles=10)
    nothing = cli("stop", str(team.config), "agent-a")
    assert nothing.returncode == 2 and nothing.stdout == ""
    assert one_line(nothing.stderr) == f"error: no live run of team 'test-team' on storage {team.storage.resolve()}"

    run = team.start()
    run.wait_all_started()
    unknown = cli("start", str(team.config), "agent-\x1b[31mz")
    assert unknown.returncode == 2
    assert "\x1b" not in unknown.stderr and "no agent 'agent-\\x1b[31mz'" in one_line(unknown.stderr)

    run.signal(signal.SIGTERM)
    late = cli("stop", str(team.config), "agent-a", "--no-wait")  # answered, not queued forever
    assert late.returncode in (0, 2)
    assert run.wait() == 0


@pytest.mark.e2e
def test_garbage_silence_floods_and_a_hundred_clients_leave_the_run_unharmed(make_team: Callable[..., Team]) -> None:
    team, run = started_team(make_team, latency=0.1, max_cycles=80)  # alive past the idle limit
    path = team.storage / SOCK

    def connected() -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with socket_address(path) as address:
            sock.connect(address)
        sock.settimeout(30)
        return sock

    def answer(sock: socket.socket) -> Reply | None:
        decoder = answer_decoder()
        while True:
            data = sock.recv(65536)
            if not data:
                return None
            got = decoder.feed(data)
            if got:
                assert isinstance(got[0], Reply)
                return got[0]

    garbage = connected()
    garbage.sendall(b"\x00\x00\x00\x05hello")
    reply = answer(garbage)
    assert reply is not None and reply.code == 2 and "bad request" in reply.message

    huge = connected()
    huge.sendall(b"\x7f\xff\xff\xff")  # a frame far over the request limit, announced
    reply = answer(huge)
    assert reply is not None and reply.code == 2

    silent = connected()
    reply = answer(silent)  # nothing sent: answered once the idle limit passes, then dropped
    assert reply is not None and "no request" in reply.message

    half = connected()
    half.sendall(encode(Status())[:3])
    half.close()  # disconnects mid-request

    results: list[Reply | None] = []

    def ask() -> None:
        sock = connected()
        sock.sendall(encode(Status()))
        results.append(answer(sock))
        sock.close()

    threads = [threading.Thread(target=ask) for _ in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 100
    assert all(r is not None and (r.code == 0 or "busy" in r.message) for r in results)
    assert sum(1 for r in results if r is not None and r.code == 0) >= 1

    assert run.wait() == 0
    for name in team.names:
        team.assert_exactly_once(name, team.max_cycles)
    rejected = by_event(team.events(), "control_rejected")
    assert len(rejected) >= 3


def _connect_as_nobody(path: Path) -> int:
    """In a forked child that becomes `nobody`: 0 when the run answered, 1 refused or dropped."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.chdir(path.parent)  # from inside the folder: the test's own 0700 temp folders are not the question
            os.setgid(65534)
            os.setuid(65534)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(10)
            sock.connect(path.name)
            sock.sendall(encode(Status()))
            data = sock.recv(65536)
            code = 0 if data else 1
        except OSError:
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
def test_the_socket_is_refused_to_another_user(make_team: Callable[..., Team]) -> None:
    team, run = started_team(make_team, max_cycles=30)
    path = team.storage / SOCK
    assert (path.stat().st_mode & 0o777) == 0o600
    assert _connect_as_nobody(path) == 1  # the file's mode and the 0700 folder already say no

    # Even with the modes loosened, the peer's credentials say no.
    team.storage.chmod(0o755)
    path.chmod(0o666)
    assert _connect_as_nobody(path) == 1
    rejected = run.wait_for(lambda ev: by_event(ev, "control_rejected"), "the refusal")
    assert rejected[0]["peer_uid"] == 65534
    team.storage.chmod(0o700)
    assert run.wait() == 0


def test_a_stale_socket_is_replaced_and_a_second_run_still_refused(make_team: Callable[..., Team]) -> None:
    team = make_team(agents=1, latency=0.3, max_cycles=6)
    team.storage.mkdir(mode=0o700)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with socket_address(team.storage / SOCK) as address:
        stale.bind(address)  # what a killed run leaves behind
    stale.close()
    run = team.start()
    run.wait_all_started()
    status = cli("status", str(team.config), "--json")
    assert status.returncode == 0
    assert json.loads(status.stdout)[0]["now"]  # answered by the live run itself
    second = team.start()
    assert second.wait() == 2
    assert run.wait() == 0
    assert not (team.storage / SOCK).exists()


# ---- watching ----------------------------------------------------------------------------------


def test_status_watch_follows_the_run_over_the_socket_until_it_ends(make_team: Callable[..., Team]) -> None:
    team, run = started_team(make_team, max_cycles=6)
    # The run keeps writing to the file it opened; a watcher that read events.jsonl would see nothing.
    (team.storage / "events.jsonl").rename(team.storage / "events.moved")
    watcher = subprocess.Popen(
        [sys.executable, "-m", "supervisor", "status", str(team.config), "--watch"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "TERM": "dumb"},
    )
    # A watcher that never reads must not hold the run back.
    lazy = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with socket_address(team.storage / SOCK) as address:
        lazy.connect(address)
    lazy.sendall(encode(Watch()))
    assert run.wait() == 0
    out, _ = watcher.communicate(timeout=30)
    lazy.close()
    assert watcher.returncode == 0
    for name in team.names:
        assert f"[{name}] CYCLE {team.max_cycles}/{team.max_cycles}" in out
    assert out.rstrip().endswith("team test-team: the run ended completed (exit 0)")
    assert by_event(team.events("events.moved"), "control_request")[0]["command"] == "watch"


# ---- reload ----------------------------------------------------------------------------------------


def test_reload_adds_removes_and_changes_agents_and_leaves_the_rest_alone(make_team: Callable[..., Team]) -> None:
    team, run = started_team(make_team, max_cycles=14)
    run.wait_cycles(2, "agent-c")
    agents = team.data["agents"]
    agents[1]["max_cycles"] = 18  # agent-b: changed
    del agents[2]  # agent-c: removed
    agents.append({"name": "agent-d", "task": "Count, as agent-d.", "max_cycles": 5})  # added
    team.write()

    done = cli("reload", str(team.config))
    assert done.returncode == 0, done.stderr
    assert one_line(done.stdout) == f"reloaded {team.config}: added: agent-d; removed: agent-c; changed: agent-b"
    events = run.new_events()
    (reloaded,) = by_event(events, "config_reloaded")
    assert (reloaded["added"], reloaded["removed"], reloaded["changed"]) == (["agent-d"], ["agent-c"], ["agent-b"])
    assert run.wait() == 0
    events = run.new_events()
    # The unchanged agent was not touched, not even acknowledged.
    assert len(by_event(events, "worker_started", "agent-a")) == 1
    assert by_event(events, "interrupt_initiated", "agent-a") == []
    assert len(by_event(events, "worker_started", "agent-b")) == 2
    assert by_event(events, "worker_started", "agent-c")[-1] is by_event(events, "worker_started", "agent-c")[0]
    assert exits_of(events, "agent-c")[0]["status"] == "interrupted"
    team.assert_exactly_once("agent-a", 14)
    team.assert_exactly_once("agent-b", 18)  # restarted with its new settings
    team.assert_exactly_once("agent-c")  # its checkpoints stay
    team.assert_exactly_once("agent-d", 5)


def test_reload_raising_max_cycles_lets_a_completed_agent_continue(make_team: Callable[..., Team]) -> None:
    team = make_team(agents=2, latency=0.2, max_cycles=20)
    team.data["agents"][0]["max_cycles"] = 2
    team.write()
    run = team.start()
    run.wait_for(lambda ev: exits_of(ev, "agent-a"), "agent-a completes")
    team.data["agents"][0]["max_cycles"] = 4
    team.write()
    done = cli("reload", str(team.config), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["changed"] == ["agent-a"]
    assert run.wait() == 0
    team.assert_exactly_once("agent-a", 4)
    team.assert_exactly_once("agent-b", 20)


def test_a_bad_reload_changes_nothing(make_team: Callable[..., Team]) -> None:
    team, run = started_team(make_team, max_cycles=20)  # long enough to outlast two CLI starts on a busy machine
    original = team.config.read_text()
    team.data["agents"][0]["max_cycles"] = 0
    team.write()
    invalid = cli("reload", str(team.config))
    assert invalid.returncode == 2 and invalid.stdout == ""
    assert "max_cycles" in one_line(invalid.stderr)

    team.config.write_text(original.replace("team: test-team", "team: renamed-team"))
    renamed = cli("reload", str(team.config))
    assert renamed.returncode == 2
    assert "`team` cannot change in a live run" in one_line(renamed.stderr)
    assert run.wait() == 0
    events = run.new_events()
    assert by_event(events, "config_reloaded") == []
    assert [e for e in by_event(events, "interrupt_initiated") if e.get("trigger") == "operator"] == []
    for name in team.names:
        team.assert_exactly_once(name, 20)


def test_reload_adding_an_agent_with_after_holds_it_until_those_complete(make_team: Callable[..., Team]) -> None:
    team, run = started_team(make_team, max_cycles=10)
    run.wait_cycles(2, "agent-c")
    team.data["agents"].append({"name": "agent-d", "task": "Count, as agent-d.", "max_cycles": 2,
                                "after": ["agent-a", "agent-b"]})
    team.write()
    done = cli("reload", str(team.config))
    assert done.returncode == 0, done.stderr
    assert run.wait() == 0
    events = run.new_events()
    assert by_event(events, "agent_held", "agent-d")[0]["after"] == ["agent-a", "agent-b"]
    [started] = [i for i, e in enumerate(events) if e["event"] == "worker_started" and e["agent_id"] == "agent-d"]
    completed = [i for i, e in enumerate(events) if e["event"] == "worker_exited" and e["status"] == "completed"
                 and e["agent_id"] in ("agent-a", "agent-b")]
    assert len(completed) == 2 and started > max(completed)
    team.assert_exactly_once("agent-d", 2)
