"""The rules of agents' mail, without processes: the worker's Mailbox and the root's Postmaster.

Exactly once rests on a few rules, each checked here directly: a message
joins the outbox only with a completed cycle and leaves it only once the
receiver's durable checkpoint holds it; the receiver keeps only the next
message from each sender; a cycle that does not complete gives back what it
took; the router hands a worker each message at most once and starts over
from the checkpoint when a worker is new.
"""

from __future__ import annotations

from typing import Any

import pytest

from protocol import Deliver, Holding, Message, Post, ProtocolError, Settled, Waiting
from supervisor.runtime.mail import Postmaster
from workers.mailbox import MAX_CONTENT_BYTES, MAX_CONTENT_DEPTH, MAX_OUTBOX, MailCorrupt, Mailbox, MailError

PEERS = frozenset({"a", "b", "c"})


def box(me: str = "a") -> Mailbox:
    return Mailbox(me=me, peers=PEERS)


def completed_cycle(mailbox: Mailbox, *sends: tuple[str, Any]) -> None:
    mailbox.begin_cycle()
    for to, content in sends:
        mailbox.send(to, content)
    mailbox.cycle_completed()


# ---- sending ------------------------------------------------------------------------------


def test_a_send_joins_the_outbox_only_when_its_cycle_completes():
    mailbox = box()
    mailbox.begin_cycle()
    mailbox.send("b", {"n": 1})
    assert mailbox.outbox == [] and mailbox.to_checkpoint()["outbox"] == []
    mailbox.cycle_completed()
    assert mailbox.outbox == [{"to": "b", "seq": 1, "content": {"n": 1}}]


def test_a_dropped_cycle_sends_nothing_and_numbers_stay_gapless():
    mailbox = box()
    mailbox.begin_cycle()
    mailbox.send("b", "lost")
    mailbox.cycle_dropped()
    completed_cycle(mailbox, ("b", "kept"), ("c", "other"), ("b", "next"))
    assert [(m["to"], m["seq"], m["content"]) for m in mailbox.outbox] == [
        ("b", 1, "kept"), ("c", 1, "other"), ("b", 2, "next"),
    ]


def test_the_content_is_copied_when_sent():
    mailbox = box()
    content = {"items": [1]}
    mailbox.begin_cycle()
    mailbox.send("b", content)
    content["items"].append(2)
    mailbox.cycle_completed()
    assert mailbox.outbox[0]["content"] == {"items": [1]}


@pytest.mark.parametrize(
    ("to", "content", "problem"),
    [
        ("nobody", "hi", "message to 'nobody': the team has no such agent"),
        (7, "hi", "message to 7: the team has no such agent"),
        ("b", {1, 2}, "message to b: content is not JSON"),
        ("b", float("nan"), "message to b: content is not JSON"),
        ("b", "x" * (MAX_CONTENT_BYTES + 1), f"bytes of JSON; the limit is {MAX_CONTENT_BYTES}"),
    ],
)
def test_what_could_never_be_delivered_is_refused_at_once_in_one_line(to, content, problem):
    mailbox = box()
    mailbox.begin_cycle()
    with pytest.raises(MailError) as caught:
        mailbox.send(to, content)
    assert problem in str(caught.value) and "\n" not in str(caught.value)
    assert mailbox.sending == []


def test_content_at_the_size_limit_travels_and_a_full_outbox_refuses_more():
    mailbox = box()
    mailbox.begin_cycle()
    mailbox.send("b", "x" * (MAX_CONTENT_BYTES - 2))  # exactly the limit, with its two quotes
    mailbox.cycle_completed()
    mailbox.outbox = [{"to": "c", "seq": n, "content": n} for n in range(1, MAX_OUTBOX)]
    mailbox.begin_cycle()
    mailbox.send("b", "the last one that fits")
    with pytest.raises(MailError, match=f"{MAX_OUTBOX} messages wait for their receivers \\(c\\)"):
        mailbox.send("b", "one too many")


def test_content_nested_too_deep_is_refused():
    deep: Any = "leaf"
    for _ in range(MAX_CONTENT_DEPTH + 1):
        deep = [deep]
    mailbox = box()
    mailbox.begin_cycle()
    with pytest.raises(MailError, match="nests deeper"):
        mailbox.send("b", deep)
    shallow: Any = "leaf"
    for _ in range(MAX_CONTENT_DEPTH):
        shallow = [shallow]
    mailbox.send("b", shallow)


def test_posted_once_per_worker_and_settled_messages_leave_the_outbox():
    mailbox = box()
    completed_cycle(mailbox, ("b", 1), ("b", 2), ("c", 3))
    assert [m["seq"] for m in mailbox.unposted()] == [1, 2, 1]
    assert mailbox.unposted() == []
    mailbox.settle("b", 1)
    assert [(m["to"], m["seq"]) for m in mailbox.outbox] == [("b", 2), ("c", 1)]
    completed_cycle(mailbox, ("b", 4))
    assert [(m["to"], m["seq"]) for m in mailbox.unposted()] == [("b", 3)]


# ---- receiving ----------------------------------------------------------------------------


def test_only_the_next_message_from_each_sender_is_kept():
    mailbox = box("b")
    assert mailbox.accept("a", 2, "early") is False  # a gap: never kept out of order
    assert mailbox.accept("a", 1, "one") is True
    assert mailbox.accept("a", 1, "one again") is False  # a repeat
    assert mailbox.accept("c", 1, "from c") is True
    assert mailbox.accept("a", 2, "two") is True
    assert [m["content"] for m in mailbox.inbox] == ["one", "from c", "two"]
    assert mailbox.marks() == {"a": 2, "c": 1}


def test_a_cycle_that_does_not_complete_gives_back_what_it_took_in_order():
    mailbox = box("b")
    for seq in (1, 2, 3):
        mailbox.accept("a", seq, seq)
    mailbox.begin_cycle()
    assert mailbox.take()["content"] == 1
    assert mailbox.take()["content"] == 2
    mailbox.cycle_dropped()
    assert [m["content"] for m in mailbox.inbox] == [1, 2, 3]
    mailbox.begin_cycle()
    assert mailbox.take()["content"] == 1
    mailbox.cycle_completed()
    assert [m["content"] for m in mailbox.inbox] == [2, 3]


def test_a_save_in_the_middle_of_a_cycle_keeps_what_the_cycle_took():
    mailbox = box("b")
    mailbox.accept("a", 1, "taken")
    mailbox.accept("a", 2, "waiting")
    mailbox.begin_cycle()
    mailbox.take()
    saved = mailbox.to_checkpoint()
    assert [m["seq"] for m in saved["inbox"]] == [1, 2] and saved["received"] == {"a": 2}


def test_the_marks_of_the_checkpoint_before_are_kept_for_settling():
    mailbox = box("b")
    mailbox.accept("a", 1, "in")
    assert mailbox.to_checkpoint()["prior"] == {}
    mailbox.saved(mailbox.marks())
    mailbox.accept("a", 2, "in")
    assert mailbox.to_checkpoint()["prior"] == {"a": 1}
    mailbox.saved(mailbox.marks())
    assert (mailbox.prior, mailbox.saved_marks) == ({"a": 1}, {"a": 2})
    restored = Mailbox.from_checkpoint("b", PEERS, {**mailbox.to_checkpoint(), "prior": {"a": 1}})
    assert (restored.prior, restored.saved_marks) == ({"a": 1}, {"a": 2})


def test_a_checkpoint_round_trip_keeps_everything_and_repeats_nothing():
    mailbox = box("b")
    completed_cycle(mailbox, ("c", "out"))
    mailbox.accept("a", 1, "in")
    mailbox.record_answer("Go?", "yes")
    mailbox.asking = "Still there?"
    restored = Mailbox.from_checkpoint("b", PEERS, mailbox.to_checkpoint())
    assert restored.asking == "Still there?"
    assert restored.outbox == mailbox.outbox and restored.next_seq == {"c": 1}
    assert list(restored.inbox) == list(mailbox.inbox) and restored.marks() == {"a": 1}
    assert restored.answers == [{"question": "Go?", "answer": "yes"}]
    assert restored.accept("a", 1, "in") is False
    assert Mailbox.from_checkpoint("b", PEERS, None).outbox == []  # a checkpoint from before mail


def test_a_mail_section_missing_parts_reads_as_empty_parts():
    restored = Mailbox.from_checkpoint("b", PEERS, {"received": {"a": 2}})
    assert (restored.outbox, list(restored.inbox), restored.next_seq, restored.prior) == ([], [], {}, {})
    assert restored.marks() == {"a": 2} and restored.answers == [] and restored.asking is None


@pytest.mark.parametrize(
    ("saved", "names"),
    [
        ({"outbox": "x"}, "mail.outbox is not a list"),
        ({"inbox": "x"}, "mail.inbox is not a list"),
        ({"answers": "x"}, "mail.answers is not a list"),
        ({"next_seq": []}, "mail.next_seq is not a map"),
        ({"received": {"a": "1"}}, "mail.received is not a map"),
        ({"prior": {"a": -2}}, "mail.prior is not a map"),
        ({"outbox": [{"to": 1, "seq": 1, "content": 1}]}, "mail.outbox holds a malformed message"),
        ({"inbox": [{"to": "a", "seq": 1, "content": 1}]}, "mail.inbox holds a malformed message"),
    ],
)
def test_a_bad_mail_section_is_named_in_the_error(saved, names):
    with pytest.raises(MailCorrupt, match=names):
        Mailbox.from_checkpoint("b", PEERS, saved)


@pytest.mark.parametrize(
    "saved",
    [
        "not a map",
        {"outbox": "x"},
        {"outbox": [{"to": "b", "seq": 0, "content": 1}], "next_seq": {"b": 1}},
        {"outbox": [{"to": "b", "seq": 3, "content": 1}], "next_seq": {"b": 1}},  # beyond what was numbered
        {"inbox": [{"from": "a", "seq": 2, "content": 1}], "received": {"a": 1}},
        {"received": {"a": -1}},
        {"received": {"a": True}},
        {"answers": [{"question": "q"}]},
    ],
)
def test_a_mail_section_of_the_wrong_shape_is_refused(saved):
    with pytest.raises(MailCorrupt):
        Mailbox.from_checkpoint("b", PEERS, saved)


# ---- asking ---------------------------------------------------------------------------------


def test_answers_come_back_to_the_same_questions_in_a_rerun_of_the_cycle():
    mailbox = box()
    mailbox.begin_cycle()
    assert mailbox.answered_before("Title?") is None
    mailbox.record_answer("Title?", "The Stop")
    mailbox.cycle_dropped()  # a crash: the cycle runs again, the answer is durable
    mailbox.begin_cycle()
    assert mailbox.answered_before("Title?") == "The Stop"
    assert mailbox.answered_before("Subtitle?") is None
    mailbox.cycle_completed()
    assert mailbox.answers == []  # consumed with the cycle


def test_several_answers_come_back_in_the_order_asked():
    mailbox = box()
    mailbox.begin_cycle()
    for question, answer in (("Title?", "The Stop"), ("Date?", "Monday"), ("Place?", "Oslo")):
        assert mailbox.answered_before(question) is None
        mailbox.record_answer(question, answer)
    mailbox.cycle_dropped()
    mailbox.begin_cycle()
    assert [mailbox.answered_before(q) for q in ("Title?", "Date?", "Place?", "Time?")] == ["The Stop", "Monday", "Oslo", None]


def test_an_answer_to_another_question_is_not_reused():
    mailbox = box()
    mailbox.begin_cycle()
    mailbox.record_answer("Title?", "The Stop")
    mailbox.record_answer("Date?", "Monday")
    mailbox.cycle_dropped()
    mailbox.begin_cycle()
    assert mailbox.answered_before("Author?") is None  # the cycle went another way
    assert mailbox.answers == []


def test_waiting_names_only_what_an_agent_can_wait_for():
    with pytest.raises(ProtocolError):
        Waiting(what="lunch")


# ---- the root's router ----------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def emit(self, event: str, **fields: Any) -> None:
        self.events.append((event, fields))

    def named(self, name: str) -> list[dict[str, Any]]:
        return [fields for event, fields in self.events if event == name]


class Wires:
    """Who was sent what; an agent not in `up` has no worker to send to."""

    def __init__(self, up: set[str]) -> None:
        self.up = up
        self.sent: list[tuple[str, Message]] = []

    def __call__(self, name: str, message: Message) -> bool:
        if name not in self.up:
            return False
        self.sent.append((name, message))
        return True

    def delivered(self, to: str) -> list[tuple[str, int]]:
        return [(m.sender, m.seq) for n, m in self.sent if n == to and isinstance(m, Deliver)]

    def settled(self, to: str) -> list[tuple[str, int]]:
        return [(m.receiver, m.seq) for n, m in self.sent if n == to and isinstance(m, Settled)]


def router(up: set[str]) -> tuple[Postmaster, Wires, Recorder]:
    wires, log = Wires(up), Recorder()
    return Postmaster(log, wires, lambda: set(PEERS)), wires, log  # type: ignore[arg-type]


def test_a_message_waits_for_its_receiver_to_say_what_it_holds():
    post, wires, log = router({"a", "b"})
    post.post("a", Post(to="b", seq=1, content="hi"))
    assert wires.delivered("b") == []  # b's worker has not said what it holds yet
    post.holding("b", Holding(marks={}, fresh=True))
    assert wires.delivered("b") == [("a", 1)]
    assert log.named("message_sent") == [{"agent_id": "a", "to": "b", "seq": 1}]


def test_each_message_is_handed_to_a_worker_once_and_again_to_a_new_worker():
    post, wires, log = router({"a", "b"})
    post.holding("b", Holding(marks={}, fresh=True))
    for seq in (1, 2):
        post.post("a", Post(to="b", seq=seq, content=seq))
    post.post("a", Post(to="b", seq=2, content=2, replay=True))  # the sender's new worker posts again
    assert wires.delivered("b") == [("a", 1), ("a", 2)]
    post.holding("b", Holding(marks={"a": 1}))  # b's latest checkpoint holds 1
    assert log.named("message_delivered") == [{"agent_id": "b", "from": "a", "to": "b", "seq": 1}]
    post.gone("b")  # b crashed before saving 2
    post.holding("b", Holding(marks={"a": 1}, fresh=True))
    assert wires.delivered("b") == [("a", 1), ("a", 2), ("a", 2)]  # 2 again, to the new worker only
    post.holding("b", Holding(marks={"a": 2}))
    post.holding("b", Holding(marks={"a": 2}))  # said again: logged once
    assert [(e["from"], e["seq"]) for e in log.named("message_delivered")] == [("a", 1), ("a", 2)]


def test_the_sender_forgets_only_what_the_receivers_checkpoint_before_its_latest_holds():
    post, wires, _ = router({"a", "b"})
    post.holding("b", Holding(marks={}, fresh=True))
    for seq in (1, 2, 3):
        post.post("a", Post(to="b", seq=seq, content=seq))
    post.holding("b", Holding(marks={"a": 2}, settle={"a": 0}))
    assert wires.settled("a") == []  # its latest holds 2, the one before nothing: a lost latest must not lose them
    post.holding("b", Holding(marks={"a": 3}, settle={"a": 2}))
    assert wires.settled("a") == [("b", 2)] and sorted(post.pending[("a", "b")]) == [3]


def test_a_receiver_back_on_an_older_checkpoint_is_handed_again_what_it_lost():
    post, wires, _ = router({"a", "b"})
    post.holding("b", Holding(marks={}, fresh=True))
    for seq in (1, 2, 3):
        post.post("a", Post(to="b", seq=seq, content=seq))
    post.holding("b", Holding(marks={"a": 3}, settle={"a": 1}))
    post.gone("b")  # its newest checkpoint turns out corrupt: the next worker resumes from the one holding 1
    post.holding("b", Holding(marks={"a": 1}, settle={}, fresh=True))
    assert wires.delivered("b")[-2:] == [("a", 2), ("a", 3)]


def test_a_repeat_of_what_the_receiver_has_settled_settles_the_sender_again():
    post, wires, _ = router({"a", "b"})
    post.holding("b", Holding(marks={"a": 3}, settle={"a": 3}, fresh=True))
    post.post("a", Post(to="b", seq=2, content="old", replay=True))
    post.post("a", Post(to="b", seq=3, content="old", replay=True))  # at the mark itself: a repeat too
    assert wires.delivered("b") == [] and wires.settled("a") == [("b", 3), ("b", 3), ("b", 3)]
    post.post("a", Post(to="b", seq=4, content={"new": True}))
    assert [(n, m.sender, m.seq, m.content) for n, m in wires.sent if isinstance(m, Deliver)] == [
        ("b", "a", 4, {"new": True})]


def test_a_worker_gone_is_handed_nothing_until_its_next_one_says_what_it_holds():
    post, wires, _ = router({"a", "b", "c"})
    post.holding("b", Holding(marks={}, fresh=True))
    post.holding("c", Holding(marks={}, fresh=True))
    post.post("a", Post(to="b", seq=1, content=1))
    post.post("a", Post(to="c", seq=1, content=1))
    post.gone("b")
    post.post("a", Post(to="b", seq=2, content=2))
    post.post("a", Post(to="c", seq=2, content=2))
    assert wires.delivered("b") == [("a", 1)] and wires.delivered("c") == [("a", 1), ("a", 2)]
    post.holding("b", Holding(marks={"a": 1}, fresh=True))  # only b's own hand-overs start over
    post.holding("c", Holding(marks={"a": 2}))
    assert wires.delivered("b") == [("a", 1), ("a", 2)] and wires.delivered("c") == [("a", 1), ("a", 2)]


def test_a_fresh_worker_settles_without_logging_deliveries_of_an_earlier_run():
    post, wires, log = router({"a", "b"})
    post.post("a", Post(to="b", seq=1, content=1, replay=True))
    post.holding("b", Holding(marks={"a": 1}, settle={"a": 1}, fresh=True))
    assert log.named("message_delivered") == [] and log.named("message_sent") == []
    assert wires.settled("a") == [("b", 1)] and wires.delivered("b") == []


def test_marks_a_worker_cannot_mean_are_ignored():
    post, wires, log = router({"a", "b"})
    post.holding("b", Holding(marks={}, fresh=True))
    post.post("a", Post(to="b", seq=1, content=1))
    post.holding("b", Holding(marks={"a": True, "c": -1, "d": "9"}, settle={"a": True}))
    assert log.named("message_delivered") == [] and wires.settled("a") == []
    post.holding("b", Holding(marks={"a": 0}, settle={"a": 0}))
    assert post.logged.get(("a", "b"), 0) == 0 and wires.settled("a") == []


def test_mail_to_an_agent_the_team_lacks_or_too_big_to_deliver_is_rejected_not_kept():
    post, wires, log = router({"a", "b"})
    post.post("a", Post(to="zed", seq=1, content="hi"))
    post.post("a", Post(to="b", seq=1, content="x" * (5 * 1024 * 1024)))
    rejected = log.named("message_rejected")
    assert [(e["level"], e["agent_id"], e["to"], e["seq"]) for e in rejected] == [("warning", "a", "zed", 1),
                                                                                  ("warning", "a", "b", 1)]
    assert rejected[0]["error"] == "no agent 'zed' in the team" and "exceeds" in rejected[1]["error"]
    assert post.pending == {}
