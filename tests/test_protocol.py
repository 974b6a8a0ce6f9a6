"""The wire between supervisor and workers: framing, versioning, strict decoding.

Every malformed, oversized, unknown or truncated frame must raise exactly one
error type, ProtocolError, and never crash or hang the receiver.
"""

from __future__ import annotations

import dataclasses
import random
import socket
import struct
import time

import msgpack
import pytest

from protocol import (
    SlotGrant,
    SlotRelease,
    SlotRequest,
    StartAgents,
    Answer,
    Answered,
    Deliver,
    Holding,
    Post,
    Settled,
    Waiting,
    MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    Ack,
    Proceed,
    CheckpointSaved,
    CycleDone,
    Error,
    Event,
    FrameDecoder,
    Heartbeat,
    Interrupt,
    Message,
    ProtocolError,
    Ready,
    Start,
    Stopped,
    StopRequest,
    decode_payload,
    encode,
    from_wire,
)
from protocol.budget import BUDGET_EPSILON_USD, budget_reached
from protocol.framing import MAX_DEPTH
from protocol.messages import MESSAGE_TYPES

# --- helpers ----------------------------------------------------------------


def frame(payload: bytes) -> bytes:
    """A frame around raw payload bytes (header + payload)."""
    return struct.pack(">I", len(payload)) + payload


def packed(obj, **kwargs) -> bytes:
    return msgpack.packb(obj, use_bin_type=True, **kwargs)


def wire_frame(obj, **kwargs) -> bytes:
    """A frame whose payload is msgpack of `obj` (no schema checks)."""
    return frame(packed(obj, **kwargs))


def decode_all(data: bytes, **kwargs) -> list[Message]:
    """Feed `data` to a fresh decoder, then close it."""
    decoder = FrameDecoder(**kwargs)
    messages = decoder.feed(data)
    decoder.close()
    return messages


def assert_rejected(data: bytes) -> ProtocolError:
    """`data` fed in one go to a fresh decoder raises ProtocolError (nothing else)."""
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError) as info:
        decoder.feed(data)
    assert type(info.value) is ProtocolError
    # A decoder that failed refuses any further input.
    with pytest.raises(ProtocolError):
        decoder.feed(b"")
    return info.value


SPEC = {
    "model": "llama3.2:1b",
    "prompt": "Résumé: naïve café — 日本語 🚀",
    "max_cycles": 12,
    "budget_usd": 0.25,
    "temperature": -0.0,
    "tools": ["search", {"name": "calc", "args": [1, 2.5, None, True, False]}],
    "nested": {"a": {"b": {"c": [[], {}, [[]], {"d": ""}]}}},
    "big": 2**63 - 1,
    "small": -(2**63),
    "empty": None,
}

# Representative instances of every message type, with every optional field
# exercised both set and at its default/None.
SAMPLES: dict[str, list[Message]] = {
    "start": [
        Start(agent="researcher", spec=SPEC),
        Start(agent="", spec={}),
        Start(agent="ägent-✓", spec={"ключ": ["значение", {"深い": [1, [2, [3]]]}]}),
    ],
    "interrupt": [
        Interrupt(interrupt_id=1, mode="GRACEFUL", source="USER", message="Ctrl+C", issued_at=1712345678.25),
        Interrupt(interrupt_id=2**40, mode="IMMEDIATE", source="SYSTEM", message="", issued_at=0.0),
        Interrupt(interrupt_id=0, mode="GRACEFUL", source="PROGRAMMATIC", message="stop ⏹", issued_at=-1.5),
        Interrupt(interrupt_id=3, mode="GRACEFUL", source="PROGRAMMATIC", message="budget", issued_at=2.0,
                  agents=["crew-a", "crew-b"]),
    ],
    "proceed": [Proceed(cycle=0), Proceed(cycle=2**40)],
    "ack": [
        Ack(interrupt_id=7, received_at=1712345678.5),
        Ack(interrupt_id=-1, received_at=1e-300),
    ],
    "ready": [
        Ready(agent="a", pid=4242, cycle=0, max_cycles=10, status="running", resumed=False),
        Ready(
            agent="b", pid=1, cycle=3, max_cycles=3, status="completed", resumed=True, checkpoint_id="ckpt-0003-é"
        ),
        Ready(agent="c", pid=2, cycle=1, max_cycles=5, status="interrupted", resumed=True, checkpoint_id=None),
        Ready(agent="d", pid=3, cycle=4, max_cycles=9, status="running", resumed=True, budget_spent_usd=0.125),
    ],
    "stop_request": [
        StopRequest(mode="GRACEFUL", source="PROGRAMMATIC", message="agent a budget $0.05 reached"),
        StopRequest(mode="IMMEDIATE", source="USER", message=""),
    ],
    "cycle_done": [
        CycleDone(cycle=1, duration_ms=812.5, reply="Bonjour 🌍"),
        CycleDone(
            cycle=2,
            duration_ms=0.0,
            reply="",
            tokens={"prompt": 12, "completion": 30, "detail": {"cached": [1, 2]}},
            cost_usd=0.0031,
        ),
        CycleDone(cycle=3, duration_ms=1.0, reply="x" * 1000, tokens=None, cost_usd=None),
    ],
    "checkpoint_saved": [
        CheckpointSaved(
            checkpoint_id="ckpt-1", cycle=1, status="running", bytes=2048, duration_ms=3.5, durable_at=1712345679.0
        ),
    ],
    "stopped": [
        Stopped(status="completed", cycle=5, checkpoint_id="ckpt-5", budget_spent_usd=0.12),
        Stopped(
            status="interrupted",
            cycle=2,
            checkpoint_id=None,
            budget_spent_usd=0.0,
            interrupt_id=9,
            durable_at=1712345680.75,
            total_interrupts=2,
            graceful_interrupts=1,
            immediate_interrupts=1,
            reason="user pressed Ctrl+C twice — ✋",
        ),
    ],
    "error": [
        Error(kind="llm", message="connection refused"),
        Error(kind="fatal", message="disk full: ошибка", fatal=True),
    ],
    "heartbeat": [
        Heartbeat(sent_at=1712345678.123456),
    ],
    "event": [
        Event(event="checkpoint_corrupt"),
        Event(
            event="budget_warning",
            level="warning",
            fields={"spent": 0.9, "limit": 1.0, "agents": ["a", "b"], "meta": {"n": None, "ok": True, "名": "値"}},
        ),
    ],
    "deliver": [
        Deliver(sender="drafter", seq=1, content={"draft": "Résumé 🚀", "n": [1, 2.5, None]}),
        Deliver(sender="a", seq=2**40, content=None, agent="crew-b"),
        Deliver(sender="a", seq=3, content="plain text"),
    ],
    "settled": [Settled(receiver="editor", seq=4), Settled(receiver="b", seq=1, agent="crew-a")],
    "answer": [Answer(text="yes, go ahead ✓"), Answer(text="", agent="crew-a")],
    "post": [
        Post(to="editor", seq=1, content=["draft", 1]),
        Post(to="b", seq=7, content={"k": {"n": True}}, replay=True, sender="crew-a"),
    ],
    "holding": [Holding(marks={}), Holding(marks={"drafter": 3, "b": 1}, fresh=True, agent="crew-a")],
    "waiting": [
        Waiting(what="message"),
        Waiting(what="person", question="Publish? ✋"),
        Waiting(what="", outcome="answered", agent="crew-a"),
    ],
    "answered": [Answered(question="Publish?", answer="yes"), Answered(question="q", answer="", agent="crew-a")],
    "start_agents": [
        StartAgents(agents=["crew-a"]),
        StartAgents(agents=["crew-a", "crew-ü"]),
    ],
    "slot_request": [SlotRequest(server="http://127.0.0.1:11434", request_id=1),
                     SlotRequest(server="https://gpu-ü:8000", request_id=2**40, agent="crew-a")],
    "slot_release": [SlotRelease(server="http://127.0.0.1:11434", request_id=1),
                     SlotRelease(server="http://h:1", request_id=7, agent="crew-a")],
    "slot_grant": [SlotGrant(request_id=1), SlotGrant(request_id=3, agent="crew-a")],
}

ALL_SAMPLES = [m for group in SAMPLES.values() for m in group]

INTERRUPT = SAMPLES["interrupt"][0]


def valid_wire(kind: str) -> dict:
    """A valid wire map for `kind` (the first sample's)."""
    return SAMPLES[kind][0].to_wire()


def test_samples_cover_every_message_type():
    assert set(SAMPLES) == set(MESSAGE_TYPES)
    for kind, group in SAMPLES.items():
        assert all(type(m) is MESSAGE_TYPES[kind] for m in group)


# --- round trips ------------------------------------------------------------


@pytest.mark.parametrize("message", ALL_SAMPLES, ids=lambda m: m.type)
def test_round_trip_every_message(message):
    data = encode(message)
    (length,) = struct.unpack(">I", data[:4])
    assert length == len(data) - 4

    decoded = decode_all(data)
    assert decoded == [message]
    assert type(decoded[0]) is type(message)

    # The payload is a msgpack map carrying the protocol version and type.
    wire = msgpack.unpackb(data[4:], raw=False)
    assert wire["v"] == PROTOCOL_VERSION == 1
    assert wire["type"] == message.type
    assert decode_payload(data[4:]) == message
    assert from_wire(wire) == message


def test_round_trip_preserves_values_exactly():
    message = SAMPLES["start"][0]
    (decoded,) = decode_all(encode(message))
    assert decoded.spec == SPEC
    assert decoded.spec["prompt"] == "Résumé: naïve café — 日本語 🚀"
    assert decoded.spec["tools"][1]["args"] == [1, 2.5, None, True, False]
    assert decoded.spec["big"] == 2**63 - 1 and decoded.spec["small"] == -(2**63)

    (ready,) = decode_all(encode(SAMPLES["ready"][2]))
    assert ready.checkpoint_id is None
    (stopped,) = decode_all(encode(SAMPLES["stopped"][0]))
    assert stopped.checkpoint_id == "ckpt-5"
    assert stopped.interrupt_id is None and stopped.durable_at is None and stopped.reason == ""
    (event,) = decode_all(encode(SAMPLES["event"][0]))
    assert event.level == "info" and event.fields == {}


def test_int_for_float_field_is_accepted_as_float():
    wire = valid_wire("heartbeat")
    wire["sent_at"] = 5
    (message,) = decode_all(wire_frame(wire))
    assert message == Heartbeat(sent_at=5.0)
    assert type(message.sent_at) is float


def test_defaults_may_be_omitted_on_the_wire():
    (message,) = decode_all(wire_frame({"v": 1, "type": "error", "kind": "k", "message": "m"}))
    assert message == Error(kind="k", message="m", fatal=False)


def test_byte_at_a_time_and_concatenated_give_same_messages_in_order():
    stream = b"".join(encode(m) for m in ALL_SAMPLES)

    decoder = FrameDecoder()
    one_by_one: list[Message] = []
    for i in range(len(stream)):
        got = decoder.feed(stream[i : i + 1])
        # A message comes out exactly when its frame's last byte arrives.
        assert len(got) <= 1
        one_by_one.extend(got)
        if got:
            assert decoder.pending == 0
    assert decoder.pending == 0
    decoder.close()

    all_at_once = decode_all(stream)

    assert one_by_one == ALL_SAMPLES
    assert all_at_once == ALL_SAMPLES


def test_random_chunking_gives_same_messages():
    stream = b"".join(encode(m) for m in ALL_SAMPLES * 3)
    rng = random.Random(99)
    for _ in range(20):
        decoder = FrameDecoder()
        out: list[Message] = []
        pos = 0
        while pos < len(stream):
            step = rng.randint(0, 40)
            out.extend(decoder.feed(stream[pos : pos + step]))
            pos += step
        decoder.close()
        assert out == ALL_SAMPLES * 3


def test_pending_tracks_partial_frame():
    data = encode(INTERRUPT)
    decoder = FrameDecoder()
    assert decoder.feed(data[:3]) == []
    assert decoder.pending == 3
    assert decoder.feed(data[3:10]) == []
    assert decoder.pending == 10
    assert decoder.feed(data[10:] + data[:5]) == [INTERRUPT]
    assert decoder.pending == 5
    assert decoder.feed(data[5:]) == [INTERRUPT]
    assert decoder.pending == 0
    decoder.close()


def test_empty_feed_is_harmless():
    decoder = FrameDecoder()
    assert decoder.feed(b"") == []
    assert decoder.pending == 0
    decoder.close()


# --- frame size limit -------------------------------------------------------


def test_oversized_header_rejected_before_payload_is_buffered():
    decoder = FrameDecoder()
    start = time.monotonic()
    with pytest.raises(ProtocolError, match="exceeds"):
        decoder.feed(struct.pack(">I", 2 * 1024**3))  # a 2 GiB frame: header only
    assert time.monotonic() - start < 1.0
    with pytest.raises(ProtocolError):
        decoder.feed(b"\x00" * 16)


@pytest.mark.parametrize("length", [MAX_FRAME_BYTES + 1, 2**31, 2**32 - 1])
def test_length_above_default_limit(length):
    assert_rejected(struct.pack(">I", length))


def test_length_above_limit_split_header():
    decoder = FrameDecoder()
    header = struct.pack(">I", 0xFFFFFFFF)
    assert decoder.feed(header[:2]) == []
    with pytest.raises(ProtocolError):
        decoder.feed(header[2:])


def test_length_above_limit_after_good_frames_in_same_feed():
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError):
        decoder.feed(encode(INTERRUPT) + struct.pack(">I", MAX_FRAME_BYTES + 1))
    with pytest.raises(ProtocolError):
        decoder.feed(encode(INTERRUPT))


def test_custom_limit_is_inclusive():
    data = encode(INTERRUPT)
    size = len(data) - 4
    assert decode_all(data, max_frame_bytes=size) == [INTERRUPT]
    decoder = FrameDecoder(max_frame_bytes=size - 1)
    with pytest.raises(ProtocolError):
        decoder.feed(data[:4])  # rejected from the header alone


def test_encode_refuses_oversized_message():
    message = Start(agent="a", spec={"blob": "x" * 200})
    with pytest.raises(ProtocolError):
        encode(message, max_frame_bytes=64)
    data = encode(message)  # the default limit is fine
    assert decode_all(data) == [message]
    exact = len(data) - 4
    assert encode(message, max_frame_bytes=exact) == data
    with pytest.raises(ProtocolError):
        encode(message, max_frame_bytes=exact - 1)


def test_encode_refuses_default_limit_overflow():
    with pytest.raises(ProtocolError):
        encode(Event(event="e", fields={"blob": "x" * (MAX_FRAME_BYTES + 1)}))


@pytest.mark.parametrize(
    "message",
    [
        Start(agent="a", spec={"s": {1, 2}}),  # a set is not msgpack
        Start(agent="a", spec={"obj": object()}),
        Start(agent="a", spec={"n": 2**64}),  # out of msgpack int range
    ],
    ids=["set", "object", "int-overflow"],
)
def test_encode_refuses_unencodable_values(message):
    with pytest.raises(ProtocolError):
        encode(message)


# --- payloads that are not a valid message ----------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xc1",  # never-used msgpack byte
        b"\xc1" * 10,
        b"\x82",  # map header with no entries following
        b"\xa5ab",  # truncated str
        b"\xdc\xff\xff",  # array16 of 65535 items, none present
        b"hello, world",
        b"\x00\x01\x02\x03",
        bytes(range(256)),
    ],
    ids=["empty", "c1", "c1x10", "map-truncated", "str-truncated", "array-truncated", "text", "ints", "range"],
)
def test_not_msgpack(payload):
    assert_rejected(frame(payload))


@pytest.mark.parametrize("obj", [0, 1, -5, [1, 2], [], "start", "", None, True, 1.5, b"bin"])
def test_msgpack_not_a_map(obj):
    assert_rejected(wire_frame(obj))


def test_empty_map():
    assert_rejected(wire_frame({}))


def test_missing_version():
    wire = valid_wire("heartbeat")
    del wire["v"]
    assert_rejected(wire_frame(wire))


@pytest.mark.parametrize("version", [0, 2, -1, "1", None, 1.0, True, [1], {"1": 1}, 2**64 - 1])
def test_wrong_version(version):
    wire = valid_wire("heartbeat")
    wire["v"] = version
    assert_rejected(wire_frame(wire))


@pytest.mark.parametrize("kind", ["", "Start", "START", "unknown", "message", "start ", "v", "Message"])
def test_unknown_type(kind):
    wire = valid_wire("start")
    wire["type"] = kind
    assert_rejected(wire_frame(wire))


@pytest.mark.parametrize("kind", [None, 1, True, 1.5, ["start"], {"start": 1}, b"start"])
def test_type_not_a_str(kind):
    wire = valid_wire("start")
    wire["type"] = kind
    assert_rejected(wire_frame(wire))


def test_missing_type():
    wire = valid_wire("start")
    del wire["type"]
    assert_rejected(wire_frame(wire))


@pytest.mark.parametrize("kind", sorted(MESSAGE_TYPES))
def test_unknown_field(kind):
    wire = valid_wire(kind)
    wire["surprise"] = 1
    assert_rejected(wire_frame(wire))


@pytest.mark.parametrize("kind", sorted(MESSAGE_TYPES))
def test_field_type_as_field_name_is_unknown(kind):
    # A field name from another message is still unknown here.
    wire = valid_wire(kind)
    wire["event" if kind == "start" else "spec"] = {}
    assert_rejected(wire_frame(wire))


def _required_fields(cls):
    return [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]


REQUIRED = [(kind, name) for kind, cls in sorted(MESSAGE_TYPES.items()) for name in _required_fields(cls)]


@pytest.mark.parametrize("kind,name", REQUIRED, ids=[f"{k}.{n}" for k, n in REQUIRED])
def test_missing_required_field(kind, name):
    wire = valid_wire(kind)
    del wire[name]
    assert_rejected(wire_frame(wire))


@pytest.mark.parametrize(
    "kind,name,value",
    [
        # bool where int is expected
        ("ack", "interrupt_id", True),
        ("interrupt", "interrupt_id", False),
        ("ready", "pid", True),
        ("ready", "cycle", False),
        ("stopped", "total_interrupts", True),
        ("checkpoint_saved", "bytes", True),
        # bool where float is expected
        ("heartbeat", "sent_at", True),
        # float where int is expected
        ("ready", "pid", 1.0),
        ("cycle_done", "cycle", 2.5),
        # str where float / int is expected
        ("heartbeat", "sent_at", "1.0"),
        ("ack", "received_at", "now"),
        ("ack", "interrupt_id", "7"),
        ("cycle_done", "cost_usd", "0.1"),
        ("stopped", "durable_at", "later"),
        # int where str is expected
        ("start", "agent", 1),
        ("interrupt", "message", 0),
        ("ready", "status", 3),
        ("ready", "checkpoint_id", 5),
        ("error", "kind", 1),
        ("event", "event", 2),
        # bytes where str is expected
        ("start", "agent", b"agent"),
        # str where bool is expected
        ("ready", "resumed", "true"),
        # int where bool is expected
        ("ready", "resumed", 1),
        ("error", "fatal", 0),
        # wrong container types
        ("start", "spec", [1, 2]),
        ("start", "spec", "spec"),
        ("event", "fields", ["a"]),
        ("cycle_done", "tokens", [1]),
        ("cycle_done", "tokens", 12),
        ("heartbeat", "sent_at", [1.0]),
        ("heartbeat", "sent_at", {"t": 1.0}),
        # None where a value is required (not Optional)
        ("start", "agent", None),
        ("start", "spec", None),
        ("interrupt", "interrupt_id", None),
        ("interrupt", "issued_at", None),
        ("ack", "received_at", None),
        ("ready", "resumed", None),
        ("heartbeat", "sent_at", None),
        ("error", "fatal", None),
        ("event", "level", None),
        ("event", "fields", None),
        ("stopped", "budget_spent_usd", None),
        ("stopped", "total_interrupts", None),
        ("stopped", "reason", None),
    ],
)
def test_wrong_field_type(kind, name, value):
    wire = valid_wire(kind)
    wire[name] = value
    assert_rejected(wire_frame(wire))


@pytest.mark.parametrize(
    "name,value",
    [
        ("mode", "graceful"),
        ("mode", "SOFT"),
        ("mode", ""),
        ("source", "user"),
        ("source", "NETWORK"),
        ("source", ""),
    ],
)
def test_invalid_interrupt_mode_or_source(name, value):
    wire = INTERRUPT.to_wire()
    wire[name] = value
    assert_rejected(wire_frame(wire))


def test_invalid_interrupt_rejected_at_construction():
    with pytest.raises(ProtocolError):
        Interrupt(interrupt_id=1, mode="NOPE", source="USER", message="", issued_at=0.0)
    with pytest.raises(ProtocolError):
        Interrupt(interrupt_id=1, mode="GRACEFUL", source="NOPE", message="", issued_at=0.0)


def test_from_wire_rejects_non_maps_directly():
    for obj in (None, 1, "x", [], b"", object()):
        with pytest.raises(ProtocolError):
            from_wire(obj)


# --- msgpack features that must not come through -----------------------------


@pytest.mark.parametrize("code", [0, 1, 5, 127])
def test_ext_type_rejected(code):
    wire = valid_wire("start")
    wire["spec"] = {"x": msgpack.ExtType(code, b"payload")}
    assert_rejected(wire_frame(wire))


@pytest.mark.parametrize(
    "ext",
    [
        b"\xd4\xfe\x00",  # fixext1, type -2
        b"\xd5\x80\x00\x00",  # fixext2, type -128
        b"\xd8\x05" + b"\x00" * 16,  # fixext16, type 5
        b"\xc7\x00\x07",  # ext8, empty data, type 7
        b"\xc8\x00\x02\x10ab",  # ext16, type 16
        b"\xc9\x00\x00\x00\x01\xf0a",  # ext32, type -16
    ],
)
def test_raw_ext_encodings_rejected(ext):
    prefix = packed({"v": 1, "type": "start", "agent": "a", "spec": {"x": 0}})[:-1]
    assert_rejected(frame(prefix + ext))
    assert_rejected(frame(ext))


def test_ext_type_as_whole_payload_rejected():
    assert_rejected(frame(packed(msgpack.ExtType(3, b"abc"))))


def test_timestamp_as_field_value_rejected():
    wire = valid_wire("heartbeat")
    wire["sent_at"] = msgpack.Timestamp(1712345678, 5)
    assert_rejected(wire_frame(wire))


def test_timestamp_as_whole_payload_rejected():
    assert_rejected(frame(packed(msgpack.Timestamp(1, 0))))


def test_malformed_timestamp_ext_rejected():
    # ext type -1 with a length that is not a valid timestamp (3 bytes).
    assert_rejected(frame(b"\xc7\x03\xff\x00\x00\x00"))


# msgpack decodes ext -1 (timestamp) itself without calling ext_hook; the
# plain-data walk in decode_payload is what rejects one nested in a field.
@pytest.mark.parametrize(
    "kind,name",
    [("start", "spec"), ("event", "fields"), ("cycle_done", "tokens")],
)
def test_timestamp_nested_in_dict_field_rejected(kind, name):
    wire = valid_wire(kind)
    wire[name] = {"when": msgpack.Timestamp(1712345678, 0)}
    decoder = FrameDecoder()
    try:
        messages = decoder.feed(wire_frame(wire))
    except ProtocolError:
        return
    raise AssertionError(f"timestamp accepted: {messages!r}")


@pytest.mark.parametrize("key", [1, -1, 1.5, None, True])
def test_non_str_map_key_top_level(key):
    wire = valid_wire("heartbeat")
    wire[key] = 1
    assert_rejected(wire_frame(wire, strict_types=False))


@pytest.mark.parametrize("key", [1, 1.5, None, False])
def test_non_str_map_key_nested(key):
    wire = valid_wire("start")
    wire["spec"] = {"ok": {key: "value"}}
    assert_rejected(wire_frame(wire))


def test_bin_key_top_level_is_unknown_field():
    # b"v" and b"type" are not the str keys "v" / "type".
    assert_rejected(wire_frame({b"v": 1, b"type": b"heartbeat", b"sent_at": 1.0}))
    wire = valid_wire("heartbeat")
    wire[b"sent_at"] = 1.0
    assert_rejected(wire_frame(wire))


def test_map_as_key_rejected():
    # fixmap(1) { fixmap(0): nil } -- an unhashable key.
    assert_rejected(frame(b"\x81\x80\xc0"))
    # fixmap(1) { fixarray(0): nil }
    assert_rejected(frame(b"\x81\x90\xc0"))


def test_trailing_bytes_inside_frame():
    good = packed(INTERRUPT.to_wire())
    assert_rejected(frame(good + b"\xc0"))  # two msgpack objects in one payload
    assert_rejected(frame(good + good))
    assert_rejected(frame(good + b"\x00"))


def test_trailing_garbage_after_good_frame_then_valid_header():
    """A valid frame followed by a bad one: the first is returned only if the
    decoder does not throw; either way the bad one raises ProtocolError."""
    decoder = FrameDecoder()
    good = encode(INTERRUPT)
    assert decoder.feed(good) == [INTERRUPT]
    with pytest.raises(ProtocolError):
        decoder.feed(frame(b"\xc1"))


@pytest.mark.parametrize("depth", [10_000, 100_000])
@pytest.mark.parametrize("opener", [b"\x91", b"\x81\xa1k"], ids=["lists", "maps"])
def test_deeply_nested_spec_raises_or_decodes(depth, opener):
    prefix = packed({"v": 1, "type": "start", "agent": "a", "spec": {"x": 0}})[:-1]  # drop the 0
    payload = prefix + opener * depth + b"\xc0"
    decoder = FrameDecoder()
    try:
        messages = decoder.feed(frame(payload))
    except ProtocolError:
        return
    assert len(messages) == 1 and isinstance(messages[0], Start)


def test_deeply_nested_truncated_raises():
    prefix = packed({"v": 1, "type": "start", "agent": "a", "spec": {"x": 0}})[:-1]
    assert_rejected(frame(prefix + b"\x91" * 10_000))  # innermost value missing


def test_deep_but_reasonable_nesting_round_trips():
    spec: dict = {"leaf": 1}
    for i in range(10):
        spec = {"level": i, "child": [spec]}
    message = Start(agent="deep", spec=spec)
    assert decode_all(encode(message)) == [message]


def test_nesting_beyond_the_depth_limit_is_rejected():
    # 600 levels decode in msgpack but would break repr/== on the receiver.
    spec: dict = {"leaf": 1}
    for i in range(300):
        spec = {"level": i, "child": [spec]}
    assert_rejected(encode(Start(agent="deep", spec=spec)))


def test_bytes_nested_in_a_field_are_rejected():
    wire = valid_wire("start")
    wire["spec"] = {"blob": b"\x00\x01"}
    assert_rejected(wire_frame(wire))


@pytest.mark.parametrize(
    "header",
    [
        b"\xdb\xff\xff\xff\xff",  # str32 of 4 GiB
        b"\xdb\x7f\xff\xff\xff",
        b"\xda\xff\xff",  # str16 of 64 KiB
        b"\xc6\xff\xff\xff\xff",  # bin32 of 4 GiB
        b"\xdd\xff\xff\xff\xff",  # array32 of 4G items
        b"\xdf\xff\xff\xff\xff",  # map32 of 4G entries
    ],
    ids=["str32-max", "str32-2g", "str16", "bin32", "array32", "map32"],
)
def test_huge_declared_length_inside_small_payload(header):
    start = time.monotonic()
    assert_rejected(frame(header + b"abc"))
    # Also when it is a field value inside an otherwise valid map.
    prefix = packed({"v": 1, "type": "start", "agent": "a"})
    payload = bytes([prefix[0] + 1]) + prefix[1:] + packed("spec") + header + b"abc"
    assert_rejected(frame(payload))
    assert time.monotonic() - start < 1.0


@pytest.mark.parametrize("bad", [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf0\x28\x8c\x28", b"\x80"])
def test_invalid_utf8_in_str(bad):
    # As a field value.
    head = packed({"v": 1, "type": "start", "spec": {}})
    payload = bytes([head[0] + 1]) + head[1:] + packed("agent") + bytes([0xA0 | len(bad)]) + bad
    assert_rejected(frame(payload))
    # As a map key.
    payload = b"\x81" + bytes([0xA0 | len(bad)]) + bad + b"\x01"
    assert_rejected(frame(payload))
    # As the type.
    payload = packed({"v": 1})
    payload = bytes([payload[0] + 1]) + payload[1:] + packed("type") + bytes([0xA0 | len(bad)]) + bad
    assert_rejected(frame(payload))


def test_every_error_is_exactly_protocol_error_not_a_subclass_of_builtin():
    err = assert_rejected(frame(b"\xc1"))
    assert not isinstance(err, (ValueError, TypeError, KeyError, RecursionError))
    assert isinstance(err, Exception)


# --- truncation and decoder state -------------------------------------------


def test_close_after_complete_frames_does_not_raise():
    decoder = FrameDecoder()
    assert decoder.feed(encode(INTERRUPT) + encode(SAMPLES["ack"][0])) == [INTERRUPT, SAMPLES["ack"][0]]
    decoder.close()
    decoder.close()  # idempotent


def test_close_on_fresh_decoder_does_not_raise():
    FrameDecoder().close()


@pytest.mark.parametrize("cut", [1, 2, 3, 4, 5, -1])
def test_close_after_partial_frame_raises(cut):
    data = encode(INTERRUPT)
    decoder = FrameDecoder()
    assert decoder.feed(data[:cut]) == []
    with pytest.raises(ProtocolError):
        decoder.close()
    # A decoder that failed refuses further input.
    with pytest.raises(ProtocolError):
        decoder.feed(data[cut:])


def test_close_after_good_frames_and_partial_raises():
    data = encode(INTERRUPT)
    decoder = FrameDecoder()
    assert decoder.feed(data + data[:7]) == [INTERRUPT]
    with pytest.raises(ProtocolError):
        decoder.close()


def test_failed_decoder_refuses_further_input():
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError):
        decoder.feed(frame(b"not msgpack"))
    for data in (encode(INTERRUPT), b"", b"\x00"):
        with pytest.raises(ProtocolError):
            decoder.feed(data)


def test_bad_frame_among_good_ones_raises():
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError):
        decoder.feed(encode(INTERRUPT) + frame(b"\xc1") + encode(INTERRUPT))
    with pytest.raises(ProtocolError):
        decoder.feed(encode(INTERRUPT))


# --- fuzzing ----------------------------------------------------------------


def test_fuzz_random_bytes_only_raise_protocol_error():
    rng = random.Random(1234)
    stats = {"ok": 0, "error": 0}
    start = time.monotonic()
    for i in range(3000):
        length = rng.randint(0, 300)
        body = rng.randbytes(length)
        if i % 3 == 0:
            # A valid header for a short length, then random bytes.
            body = struct.pack(">I", rng.randint(0, 64)) + body
        elif i % 3 == 1 and length:
            # A valid header for exactly what follows, then a plausible map start.
            payload = bytes([0x80 | rng.randint(0, 15)]) + body
            body = frame(payload)
        decoder = FrameDecoder()
        try:
            messages = decoder.feed(body)
            assert all(isinstance(m, Message) for m in messages)
            decoder.close()
            stats["ok"] += 1
        except ProtocolError:
            stats["error"] += 1
        # Any other exception propagates and fails the test.
    elapsed = time.monotonic() - start
    assert elapsed < 20, f"fuzz loop took {elapsed:.1f}s"
    assert stats["error"] > 0


def test_fuzz_random_chunks_into_one_decoder():
    rng = random.Random(4321)
    for _ in range(200):
        decoder = FrameDecoder()
        try:
            for _ in range(rng.randint(1, 10)):
                choice = rng.random()
                if choice < 0.5:
                    chunk = encode(rng.choice(ALL_SAMPLES))
                else:
                    chunk = rng.randbytes(rng.randint(0, 40))
                decoder.feed(chunk)
            decoder.close()
        except ProtocolError:
            pass


def test_single_byte_flips_of_interrupt_frame():
    data = encode(INTERRUPT)
    outcomes = {"decoded": 0, "error": 0, "pending": 0}
    for i in range(len(data)):
        for flip in (0x01, 0x80, 0xFF):
            mutated = bytearray(data)
            mutated[i] ^= flip
            decoder = FrameDecoder()
            try:
                messages = decoder.feed(bytes(mutated))
            except ProtocolError:
                outcomes["error"] += 1
                continue
            assert all(isinstance(m, Message) for m in messages)
            if messages:
                outcomes["decoded"] += 1
            else:
                # Header now declares more bytes than present: just waiting.
                assert decoder.pending == len(mutated)
                outcomes["pending"] += 1
                with pytest.raises(ProtocolError):
                    decoder.close()
    assert outcomes["error"] > 0
    assert outcomes["decoded"] > 0


def test_truncations_of_every_sample():
    for message in ALL_SAMPLES:
        data = encode(message)
        for cut in range(len(data)):
            decoder = FrameDecoder()
            assert decoder.feed(data[:cut]) == []
            if cut == 0:
                decoder.close()
            else:
                with pytest.raises(ProtocolError):
                    decoder.close()


def test_payload_truncated_under_shorter_header():
    """The header claims fewer bytes than the message: the cut payload is garbage."""
    payload = packed(INTERRUPT.to_wire())
    for cut in range(len(payload)):
        assert_rejected(frame(payload[:cut]))


# --- a real pipe ------------------------------------------------------------


def test_socketpair_half_frame_then_eof():
    reader, writer = socket.socketpair()
    try:
        reader.settimeout(2.0)
        data = encode(INTERRUPT)
        writer.sendall(data[: len(data) // 2])
        writer.close()

        decoder = FrameDecoder()
        received: list[Message] = []
        while True:
            chunk = reader.recv(4096)
            if not chunk:
                break
            received.extend(decoder.feed(chunk))
        assert received == []
        assert decoder.pending == len(data) // 2
        with pytest.raises(ProtocolError):
            decoder.close()
    finally:
        reader.close()
        writer.close()


def test_socketpair_full_frames_then_eof():
    reader, writer = socket.socketpair()
    try:
        reader.settimeout(2.0)
        stream = b"".join(encode(m) for m in ALL_SAMPLES)
        writer.sendall(stream)
        writer.close()

        decoder = FrameDecoder()
        received: list[Message] = []
        while True:
            chunk = reader.recv(7)
            if not chunk:
                break
            received.extend(decoder.feed(chunk))
        decoder.close()
        assert received == ALL_SAMPLES
    finally:
        reader.close()
        writer.close()


def test_socketpair_oversized_header_fails_without_waiting_for_payload():
    reader, writer = socket.socketpair()
    try:
        reader.settimeout(2.0)
        writer.sendall(struct.pack(">I", 2 * 1024**3))  # writer stays open
        decoder = FrameDecoder()
        chunk = reader.recv(4096)
        with pytest.raises(ProtocolError):
            decoder.feed(chunk)
    finally:
        reader.close()
        writer.close()


# --- the reason a broken peer is given ----------------------------------------
# The text of a ProtocolError becomes the child's failure ("protocol error: ...")
# in worker_exited and on the console: it must name what was wrong.

def _reason(data: bytes) -> str:
    return str(assert_rejected(data))


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        ([1, 2], "a message must be a map, got list"),
        ({"type": "heartbeat", "sent_at": 1.0}, "unsupported protocol version None (this side speaks 1)"),
        ({"v": 1, "type": "nope"}, "unknown message type 'nope'"),
        ({"v": 1, "type": "heartbeat", "sent_at": 1.0, "extra": 1}, "heartbeat: unknown field 'extra'"),
        ({"v": 1, "type": "heartbeat", "sent_at": "soon"}, "heartbeat.sent_at: wrong type str"),
        ({"v": 1, "type": "ack"}, "ack: missing field(s) interrupt_id, received_at"),
        ({"v": 1, "type": "start", "agent": "a", "spec": {"k": {b"k": "v"}}},
         "map key of type bytes; only str keys are allowed"),
        ({"v": 1, "type": "start", "agent": "a", "spec": {"k": b"\x00"}}, "value of type bytes is not plain data"),
    ],
    ids=["not-a-map", "no-version", "unknown-type", "unknown-field", "wrong-type", "missing-fields", "bytes-key",
         "bytes"],
)
def test_a_rejected_message_says_what_was_wrong(wire, reason):
    assert _reason(wire_frame(wire, strict_types=False)) == reason


def test_rejected_interrupt_words_are_named():
    with pytest.raises(ProtocolError, match=r"^interrupt mode must be one of \('GRACEFUL', 'IMMEDIATE'\), got 'SOFT'$"):
        Interrupt(interrupt_id=1, mode="SOFT", source="USER", message="m", issued_at=0.0)
    with pytest.raises(ProtocolError, match=r"^stop_request source must be one of .*, got 'ME'$"):
        StopRequest(mode="GRACEFUL", source="ME", message="m")


def test_framing_failures_say_what_was_wrong():
    assert _reason(frame(b"\xc1")).startswith("malformed msgpack payload: ")
    assert _reason(frame(b"\xc1")).split(": ")[1] in ("ValueError", "FormatError", "ExtraData", "UnpackValueError")
    assert _reason(frame(packed(msgpack.ExtType(5, b"x")))) == "msgpack extension type 5 is not allowed"
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError):
        decoder.feed(frame(b"\xc1"))
    with pytest.raises(ProtocolError, match="^decoder already failed; the stream cannot be trusted$"):
        decoder.feed(b"")
    partial = FrameDecoder()
    partial.feed(encode(INTERRUPT)[:7])
    with pytest.raises(ProtocolError, match=r"^stream ended inside a frame \(7 bytes pending\)$"):
        partial.close()
    with pytest.raises(ProtocolError, match=r"^interrupt frame of \d+ bytes exceeds the 10-byte limit$"):
        encode(INTERRUPT, max_frame_bytes=10)
    with pytest.raises(ProtocolError, match=r"^cannot encode start: "):
        encode(Start(agent="a", spec={"k": object()}))


def _nested_spec(containers: int) -> dict:
    """A Start spec whose deepest container is `containers` levels below the message map."""
    inner: object = 0
    for _ in range(containers - 1):
        inner = [inner]
    return {"k": inner}


def test_nesting_is_allowed_up_to_the_depth_limit_exactly():
    # the message map is depth 0, so the deepest container may sit at MAX_DEPTH - 1
    ok = Start(agent="a", spec=_nested_spec(MAX_DEPTH - 1))
    assert decode_all(encode(ok)) == [ok]
    too_deep = _reason(encode(Start(agent="a", spec=_nested_spec(MAX_DEPTH))))
    assert too_deep == f"message nested deeper than {MAX_DEPTH} levels"


def test_bytes_sent_by_mistake_are_not_smuggled_through_as_text():
    """Bytes go out as msgpack bin, which the receiver refuses, never as a str it would accept."""
    assert _reason(encode(Start(agent="a", spec={"blob": b"abc"}))) == "value of type bytes is not plain data"


# --- budgets ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spent", "budget", "reached"),
    [
        (sum([0.005] * 10), 0.05, True),  # float drift below the budget still reaches it
        (0.05, 0.05, True),
        (0.05 - 1e-10, 0.05, True),
        (0.05 - 1e-8, 0.05, False),
        (0.0, 0.05, False),
        (0.06, 0.05, True),
        (1.0 - BUDGET_EPSILON_USD, 1.0, True),  # the edge itself counts
    ],
)
def test_a_budget_is_reached_within_a_billionth_of_a_dollar(spent, budget, reached):
    assert budget_reached(spent, budget) is reached
