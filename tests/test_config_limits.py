"""Configs that validate must run: what cannot be sent or read is refused at load, in one line.

Each case here once passed validation and then crashed the run, or never
finished validating: a Start frame over the wire limit, an integer msgpack
cannot carry, an alias bomb, a FIFO given as the config file.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from config_fuzz import ALIAS_BOMB
from protocol import MAX_FRAME_BYTES, Start, decode_payload, encode
from protocol.specs import AgentSpec, GroupSpec
from supervisor.config import ConfigError, TeamConfig, load_config
from supervisor.errors import UserError

REPO = Path(__file__).resolve().parents[1]
HEAD = "team: t\nstorage: s\n"
ONE = HEAD + "agents:\n  - name: a\n    task: x\n    max_cycles: 1\n"


def write(tmp_path: Path, text: str, name: str = "team.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def refused(path: Path | str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert "\n" not in text and text.isprintable(), text
    return text


def data(**agent: Any) -> dict[str, Any]:
    return {"team": "t", "storage": "s", "agents": [{"name": "a", "task": "x", "max_cycles": 1, **agent}]}


def refused_mapping(mapping: dict[str, Any], tmp_path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        TeamConfig.from_mapping(mapping, source=tmp_path / "t.yaml")
    return info.value


def start_frames(config: TeamConfig) -> list[bytes]:
    """Every Start the runtime would send for this config, encoded with the real encoder."""
    frames = [encode(Start(agent=a.name, spec=config.agent_spec(a.name).to_wire())) for a in config.all_agents()]
    frames += [encode(Start(agent=g.name, spec=config.group_spec(g.name, "workers.entry:run_worker").to_wire()))
               for g in config.groups]
    return frames


# ---- Start frames ---------------------------------------------------------------


def test_a_task_too_big_for_one_frame_is_named_at_load(tmp_path: Path) -> None:
    err = refused_mapping(data(task="x" * (MAX_FRAME_BYTES + 10)), tmp_path)
    assert err.field == "agents[0].task"
    assert re.fullmatch(r"too large: agent 'a' would be started with a .*message \(at most \d+\)", err.problem), err.problem


def test_a_task_just_under_the_limit_loads_and_its_start_is_sent_and_read_back(tmp_path: Path) -> None:
    config = TeamConfig.from_mapping(data(task="x" * (MAX_FRAME_BYTES - 4096)), source=tmp_path / "t.yaml")
    (frame,) = start_frames(config)
    message = decode_payload(frame[4:])
    assert isinstance(message, Start) and AgentSpec.from_wire(message.spec).task == config.agents[0].task


def test_a_group_too_big_as_a_whole_names_its_biggest_part(tmp_path: Path) -> None:
    """Each agent fits on its own; the group's Start holds them all, and the team's prompt in every one."""
    prompt = "p" * (MAX_FRAME_BYTES // 4)
    group = {"name": "g", "agents": [{"name": f"a{i}", "task": "x", "max_cycles": 1} for i in range(5)]}
    mapping = {"team": "t", "storage": "s", "llm": {"system_prompt": prompt}, "groups": [group]}
    err = refused_mapping(mapping, tmp_path)
    assert err.field == "llm.system_prompt" and "group 'g' would be started" in err.problem
    group["agents"] = group["agents"][:2]
    config = TeamConfig.from_mapping(mapping, source=tmp_path / "t.yaml")
    assert all(len(frame) <= MAX_FRAME_BYTES for frame in start_frames(config))
    (group_frame,) = start_frames(config)[-1:]
    assert GroupSpec.from_wire(decode_payload(group_frame[4:]).spec).config["team"] == "g"  # type: ignore[attr-defined]


def test_a_big_value_repeated_by_aliases_is_caught_by_its_frame_not_by_memory(tmp_path: Path) -> None:
    big = "y" * 300_000
    text = ONE + f"    params:\n      blob: &b {big}\n      copies: [" + ", ".join(["*b"] * 20) + "]\n"
    err = refused(write(tmp_path, text))
    assert "agents[0].params: too large: agent 'a' would be started with a" in err


@pytest.mark.parametrize(
    ("params", "phrase"),
    [
        ("{n: 18446744073709551616}", "agents[0].params: must hold integers that fit in 64 bits (got 18446744073709551616 at n)"),
        ("{n: -9223372036854775809}", "must hold integers that fit in 64 bits"),
        ("{n: [" + "9" * 5000 + "]}", "line 7: an integer of 5000 characters is too large"),
        ("{n: " + "[" * 20 + "]" * 20 + "}", "agents[0].params: must not nest deeper than 16 levels at n"),
        ('{n: "\\ud800"}', "line 7: \\ud800 is half of a surrogate pair, not a character"),
        ("{when: 2024-13-45}", "line 7: cannot read '2024-13-45' as timestamp: month must be in 1..12"),
    ],
)
def test_params_a_worker_could_not_receive_are_refused(tmp_path: Path, params: str, phrase: str) -> None:
    assert phrase in refused(write(tmp_path, ONE + f"    params: {params}\n"))


def test_unicode_that_cannot_be_encoded_is_refused_by_name_when_given_as_data(tmp_path: Path) -> None:
    err = refused_mapping(data(task="half a pair: \ud800"), tmp_path)
    assert err.field == "agents[0]" and err.problem.startswith("cannot be sent to its worker: cannot encode start")


@pytest.mark.parametrize(
    ("line", "field", "phrase"),
    [
        ("hang_timeout: 1000000h", "hang_timeout", "must be at most 24 days"),
        ("timeout: 577h", "timeout", "must be at most 24 days"),
        ("shutdown: {graceful_timeout: 400d}", "shutdown.graceful_timeout", "invalid duration"),
        ("checkpoint: {keep: 100000000000000000000}", "checkpoint.keep", "must be <= 1000000"),
        ("checkpoint: {every: 10000000}", "checkpoint.every", "must be <= 1000000"),
        ("hooks: [{on: after_cycle, call: 'os:getcwd', priority: 9223372036854775808}]", "hooks[0].priority",
         "must be <= 9223372036854775807"),
        ("llm: {cost_per_reply: 1.0e+308}", "llm.cost_per_reply", "must be <= 1000000000"),
        ("llm: {options: {num_ctx: many}}", "llm.options", "num_ctx must be an integer (got the string 'many')"),
        ("llm: {options: {num_predict: 1.5}}", "llm.options", "num_predict must be an integer"),
        ("llm: {options: {num_ctx: 0}}", "llm.options", "num_ctx must be between 1 and 2147483647"),
        ('llm: {host: "http://h:1/\\e[2J"}', "llm.host", "invalid host 'http://h:1/\\x1b[2J' (control characters)"),
    ],
)
def test_numbers_the_runtime_cannot_use_are_refused(tmp_path: Path, line: str, field: str, phrase: str) -> None:
    assert f"team.yaml: {field}: {phrase}" in refused(write(tmp_path, ONE + line + "\n"))


# ---- YAML that would never finish ---------------------------------------------------

BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_an_alias_bomb_is_refused_while_it_is_read(tmp_path: Path) -> None:
    """523 bytes that stand for 10^9 nodes: refused at the level where it grows too large."""
    text = ONE + "    params:\n" + "".join(f"      {line}\n" for line in BOMB.splitlines())
    assert "team.yaml: line 13: this value expands to more than 100000 YAML nodes (aliases included)" in refused(write(tmp_path, text))


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path: Path) -> None:
    assert "line 7: alias *p refers to a node that contains it" in refused(write(tmp_path, ONE + "    params: &p {me: *p}\n"))


def test_merge_keys_and_ordinary_aliases_still_load(tmp_path: Path) -> None:
    text = (
        HEAD + "agents:\n  - &first {name: a, task: x, max_cycles: 2, params: {tags: &t [p, q]}}\n"
        "  - <<: *first\n    name: b\n    params: {tags: *t}\n"
    )
    config = load_config(write(tmp_path, text))
    assert [(a.name, a.max_cycles, a.params) for a in config.agents] == [("a", 2, {"tags": ["p", "q"]}), ("b", 2, {"tags": ["p", "q"]})]


def test_nesting_past_the_limit_is_refused_without_exhausting_the_stack(tmp_path: Path) -> None:
    assert "line 7: nested deeper than 64 levels" in refused(write(tmp_path, ONE + "    params: {x: " + "[" * 5000 + "]" * 5000 + "}\n"))


# ---- files that are not config files ------------------------------------------------


def test_a_fifo_is_refused_at_once_even_with_nobody_writing(tmp_path: Path) -> None:
    fifo = tmp_path / "team.yaml"
    os.mkfifo(fifo)
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(refused(fifo)), daemon=True)
    reader.start()
    reader.join(30)
    if reader.is_alive():  # unblock the reader before failing, so the test run can end
        with open(fifo, "w"):
            pass
        pytest.fail("load_config blocked on a FIFO")
    assert result == [f"{fifo}: cannot read: not a regular file (a pipe, device or socket)"]


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_a_device_is_refused_not_read_forever(device: str) -> None:
    if not os.path.exists(device):
        pytest.skip(f"no {device} here")
    assert refused(device) == f"{device}: cannot read: not a regular file (a pipe, device or socket)"


def test_a_file_too_large_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    from supervisor.config.loader import MAX_CONFIG_BYTES

    path = tmp_path / "team.yaml"
    with path.open("wb") as stream:
        stream.truncate(MAX_CONFIG_BYTES + 1)  # sparse: no disk used
    assert refused(path) == f"{path}: the file is too large ({MAX_CONFIG_BYTES + 1} bytes; at most {MAX_CONFIG_BYTES})"


# ---- hooks written as the README writes them -----------------------------------------


def test_a_bare_on_key_is_the_hook_point_not_yaml_true(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ONE + "hooks:\n  - on: after_cycle\n    call: os:getcwd\n"))
    assert [(h.on, h.call) for h in config.hooks] == [("after_cycle", "os:getcwd")]
    assert "hooks[0].On: unknown key (expected one of: on, call, priority, timeout)" in refused(write(tmp_path, ONE + "hooks:\n  - On: after_cycle\n    call: os:getcwd\n"))
    assert "hooks[0].true: unknown key" in refused(write(tmp_path, ONE + "hooks:\n  - yes: after_cycle\n    call: os:getcwd\n"))


def test_the_documented_configuration_example_loads(tmp_path: Path) -> None:
    """The configuration reference's full example, with its modules beside it: every key as documented loads."""
    readme = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", readme, flags=re.DOTALL)
    (example,) = [b for b in blocks if "hooks:" in b and "groups:" in b]
    for module in ("my_hooks", "my_agents"):  # the user's own modules, beside the config
        (tmp_path / f"{module}.py").write_text("")
    config = load_config(write(tmp_path, example))
    assert [(h.on, h.call, h.priority) for h in config.hooks] == [("after_cycle", "my_hooks:notify", 10)]
    assert all(len(frame) <= MAX_FRAME_BYTES for frame in start_frames(config))
    assert yaml.safe_load(example)["hooks"][0].get(True) == "after_cycle"  # plain YAML 1.1 would have read `true:`


# ---- messages that quote the file -----------------------------------------------------


@pytest.mark.parametrize(
    "lines",
    [
        'team: "red\\e[31malert"\nstorage: s',
        'team: t\nstorage: s\nllm: {"\\e]0;owned\\a": 1}',
        'team: t\nstorage: s\nllm: {host: "http://h:\\e[2J/"}',
        'team: t\nstorage: s\n"\\u202ekey": 1',
        'team: t\nstorage: s\nllm: {provider: "\\u202eollama"}',
    ],
)
def test_a_message_quoting_the_file_carries_no_control_characters(tmp_path: Path, lines: str) -> None:
    text = refused(write(tmp_path, lines + "\nagents: [{name: a, task: x, max_cycles: 1}]\n"))
    assert "\x1b" not in text and "\u202e" not in text and "\x07" not in text
    assert "\\x1b" in text or "\\u202e" in text or "\\x07" in text, text


def test_config_error_escapes_what_it_is_given_and_stays_a_user_error() -> None:
    err = ConfigError("x\x1b.yaml", "llm.\x9bkey", "got 'a\u202eb'")
    assert str(err) == "x\\x1b.yaml: llm.\\x9bkey: got 'a\\u202eb'"
    assert isinstance(err, UserError)


FAST_PATH_CASES = [
    "team: t\nhooks: [{on: after_cycle, call: 'os:getcwd'}]\n",  # `on:` as a string, both ways
    "a: &x {b: 1}\nc: [*x, *x]\nd: {<<: *x, e: 2}\n",  # aliases and a merge key
    "{on: 1, 'on': 2}",  # the same key twice once `on` is a string
    "a: 1\nb: 2\na: 3\n",  # a duplicate key
    "a: &r [*r]",  # an alias inside its own anchor
    "x: " + ALIAS_BOMB,  # a billion nodes in a few hundred bytes
    'x: "\\ud800"',  # half a surrogate pair
    "x: " + "9" * 200,  # an integer too long
    "x: " + "[" * 65 + "]" * 65,  # deeper than MAX_YAML_DEPTH
    "x: " + "[" * 63 + "]" * 63,  # just within it
    "x: 1\n---\ny: 2\n",  # two documents
    "",  # none
]


@pytest.mark.parametrize("text", FAST_PATH_CASES)
def test_libyamls_fast_path_refuses_what_the_python_loader_refuses_and_reads_the_rest_the_same(text: str) -> None:
    """A config is parsed in C and its graph checked against the rules; it may refuse more, never less.

    (Every fuzzed config of config_fuzz is read both ways too, in test_config_fuzz.)
    """
    import config_fuzz
    from supervisor.config import loader

    if loader._CSafeLoader is None:
        pytest.skip("this PyYAML has no LibYAML: the Python loader is the only one")
    assert config_fuzz.readings_disagree(text) is None


def test_a_thousand_agent_config_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reason for the fast path: a big, clean team is read by LibYAML, not by PyYAML's Python scanner."""
    from supervisor.config import loader

    if loader._CSafeLoader is None:
        pytest.skip("this PyYAML has no LibYAML")
    text = "team: t\nstorage: s\nagents:\n" + "".join(f"  - {{name: a{i}, task: x, max_cycles: 1}}\n" for i in range(1000))
    monkeypatch.setattr(loader, "_StrictLoader", None)  # the Python loader is not asked
    data = loader._parse_yaml(text, "team.yaml")
    assert len(data["agents"]) == 1000 and data["agents"][999] == {"name": "a999", "task": "x", "max_cycles": 1}


@pytest.mark.parametrize("over", [0, 1])
def test_the_node_and_text_limits_count_aliases_exactly_on_both_paths(over: int) -> None:
    """Exactly at each limit a document loads; one node or one character more and it is refused, both ways."""
    from supervisor.config import loader
    from supervisor.config.loader import MAX_YAML_NODES, MAX_YAML_TEXT

    # Nodes: the mapping 1, three keys 3, list a 1 + 999, list b 1 + 98 x 1000 (aliases counted whole), list c 1 + n.
    nodes = "a: &a [" + ", ".join(["x"] * 999) + "]\nb: [" + ", ".join(["*a"] * 98) + "]\nc: ["
    nodes += ", ".join(["y"] * (MAX_YAML_NODES - 99_006 + over)) + "]\n"
    # Characters: the three keys, a 20,000-character value, 835 copies of it by alias, and the rest.
    blob = "q" * 20_000
    text = f"a: &a {blob}\nb: [" + ", ".join(["*a"] * 835) + "]\nc: " + "r" * (MAX_YAML_TEXT - 16_720_003 + over) + "\n"
    loaders = [loader._StrictLoader] + ([loader._FastLoader] if loader._CSafeLoader is not None else [])
    for document in (nodes, text):
        for kind in loaders:
            if over:
                with pytest.raises(Exception):  # noqa: B017 - the fast path's refusal is any exception
                    yaml.load(document, Loader=kind)
            else:
                assert sorted(yaml.load(document, Loader=kind)) == ["a", "b", "c"]
    if over:
        with pytest.raises(ConfigError, match=f"line 1: this value expands to more than {MAX_YAML_TEXT} characters"):
            loader._parse_yaml(text, "team.yaml")


def test_a_config_with_a_tab_is_read_by_the_python_loader_alone() -> None:
    """LibYAML reads a tab inside a plain value that PyYAML's scanner refuses: such a file never takes the fast path."""
    from supervisor.config import loader

    text = "team: t\nhooks: [{on: after_cycle, call: os.path:joi\tn}]\n"
    with pytest.raises(ConfigError, match="YAML syntax error at line 2"):
        loader._parse_yaml(text, "team.yaml")
