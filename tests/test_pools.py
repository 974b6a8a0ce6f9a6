"""Server pools (`llm.hosts`): calls spread over the servers, a failed server rested, pre-flight over all of them.

Against two real TEST DOUBLES of each API (tests/ollama_double.py and
tests/openai_double.py), which count the calls they serve and the most they
ever had in progress at once: what each server really saw. A server that is
down is a port nobody listens on. The cool-down's timing (30 s, doubling) is
checked on the root's slot bank with a clock the test moves
(tests/test_slot_bank.py), not here with sleeps.
"""

from __future__ import annotations

import queue
import socket
from pathlib import Path

import pytest

from harness import HANG, by_event
from ollama_double import MODEL, OllamaDouble
from openai_double import OpenAIDouble
from supervisor.config import ConfigError, load_config


def _dead_server() -> str:
    """A URL where nothing listens: a connection is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def _pool(team, hosts: list[str], provider: str = "ollama", **llm: object) -> None:
    team.data["llm"] = {"provider": provider, "hosts": hosts, "model": MODEL, "request_timeout": 30, **llm}
    team.write()


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


@pytest.mark.e2e
def test_calls_spread_over_the_pool_to_the_least_busy_server(make_team):
    team = make_team(agents=6, max_cycles=2, groups={"crew": {"agents": 2}})  # the group's calls are counted too
    with OllamaDouble(latency=0.3) as a, OllamaDouble(latency=0.3) as b:
        _pool(team, [a.host, b.host])
        run = team.run()
        served, peaks = (a.backend.calls, b.backend.calls), (a.backend.peak, b.backend.peak)
    assert run.proc.returncode == 0, run.output
    assert sum(served) == 8 * 2 and min(served) > 0, served
    # 8 agents calling at once: the least busy server takes each call, so neither ever has more than half
    assert max(peaks) <= 4, peaks
    for name in team.names:
        team.assert_exactly_once(name, 2)


@pytest.mark.e2e
def test_an_openai_pool_keeps_each_servers_cap(make_team):
    team = make_team(agents=6, max_cycles=2)
    with OpenAIDouble(latency=0.2) as a, OpenAIDouble(latency=0.2) as b:
        _pool(team, [a.base_url, b.base_url], provider="openai", max_concurrent=2)
        run = team.run()
        served, peaks = (a.backend.calls, b.backend.calls), (a.backend.peak, b.backend.peak)
    assert run.proc.returncode == 0, run.output
    assert sum(served) == 12 and peaks == (2, 2), (served, peaks)  # the cap is each server's, and both are used
    assert by_event(run.new_events(), "agent_queued")


@pytest.mark.e2e
def test_with_one_server_down_the_run_starts_with_a_warning_and_every_call_goes_to_the_other(make_team):
    team = make_team(agents=3, max_cycles=2)
    dead = _dead_server()
    with OllamaDouble(latency=0.05) as alive:
        _pool(team, [dead, alive.host])
        run = team.run()
        served = alive.backend.calls
    assert run.proc.returncode == 0, run.output
    assert served == 3 * 2
    events = run.new_events()
    (warning,) = by_event(events, "server_unavailable")
    assert warning["server"] == dead and "not reachable" in warning["error"]
    # known down from the start, it rests from the start: no call was sent there, so none failed or was retried
    assert by_event(events, "server_failed") == [] and by_event(events, "llm_retry") == []
    for name in team.names:
        team.assert_exactly_once(name, 2)


@pytest.mark.e2e
def test_a_server_that_fails_with_5xx_is_rested_and_its_calls_go_to_the_other(make_team):
    team = make_team(agents=2, max_cycles=3)
    with OllamaDouble(latency=0.05) as flaky, OllamaDouble(latency=0.05) as steady:
        flaky.faults.extend(["500"] * 10)  # every call it gets fails
        _pool(team, [flaky.host, steady.host])
        run = team.run()
        failed_there, served = flaky.backend.calls, steady.backend.calls
    assert run.proc.returncode == 0, run.output
    assert served == 2 * 3
    events = run.new_events()
    assert {e["server"] for e in by_event(events, "server_failed")} == {flaky.host}
    assert len(by_event(events, "server_failed")) == 1  # rested once, for the whole run: its 30 s did not run out
    assert failed_there <= 2  # only the calls sent before it was rested: at most one per agent
    for name in team.names:
        team.assert_exactly_once(name, 3)


@pytest.mark.e2e
def test_a_rested_server_is_tried_again_after_its_cool_down_and_takes_calls_once_it_serves(tmp_path, monkeypatch):
    """In-process (TeamRunner), so that the root's cool-down can be shortened from 30 s to 0.3 s."""
    import supervisor.runtime.slots
    from supervisor.api import TeamRunner

    monkeypatch.setattr(supervisor.runtime.slots, "COOL_DOWN", 0.3)
    seen: queue.Queue[dict] = queue.Queue()
    dead = _dead_server()
    port = int(dead.rsplit(":", 1)[1])
    with OllamaDouble(latency=0.05) as alive:
        config = {"team": "pool", "storage": "state",
                  "llm": {"provider": "ollama", "hosts": [dead, alive.host], "model": MODEL, "request_timeout": 30},
                  "agents": [{"name": n, "task": "Count.", "max_cycles": 400} for n in ("alpha", "beta")]}
        runner = TeamRunner(config, base_dir=tmp_path, quiet=True, on_event=seen.put).start()
        _next(seen, "server_failed", dead)
        with OllamaDouble(latency=0.05, port=port) as back:  # the server comes back on its address
            _next(seen, "server_recovered", dead)
            _next(seen, "cycle_completed")
            runner.interrupt()  # enough: the server has served calls since its rest
            code = runner.wait(timeout=60)
            served_after = back.backend.calls
    assert code == 0
    assert served_after > 0


def _next(seen: "queue.Queue[dict]", name: str, server: str | None = None) -> dict:
    """The next event of that name (and server), waited for as events arrive."""
    while True:
        event = seen.get(timeout=HANG)
        if event["event"] == name and (server is None or event.get("server") == server):
            return event


@pytest.mark.e2e
def test_with_every_server_down_the_pre_flight_is_exit_3_in_one_line(make_team):
    team = make_team(agents=2, max_cycles=1)
    first, second = _dead_server(), _dead_server()
    _pool(team, [first, second])
    run = team.start()
    assert run.wait() == 3, run.output
    lines = _error_lines(run.output)
    assert len(lines) == 1 and "Traceback" not in run.output, run.output
    assert first in lines[0] and second in lines[0] and "not reachable" in lines[0]
    assert by_event(team.events(), "worker_started") == []


@pytest.mark.parametrize("llm, problem", [
    ({"provider": "ollama", "hosts": ["http://a:11434", "http://A"]}, "llm.hosts[1]: http://a:11434 is in the pool twice"),
    ({"provider": "openai", "model": "m", "hosts": ["http://a/v1", "b:8000/v1"]}, "llm.hosts[1]: 'b:8000/v1' has no scheme"),
    ({"provider": "ollama", "host": "http://c", "hosts": ["http://a", "http://b"]}, "llm.hosts: give hosts (a pool) or host"),
    ({"provider": "openai", "model": "m", "base_url": "http://c/v1", "hosts": ["http://a/v1"]}, "or base_url (one server)"),
    ({"provider": "embedded", "hosts": ["http://a", "http://b"]}, "a pool of servers is for provider ollama or openai"),
    ({"provider": "ollama", "hosts": []}, "llm.hosts: must have at least 1"),
])
def test_a_bad_pool_is_a_config_error(tmp_path: Path, llm: dict, problem: str) -> None:
    import yaml

    path = tmp_path / "team.yaml"
    path.write_text(yaml.safe_dump({"team": "t", "storage": str(tmp_path / "s"), "llm": llm,
                                    "agents": [{"name": "a", "task": "hi", "max_cycles": 1}]}))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert problem in str(caught.value) and "\n" not in str(caught.value)


def test_a_pool_reaches_the_worker_whole_and_its_cap_is_each_servers(tmp_path: Path) -> None:
    import yaml

    path = tmp_path / "team.yaml"
    path.write_text(yaml.safe_dump({"team": "t", "storage": str(tmp_path / "s"), "agents": [{"name": "a", "task": "hi", "max_cycles": 1}],
                                    "llm": {"provider": "openai", "model": "m", "max_concurrent": 3,
                                            "hosts": ["http://gpu-a:8000/v1/", "http://GPU-b:8000/v1"]}}))
    config = load_config(path)
    llm = config.agent_spec("a").llm
    assert llm.hosts == ("http://gpu-a:8000/v1", "http://GPU-b:8000/v1") and llm.base_url == llm.hosts[0]
    assert llm.servers == ("http://gpu-a:8000", "http://gpu-b:8000")
    assert config.server_caps() == {"http://gpu-a:8000": 3, "http://gpu-b:8000": 3}
