"""Custom agents: `agent: package.module:Class`, one `cycle(k)`, and state that is checkpointed.

Every run is the real supervisor with real workers; the shipped example
(`workers.examples.notebook:Notebook`) and the probes in tests/agent_probe.py
are loaded inside the workers by their dotted path, as a user's class would be.
"""

from __future__ import annotations

import re

import pytest

from harness import REPO, by_event, cli, wait_gone
from supervisor.config import load_config
from ollama_double import MODEL, OllamaDouble
from workers.agent import DEFAULT_AGENT, load_agent_class
from workers.examples.notebook import note_of
from workers.providers.scripted import scripted_reply

NOTEBOOK = "workers.examples.notebook:Notebook"
PROBE = "tests.agent_probe:Probe"


def _use_agent(team, path: str, **params: object) -> None:
    team.data["agent"] = path
    if params:
        for agent in team.data["agents"]:
            agent["params"] = dict(params)
    team.write()


def _every_checkpoint(team, name: str):
    store = team.store(name)
    return [store.load(info.checkpoint_id) for info in store.list()]


def test_the_example_agent_resumes_with_its_state_exactly_once(make_team):
    team = make_team(agents=2, latency=0.05, max_cycles=8)
    _use_agent(team, NOTEBOOK)
    run = team.start(terminal=True)
    run.wait_cycles(3)
    run.ctrl_c()
    assert run.wait() == 0, run.output
    stopped = {name: team.latest(name).cycle for name in team.names}
    assert all(0 < cycle < 8 for cycle in stopped.values())

    killed = team.start()  # a SIGKILLed worker is restarted and resumes from its checkpoint, state included
    killed.kill_worker_after("agent-a", 1)
    assert killed.wait() == 0, killed.output
    assert by_event(killed.new_events(), "worker_restarted", "agent-a")

    for name in team.names:
        final = team.assert_exactly_once(name, 8)  # the replies of the scripted provider, one per cycle
        assert final.status == "completed" and final.extra["agent_class"] == NOTEBOOK
        assert final.extra["state"] == {"notes": [note_of(scripted_reply(k)) for k in range(1, 9)], "stale": 0}
        # Each cycle recorded the prompt it sent, right before its reply.
        prompts = [m["content"] for m in final.messages if m["role"] == "user"][1:]
        assert len(prompts) == 8 and prompts[0].startswith("Now give step 1 of 8")
        assert prompts[3].startswith("Done so far:\n- " + note_of(scripted_reply(1)))
        # Every checkpoint on disk holds exactly as many notes as cycles: state and replies moved together.
        for checkpoint in _every_checkpoint(team, name):
            assert len(checkpoint.extra["state"]["notes"]) == checkpoint.cycle


def test_the_example_agent_stops_itself_when_it_goes_in_circles(make_team):
    # The test double answers "cycle 1: ..." to any request without assistant turns, and the
    # notebook sends none: every step repeats the first, as a weak model at temperature 0 does.
    team = make_team(agents=1, max_cycles=10, restart="permanent")
    with OllamaDouble() as double:
        team.data["llm"] = {"provider": "ollama", "host": double.host, "model": MODEL, "price_per_1k_tokens": 1.0}
        _use_agent(team, NOTEBOOK, max_stale=2)
        run = team.run()
        assert run.proc.returncode == 0, run.output
        events = run.new_events()
        first = team.latest("agent-a")
        again = team.run()  # resumes; the next repeat stops it again, one cycle later
    assert again.proc.returncode == 0, again.output

    assert first.status == "interrupted" and first.cycle == 3
    assert first.extra["state"]["stale"] == 2 and len(first.extra["state"]["notes"]) == 3
    (initiated,) = [e for e in by_event(events, "interrupt_initiated") if e["agent_id"] == team.team]
    assert (initiated["mode"], initiated["source"]) == ("GRACEFUL", "PROGRAMMATIC")
    assert initiated["message"] == "agent-a: 2 steps in a row added nothing new"
    assert "agent-a: 2 steps in a row added nothing new" in run.output
    assert not by_event(events, "worker_restarted")  # an agent's own stop is final for the run, even if permanent
    cycles = by_event(events, "cycle_completed", "agent-a")
    assert all(c["tokens"]["prompt"] > 0 and c["cost_usd"] > 0 for c in cycles)
    assert first.budget_spent_usd == pytest.approx(sum(c["cost_usd"] for c in cycles))

    second = team.latest("agent-a")
    assert second.cycle == 4 and second.extra["state"]["stale"] == 3
    assert by_event(again.new_events(), "interrupt_initiated")[0]["message"] == "agent-a: 3 steps in a row added nothing new"


def test_a_cycle_may_make_several_calls_and_each_is_counted(make_team):
    team = make_team(agents=1, latency=0.02, max_cycles=4)
    team.data["llm"]["cost_per_reply"] = 0.01
    _use_agent(team, PROBE)
    run = team.run()
    assert run.proc.returncode == 0, run.output
    cycles = by_event(run.new_events(), "cycle_completed", "agent-a")
    assert [c["cost_usd"] for c in cycles] == pytest.approx([0.02] * 4)  # two calls a cycle
    final = team.assert_exactly_once("agent-a", 4)
    assert final.budget_spent_usd == pytest.approx(0.08)
    assert final.extra["state"] == {"done": [1, 2, 3, 4], "runs": 1}


def test_custom_agents_run_in_a_group_with_the_team_default_and_their_own_class(make_team):
    team = make_team(agents=1, latency=0.02, max_cycles=3, groups={"crew": {"agents": 2}})
    team.data["agent"] = PROBE  # every agent's default, carried down to the group's sub-supervisor
    team.data["groups"][0]["agents"][1]["agent"] = NOTEBOOK
    team.data["agents"][0]["agent"] = "tests.agent_probe:AsyncProbe"  # an `async def setup`
    team.write()
    run = team.run()
    assert run.proc.returncode == 0, run.output
    classes = {name: team.assert_exactly_once(name, 3).extra["agent_class"] for name in team.names}
    assert classes == {"agent-a": "tests.agent_probe:AsyncProbe", "crew-a": PROBE, "crew-b": NOTEBOOK}
    assert team.latest("crew-a").extra["state"]["done"] == [1, 2, 3]
    assert team.latest("agent-a").extra["state"] == {"done": [1, 2, 3], "runs": 1, "opened": True}


def test_request_stop_after_the_cycle_is_saved_and_the_next_run_resumes(make_team):
    team = make_team(agents=2, latency=0.02, max_cycles=5)
    _use_agent(team, PROBE)
    team.data["agents"][0]["params"] = {"stop_at": 2}
    team.write()
    run = team.run()
    assert run.proc.returncode == 0, run.output
    events = run.new_events()
    stopped = team.latest("agent-a")
    assert (stopped.status, stopped.cycle, stopped.extra["state"]["done"]) == ("interrupted", 2, [1, 2])
    assert team.assert_exactly_once("agent-b", 5).status == "completed"  # the others run on
    (done,) = by_event(events, "interrupt_completed", "agent-a")
    assert done["source"] == "PROGRAMMATIC" and done["checkpoint_id"] == stopped.checkpoint_id

    team.data["agents"][0]["params"] = {}
    team.write()
    resumed = team.run()
    assert resumed.proc.returncode == 0, resumed.output
    final = team.assert_exactly_once("agent-a", 5)
    assert final.extra["state"] == {"done": [1, 2, 3, 4, 5], "runs": 2}


def test_an_immediate_stop_mid_cycle_leaves_no_half_done_state(make_team):
    team = make_team(agents=1, latency=0.02, max_cycles=5, immediate_timeout=2)
    _use_agent(team, PROBE, hang_at=3)
    run = team.start(terminal=True)
    run.wait_cycles(2)
    pids = list(run.wait_all_started().values())
    run.ctrl_c()
    run.wait_for(lambda ev: by_event(ev, "interrupt_initiated", "agent-a"), "the agent's ack")
    run.ctrl_c()
    assert run.wait() == 1, run.output
    wait_gone(pids, 2)
    saved = team.assert_exactly_once("agent-a", 2)
    assert saved.extra["state"] == {"done": [1, 2], "runs": 1}  # no "partial" from the cancelled cycle 3

    _use_agent(team, PROBE, hang_at=0)
    resumed = team.run()
    assert resumed.proc.returncode == 0, resumed.output
    assert team.assert_exactly_once("agent-a", 5).extra["state"] == {"done": [1, 2, 3, 4, 5], "runs": 2}


@pytest.mark.parametrize(
    ("agent", "params", "problem"),
    [
        (PROBE, {"raise_at": 2}, "agent tests.agent_probe:Probe cycle 2: RuntimeError: probe failed in cycle 2 at "),
        (PROBE, {"bad_return_at": 2}, "agent tests.agent_probe:Probe cycle 2 returned int, not a str or Step"),
        (PROBE, {"bad_state_at": 2}, "agent tests.agent_probe:Probe: state is not JSON: Object of type object"),
        (PROBE, {"fail_in_setup": True}, "agent tests.agent_probe:Probe: setup failed: ValueError: setup refused"),
        ("tests.agent_probe:NotAnAgent", {}, "NotAnAgent is not a subclass of workers.agent.Agent"),
        ("tests.agent_probe:Missing", {}, "module tests.agent_probe has no 'Missing'"),
        ("tests.no_such_module:Probe", {}, "cannot import tests.no_such_module: ModuleNotFoundError"),
    ],
    ids=["raises", "bad-return", "bad-state", "setup", "not-an-agent", "missing-class", "missing-module"],
)
def test_a_broken_agent_fails_in_one_line_and_keeps_its_last_checkpoint(make_team, agent, params, problem):
    team = make_team(agents=1, latency=0.02, max_cycles=4, restart="temporary")
    _use_agent(team, agent, **params)
    run = team.run()
    assert run.proc.returncode == 3, run.output
    assert "Traceback" not in run.output and problem in run.output
    (error,) = by_event(run.new_events(), "worker_error", "agent-a")
    assert error["kind"] == "agent" and problem in error["message"] and "\n" not in error["message"]
    cycles = 1 if params.get("raise_at") or params.get("bad_return_at") or params.get("bad_state_at") else 0
    team.assert_exactly_once("agent-a", cycles, may_be_empty=cycles == 0)


def test_an_agent_module_beside_the_config_is_found_from_any_folder(make_team, tmp_path):
    team = make_team(agents=1, latency=0.02, max_cycles=3)
    (team.root / "my_agents.py").write_text(
        "from workers.agent import Agent\n\n"
        "class Echo(Agent):\n"
        "    async def cycle(self, k):\n"
        "        self.state['last'] = k\n"
        "        return f'cycle {k}: ' + self.params['word'] * k\n"
    )
    _use_agent(team, "my_agents:Echo", word="ha")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = cli(str(team.config), cwd=elsewhere, env={"TERM": "dumb"})
    assert done.returncode == 0, done.stdout + done.stderr
    final = team.latest("agent-a")
    assert [m["content"] for m in final.messages if m["role"] == "assistant"] == ["cycle 1: ha", "cycle 2: haha", "cycle 3: hahaha"]
    assert final.extra["state"] == {"last": 3}


@pytest.mark.parametrize(
    ("where", "value", "problem"),
    [
        ("team", "nosuchpackage.mod:Agent", "agent: no module named 'nosuchpackage' can be imported"),
        ("team", "not a path", "agent: must be a dotted path like package.module:Class"),
        ("agent", 3, "agents[0].agent: must be a string"),
        ("params", {"when": "DATE"}, "agents[0].params: must hold plain data"),
    ],
)
def test_a_bad_agent_in_the_config_is_one_line_and_exit_2(make_team, where, value, problem):
    team = make_team(agents=1)
    if where == "team":
        team.data["agent"] = value
    elif where == "agent":
        team.data["agents"][0]["agent"] = value
    team.write()
    if where == "params":  # a YAML date is not plain data; safe_dump would quote it
        team.config.write_text(team.config.read_text().replace("max_cycles: 5", "max_cycles: 5\n  params: {when: 2024-01-01}"))
    run = team.run()
    assert run.proc.returncode == 2, run.output
    assert problem in run.output and "Traceback" not in run.output
    assert len(run.output.strip().splitlines()) == 1


def _docs_agent() -> str:
    text = (REPO / "docs" / "custom-agents.md").read_text()
    match = re.search(r"```python\n(.*?)```", text, re.DOTALL)
    assert match, "docs/custom-agents.md has a python example"
    return match.group(1)


def test_the_documented_agent_runs_as_shown(make_team):
    team = make_team(agents=2, latency=0.02, max_cycles=3)
    (team.root / "my_agents.py").write_text(_docs_agent())
    _use_agent(team, "my_agents:Critic")
    run = team.run()
    assert run.proc.returncode == 0, run.output
    for name in team.names:
        final = team.assert_exactly_once(name, 3)
        assert len(final.extra["state"]["scores"]) == 3
        assert [m["content"] for m in final.messages if m["role"] == "user"][1].startswith("Step 1: find one flaw")


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_is_valid(path):
    config = load_config(path)
    for agent in config.all_agents():
        load_agent_class(config.agent_spec(agent.name).agent_class or DEFAULT_AGENT)  # raises if not an Agent
