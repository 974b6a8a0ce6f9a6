"""Tests for supervisor.config: a good config loads exactly, every bad one is one clear line."""

from __future__ import annotations

import copy
import os
import pickle
from pathlib import Path
from typing import Any

import msgpack
import pytest
import yaml

from supervisor.config import (
    AgentConfig,
    CheckpointConfig,
    ConfigError,
    LLMConfig,
    ShutdownConfig,
    TeamConfig,
    load_config,
    parse_duration,
)

FULL = """\
team: research
storage: state/research
llm:
  provider: scripted
  latency: 250ms
  cost_per_reply: 0.01
  system_prompt: Be brief.
checkpoint: {every: 2, keep: 5, compress: false}
shutdown: {graceful_timeout: 1m, immediate_timeout: "1.5"}
agents:
  - name: counter-a
    task: Count from 1 to 50, five numbers per cycle.
    max_cycles: 10
    llm: {latency: 0.5}
  - name: counter_b
    task: Count backwards.
    max_cycles: 3
    llm: {system_prompt: Count carefully., cost_per_reply: 0}
"""

# The smallest valid config, as data; bad cases below are edits of it.
BASE: dict[str, Any] = {
    "team": "research",
    "storage": "state",
    "llm": {"provider": "scripted", "latency": 0.1},
    "checkpoint": {"every": 1, "keep": 20, "compress": True},
    "shutdown": {"graceful_timeout": 30, "immediate_timeout": 2},
    "agents": [
        {"name": "counter-a", "task": "Count.", "max_cycles": 10},
        {"name": "counter-b", "task": "Count.", "max_cycles": 10, "llm": {"latency": "1s"}},
    ],
}

DELETE = object()


def edited(*changes: tuple[str, Any]) -> str:
    """BASE as YAML with ("agents.1.max_cycles", value) edits; DELETE removes a key."""
    data = copy.deepcopy(BASE)
    for path, value in changes:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if isinstance(node, list):
            node[int(last)] = value
        elif value is DELETE:
            del node[last]
        else:
            node[last] = value
    return yaml.safe_dump(data, sort_keys=False)


def write(tmp_path: Path, text: str | bytes, name: str = "team.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path | str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value


# ---- valid configs ----------------------------------------------------------


def test_full_config_round_trip(tmp_path: Path) -> None:
    (tmp_path / "configs").mkdir()
    path = write(tmp_path / "configs", FULL)
    config = load_config(path)

    assert config.team == "research"
    assert config.source == path.absolute()
    assert config.storage == (tmp_path / "configs" / "state" / "research").resolve()
    assert config.storage.is_absolute()
    assert config.llm == LLMConfig(provider="scripted", latency=0.25, cost_per_reply=0.01, system_prompt="Be brief.")
    assert config.checkpoint == CheckpointConfig(every=2, keep=5, compress=False)
    assert config.shutdown == ShutdownConfig(graceful_timeout=60.0, immediate_timeout=1.5)

    a, b = config.agents
    assert (a.name, a.task, a.max_cycles) == ("counter-a", "Count from 1 to 50, five numbers per cycle.", 10)
    # Per-agent overrides are laid over the team's llm block key by key.
    assert a.llm == LLMConfig(provider="scripted", latency=0.5, cost_per_reply=0.01, system_prompt="Be brief.")
    assert b.llm == LLMConfig(provider="scripted", latency=0.25, cost_per_reply=0.0, system_prompt="Count carefully.")


def test_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "team: t\nstorage: s\nagents:\n  - {name: a, task: do it, max_cycles: 1}\n")
    config = load_config(path)
    assert config.llm == LLMConfig()
    assert config.llm.provider == "scripted"
    assert config.llm.latency == 0.2
    assert config.llm.cost_per_reply == 0.0
    assert config.llm.system_prompt == "You are a careful agent working on a long task, one step per cycle."
    assert config.checkpoint == CheckpointConfig(every=1, keep=20, compress=True)
    assert config.shutdown == ShutdownConfig(graceful_timeout=30.0, immediate_timeout=2.0)
    assert config.agents[0].llm == LLMConfig()


def test_relative_path_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages name the file as the user typed it; `source` is absolute."""
    (tmp_path / "configs").mkdir()
    write(tmp_path / "configs", FULL)
    monkeypatch.chdir(tmp_path)
    config = load_config("configs/team.yaml")
    assert config.source == tmp_path / "configs" / "team.yaml"
    assert config.storage == (tmp_path / "configs" / "state" / "research").resolve()

    write(tmp_path / "configs", edited(("agents.1.max_cycles", 0)))
    assert str(load_error("configs/team.yaml")) == "configs/team.yaml: agents[1].max_cycles: must be >= 1 (got 0)"


def test_storage_home_and_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config = load_config(write(tmp_path, edited(("storage", "~/runs"))))
    assert config.storage == (tmp_path / "home" / "runs").resolve()
    config = load_config(write(tmp_path, edited(("storage", str(tmp_path / "abs" / ".." / "x")))))
    assert config.storage == (tmp_path / "x").resolve()


def test_agent_spec_is_plain_data(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL))
    spec = config.agent_spec("counter-a").to_wire()
    assert spec == {
        "agent": "counter-a",
        "task": "Count from 1 to 50, five numbers per cycle.",
        "max_cycles": 10,
        "storage": str((tmp_path / "state" / "research").resolve()),
        "llm": {
            "provider": "scripted", "latency": 0.5, "cost_per_reply": 0.01, "system_prompt": "Be brief.",
            "host": spec["llm"]["host"], "model": "llama3.1:8b-instruct-q8_0", "options": {},
            "request_timeout": 120.0, "price_per_1k_tokens": 0.0, "price": None, "api": "ollama", "base_url": None,
            "api_key_env": None, "max_concurrent": None, "hosts": [],
        },
        "checkpoint": {"every": 2, "keep": 5, "compress": False},
        "budget_usd": None,
        "hooks": [],
        "agent_class": None,
        "params": {},
        "await_grants": False,
        "python_path": [str(tmp_path)],
        "peers": [],
        "send_to": [],
        "senders": [],
        "traceparent": None,
        "tools": [],
        "tool_timeout": 60.0,
    }
    assert msgpack.unpackb(msgpack.packb(spec)) == spec
    with pytest.raises(KeyError, match="no agent 'nobody'"):
        config.agent_spec("nobody")


def test_from_mapping_without_a_file(tmp_path: Path) -> None:
    data = yaml.safe_load(edited())
    config = TeamConfig.from_mapping(data, source=Path("embedded.yaml"), base_dir=tmp_path)
    assert config.storage == (tmp_path / "state").resolve()
    assert config.source == Path("embedded.yaml").absolute()
    assert [a.name for a in config.agents] == ["counter-a", "counter-b"]
    assert config.agents[1].llm.latency == 1.0

    data["agents"][0]["max_cycles"] = True
    with pytest.raises(ConfigError) as info:
        TeamConfig.from_mapping(data, source=Path("embedded.yaml"), base_dir=tmp_path)
    assert str(info.value) == "embedded.yaml: agents[0].max_cycles: must be an integer (got true)"
    assert (info.value.source, info.value.field) == ("embedded.yaml", "agents[0].max_cycles")


def test_models_are_frozen(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL))
    with pytest.raises(Exception):
        config.llm.latency = 3.0  # type: ignore[misc]
    with pytest.raises(Exception):
        config.agents[0].max_cycles = 3  # type: ignore[misc]
    assert isinstance(config.agents[0], AgentConfig)


def test_yaml_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    text = (
        "team: t\nstorage: s\nagents:\n"
        "  - &first {name: a, task: Count., max_cycles: 4}\n"
        "  - <<: *first\n    name: b\n"
    )
    config = load_config(write(tmp_path, text))
    assert [(a.name, a.max_cycles) for a in config.agents] == [("a", 4), ("b", 4)]


def test_config_error_pickles() -> None:
    err = ConfigError("x.yaml", "agents[0].name", "required")
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err) == "x.yaml: agents[0].name: required"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        (2, 2.0),
        (0.25, 0.25),
        ("30", 30.0),
        ("0.5", 0.5),
        ("30s", 30.0),
        ("250ms", 0.25),
        ("2m", 120.0),
        ("1.5h", 5400.0),
        (" 10 s ", 10.0),
        (".5s", 0.5),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)
    assert isinstance(parse_duration(value), float)


@pytest.mark.parametrize(
    ("value", "phrase"),
    [
        ("soon", "invalid duration 'soon' (use seconds or e.g. 30s, 2m)"),
        ("", "invalid duration ''"),
        ("5d", "invalid duration '5d'"),
        ("30S", "invalid duration '30S'"),
        ("nan", "finite"),
        ("inf", "finite"),
        (float("inf"), "finite"),
        (True, "invalid duration true"),
        (None, "invalid duration null"),
        ([1], "invalid duration a list"),
        (-1, "must not be negative (got -1)"),
        ("-2s", "must not be negative (got '-2s')"),
        (10**400, "too large"),
    ],
)
def test_parse_duration_rejects(value: object, phrase: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(value)
    assert phrase in str(info.value)


# ---- bad configs --------------------------------------------------------------

LONG = "x" * 65

BAD: list[Any] = [
    # top level and file shape
    pytest.param("", None, "empty", id="empty-file"),
    pytest.param("# only a comment\n", None, "empty", id="comments-only"),
    pytest.param("- a\n- b\n", None, "top level must be a mapping", id="top-level-list"),
    pytest.param("just text\n", None, "top level must be a mapping", id="top-level-scalar"),
    pytest.param("team: t\nstorage: [s\nagents: []\n", None, "YAML syntax error at line 3, column", id="yaml-syntax"),
    pytest.param("team: t\n  storage: s\n", None, "YAML syntax error at line 2, column 10", id="yaml-bad-indent"),
    pytest.param("team: t\nstorage: s\nagents: []\nteam: u\n", None, "line 4: duplicate key 'team'", id="dup-key-top"),
    pytest.param(
        "team: t\nstorage: s\nagents:\n  - name: a\n    task: x\n    max_cycles: 1\n    task: y\n",
        None,
        "line 7: duplicate key 'task' (first on line 5)",
        id="dup-key-nested",
    ),
    pytest.param(b"team: t\nstorage: \xff\xfe\n", None, "line 2: not valid UTF-8", id="not-utf8"),
    pytest.param("team: t\nstorage: \x07\n", None, "line 2: unacceptable character", id="control-char"),
    pytest.param("a: !!python/object/apply:os.system [ls]\n", None, "YAML syntax error at line 1", id="unsafe-tag"),
    # team
    pytest.param(edited(("team", DELETE)), "team", "required", id="team-missing"),
    pytest.param(edited(("team", "Research Team")), "team", "invalid name 'Research Team'", id="team-pattern"),
    pytest.param(edited(("team", "-lead")), "team", "invalid name", id="team-leading-dash"),
    pytest.param(edited(("team", LONG)), "team", "at most 64 characters", id="team-too-long"),
    pytest.param(edited(("team", 5)), "team", "must be a string (got 5)", id="team-int"),
    pytest.param(edited(("team", None)), "team", "must be a string (got nothing)", id="team-null"),
    # storage
    pytest.param(edited(("storage", DELETE)), "storage", "required", id="storage-missing"),
    pytest.param(edited(("storage", "")), "storage", "must not be empty", id="storage-empty"),
    pytest.param(edited(("storage", 3)), "storage", "must be a path (got 3)", id="storage-int"),
    # unknown keys
    pytest.param(edited(("version", 2)), "version", "unknown key", id="unknown-top"),
    pytest.param(edited(("source", "x.yaml")), "source", "unknown key", id="source-is-not-a-key"),
    pytest.param(
        edited(("agents", DELETE), ("agent", BASE["agents"])), "agent", "did you mean 'agents'", id="typo-top"
    ),
    pytest.param(edited(("llm.temprature", 0.5)), "llm.temprature", "unknown key", id="unknown-llm"),
    pytest.param(edited(("checkpoint.every_n", 1)), "checkpoint.every_n", "unknown key", id="unknown-checkpoint"),
    pytest.param(edited(("shutdown.grace", 1)), "shutdown.grace", "unknown key", id="unknown-shutdown"),
    pytest.param(edited(("agents.0.role", "x")), "agents[0].role", "unknown key", id="unknown-agent"),
    pytest.param(
        edited(("agents.1.max_cycle", 3), ("agents.1.max_cycles", DELETE)),
        "agents[1].max_cycle",
        "did you mean 'max_cycles'",
        id="typo-before-missing",
    ),
    pytest.param("team: t\nstorage: s\nllm: {1: x}\nagents: []\n", "llm.1", "unknown key", id="non-string-key"),
    # llm
    pytest.param(edited(("llm", "scripted")), "llm", "must be a mapping (got the string 'scripted')", id="llm-scalar"),
    pytest.param(edited(("llm.host", "ftp://x")), "llm.host", "invalid host 'ftp://x'", id="host-scheme"),
    pytest.param(edited(("llm.host", "http://h:99999")), "llm.host", "invalid host", id="host-port"),
    pytest.param(edited(("llm.request_timeout", 0)), "llm.request_timeout", "must be > 0", id="request-timeout-0"),
    pytest.param(edited(("llm.price_per_1k_tokens", -1)), "llm.price_per_1k_tokens", ">= 0", id="price-negative"),
    pytest.param(edited(("llm.options", [1])), "llm.options", "must be a mapping", id="options-list"),
    pytest.param(
        edited(("llm.provider", "vllm")),
        "llm.provider",
        "must be one of scripted, ollama, embedded, openai",
        id="provider-unknown",
    ),
    pytest.param(
        edited(("llm.latency", "soon")),
        "llm.latency",
        "invalid duration 'soon' (use seconds or e.g. 30s, 2m)",
        id="latency-bad",
    ),
    pytest.param(edited(("llm.latency", -0.5)), "llm.latency", "must not be negative (got -0.5)", id="latency-negative"),
    pytest.param(edited(("llm.latency", True)), "llm.latency", "invalid duration true", id="latency-bool"),
    pytest.param(
        edited(("llm.cost_per_reply", -1)), "llm.cost_per_reply", "must be >= 0 (got -1)", id="cost-negative"
    ),
    pytest.param(
        edited(("llm.cost_per_reply", "0.1")), "llm.cost_per_reply", "must be a number", id="cost-string"
    ),
    pytest.param(edited(("llm.cost_per_reply", float("nan"))), "llm.cost_per_reply", "finite", id="cost-nan"),
    pytest.param(edited(("llm.system_prompt", 7)), "llm.system_prompt", "must be a string", id="prompt-int"),
    # checkpoint
    pytest.param(edited(("checkpoint", [1])), "checkpoint", "must be a mapping", id="checkpoint-list"),
    pytest.param(
        edited(("checkpoint.every", 0)), "checkpoint.every", "must be >= 1 (got 0)", id="checkpoint-every-zero"
    ),
    pytest.param(edited(("checkpoint.keep", "20")), "checkpoint.keep", "must be an integer", id="keep-string"),
    pytest.param(edited(("checkpoint.keep", 0)), "checkpoint.keep", "must be >= 1", id="keep-zero"),
    pytest.param(edited(("checkpoint.compress", "yes")), "checkpoint.compress", "true or false", id="compress-str"),
    pytest.param(edited(("checkpoint.compress", 1)), "checkpoint.compress", "true or false", id="compress-int"),
    # shutdown
    pytest.param(
        edited(("shutdown.graceful_timeout", 0)), "shutdown.graceful_timeout", "must be > 0 (got 0)", id="grace-zero"
    ),
    pytest.param(
        edited(("shutdown.immediate_timeout", "2 minutes")),
        "shutdown.immediate_timeout",
        "invalid duration '2 minutes'",
        id="immediate-bad",
    ),
    pytest.param(
        edited(("shutdown.graceful_timeout", "-1m")),
        "shutdown.graceful_timeout",
        "must not be negative (got '-1m')",
        id="grace-negative",
    ),
    # events, metrics, traces
    pytest.param(edited(("events", {"max_bytes": "50 furlongs"})), "events.max_bytes", "invalid size '50 furlongs'",
                 id="events-size-bad"),
    pytest.param(edited(("events", {"max_bytes": True})), "events.max_bytes", "invalid size true", id="events-size-bool"),
    pytest.param(edited(("events", {"max_bytes": "10B"})), "events.max_bytes", "must be >= 1000", id="events-size-tiny"),
    pytest.param(edited(("events", {"keep": 0})), "events.keep", "must be >= 1", id="events-keep-zero"),
    pytest.param(edited(("events", {"keep": 101})), "events.keep", "must be <= 100", id="events-keep-many"),
    pytest.param(edited(("events", {"rotate": 1})), "events.rotate", "unknown key", id="events-unknown"),
    pytest.param(edited(("metrics", {"listen": "localhost:http"})), "metrics.listen", "must be HOST:PORT",
                 id="metrics-listen-bad"),
    pytest.param(edited(("metrics", {"listen": "127.0.0.1:70000"})), "metrics.listen", "between 0 and 65535",
                 id="metrics-port-big"),
    pytest.param(edited(("metrics", {})), "metrics.listen", "required", id="metrics-listen-missing"),
    pytest.param(edited(("traces", {"endpoint": "grpc://c:4317"})), "traces.endpoint", "must be an http(s) URL",
                 id="traces-scheme"),
    pytest.param(edited(("traces", {"endpoint": "http://c:4318\x1b[2J"})), "traces.endpoint", "control characters",
                 id="traces-control"),
    # agents
    pytest.param(edited(("agents", DELETE)), "agents", "required", id="agents-missing"),
    pytest.param(edited(("agents", [])), "agents", "at least one agent", id="agents-empty"),
    pytest.param(edited(("agents", {"name": "a"})), "agents", "must be a list", id="agents-mapping"),
    pytest.param(edited(("agents.0", "counter")), "agents[0]", "must be a mapping", id="agent-scalar"),
    pytest.param(edited(("agents.1.max_cycles", 0)), "agents[1].max_cycles", "must be >= 1 (got 0)", id="cycles-0"),
    pytest.param(
        edited(("agents.0.max_cycles", True)), "agents[0].max_cycles", "must be an integer (got true)", id="cycles-bool"
    ),
    pytest.param(
        edited(("agents.0.max_cycles", "10")),
        "agents[0].max_cycles",
        "must be an integer (got the string '10')",
        id="cycles-string",
    ),
    pytest.param(edited(("agents.0.max_cycles", 2.5)), "agents[0].max_cycles", "integer", id="cycles-float"),
    pytest.param(
        edited(("agents.0.max_cycles", 1_000_001)), "agents[0].max_cycles", "must be <= 1000000", id="cycles-too-many"
    ),
    pytest.param(edited(("agents.0.max_cycles", DELETE)), "agents[0].max_cycles", "required", id="cycles-missing"),
    pytest.param(edited(("agents.0.task", DELETE)), "agents[0].task", "required", id="task-missing"),
    pytest.param(edited(("agents.0.task", "")), "agents[0].task", "must not be empty", id="task-empty"),
    pytest.param(edited(("agents.0.task", "  ")), "agents[0].task", "must not be empty", id="task-blank"),
    pytest.param(edited(("agents.1.name", DELETE)), "agents[1].name", "required", id="name-missing"),
    pytest.param(edited(("agents.1.name", "Counter B")), "agents[1].name", "invalid name", id="name-pattern"),
    pytest.param(edited(("agents.1.name", LONG)), "agents[1].name", "at most 64", id="name-too-long"),
    pytest.param(
        edited(("agents.1.name", "counter-a")),
        "agents[1].name",
        "duplicate agent name 'counter-a' (also agents[0])",
        id="name-duplicate",
    ),
    pytest.param(
        edited(("agents.0.llm", "fast")), "agents[0].llm", "must be a mapping", id="agent-llm-scalar"
    ),
    pytest.param(
        edited(("agents.1.llm.latency", "soon")),
        "agents[1].llm.latency",
        "invalid duration 'soon'",
        id="agent-llm-latency",
    ),
    pytest.param(
        edited(("agents.0.llm.latency", -1)), "agents[0].llm.latency", "must not be negative", id="agent-llm-negative"
    ),
    pytest.param(
        edited(("agents.1.llm.temprature", 0.1)), "agents[1].llm.temprature", "unknown key", id="agent-llm-unknown"
    ),
    pytest.param(
        edited(("agents.1.llm.provider", "olama")),
        "agents[1].llm.provider",
        "must be one of scripted, ollama, embedded",
        id="agent-llm-provider",
    ),
]


@pytest.mark.parametrize(("text", "field", "phrase"), BAD)
def test_bad_config(tmp_path: Path, text: str | bytes, field: str | None, phrase: str) -> None:
    path = write(tmp_path, text)
    err = load_error(path)
    message = str(err)
    assert "\n" not in message and "\r" not in message
    assert message.startswith(f"{path}: ")
    assert err.field == field
    if field is not None:
        assert message.startswith(f"{path}: {field}: "), message
    assert phrase in message, message


def test_duplicate_agent_names_third(tmp_path: Path) -> None:
    agents = BASE["agents"] + [{"name": "counter-a", "task": "x", "max_cycles": 1}]
    err = load_error(write(tmp_path, edited(("agents", agents))))
    assert str(err).endswith("agents[2].name: duplicate agent name 'counter-a' (also agents[0])")


def test_bad_team_llm_is_reported_once_at_its_own_key(tmp_path: Path) -> None:
    """Agents inherit the team llm; its error must not be blamed on an agent, even if agents come first."""
    text = (
        "team: t\nstorage: s\n"
        "agents:\n  - {name: a, task: x, max_cycles: 1}\n"
        "llm: {latency: soon}\n"
    )
    err = load_error(write(tmp_path, text))
    assert err.field == "llm.latency"


def test_first_error_in_file_order(tmp_path: Path) -> None:
    text = "team: t\nstorage: s\ncheckpoint: {every: 0}\nllm: {latency: soon}\nagents: []\n"
    assert load_error(write(tmp_path, text)).field == "checkpoint.every"
    text = "team: t\nstorage: s\nllm: {latency: soon}\ncheckpoint: {every: 0}\nagents: []\n"
    assert load_error(write(tmp_path, text)).field == "llm.latency"


def test_file_missing(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert str(load_error(path)) == f"{path}: cannot read: No such file or directory"


def test_file_is_a_directory(tmp_path: Path) -> None:
    err = load_error(tmp_path)
    assert str(err).startswith(f"{tmp_path}: cannot read: ")
    assert "directory" in str(err).lower()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_file_unreadable(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    path.chmod(0)
    try:
        assert str(load_error(path)) == f"{path}: cannot read: Permission denied"
    finally:
        path.chmod(0o600)


def test_message_whitespace_collapsed(tmp_path: Path) -> None:
    err = load_error(write(tmp_path, edited(("team", "bad\nname\t here"))))
    assert "\n" not in str(err) and "\t" not in str(err)


def test_hang_timeout_defaults_to_the_teams_and_an_agent_may_override_it(tmp_path):
    from supervisor.config import DEFAULT_HANG_TIMEOUT, TeamConfig

    agents = [{"name": "a", "task": "t", "max_cycles": 1, "hang_timeout": "3s"}, {"name": "b", "task": "t", "max_cycles": 1}]
    config = TeamConfig.from_mapping({"team": "t", "storage": "s", "agents": agents}, source=tmp_path / "t.yaml")
    assert (config.hang_timeout_of("a"), config.hang_timeout_of("b")) == (3.0, DEFAULT_HANG_TIMEOUT)
    config = TeamConfig.from_mapping({"team": "t", "storage": "s", "hang_timeout": "1m", "agents": agents}, source=tmp_path / "t.yaml")
    assert (config.hang_timeout_of("a"), config.hang_timeout_of("b")) == (3.0, 60.0)
    with pytest.raises(ConfigError, match=r"agents\[1\]\.hang_timeout: must be >= 2"):
        TeamConfig.from_mapping(
            {"team": "t", "storage": "s", "agents": [agents[0], {**agents[1], "hang_timeout": 1}]}, source=tmp_path / "t.yaml"
        )


def test_agents_per_process_is_a_count_the_forkserver_can_pass_in_one_message(tmp_path):
    from supervisor.config import TeamConfig
    from supervisor.config.models import MAX_AGENTS_PER_PROCESS
    from supervisor.runtime.forkserver import MAX_PACK

    agents = [{"name": "a", "task": "t", "max_cycles": 1}]
    make = lambda **keys: TeamConfig.from_mapping({"team": "t", "storage": "s", "agents": agents, **keys},  # noqa: E731
                                                 source=tmp_path / "t.yaml")
    assert (make().agents_per_process, make(agents_per_process=8).agents_per_process) == (1, 8)
    assert MAX_AGENTS_PER_PROCESS <= MAX_PACK  # a pack's pipes travel in one forkserver request
    for wrong, said in ((0, "must be >= 1"), (MAX_AGENTS_PER_PROCESS + 1, f"must be <= {MAX_AGENTS_PER_PROCESS}"),
                        ("8", "must be an integer"), (2.5, "must be an integer")):
        with pytest.raises(ConfigError, match=rf"agents_per_process: {said}"):
            make(agents_per_process=wrong)


# ---- groups (nested teams) -----------------------------------------------------

GROUPS = """\
team: t
storage: s
llm: {latency: 0.5}
max_restarts: 4
hang_timeout: 30
agents:
  - {name: solo, task: x, max_cycles: 2}
groups:
  - name: writers
    strategy: one_for_all
    restart: permanent
    restart_window: 10s
    agents:
      - {name: w1, task: y, max_cycles: 3, llm: {latency: 0.1}}
      - {name: w2, task: y, max_cycles: 4, max_restarts: 9}
"""


def test_a_group_runs_its_agents_under_its_own_keys_and_inherits_the_rest(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GROUPS))
    assert config.children() == [("solo", "agent"), ("writers", "group")]
    assert [a.name for a in config.all_agents()] == ["solo", "w1", "w2"]
    assert config.agent("w1").llm.latency == 0.1 and config.agent("w2").llm.latency == 0.5  # team llm merged in
    # The group is a child of the team: the team's restart keys apply to it.
    assert config.restart_policy("writers") == config.restart_policy("solo")
    assert config.hang_timeout_of("writers") == 30
    sub = config.group_config("writers")
    assert (sub.team, sub.strategy, sub.restart, sub.max_restarts, sub.restart_window) == (
        "writers", "one_for_all", "permanent", 4, 10.0,
    )
    assert sub.restart_policy("w2").max_restarts == 9 and sub.hang_timeout == 30 and sub.groups == []
    spec = sub.to_spec()
    msgpack.packb(spec)  # plain data: it crosses the pipe in the group's Start message
    assert TeamConfig.from_spec(spec) == sub


def test_a_team_may_be_groups_alone(tmp_path: Path) -> None:
    text = "team: t\nstorage: s\ngroups:\n  - {name: g, agents: [{name: a, task: x, max_cycles: 1}]}\n"
    config = load_config(write(tmp_path, text))
    assert config.agents == [] and config.children() == [("g", "group")]


@pytest.mark.parametrize(
    "text,field,phrase",
    [
        ("team: t\nstorage: s\nagents: []\ngroups: []\n", "agents", "must list at least one agent"),
        ("team: t\nstorage: s\ngroups:\n  - {name: g, agents: []}\n", "groups[0].agents", "must list at least one agent"),
        ("team: t\nstorage: s\ngroups:\n  - {name: g}\n", "groups[0].agents", "required"),
        (
            "team: t\nstorage: s\nagents: [{name: a, task: x, max_cycles: 1}]\n"
            "groups:\n  - {name: g, agents: [{name: a, task: x, max_cycles: 1}]}\n",
            "groups[0].agents[0].name",
            "duplicate agent name 'a' (also agents[0])",
        ),
        (
            "team: t\nstorage: s\nagents: [{name: g, task: x, max_cycles: 1}]\n"
            "groups:\n  - {name: g, agents: [{name: a, task: x, max_cycles: 1}]}\n",
            "groups[0].name",
            "duplicate group name 'g' (also agents[0])",
        ),
        (
            "team: t\nstorage: s\ngroups:\n  - {name: g, stratgy: one_for_all, agents: [{name: a, task: x, max_cycles: 1}]}\n",
            "groups[0].stratgy",
            "did you mean 'strategy'",
        ),
        (
            "team: t\nstorage: s\ngroups:\n  - {name: g, groups: [], agents: [{name: a, task: x, max_cycles: 1}]}\n",
            "groups[0].groups",
            "unknown key",
        ),
        (
            "team: t\nstorage: s\ngroups:\n  - {name: g, strategy: all, agents: [{name: a, task: x, max_cycles: 1}]}\n",
            "groups[0].strategy",
            "must be one of one_for_one, one_for_all, rest_for_one",
        ),
        ("team: t\nstorage: s\ngroups: {name: g}\n", "groups", "must be a list"),
    ],
    ids=["nothing", "group-empty", "group-no-agents", "dup-agent", "dup-group", "typo", "nested", "strategy", "mapping"],
)
def test_bad_groups_are_one_line_errors(tmp_path: Path, text: str, field: str, phrase: str) -> None:
    err = load_error(write(tmp_path, text))
    assert err.field == field, str(err)
    assert phrase in str(err) and "\n" not in str(err)


def test_ollama_keys_and_host_normalisation(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    text = (
        "team: t\nstorage: s\nllm: {provider: ollama, options: {temperature: 0, num_ctx: 4096}, price_per_1k_tokens: 0.5}\n"
        "agents:\n  - {name: a, task: x, max_cycles: 1}\n"
        "  - {name: b, task: x, max_cycles: 1, llm: {host: 'http://gpu-box', model: 'qwen2.5:7b', request_timeout: 2m}}\n"
    )
    a, b = load_config(write(tmp_path, text)).agents
    assert (a.llm.host, a.llm.model_name, a.llm.request_timeout) == ("http://127.0.0.1:11434", "llama3.1:8b-instruct-q8_0", 120.0)
    assert a.llm.options == {"temperature": 0, "num_ctx": 4096} and a.llm.price_per_1k_tokens == 0.5
    assert (b.llm.host, b.llm.model_name, b.llm.request_timeout) == ("http://gpu-box:11434", "qwen2.5:7b", 120.0)
    monkeypatch.setenv("OLLAMA_HOST", "0.0.0.0:9999")
    assert LLMConfig(provider="ollama").host == "http://0.0.0.0:9999"
    assert LLMConfig(provider="embedded").model_name == "smollm2:135m-instruct"


def test_event_sizes_metrics_and_traces_as_written(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, edited(
        ("events", {"max_bytes": "1.5MiB", "keep": 2}), ("metrics", {"listen": "9464"}),
        ("traces", {"endpoint": "http://127.0.0.1:4318"}))))
    assert (config.events.max_bytes, config.events.keep) == (int(1.5 * 2**20), 2)
    assert config.metrics is not None and config.metrics.listen == "127.0.0.1:9464"
    assert config.traces is not None and config.traces.endpoint == "http://127.0.0.1:4318"
    defaults = load_config(write(tmp_path, edited()))
    assert (defaults.events.max_bytes, defaults.events.keep, defaults.metrics, defaults.traces) == (50 * 10**6, 5, None, None)
    for listen, expected in (("0.0.0.0:9", "0.0.0.0:9"), (":9464", "127.0.0.1:9464"), ("[::1]:9464", "[::1]:9464"), (0, "127.0.0.1:0")):
        assert load_config(write(tmp_path, edited(("metrics", {"listen": listen})))).metrics.listen == expected  # type: ignore[union-attr]


# ---- max_concurrent: one cap per model server, across the tree ---------------------------------


def test_max_concurrent_is_one_cap_per_server_across_the_tree(tmp_path: Path) -> None:
    ollama = {"provider": "ollama", "host": "GPU:11434", "max_concurrent": 4}
    team = edited(("llm", ollama), ("agents.1.llm", {"provider": "openai", "base_url": "http://gpu:11434/v1",
                                                    "model": "m"}))
    data = yaml.safe_load(team)
    data["groups"] = [{"name": "crew", "agents": [{"name": "crew-a", "task": "Count.", "max_cycles": 1,
                                                    "llm": {"provider": "ollama", "host": "http://cpu:1", "max_concurrent": 1}}]}]
    config = TeamConfig.from_mapping(data, source=Path("team.yaml"), base_dir=tmp_path)
    assert config.server_caps() == {"http://gpu:11434": 4, "http://cpu:1": 1}
    # Both APIs of one server, each agent's spec naming it alike: one cap.
    specs = [config.agent_spec(name).llm for name in ("counter-a", "counter-b", "crew-a")]
    assert [(s.server, s.max_concurrent) for s in specs] == [
        ("http://gpu:11434", 4), ("http://gpu:11434", 4), ("http://cpu:1", 1)]
    # A group's sub-supervisor sees only its agents: the cap another agent sets for their server goes with them.
    data["llm"] = {"provider": "ollama", "host": "gpu:11434"}
    data["agents"][0]["llm"] = {"max_concurrent": 4}
    data["groups"][0]["agents"][0]["llm"] = {}
    config = TeamConfig.from_mapping(data, source=Path("team.yaml"), base_dir=tmp_path)
    assert config.group_config("crew").agents[0].llm.max_concurrent == 4
    crew = TeamConfig.from_spec(config.group_config("crew").to_spec())
    assert crew.agent_spec("crew-a").llm.max_concurrent == 4

    write(tmp_path, edited(("llm", ollama), ("agents.1.llm", {"max_concurrent": 0})))
    assert str(load_error(tmp_path / "team.yaml")).endswith("agents[1].llm.max_concurrent: must be >= 1 (got 0)")
    write(tmp_path, edited(("llm", ollama), ("agents.1.llm", {"max_concurrent": 2})))
    assert str(load_error(tmp_path / "team.yaml")).endswith(
        "agents[1].llm.max_concurrent: 2 for server http://gpu:11434, but agents[0].llm.max_concurrent gives it 4: "
        "one server, one cap")


def test_the_embedded_server_is_capped_where_it_serves(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, edited(("llm", {"provider": "embedded", "max_concurrent": 2}))))
    assert config.server_caps() == {}  # not serving yet: no key
    spec = config.agent_spec("counter-a", "http://127.0.0.1:5123").llm
    assert (spec.server, spec.max_concurrent) == ("http://127.0.0.1:5123", 2)
    assert config.server_caps("http://127.0.0.1:5123") == {"http://127.0.0.1:5123": 2}
