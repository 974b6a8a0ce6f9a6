"""Agents working together, end to end: real supervisor, real workers, real signals, real files.

Messages between agents arrive exactly once and in order whatever stops the
run; a wait for a message or a person ends at once on a graceful stop; a
question survives a Ctrl+C and is answered from another process; `after:`
starts an agent once and only once its agents have completed; and the
built-in chat agent forms a pipeline from YAML alone.
"""

from __future__ import annotations

import signal
from collections import Counter
from typing import Any, Optional

import psutil
import pytest

from harness import Team, by_event, cli, wait_gone

AGENTS = "tests.mail_agents"


def pipeline(make_team: Any, cycles: int = 6, *, pause: float = 0.0, group: Optional[str] = None,
             every: int = 1) -> Team:
    """producer -> relay -> consumer; with `group`, the relay and the consumer run in a group of that name."""
    team = make_team(agents=0, max_cycles=cycles, every=every)
    team.names = ["producer", "relay", "consumer"]
    agents = [
        {"name": "producer", "agent": f"{AGENTS}:Producer", "task": "produce", "max_cycles": cycles,
         "params": {"to": "relay", "pause": pause}},
        {"name": "relay", "agent": f"{AGENTS}:Relay", "task": "relay", "max_cycles": cycles,
         "params": {"to": "consumer", "pause": pause}},
        {"name": "consumer", "agent": f"{AGENTS}:Consumer", "task": "consume", "max_cycles": cycles,
         "params": {"pause": pause}},
    ]
    if group is None:
        team.data["agents"] = agents
    else:
        team.data["agents"] = agents[:1]
        team.data["groups"] = [{"name": group, "agents": agents[1:]}]
    team.write()
    return team


def received(team: Team) -> list[int]:
    checkpoint = team.latest("consumer")
    assert checkpoint is not None
    return list(checkpoint.extra["state"]["got"])


def assert_each_delivered_once(team: Team, pairs: list[tuple[str, str]], count: int) -> None:
    """Each message of each pair is logged delivered exactly once (over every run), seq 1..count."""
    delivered = Counter((e["from"], e["to"], e["seq"]) for e in by_event(team.events(), "message_delivered"))
    for sender, receiver in pairs:
        assert [delivered[(sender, receiver, seq)] for seq in range(1, count + 1)] == [1] * count, (sender, receiver)


def test_a_pipeline_delivers_every_message_once_and_in_order(make_team, backend):
    team = pipeline(make_team, 6)
    run = team.run()
    assert run.proc.returncode == 0, run.output
    assert received(team) == [1, 2, 3, 4, 5, 6]
    events = team.events()
    sent = [(e["agent_id"], e["to"], e["seq"]) for e in by_event(events, "message_sent")]
    assert sorted(sent) == sorted([("producer", "relay", k) for k in range(1, 7)] +
                                  [("relay", "consumer", k) for k in range(1, 7)])
    assert_each_delivered_once(team, [("producer", "relay"), ("relay", "consumer")], 6)


def test_a_pipeline_across_a_group_delivers_the_same(make_team):
    team = pipeline(make_team, 5, group="crew")
    run = team.run()
    assert run.proc.returncode == 0, run.output
    assert received(team) == [1, 2, 3, 4, 5]
    assert_each_delivered_once(team, [("producer", "relay"), ("relay", "consumer")], 5)


def test_a_graceful_stop_ends_a_wait_at_once_and_the_rest_arrives_on_resume(make_team):
    team = pipeline(make_team, 6)
    team.data["agents"][0]["params"]["pause"] = 30.0  # the producer's second cycle takes long: the others wait
    team.write()
    run = team.start(terminal=True)
    run.wait_for(lambda ev: by_event(ev, "agent_waiting", "consumer"), "the consumer waiting for a message")
    run.ctrl_c()  # the producer is 30 s into a cycle: it alone finishes its cycle; the waits end now
    run.wait_for(lambda ev: by_event(ev, "interrupt_completed", "consumer"), "the consumer's stop")
    events = run.new_events()
    assert [e["outcome"] for e in by_event(events, "wait_ended", "consumer")][-1] == "stopped"
    assert team.latest("consumer").status == "interrupted"
    run.ctrl_c()  # the producer's long cycle is not worth waiting for here
    assert run.wait() == 1
    team.data["agents"][0]["params"]["pause"] = 0.0
    team.write()
    final = team.run()
    assert final.proc.returncode == 0, final.output
    assert received(team) == [1, 2, 3, 4, 5, 6]
    assert_each_delivered_once(team, [("producer", "relay"), ("relay", "consumer")], 6)


def test_killed_workers_and_supervisor_lose_and_repeat_nothing(make_team):
    team = pipeline(make_team, 8, pause=0.05, every=2)
    run = team.start()
    pids = run.wait_all_started()
    run.wait_for(lambda ev: len(by_event(ev, "message_delivered")) >= 3, "some deliveries")
    psutil.Process(pids["relay"]).kill()  # it restarts: what it held but had not saved comes again
    run.wait_for(lambda ev: by_event(ev, "worker_restarted", "relay"), "the relay's restart")
    run.wait_for(lambda ev: len(by_event(ev, "message_delivered", "consumer")) >= 3, "more deliveries")
    family = [p.pid for p in run.descendants()]
    run.signal(signal.SIGKILL)  # the supervisor itself: every message in flight lives only on disk now
    assert run.wait() == -signal.SIGKILL
    wait_gone(family, 2)
    final = team.run()
    assert final.proc.returncode == 0, final.output
    assert received(team) == list(range(1, 9))
    for name in team.names:
        assert team.latest(name).cycle == 8


def test_a_question_survives_ctrl_c_and_is_answered_from_another_process(make_team, backend):
    team = make_team(agents=0)
    team.names = ["asker"]
    team.data["agents"] = [{"name": "asker", "agent": f"{AGENTS}:Asker", "task": "ask", "max_cycles": 3,
                            "params": {"question": "Publish the draft?"}}]
    team.write()
    run = team.start(terminal=True)
    run.wait_for(lambda ev: by_event(ev, "question_asked", "asker"), "the question")
    status = cli("status", str(team.config), "--json")
    row = next(r for r in __import__("json").loads(status.stdout) if r["agent"] == "asker")
    assert "Publish the draft?" in row["now"]
    run.ctrl_c()  # waiting is not working: the stop is at once
    assert run.wait() == 0, run.output
    saved = team.latest("asker")
    assert (saved.cycle, saved.status, saved.extra["mail"]["asking"]) == (1, "interrupted", "Publish the draft?")
    assert "Publish the draft?" in cli("status", str(team.config)).stdout

    again = team.start()
    asked = again.wait_for(lambda ev: by_event(ev, "question_asked", "asker"), "the question, asked again")
    assert asked[-1]["question"] == "Publish the draft?"
    answered = cli("answer", str(team.config), "asker", "yes, publish it")
    assert (answered.returncode, answered.stdout.strip()) == (0, "asker: answered"), answered.stderr
    assert again.wait() == 0, again.output
    final = team.latest("asker")
    assert (final.cycle, final.status, final.extra["state"]["answers"]) == (3, "completed", ["yes, publish it"])
    [event] = by_event(team.events(), "question_answered", "asker")
    assert (event["question"], event["answer"]) == ("Publish the draft?", "yes, publish it")


def test_an_answer_saved_before_a_crash_is_not_asked_for_again(make_team):
    team = make_team(agents=0)
    team.names = ["asker"]
    team.data["agents"] = [{"name": "asker", "agent": f"{AGENTS}:Asker", "task": "ask", "max_cycles": 3,
                            "params": {"question": "Which title?"}}]
    team.write()
    run = team.start()
    run.wait_for(lambda ev: by_event(ev, "question_asked", "asker"), "the question")
    family = [p.pid for p in run.descendants()]
    assert cli("answer", str(team.config), "asker", "The Long Stop").returncode == 0
    run.signal(signal.SIGKILL)  # the answer is durable; the cycle it belongs to may not be
    run.wait()
    wait_gone(family, 2)
    final = team.run()
    assert final.proc.returncode == 0, final.output
    assert by_event(final.new_events(), "question_asked") == []  # answered once, never asked again
    assert team.latest("asker").extra["state"]["answers"] == ["The Long Stop"]


def test_an_answer_to_an_agent_not_waiting_for_one_is_refused_in_one_line(make_team):
    team = make_team(agents=0)
    team.names = ["waiter", "asker"]
    team.data["agents"] = [
        {"name": "waiter", "agent": f"{AGENTS}:Waiter", "task": "wait", "max_cycles": 1},
        {"name": "asker", "agent": f"{AGENTS}:Asker", "task": "ask", "max_cycles": 3},
    ]
    team.write()
    run = team.start()
    run.wait_for(lambda ev: by_event(ev, "agent_waiting", "waiter") and by_event(ev, "question_asked", "asker"),
                 "both waiting")
    refused = cli("answer", str(team.config), "waiter", "hello")
    assert refused.returncode == 2
    assert refused.stderr.strip() == "error: agent waiter is not waiting for an answer (it is waiting for a message)"
    unknown = cli("answer", str(team.config), "nobody", "hello")
    assert unknown.returncode == 2 and "no agent 'nobody'" in unknown.stderr
    assert "waiting for a message" in cli("status", str(team.config)).stdout
    assert cli("answer", str(team.config), "asker", "ok").returncode == 0
    assert cli("answer", str(team.config), "asker", "twice").returncode == 2  # nothing waits for it now
    run.ctrl_c()
    assert run.wait() == 0, run.output


def test_a_message_to_an_agent_the_team_does_not_have_fails_the_cycle_in_one_line(make_team):
    team = make_team(agents=0)
    team.names = ["stranger", "friend"]
    team.data["restart"] = "temporary"
    team.data["agents"] = [
        {"name": "stranger", "agent": f"{AGENTS}:Stranger", "task": "send", "max_cycles": 2, "params": {"to": "nobody"}},
        {"name": "friend", "agent": f"{AGENTS}:Stranger", "task": "send", "max_cycles": 2,
         "params": {"to": "stranger", "not_json": True}},
    ]
    team.write()
    run = team.run()
    assert run.proc.returncode == 3, run.output
    errors = {e["agent_id"]: e["message"] for e in by_event(team.events(), "worker_error")}
    assert "message to 'nobody': the team has no such agent" in errors["stranger"]
    assert "message to stranger: content is not JSON" in errors["friend"]
    assert all("\n" not in message for message in errors.values())
    assert "Traceback" not in run.output
    assert team.latest("stranger") is None and team.latest("friend") is None  # no cycle completed, none saved


def test_after_starts_an_agent_once_its_agents_have_completed_and_only_once(make_team):
    team = make_team(agents=3, max_cycles=2, latency=0.1)
    team.data["agents"][0]["max_cycles"] = 4
    team.data["agents"][2]["after"] = ["agent-a", "agent-b"]
    team.write()
    run = team.start()
    [started] = run.wait_for(lambda ev: by_event(ev, "worker_started", "agent-a"), "agent-a")
    run.wait_for(lambda ev: by_event(ev, "checkpoint_saved", "agent-a"), "agent-a's first checkpoint")
    psutil.Process(started["pid"]).kill()  # it restarts; agent-c must still start once, after both complete
    run.wait_for(lambda ev: by_event(ev, "worker_restarted", "agent-a"), "agent-a's restart")
    assert run.wait() == 0, run.output
    events = team.events()
    [held] = by_event(events, "agent_held", "agent-c")
    assert held["after"] == ["agent-a", "agent-b"]
    exits = {e["agent_id"]: i for i, e in enumerate(events) if e["event"] == "worker_exited" and e["status"] == "completed"}
    starts = [i for i, e in enumerate(events) if e["event"] == "worker_started" and e["agent_id"] == "agent-c"]
    assert len(starts) == 1 and starts[0] > max(exits["agent-a"], exits["agent-b"])
    assert len(by_event(events, "agent_released", "agent-c")) == 1
    assert team.latest("agent-c").cycle == 2


def test_an_agent_whose_after_agent_fails_is_not_started_and_says_why(make_team):
    team = make_team(agents=2, max_cycles=2, latency=0.05)
    team.data["restart"] = "temporary"
    team.data["agents"][0]["agent"] = f"{AGENTS}:Stranger"
    team.data["agents"][0]["params"] = {"to": "nobody"}
    team.data["agents"][1]["after"] = ["agent-a"]
    team.write()
    run = team.run()
    assert run.proc.returncode == 3, run.output
    [event] = by_event(team.events(), "agent_not_started", "agent-b")
    assert event["after"] == ["agent-a"]
    assert by_event(team.events(), "worker_started", "agent-b") == []
    assert "[agent-b] ⏸️  not started: agent-a did not complete" in run.output


def test_chat_agents_form_a_pipeline_from_yaml_alone(make_team):
    team = make_team(agents=3, max_cycles=3, latency=0.02)
    team.data["agents"][0]["send_to"] = ["agent-b"]
    team.data["agents"][1]["send_to"] = ["agent-c"]
    team.write()
    run = team.run()
    assert run.proc.returncode == 0, run.output
    for name, source in (("agent-b", "agent-a"), ("agent-c", "agent-b")):
        checkpoint = team.latest(name)
        prompts = [m["content"] for m in checkpoint.messages if m["role"] == "user"][1:]  # after the task
        assert len(prompts) == 3 and all(p.startswith(f"Message from {source}:\ncycle ") for p in prompts), prompts
    assert_each_delivered_once(team, [("agent-a", "agent-b"), ("agent-b", "agent-c")], 3)


@pytest.mark.parametrize("damaged", [("consumer",), ("relay",), ("consumer", "relay")])
def test_a_corrupt_newest_checkpoint_on_either_side_loses_no_message(make_team, damaged):
    team = pipeline(make_team, 12)
    team.data["agents"][0]["params"]["pause"] = 0.15  # the relay saves every 0.15 s...
    team.data["agents"][2]["params"]["pause"] = 0.4  # ...and the consumer only every 0.4 s: a relay save follows each
    team.write()
    run = team.start()
    def settled_after_a_consumer_save(events: list) -> bool:
        """The consumer has saved twice, and the relay has saved since (it may have forgotten by then)."""
        saves = [i for i, e in enumerate(events) if e["event"] == "checkpoint_saved" and e["agent_id"] == "consumer"]
        return len(saves) >= 2 and any(e["event"] == "checkpoint_saved" and e["agent_id"] == "relay"
                                       for e in events[saves[-1]:])

    run.wait_for(settled_after_a_consumer_save, "a relay save after the consumer's second")
    family = [p.pid for p in run.descendants()]
    run.signal(signal.SIGKILL)  # no last save: the newest checkpoints are the ones that moved the mail on
    run.wait()
    wait_gone(family, 2)
    for name in damaged:  # the newest checkpoint of a receiver, of a sender, or of both, is damaged on disk
        newest = team.store(name).list()[-1]
        path = team.storage / name / newest.checkpoint_id
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    final = team.run()
    assert final.proc.returncode == 0, final.output
    corrupt = {e["agent_id"] for e in by_event(final.new_events(), "checkpoint_corrupt")}
    assert corrupt == set(damaged)
    assert received(team) == list(range(1, 13))


def test_an_agent_in_a_group_is_asked_and_answered_through_its_group(make_team):
    team = make_team(agents=1, max_cycles=3, latency=0.05)
    team.names.append("asker")
    team.data["groups"] = [{"name": "crew", "agents": [{"name": "asker", "agent": f"{AGENTS}:Asker", "task": "ask",
                                                       "max_cycles": 3, "params": {"question": "Which way?"}}]}]
    team.write()
    run = team.start()
    run.wait_for(lambda ev: by_event(ev, "question_asked", "asker"), "the question from inside the group")
    assert "waiting for an answer: Which way?" in cli("status", str(team.config)).stdout
    answered = cli("answer", str(team.config), "asker", "north")
    assert answered.returncode == 0, answered.stderr
    assert run.wait() == 0, run.output
    assert team.latest("asker").extra["state"]["answers"] == ["north"]
