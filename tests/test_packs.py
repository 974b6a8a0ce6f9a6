"""Agents that share a worker process (`agents_per_process`), end to end: real packs, real kills.

The tests that matter for every team (a graceful and an immediate Ctrl+C, SIGTERM, resume, a killed
worker, an operator's stop) run with a pack too, through the `backend` fixture's "packed" parameter.
Here: what only a pack has. Each agent of a pack leaves on its own while its siblings run on, and a
kill for one agent takes its siblings, which restart without being charged for it.
"""

from __future__ import annotations

from typing import Any, Callable

from harness import Team, by_event


def _pack(make_team: Callable[..., Team], **kwargs: Any) -> Team:
    team = make_team(**{"agents": 3, "latency": 0.1, **kwargs})
    team.data["agents_per_process"] = 2  # agent-a and agent-b share a process; agent-c has its own
    return team


def test_an_agent_leaves_its_pack_with_its_own_exit_while_its_sibling_runs_on(make_team):
    team = _pack(make_team, max_cycles=8)
    team.data["agents"][0]["max_cycles"] = 2  # agent-a completes long before agent-b
    team.write()
    run = team.start()
    pids = run.wait_all_started()
    assert pids["agent-a"] == pids["agent-b"] != pids["agent-c"]
    assert run.wait() == 0, run.output
    events = run.new_events()
    (left,) = by_event(events, "worker_exited", "agent-a")
    assert (left["pid"], left["exitcode"], left["status"]) == (pids["agent-a"], 0, "completed")
    after = events[events.index(left) + 1:]
    # agent-b cycled on in the same process after agent-a's exit: its exit did not end the process
    assert [e["cycle"] for e in by_event(after, "cycle_completed", "agent-b")][-1] == 8
    (gone,) = by_event(events, "worker_exited", "agent-b")
    assert (gone["pid"], gone["exitcode"], gone["status"]) == (pids["agent-b"], 0, "completed")
    assert by_event(events, "worker_restarted") == []
    team.assert_exactly_once("agent-a", 2)
    for name in ("agent-b", "agent-c"):
        team.assert_exactly_once(name, 8)
    assert run.descendants() == []


def test_a_hang_kills_the_whole_pack_and_only_the_hung_agent_is_charged(make_team, tmp_path):
    team = _pack(make_team, max_cycles=5)
    team.data["hang_timeout"] = 2
    team.data["max_restarts"] = 1
    blocker = team.data["agents"][0]
    blocker.update(agent="tests.agent_probe:Blocker", params={"block_at": 3, "marker": str(tmp_path / "blocked")})
    team.data["agents"][1]["hang_timeout"] = 30  # its timer fires later: agent-a's is the one that finds the hang
    team.write()
    run = team.start()
    pids = run.wait_all_started()
    assert run.wait() == 0, run.output
    events = run.new_events()
    (hung,) = by_event(events, "worker_hung")
    assert hung["agent_id"] == "agent-a"
    (sibling,) = by_event(events, "worker_exited", "agent-b")[:1]
    assert sibling["pid"] == pids["agent-b"] and sibling["exitcode"] == -9
    assert "killed for agent-a" in sibling["reason"] and "agents_per_process" in sibling["reason"]
    restarted = {e["agent_id"]: e for e in by_event(events, "worker_restarted")}
    assert set(restarted) == {"agent-a", "agent-b"}  # agent-c, in a process of its own, ran on untouched
    # The hung agent's restart counts against its limit, its sibling's does not; each is a process of its own now.
    assert (restarted["agent-a"]["attempt"], restarted["agent-b"]["attempt"]) == (1, 0)
    assert restarted["agent-a"]["pid"] != restarted["agent-b"]["pid"]
    for name in team.names:
        team.assert_exactly_once(name, 5)
    assert run.descendants() == []


def test_a_groups_agents_share_processes_under_the_groups_own_forkserver(make_team):
    team = make_team(agents=1, latency=0.05, max_cycles=4, groups={"crew": {"agents": 3}})
    team.data["agents_per_process"] = 2
    team.write()
    run = team.start()
    pids = run.wait_all_started()
    assert pids["crew-a"] == pids["crew-b"] != pids["crew-c"]  # the group packs its own agents
    assert run.wait() == 0, run.output
    for name in team.names:
        team.assert_exactly_once(name, 4)
    assert run.descendants() == []


def test_an_agent_that_leaves_its_pack_closes_its_model_client_at_once(make_team):
    """Its connection to the model server goes when it does, not when the pack's last agent does."""
    import psutil

    from harness import cli
    from ollama_double import MODEL, OllamaDouble

    team = _pack(make_team, max_cycles=1000)
    with OllamaDouble(latency=0.05) as double:
        team.data["llm"] = {"provider": "ollama", "host": double.host, "model": MODEL}
        team.write()
        run = team.start()
        pids = run.wait_all_started()
        port = double.httpd.server_address[1]
        pack = psutil.Process(pids["agent-a"])

        def to_the_server() -> int:  # keep-alive connections: each agent holds one between its calls too
            return sum(1 for c in pack.net_connections(kind="tcp")
                       if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED)

        run.wait_cycles(2, "agent-a")
        run.wait_cycles(2, "agent-b")
        assert to_the_server() == 2
        done = cli("stop", str(team.config), "agent-a")
        assert done.returncode == 0, done.stderr
        (left,) = by_event(run.new_events(), "worker_exited", "agent-a")
        assert pack.is_running() and left["pid"] == pack.pid  # agent-b runs on in it
        assert to_the_server() == 1
        run.ctrl_c()
        assert run.wait() == 0, run.output
