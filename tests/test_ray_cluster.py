"""The Ray backend on a real three-node cluster (`ray.cluster_utils.Cluster`: three raylets on this machine).

The team joins the cluster by `ray.address`; its agents are spread over the
nodes; a node removed mid-run takes its agents with it, and they are restarted
on the others from their checkpoints, exactly once; the chaos trials run against
the cluster too. The cluster lives on after every run: the team leaves it as it
found it.
"""

from __future__ import annotations

import os
from typing import Any, Iterator

import pytest

from chaos import run_chaos
from harness import by_event, wait_gone

ray = pytest.importorskip("ray", reason="the Ray backend's tests need `pip install '.[ray]'`")
from ray.cluster_utils import Cluster  # noqa: E402

pytestmark = pytest.mark.e2e
STORE = 100 * 1024 * 1024  # bytes of object store per node: frames never use it
CHAOS_TRIALS = 20


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A head and two worker nodes, each with a resource naming it, for the whole module."""
    os.makedirs("/tmp/ray", exist_ok=True)  # Cluster's own temp folder: it fails without it
    saved = {key: os.environ.get(key) for key in ("RAY_AUTH_MODE", "RAY_USAGE_STATS_ENABLED")}
    os.environ["RAY_AUTH_MODE"] = "disabled"  # a test's own cluster on loopback: the runs inherit this
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    made = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": STORE,
                                                         "resources": {"node0": 1}, "include_dashboard": False})
    for index in (1, 2):
        made.add_node(num_cpus=1, object_store_memory=STORE, resources={f"node{index}": 1})
    made.wait_for_nodes()
    try:
        yield made
    finally:
        made.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _on(team: Any, cluster: Any) -> None:
    team.data["backend"] = "ray"
    team.data["ray"] = {"address": cluster.address}
    team.write()


def _node_ids(cluster: Any) -> dict[str, Any]:
    """node id -> its Cluster node, for the nodes alive now."""
    return {node.node_id: node for node in cluster.list_all_nodes()}


def test_agents_are_spread_over_the_nodes_and_the_cluster_outlives_the_run(make_team, cluster):
    team = make_team(agents=6, latency=0.05, max_cycles=4)
    _on(team, cluster)
    run = team.start()
    assert run.wait() == 0, run.output
    started = by_event(run.new_events(), "worker_started")
    nodes = {e["agent_id"]: e["node"] for e in started}
    assert set(nodes) == set(team.names)
    assert set(nodes.values()) <= set(_node_ids(cluster))
    assert len(set(nodes.values())) >= 2, nodes  # spread, not all on the head
    for name in team.names:
        assert team.assert_exactly_once(name, 4).status == "completed"
    [announced] = by_event(run.new_events(), "supervisor_started")
    assert announced["backend"] == "ray" and announced["ray_nodes"] == 3
    assert cluster.remaining_processes_alive()  # the team left; the cluster lives on


def test_an_agent_placed_on_a_node_runs_there(make_team, cluster):
    team = make_team(agents=2, latency=0.05, max_cycles=2)
    _on(team, cluster)
    wanted = next(node_id for node_id, node in _node_ids(cluster).items() if node is not cluster.head_node)
    team.data["agents"][0]["ray"] = {"node": wanted}
    team.data["agents"][1]["ray"] = {"resources": {"node0": 0.1}}  # the head's own resource
    team.write()
    run = team.start()
    assert run.wait() == 0, run.output
    nodes = {e["agent_id"]: e["node"] for e in by_event(run.new_events(), "worker_started")}
    assert nodes[team.names[0]] == wanted
    assert nodes[team.names[1]] == cluster.head_node.node_id


def test_a_removed_node_s_agents_restart_on_the_others_exactly_once(make_team, cluster):
    team = make_team(agents=6, latency=0.1, max_cycles=25)
    _on(team, cluster)
    run = team.start()
    run.wait_for(lambda ev: all(len(by_event(ev, "checkpoint_saved", n)) >= 3 for n in team.names), "3 checkpoints each")
    started = {e["agent_id"]: e for e in by_event(run.new_events(), "worker_started")}
    nodes = _node_ids(cluster)
    hosting = [node_id for node_id in {e["node"] for e in started.values()} if nodes[node_id] is not cluster.head_node]
    assert hosting, started  # spread: some agents run off the head
    victim = hosting[0]
    doomed = sorted(name for name, e in started.items() if e["node"] == victim)
    cluster.remove_node(nodes[victim])
    try:
        wait_gone([started[name]["pid"] for name in doomed], 10)
        assert run.wait() == 0, run.output
        events = run.new_events()
        for name in doomed:
            [exited] = [e for e in by_event(events, "worker_exited", name) if e["status"] == "failed"]
            assert "lost with its Ray node" in exited["reason"]
            [restarted] = by_event(events, "worker_restarted", name)
            again = by_event(events, "worker_started", name)[-1]
            assert again["resumed"] is True and again["cycle"] >= 3 and again["node"] != victim
        assert {e["agent_id"] for e in by_event(events, "worker_restarted")} == set(doomed)  # nobody else
        for name in team.names:
            assert team.assert_exactly_once(name, 25).status == "completed"
    finally:
        cluster.add_node(num_cpus=1, object_store_memory=STORE)  # the module's cluster keeps three nodes
        cluster.wait_for_nodes()


def test_chaos_on_a_ray_cluster(make_team, cluster, capsys):
    injected, held = run_chaos(make_team, CHAOS_TRIALS, 20261130,
                               team_keys={"backend": "ray", "ray": {"address": cluster.address}},
                               settle=10.0, runs=(1, 1))
    with capsys.disabled():
        print(f"\nchaos on a 3-node Ray cluster: {CHAOS_TRIALS} trials; injected {dict(sorted(injected.items()))}; "
              f"held {dict(sorted(held.items()))}")
    assert held["exactly_once"] == CHAOS_TRIALS
