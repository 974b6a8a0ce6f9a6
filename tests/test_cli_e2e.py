"""The command line as users meet it: mistakes, a second run, --fresh, many resumes."""

from __future__ import annotations

import random
import signal

import pytest

from harness import by_event, cli

pytestmark = pytest.mark.e2e  # every test here runs the CLI in a process of its own


BAD_CONFIGS = {
    "syntax": ("team: x\nagents: [\n", "YAML syntax error"),
    "unknown key": ("team: x\nstorage: s\nagnets: []\n", "agnets: unknown key"),
    "wrong type": ("team: x\nstorage: s\nagents:\n  - {name: a, task: t, max_cycles: ten}\n", "agents[0].max_cycles"),
    "out of range": ("team: x\nstorage: s\nagents:\n  - {name: a, task: t, max_cycles: 0}\n", "agents[0].max_cycles"),
    "duplicate name": (
        "team: x\nstorage: s\nagents:\n  - {name: a, task: t, max_cycles: 1}\n  - {name: a, task: t, max_cycles: 1}\n",
        "duplicate agent name",
    ),
    "duplicate key": ("team: x\nteam: y\nstorage: s\nagents:\n  - {name: a, task: t, max_cycles: 1}\n", "duplicate key"),
    "bad duration": (
        "team: x\nstorage: s\nshutdown: {graceful_timeout: soon}\nagents:\n  - {name: a, task: t, max_cycles: 1}\n",
        "shutdown.graceful_timeout",
    ),
    "bad host": (
        "team: x\nstorage: s\nllm: {provider: ollama, host: 'ftp://x'}\nagents:\n  - {name: a, task: t, max_cycles: 1}\n",
        "llm.host",
    ),
    "empty": ("", "empty"),
    "not a mapping": ("- 1\n- 2\n", "mapping"),
}


@pytest.mark.parametrize("kind", sorted(BAD_CONFIGS))
def test_every_kind_of_bad_config_is_one_line_and_exit_2(tmp_path, kind):
    text, phrase = BAD_CONFIGS[kind]
    path = tmp_path / "team.yaml"
    path.write_text(text)
    result = cli(str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0] and phrase in lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not (tmp_path / "s").exists()  # found before anything was created


def test_missing_config_file_and_bad_usage(tmp_path):
    result = cli(str(tmp_path / "nope.yaml"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    result = cli("run")
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_unusable_storage_is_exit_3(make_team):
    team = make_team(agents=1)
    team.root.joinpath("blocker").write_text("a file where the storage folder should be")
    team.data["storage"] = "blocker/state"
    team.write()
    result = cli(str(team.config))
    assert result.returncode == 3
    assert len(result.stderr.strip().splitlines()) == 1 and "storage" in result.stderr and "Traceback" not in result.stderr


def test_a_second_run_on_the_same_storage_is_refused(make_team):
    team = make_team(latency=0.2, max_cycles=100, agents=1)
    run = team.start()
    run.wait_all_started()
    second = cli(str(team.config))
    assert second.returncode == 2 and "already running" in second.stderr and str(run.pid) in second.stderr
    run.ctrl_c()
    assert run.wait() == 0


def test_fresh_archives_the_old_state_and_starts_over(make_team):
    team = make_team(latency=0.02, max_cycles=2, agents=1)
    assert team.run().proc.returncode == 0
    old_events = team.events()
    fresh = team.run("--fresh")
    assert fresh.proc.returncode == 0, fresh.output
    assert "NEW SESSION" in fresh.output and "archived" in fresh.output
    (stamp,) = list((team.storage / "archive").iterdir())
    assert (stamp / "agent-a").is_dir() and len(list((stamp / "agent-a").glob("checkpoint_*.jsonl.gz"))) == 2
    assert [line for line in (stamp / "events.jsonl").read_text().splitlines() if line]  # moved, not deleted
    assert len(by_event(old_events, "supervisor_started")) == 1
    assert len(by_event(team.events(), "supervisor_started")) == 1  # the new stream holds the fresh run alone
    assert by_event(team.events(), "worker_started")[0]["cycle"] == 0
    team.assert_exactly_once("agent-a", 2)


@pytest.mark.parametrize("every", [1, 3])
def test_exactly_once_after_many_interrupts_and_resumes(make_team, every):
    """Graceful, immediate and SIGTERM stops at random moments, then a run to the end."""
    rng = random.Random(every)
    team = make_team(latency=0.05, max_cycles=30, every=every, agents=2)
    stops = ["graceful", "immediate", "sigterm", "graceful", "immediate"]
    for stop in stops:
        run = team.start()
        run.wait_all_started()
        run.wait_cycles(rng.randint(1, 4))
        if stop == "sigterm":
            run.signal(signal.SIGTERM)
        else:
            run.ctrl_c()
        if stop == "immediate":
            run.wait_for(lambda ev: by_event(ev, "interrupt_initiated"), "the first interrupt")
            run.ctrl_c()
        code = run.wait()
        assert code == (1 if stop == "immediate" else 0), run.output
        if code == 0 and run.new_events() and by_event(run.new_events(), "supervisor_stopped")[0]["status"] == "completed":
            break
        for name in team.names:
            team.assert_exactly_once(name, may_be_empty=True)
    final = team.run()
    assert final.proc.returncode == 0, final.output
    for name in team.names:
        assert team.assert_exactly_once(name, 30).status == "completed"


def test_an_event_log_that_cannot_be_opened_is_exit_3(make_team):
    team = make_team(agents=1)
    (team.storage / "events.jsonl").mkdir(parents=True)
    result = cli(str(team.config))
    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [f"error: storage {team.storage}: cannot open the event log: Is a directory"]


def test_a_one_line_error_shows_control_characters_instead_of_sending_them(tmp_path):
    bad = tmp_path / "\x1b]0;retitled\x07\x9b2J.yaml"
    for args in (("status", str(bad)), (str(bad),)):
        result = cli(*args)
        assert result.returncode == 2, result.stderr
        assert "\x1b" not in result.stderr and "\x07" not in result.stderr and "\x9b" not in result.stderr
        assert "\\x1b]0;retitled\\x07\\x9b2J.yaml" in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
