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
