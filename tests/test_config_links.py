"""`after:` and `send_to:` are checked before anything starts: unknown names, loops, and what a group sees."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from supervisor.config import ConfigError, TeamConfig
from supervisor.config.links import start_order_loop


def config(tmp_path: Path, agents: list[dict[str, Any]], groups: list[dict[str, Any]] | None = None) -> TeamConfig:
    data: dict[str, Any] = {"team": "t", "storage": "state", "agents": agents}
    if groups:
        data["groups"] = groups
    path = tmp_path / "team.yaml"
    path.write_text(yaml.safe_dump(data))
    return TeamConfig.from_mapping(yaml.safe_load(path.read_text()), source=path)


def agent(name: str, **keys: Any) -> dict[str, Any]:
    return {"name": name, "task": "t", "max_cycles": 1, **keys}


@pytest.mark.parametrize(
    ("agents", "message"),
    [
        ([agent("a", after=["zed"])], "agents[0].after[0]: no agent 'zed' in the team"),
        ([agent("a", send_to=["zed"])], "agents[0].send_to[0]: no agent 'zed' in the team"),
        ([agent("a", after=["a"])], "agents[0].after[0]: 'a' is this agent itself"),
        ([agent("a"), agent("b", after=["a", "a"])], "agents[1].after[1]: 'a' is listed twice"),
        ([agent("a", after=["b"]), agent("b", after=["c"]), agent("c", after=["a"])],
         "agents[0].after: start order loops: a -> b -> c -> a"),
        ([agent("a", after="b")], "agents[0].after"),
    ],
)
def test_bad_links_are_one_line_config_errors(tmp_path, agents, message):
    with pytest.raises(ConfigError) as caught:
        config(tmp_path, agents)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_loop_through_a_group_is_found(tmp_path):
    with pytest.raises(ConfigError, match=r": agents\[0\].after: start order loops: a -> b -> a"):
        config(tmp_path, [agent("a", after=["b"])], [{"name": "g", "agents": [agent("b", after=["a"])]}])


def test_a_groups_agents_see_the_whole_team_and_who_sends_to_them(tmp_path):
    team = config(tmp_path, [agent("a", send_to=["b"]), agent("c", after=["b"])],
                  [{"name": "g", "agents": [agent("b", send_to=["a"], after=["a"]), agent("d")]}])
    group = TeamConfig.from_spec(team.group_config("g").to_spec())  # what the group's process rebuilds
    assert group.team_agents() == ["a", "c", "b", "d"]
    assert group.held_back() == {"b"}
    spec = group.agent_spec("b")
    assert (spec.send_to, spec.senders, "a" in spec.peers) == (("a",), ("a",), True)
    assert group.agent_spec("d").peers == ()  # sends nothing: not told the team's names
    assert TeamConfig.from_spec(team.group_config("g", released={"b"}).to_spec()).held_back() == set()


def test_wider_is_not_a_key_of_the_file(tmp_path):
    with pytest.raises(ConfigError, match="wider: unknown key"):
        path = tmp_path / "team.yaml"
        TeamConfig.from_mapping({"team": "t", "storage": "s", "agents": [agent("a")], "wider": {"agents": ["a"]}},
                                source=path)


@pytest.mark.parametrize(
    ("after", "loop"),
    [
        ({}, []),
        ({"a": ["b"], "b": []}, []),
        ({"a": ["b", "c"], "b": ["c"], "c": []}, []),  # a diamond is not a loop
        ({"a": ["a"]}, ["a"]),
        ({"a": ["b"], "b": ["a"]}, ["a", "b"]),
        ({"a": ["outside"]}, []),
        ({"a": ["b"], "b": [], "c": ["d"], "d": ["c"]}, ["c", "d"]),  # a loop after a part already walked
    ],
)
def test_start_order_loop(after, loop):
    assert start_order_loop(after) == loop


def test_a_long_chain_does_not_exhaust_the_stack():
    chain = {f"a{i}": [f"a{i + 1}"] for i in range(5000)}
    assert start_order_loop(chain) == []
    chain["a4999"] = ["a0"]
    assert len(start_order_loop(chain)) == 5000


# ---- the start order at run time ------------------------------------------------------------

class _Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def emit(self, event: str, **fields: Any) -> None:
        self.events.append((event, fields))


def _order(tmp_path: Path, *, root: bool = True):  # type: ignore[no-untyped-def]
    from supervisor.runtime.start_order import StartOrder

    team = config(tmp_path, [agent("a"), agent("b"), agent("c", after=["a", "b"]), agent("d", after=["c"])])
    released: list[str] = []
    return StartOrder(team, _Log(), released.append, is_root=root), released  # type: ignore[arg-type]


def test_an_agent_starts_once_all_its_after_agents_completed_and_only_once(tmp_path):
    order, released = _order(tmp_path)
    assert [n for n in "abcd" if order.holds(n)] == ["c", "d"]
    order.agent_completed("a", stopping=False)
    assert released == []
    order.agent_completed("b", stopping=False)
    assert released == ["c"] and not order.holds("c")
    order.agent_completed("b", stopping=False)  # a restart of b completing again starts nothing twice
    order.agent_completed("a", stopping=False)
    assert released == ["c"]
    order.agent_completed("c", stopping=False)
    assert released == ["c", "d"] and order.never_started() == {}
    assert [(f["agent_id"], f["after"]) for e, f in order.log.events if e == "agent_released"] == [
        ("c", ["a", "b"]), ("d", ["c"])]


def test_nothing_is_released_while_the_team_stops_and_the_rest_is_reported(tmp_path):
    order, released = _order(tmp_path)
    order.agent_completed("a", stopping=False)
    order.agent_completed("b", stopping=True)
    assert released == []
    assert order.never_started() == {"c": [], "d": ["c"]}


def test_an_operators_start_overrides_the_order(tmp_path):
    order, released = _order(tmp_path)
    order.started_by_hand("c")
    assert not order.holds("c")
    order.agent_completed("a", stopping=False)
    order.agent_completed("b", stopping=False)
    assert released == [] and order.never_started() == {"d": ["c"]}


def test_a_group_holds_its_agents_for_the_roots_word_and_never_releases_them_itself(tmp_path):
    from supervisor.runtime.start_order import StartOrder

    team = config(tmp_path, [agent("a")], [{"name": "g", "agents": [agent("b", after=["a"]), agent("e")]}])
    group = TeamConfig.from_spec(team.group_config("g").to_spec())
    released: list[str] = []
    order = StartOrder(group, _Log(), released.append, is_root=False)  # type: ignore[arg-type]
    assert order.holds("b") and not order.holds("e")
    order.agent_completed("a", stopping=False)
    assert released == [] and order.holds("b")
    assert order.added("x", ["a"]) is False  # a group adds nothing by itself


def test_an_added_agent_waits_only_for_agents_not_completed(tmp_path):
    order, _ = _order(tmp_path)
    order.agent_completed("a", stopping=False)
    assert order.added("x", ["a"]) is False
    assert order.added("y", ["a", "b"]) is True and order.holds("y")


def test_a_team_with_real_prices_and_a_group_rebuilds_in_the_groups_process(tmp_path):
    data: dict[str, Any] = {"team": "t", "storage": "state",
                            "llm": {"provider": "scripted", "price": {"input_per_1m": 0.15, "output_per_1m": 0.6}},
                            "agents": [agent("a")], "groups": [{"name": "g", "agents": [agent("b")]}]}
    path = tmp_path / "team.yaml"
    team = TeamConfig.from_mapping(data, source=path)
    group = TeamConfig.from_spec(team.group_config("g").to_spec())
    assert group.agent("b").llm.price is not None and group.agent("b").llm.price.input_per_1m == 0.15
    with pytest.raises(ConfigError, match="not both"):
        TeamConfig.from_mapping({**data, "llm": {**data["llm"], "price_per_1k_tokens": 0.002}}, source=path)
