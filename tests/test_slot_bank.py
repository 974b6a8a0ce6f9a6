"""The root's slot bank: first come, first served per server, a withdrawn wait, the slots of an exited worker.

The bank runs as in the supervisor, writing a real event log; what it sends
to workers is recorded by the test in place of their pipes.
"""

from __future__ import annotations

import json
from pathlib import Path

from protocol import Message, SlotGrant, SlotRelease, SlotRequest
from supervisor.runtime.events import EventLog
from supervisor.runtime.slots import SlotBank

GPU, CPU = "http://gpu:11434", "http://cpu:8000"


def bank(tmp_path: Path, caps: dict[str, int], reachable: bool = True) -> tuple[SlotBank, list[tuple[str, int]], EventLog]:
    granted: list[tuple[str, int]] = []

    def send(agent: str, message: Message) -> bool:
        assert isinstance(message, SlotGrant)
        if reachable:
            granted.append((agent, message.request_id))
        return reachable

    log = EventLog(tmp_path)
    return SlotBank(log, send, lambda: caps), granted, log


def events(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]


def test_slots_go_first_come_first_served_and_only_waits_are_logged(tmp_path):
    slots, granted, log = bank(tmp_path, {GPU: 2})
    for agent in "abcde":
        slots.request(agent, SlotRequest(server=GPU, request_id=1))
    slots.request("f", SlotRequest(server=CPU, request_id=1))  # another server, no cap: at once
    assert granted == [("a", 1), ("b", 1), ("f", 1)]
    slots.release("b", SlotRelease(server=GPU, request_id=1))
    slots.release("a", SlotRelease(server=GPU, request_id=1))
    assert granted[3:] == [("c", 1), ("d", 1)] and slots.in_flight(GPU) == 2
    slots.request("a", SlotRequest(server=GPU, request_id=2))  # behind e, who came first
    slots.release("c", SlotRelease(server=GPU, request_id=1))
    assert granted[5:] == [("e", 1)]
    log.close()
    lines = events(tmp_path)
    assert [e["agent_id"] for e in lines if e["event"] == "agent_queued"] == ["c", "d", "e", "a"]
    assert [e["agent_id"] for e in lines if e["event"] == "slot_granted"] == ["c", "d", "e"]


def test_a_withdrawn_wait_and_an_exited_worker_free_their_places(tmp_path):
    slots, granted, log = bank(tmp_path, {GPU: 1})
    for agent in "abc":
        slots.request(agent, SlotRequest(server=GPU, request_id=1))
    slots.release("b", SlotRelease(server=GPU, request_id=1))  # b's wait ended (a stop): it is not served
    slots.gone("a")  # a's worker died holding the slot
    assert granted == [("a", 1), ("c", 1)]
    slots.release("a", SlotRelease(server=GPU, request_id=1))  # a stale release changes nothing
    slots.request("d", SlotRequest(server=GPU, request_id=1))
    assert granted == [("a", 1), ("c", 1)] and slots.in_flight(GPU) == 1
    log.close()


def test_a_grant_nobody_can_receive_holds_no_slot(tmp_path):
    slots, granted, log = bank(tmp_path, {GPU: 1}, reachable=False)
    slots.request("a", SlotRequest(server=GPU, request_id=1))
    assert slots.in_flight(GPU) == 0
    log.close()


A, B = "http://gpu-a:11434", "http://gpu-b:11434"


class Clock:
    """The bank's monotonic clock, moved by the test: a cool-down runs out without a sleep."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def pool_bank(tmp_path: Path, caps: dict[str, int]) -> tuple[SlotBank, list[tuple[str, str]], EventLog, Clock]:
    granted: list[tuple[str, str]] = []

    def send(agent: str, message: Message) -> bool:
        assert isinstance(message, SlotGrant)
        granted.append((agent, message.server))
        return True

    log, clock = EventLog(tmp_path), Clock()
    return SlotBank(log, send, lambda: caps, cool_down=30.0, clock=clock), granted, log, clock


def ask(bank_: SlotBank, agent: str, request_id: int = 1) -> None:
    bank_.request(agent, SlotRequest(server=A, request_id=request_id, pool=[A, B]))


def test_a_pool_call_goes_to_the_server_with_the_fewest_calls_in_flight_across_the_tree(tmp_path):
    slots, granted, log, _ = pool_bank(tmp_path, {})  # no cap: still counted, to choose
    for agent in "abcd":
        ask(slots, agent)
    assert granted == [("a", A), ("b", B), ("c", A), ("d", B)]
    slots.release("a", SlotRelease(server=A, request_id=1))
    slots.release("c", SlotRelease(server=A, request_id=1))
    ask(slots, "e")
    assert granted[-1] == ("e", A) and slots.in_flight(A) == 1 and slots.in_flight(B) == 2
    log.close()


def test_caps_apply_per_server_of_a_pool(tmp_path):
    slots, granted, log, _ = pool_bank(tmp_path, {A: 1, B: 1})
    for agent in "abc":
        ask(slots, agent)
    assert granted == [("a", A), ("b", B)]  # c waits: both servers are full
    slots.release("b", SlotRelease(server=B, request_id=1))
    assert granted[-1] == ("c", B)
    log.close()
    assert [e["agent_id"] for e in events(tmp_path) if e["event"] == "agent_queued"] == ["c"]


def test_a_failed_server_rests_for_a_cool_down_doubling_and_is_tried_again_after_it(tmp_path):
    slots, granted, log, clock = pool_bank(tmp_path, {})
    ask(slots, "a")
    slots.release("a", SlotRelease(server=A, request_id=1, failed=True))
    for n in range(2, 5):  # while A rests, every call goes to B, however busy B is
        ask(slots, "a", n)
    assert [server for _, server in granted[1:]] == [B, B, B]
    clock.now += 30.0  # the cool-down is over: the next call tries A again
    ask(slots, "b")
    assert granted[-1] == ("b", A)
    slots.release("b", SlotRelease(server=A, request_id=1, failed=True))  # still down: rests twice as long
    clock.now += 30.0
    ask(slots, "c")
    assert granted[-1] == ("c", B)
    clock.now += 30.0
    ask(slots, "d")
    assert granted[-1] == ("d", A)
    slots.release("d", SlotRelease(server=A, request_id=1))  # it serves again
    log.close()
    lines = events(tmp_path)
    assert [(e["server"], e["cool_down_s"]) for e in lines if e["event"] == "server_failed"] == [(A, 30.0), (A, 60.0)]
    assert [e["server"] for e in lines if e["event"] == "server_recovered"] == [A]


def test_a_pool_whose_servers_all_rest_still_gets_its_calls(tmp_path):
    slots, granted, log, _ = pool_bank(tmp_path, {})
    ask(slots, "a")
    ask(slots, "b")
    slots.release("a", SlotRelease(server=A, request_id=1, failed=True))
    slots.release("b", SlotRelease(server=B, request_id=1, failed=True))
    ask(slots, "c")
    assert granted[-1] == ("c", A)
    log.close()


def test_the_server_rested_is_the_one_granted_whatever_the_release_names(tmp_path):
    slots, granted, log, _ = pool_bank(tmp_path, {})
    ask(slots, "a")  # granted A
    slots.release("a", SlotRelease(server=B, request_id=1, failed=True))  # a worker's word: not believed
    ask(slots, "b")
    assert granted == [("a", A), ("b", B)] and slots.held == {B: {("b", 1)}}
    log.close()
    assert [e["server"] for e in events(tmp_path) if e["event"] == "server_failed"] == [A]
