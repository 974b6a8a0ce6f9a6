"""`metrics: {listen: ...}`: /metrics served by the live run, scraped while a real team runs.

The supervisor runs for real (`python -m supervisor`); the test scrapes over
HTTP and parses the text with prometheus_client's own parser.
"""

from __future__ import annotations

import json
import queue
import socket
import urllib.request
from pathlib import Path
from typing import Any, Callable

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness import Team, by_event, cli

LABELS = {"team", "agent", "mode", "source", "model", "state", "le"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def serving(team: Team, listen: str = "127.0.0.1:0", **team_keys: Any) -> Team:
    team.data["metrics"] = {"listen": listen}
    team.data["llm"]["cost_per_reply"] = 0.001
    team.data.update(team_keys)
    team.write()
    return team


def test_metrics_move_while_the_team_runs_and_the_port_closes_with_it(make_team: Callable[..., Team]) -> None:
    team = serving(make_team(agents=2, max_cycles=400, latency=0.05, groups={"crew": {"agents": 1}}))
    run = team.start()
    (announced,) = run.wait_for(lambda ev: by_event(ev, "metrics_serving"), "metrics_serving")
    url = announced["url"]
    host, port = announced["listen"].rsplit(":", 1)
    pids = run.wait_all_started()
    for agent in ("agent-a", "agent-b", "crew-a"):
        run.wait_cycles(2, agent)
    first = scrape(url)
    t = team.team
    for agent in ("agent-a", "agent-b", "crew-a"):  # the group's agent too: its events reach the root
        assert value(first, "agent_supervisor_cycles_total", team=t, agent=agent) >= 1, agent
        assert value(first, "agent_supervisor_agent_state", team=t, agent=agent, state="running") == 1
        assert value(first, "agent_supervisor_cycle_duration_seconds_count", team=t, agent=agent) >= 1
        assert value(first, "agent_supervisor_model_call_duration_seconds_count", team=t, agent=agent,
                     model="scripted") >= 1
        assert value(first, "agent_supervisor_cost_usd_total", team=t, agent=agent, model="scripted") > 0
    assert value(first, "agent_supervisor_workers_alive", team=t) == 3

    psutil.Process(pids["agent-b"]).kill()
    run.wait_for(lambda ev: by_event(ev, "worker_restarted", "agent-b"), "agent-b restarted")
    stopped = cli("stop", str(team.config), "agent-a")  # returns once agent-a has stopped
    assert stopped.returncode == 0, stopped.stderr
    before = len(by_event(run.new_events(), "cycle_completed", "crew-a"))
    run.wait_for(lambda ev: len(by_event(ev, "cycle_completed", "crew-a")) >= before + 2, "crew-a's next cycles")
    second = scrape(url)
    assert value(second, "agent_supervisor_cycles_total", team=t, agent="crew-a") > value(
        first, "agent_supervisor_cycles_total", team=t, agent="crew-a")
    assert value(second, "agent_supervisor_restarts_total", team=t, agent="agent-b") == 1
    assert value(second, "agent_supervisor_interrupts_total", team=t, agent="agent-a", mode="GRACEFUL", source="USER") == 1
    assert value(second, "agent_supervisor_interrupts_total", team=t, agent=t, mode="GRACEFUL", source="USER") == 1
    assert value(second, "agent_supervisor_interrupt_latency_seconds_count", team=t, agent="agent-a",
                 mode="GRACEFUL", source="USER") == 1
    assert value(second, "agent_supervisor_agent_state", team=t, agent="agent-a", state="interrupted") == 1
    assert value(second, "agent_supervisor_agent_state", team=t, agent="agent-a", state="running") == 0
    assert value(second, "agent_supervisor_workers_alive", team=t) == 2
    assert value(second, "agent_supervisor_agent_cycle", team=t, agent="crew-a") >= before + 2
    for name, labels in second:
        if name.startswith("agent_supervisor_") and not name.startswith("agent_supervisor_supervisor_"):
            assert {key for key, _ in labels} <= LABELS, name

    run.ctrl_c()
    assert run.wait() == 0, run.output
    assert f"Prometheus metrics: {url}" in run.output
    with socket.socket() as probe:
        assert probe.connect_ex((host, int(port))) != 0, "the metrics port is still open after the run"


def test_a_port_in_use_is_one_line_and_exit_2_before_any_worker(make_team: Callable[..., Team]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        team = serving(make_team(agents=1, max_cycles=2), listen=f"127.0.0.1:{port}")
        run = team.run()
    assert run.proc.returncode == 2, run.output
    lines = run.output.strip().splitlines()
    assert lines == [f"error: metrics.listen 127.0.0.1:{port}: cannot serve metrics there: Address already in use"]
    assert team.events() == []  # nothing started, nothing written


@pytest.mark.e2e  # a team's workers, from this process
def test_an_embedded_run_closes_its_port_when_it_ends(tmp_path: Path) -> None:
    """In a program that goes on after the run (the Python API), the port is closed by the run's end, not the exit."""
    from supervisor.api import TeamRunner

    seen: "queue.Queue[dict[str, Any]]" = queue.Queue()
    runner = TeamRunner({
        "team": "embedded", "storage": str(tmp_path / "state"), "metrics": {"listen": "127.0.0.1:0"},
        "llm": {"provider": "scripted", "latency": 0.05},
        "agents": [{"name": "solo", "task": "count", "max_cycles": 3}],
    }, quiet=True, on_event=seen.put)
    runner.start()
    while (event := seen.get(timeout=30))["event"] != "metrics_serving":
        pass
    host, port = event["listen"].rsplit(":", 1)
    assert "agent_supervisor_workers_alive" in urllib.request.urlopen(event["url"], timeout=10).read().decode()
    assert runner.wait(60) == 0
    with socket.socket() as probe:
        assert probe.connect_ex((host, int(port))) != 0, "the metrics port is still open after the run"


def test_a_fault_in_an_observer_is_one_warning_and_the_run_goes_on(tmp_path: Path) -> None:
    """A metrics sink that raises (a bug planted for the test) is dropped; the event and the run are not."""
    from supervisor.config import TeamConfig
    from supervisor.runtime.events import EventLog
    from supervisor.runtime.observe import Observers

    config = TeamConfig.from_mapping({"team": "t", "storage": str(tmp_path), "metrics": {"listen": "127.0.0.1:0"},
                                      "agents": [{"name": "a", "task": "x", "max_cycles": 1}]}, source=tmp_path / "t")
    observers = Observers(config)
    observers.start()
    try:
        assert observers.metrics is not None
        observers.metrics._handlers["cycle_completed"] = lambda *_args: 1 / 0  # type: ignore[assignment]
        log = EventLog(tmp_path, sinks=observers.sinks, owner="t")
        observers.announce(log)
        for cycle in (1, 2):
            log.emit("cycle_completed", agent_id="a", cycle=cycle, duration_ms=5.0)
        log.close()
    finally:
        observers.close()
    lines = [json.loads(text) for text in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in lines] == ["metrics_serving", "observer_failed", "cycle_completed", "cycle_completed"]
    assert lines[1]["observer"] == "metrics" and lines[1]["error"] == "ZeroDivisionError: division by zero"
