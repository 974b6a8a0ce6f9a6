"""`backend: ray` before anything starts: its keys checked in one line each, and what cannot run here refused.

No Ray is started here: these are the checks a user meets first.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from supervisor.config import load_config
from supervisor.config.errors import ConfigError
from supervisor.errors import SupervisorError


def _team(tmp_path: Path, **top: object) -> Path:
    data = {"team": "t", "storage": "state", "backend": "ray",
            "agents": [{"name": "a1", "task": "count", "max_cycles": 2}, {"name": "a2", "task": "count", "max_cycles": 2}]}
    data.update(top)
    path = tmp_path / "team.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("keys, message", [
    ({"backend": "rey"}, "backend: must be one of local, ray (got 'rey')"),
    ({"ray": {"num_cpus": -1}}, "ray.num_cpus: must be >= 0 (got -1)"),
    ({"ray": {"resources": {"gpu_x": -2}}}, "ray.resources: gpu_x must be between 0 and 1e+06 (got -2.0)"),
    ({"ray": {"adress": "auto"}}, "ray.adress: unknown key (did you mean 'address'?)"),
    ({"ray": {"address": ""}}, "ray.address"),
])
def test_a_bad_ray_key_is_one_line(tmp_path, keys, message):
    with pytest.raises(ConfigError) as info:
        load_config(_team(tmp_path, **keys))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_placement_is_the_agent_s_own_else_the_team_s_else_anywhere(tmp_path):
    path = _team(tmp_path, ray={"address": "auto", "num_cpus": 0.5, "resources": {"big": 1}})
    data = yaml.safe_load(path.read_text())
    data["agents"][0]["ray"] = {"num_gpus": 1, "node": "10.0.0.7"}
    path.write_text(yaml.safe_dump(data))
    config = load_config(path)
    own, team = config.ray_placement("a1"), config.ray_placement("a2")
    assert (own.num_gpus, own.node, own.num_cpus, own.resources) == (1, "10.0.0.7", 0.0, {})
    assert (team.num_cpus, team.resources, team.node) == (0.5, {"big": 1}, None)
    plain = load_config(_team(tmp_path, backend="local")).ray_placement("a1")
    assert (plain.num_cpus, plain.num_gpus, plain.node) == (0.0, 0.0, None)


def test_a_group_runs_its_agents_as_a_local_tree_on_its_node(tmp_path):
    path = _team(tmp_path, groups=[{"name": "crew", "ray": {"num_cpus": 1},
                                    "agents": [{"name": "g1", "task": "count", "max_cycles": 1}]}])
    config = load_config(path)
    assert config.ray_placement("crew").num_cpus == 1
    spec = config.group_spec("crew", "workers.entry:run_worker", None, set())
    assert spec.config["backend"] == "local" and spec.config["ray"] is None


def test_backend_ray_without_ray_installed_is_one_line_naming_the_install(tmp_path, monkeypatch):
    from supervisor.runtime.run import _backend_for

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(SupervisorError) as info:
        _backend_for(load_config(_team(tmp_path)))
    assert info.value.exit_code == 2
    assert str(info.value) == "backend: ray needs Ray, which is not installed: pip install 'agent-supervisor[ray]'"


def test_the_embedded_model_is_refused_on_a_cluster_the_nodes_cannot_reach_it_from(tmp_path):
    from supervisor.runtime.run import _backend_for

    config = load_config(_team(tmp_path, ray={"address": "10.0.0.2:6379"}, llm={"provider": "embedded"}))
    with pytest.raises(SupervisorError) as info:
        _backend_for(config)
    assert info.value.exit_code == 2 and "provider embedded" in str(info.value) and "\n" not in str(info.value)


def test_the_local_backend_is_the_default(tmp_path):
    from supervisor.runtime.backend import LocalBackend
    from supervisor.runtime.run import _backend_for

    assert load_config(_team(tmp_path, backend="local")).backend == "local"
    assert isinstance(_backend_for(load_config(_team(tmp_path, backend="local"))), LocalBackend)


def test_a_node_name_that_is_not_a_plain_token_is_refused_and_shown_escaped(tmp_path):
    path = _team(tmp_path)
    data = yaml.safe_load(path.read_text())
    data["agents"][0]["ray"] = {"node": "10.0.0.7\x1b[2J"}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "agents[0].ray.node: invalid Ray name" in str(info.value) and "\x1b" not in str(info.value)


class _NodesThatDoNotShare:
    """A stand-in for Ray with two nodes, one of which writes its probe into a folder of its own.

    A fake, because the real thing cannot be made here: every node of a test
    cluster on one machine sees the same file system. The probe task itself is
    the real one (`ray_host.probe_storage`), run here for each "node".
    """

    def __init__(self, elsewhere: Path) -> None:
        self.elsewhere = elsewhere

    def nodes(self) -> list[dict[str, object]]:
        return [{"NodeID": "aa" * 28, "Alive": True, "NodeManagerAddress": "10.0.0.1"},
                {"NodeID": "bb" * 28, "Alive": True, "NodeManagerAddress": "10.0.0.2"}]

    def remote(self, function):  # noqa: ANN001 - Ray's decorator, as used by probe_storage
        fake = self

        class Task:
            def options(self, **options):  # noqa: ANN003
                node = options["scheduling_strategy"].node_id
                return _Call(function, fake.elsewhere if node.startswith("bb") else None)

        return Task()

    def get(self, ref, timeout=None):  # noqa: ANN001
        return ref


class _Call:
    def __init__(self, function, elsewhere) -> None:  # noqa: ANN001
        self.function, self.elsewhere = function, elsewhere

    def remote(self, folder: str, token: str):  # noqa: ANN201
        return self.function(str(self.elsewhere) if self.elsewhere else folder, token)


@pytest.mark.e2e  # not a process started, but Ray imported: half a second, too slow for the unit loop
def test_a_node_that_does_not_see_storage_is_named_in_one_line_exit_3(tmp_path):
    pytest.importorskip("ray")
    from supervisor.runtime.ray_cluster import probe_storage

    storage, elsewhere = tmp_path / "state", tmp_path / "node-b-local"
    storage.mkdir()
    elsewhere.mkdir()
    with pytest.raises(SupervisorError) as info:
        probe_storage(_NodesThatDoNotShare(elsewhere), storage)
    assert info.value.exit_code == 3
    assert str(info.value).startswith(f"ray: node {'bb' * 6} (10.0.0.2) does not see storage {storage}")
    assert not list(storage.iterdir())  # the probe that came back was removed
