"""The Start payloads: typed specs that survive the wire and refuse every bad field.

A spec that went through a real frame comes back equal; a spec with any field
of the wrong type or out of range is refused with one ProtocolError line that
names the field, on the receiving side and already when it is built.
"""

from __future__ import annotations

import copy
import math
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest

from protocol import Error, ProtocolError, Start, Stopped, decode_payload, encode
from protocol.specs import (
    AgentSpec,
    CheckpointSpec,
    GroupSpec,
    HookSpec,
    LLMSpec,
    ModelServerSpec,
    PriceSpec,
    Spec,
    SpecError,
)
from supervisor.runtime.process import WorkerProcess

LLM = LLMSpec(
    provider="ollama", latency=0.0, cost_per_reply=0.5, system_prompt="Sé breve. 日本語 🚀",
    host="http://127.0.0.1:11434", model="llama3.1:8b", options={"num_ctx": 4096, "stop": ["\n"]},
    request_timeout=30.0, price_per_1k_tokens=0.002, price=PriceSpec(input_per_1m=0.15, output_per_1m=0.6),
)
AGENT = AgentSpec(
    agent="counter-a", task="Count.\nThen stop.", max_cycles=10, storage="/tmp/state", llm=LLM,
    checkpoint=CheckpointSpec(every=2, keep=5, compress=False), budget_usd=1.5,
    hooks=(HookSpec(on="after_cycle", call="pkg.hooks:first", priority=-(2**63), timeout=0.5),
           HookSpec(on="before_interrupt", call="pkg.hooks:second", priority=2**63 - 1)),
    agent_class="pkg.agents:Researcher",
    params={"depth": 2, "big": 2**64 - 1, "small": -(2**63), "ratio": -0.0, "tags": ["ä", None, True], "deep": {"x": [[1]]}},
    python_path=("/home/me/configs",),
)
GROUP = GroupSpec(config={"team": "writers", "agents": [{"name": "w1"}]}, worker_entry="workers.entry:run_worker",
                  model_host="http://127.0.0.1:40001")
SERVER = ModelServerSpec(model="smollm2:135m-instruct", path="/models/m.gguf", port=65535, threads=1, slots=4,
                         ctx_per_slot=8192, log="/tmp/state/model_server.log")
SAMPLES: list[Spec] = [
    AGENT,
    AgentSpec(agent="a", task="t", max_cycles=1, storage="s", llm=LLMSpec(provider="scripted", host="h", model="m")),
    GROUP,
    GroupSpec(config={"team": "g"}, worker_entry="m:f"),
    SERVER,
    ModelServerSpec(model="m", path="p"),
]


def through_a_frame(spec: Spec) -> Any:
    """The spec's wire data after a real Start frame: encoded, then decoded."""
    message = decode_payload(encode(Start(agent="x", spec=spec.to_wire()))[4:])
    assert isinstance(message, Start)
    return message.spec


@pytest.mark.parametrize("spec", SAMPLES, ids=lambda s: type(s).__name__)
def test_every_spec_survives_a_real_frame(spec: Spec) -> None:
    again = type(spec).from_wire(through_a_frame(spec))
    assert again == spec
    assert again.to_wire() == spec.to_wire()


def test_to_wire_is_plain_data_with_lists() -> None:
    wire = AGENT.to_wire()
    assert wire["llm"]["model"] == "llama3.1:8b" and wire["checkpoint"] == {"every": 2, "keep": 5, "compress": False}
    assert wire["hooks"][0] == {"on": "after_cycle", "call": "pkg.hooks:first", "priority": -(2**63), "timeout": 0.5}
    assert wire["python_path"] == ["/home/me/configs"]
    assert msgpack.unpackb(msgpack.packb(wire)) == wire  # lists, not tuples: it compares equal after the trip


def test_missing_optional_fields_take_their_defaults() -> None:
    spec = AgentSpec.from_wire({"agent": "a", "task": "t", "max_cycles": 3, "storage": "s",
                                "llm": {"provider": "scripted", "host": "h", "model": "m"}})
    assert (spec.budget_usd, spec.hooks, spec.agent_class, spec.params, spec.python_path) == (None, (), None, {}, ())
    assert spec.checkpoint == CheckpointSpec(every=1, keep=20, compress=True)
    assert spec.llm.latency == 0.2 and isinstance(spec.llm.latency, float)


def test_an_integer_where_a_number_is_expected_becomes_a_float() -> None:
    wire = AGENT.to_wire()
    wire["llm"]["latency"] = 2
    wire["budget_usd"] = 3
    spec = AgentSpec.from_wire(wire)
    assert spec.llm.latency == 2.0 and isinstance(spec.llm.latency, float) and isinstance(spec.budget_usd, float)


# ---- every bad field --------------------------------------------------------------

WIRES: dict[str, dict[str, Any]] = {"agent": AGENT.to_wire(), "group": GROUP.to_wire(), "server": SERVER.to_wire()}
CLASSES: dict[str, type[Spec]] = {"agent": AgentSpec, "group": GroupSpec, "server": ModelServerSpec}


def leaves(data: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every field path of a spec's wire data: nested specs and list items walked, plain-data maps not."""
    found = []
    for key, value in data.items():
        here = (*path, key)
        found.append(here)
        if isinstance(value, dict) and key in ("llm", "checkpoint", "price"):
            found += leaves(value, here)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for index, item in enumerate(value):
                found += leaves(item, (*here, index))
    return found


def dotted(path: tuple[Any, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(path))


def replaced(kind: str, path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    wire = copy.deepcopy(WIRES[kind])
    node = wire
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return wire


def wrong_type(value: Any) -> Any:
    """A value of another wire type than `value`'s (a float field takes ints, so it gets a string)."""
    if isinstance(value, bool):
        return 1
    if isinstance(value, (int, float)):
        return "1"
    if isinstance(value, str):
        return 1.5
    return True


def _wrong_type_cases() -> list[Any]:
    cases = []
    for kind, wire in WIRES.items():
        for path in leaves(wire):
            node: Any = wire
            for part in path:
                node = node[part]
            cases.append(pytest.param(kind, path, wrong_type(node), id=f"{kind}-{dotted(path)}"))
    return cases


def assert_refused(kind: str, wire: Any, field: str, phrase: str = "") -> None:
    with pytest.raises(ProtocolError) as info:
        CLASSES[kind].from_wire(wire)
    text = str(info.value)
    assert isinstance(info.value, SpecError)
    assert text.startswith(f"{CLASSES[kind].label}: "), text  # the whole spec's label, however deep the field
    assert f": {field}: " in text or text.endswith(f": {field}"), text
    assert phrase in text and "\n" not in text, text


@pytest.mark.parametrize(("kind", "path", "bad"), _wrong_type_cases())
def test_every_field_of_the_wrong_type_is_refused_by_name(kind: str, path: tuple[Any, ...], bad: Any) -> None:
    assert_refused(kind, replaced(kind, path, bad), dotted(path), f"wrong type {type(bad).__name__}")


OUT_OF_RANGE = [
    ("agent", ("agent",), "", "must not be empty"),
    ("agent", ("task",), "", "must not be empty"),
    ("agent", ("storage",), "", "must not be empty"),
    ("agent", ("max_cycles",), 0, "must be >= 1"),
    ("agent", ("max_cycles",), 2**64, "64-bit"),
    ("agent", ("budget_usd",), 0.0, "must be > 0"),
    ("agent", ("budget_usd",), math.inf, "finite"),
    ("agent", ("agent_class",), "not a path", "dotted path"),
    ("agent", ("params",), {"n": 2**64}, "64-bit range at n"),
    ("agent", ("params",), {"n": [1, math.nan]}, "not finite at n[1]"),
    ("agent", ("params",), {"k": {1: "x"}}, "not a string at k"),
    ("agent", ("params",), {"b": b"bytes"}, "not plain data at b"),
    ("agent", ("llm", "provider"), "vllm", "must be one of scripted, ollama, embedded, openai"),
    ("agent", ("llm", "model"), "", "must not be empty"),
    ("agent", ("llm", "host"), "", "must not be empty"),
    ("agent", ("llm", "latency"), -0.5, "must be >= 0"),
    ("agent", ("llm", "latency"), math.nan, "finite"),
    ("agent", ("llm", "cost_per_reply"), -1, "must be >= 0"),
    ("agent", ("llm", "request_timeout"), 0, "must be > 0"),
    ("agent", ("llm", "price_per_1k_tokens"), -1e-9, "must be >= 0"),
    ("agent", ("llm", "latency"), 10**400, "number out of range (got an integer beyond 128 bits)"),
    ("agent", ("max_cycles",), 2**64, "out of the 64-bit range (got 18446744073709551616)"),
    ("agent", ("budget_usd",), -(2**63), "must be > 0 (got -9.223372036854776e+18)"),  # the lowest int is a number
    ("agent", ("llm", "options"), {"num_ctx": math.inf}, "not finite at num_ctx"),
    ("agent", ("checkpoint", "every"), 0, "must be >= 1"),
    ("agent", ("checkpoint", "keep"), -3, "must be >= 1"),
    ("agent", ("hooks", 1, "on"), "before_lunch", "must be one of before_interrupt"),
    ("agent", ("hooks", 0, "call"), "pkg.hooks", "dotted path"),
    ("agent", ("hooks", 0, "timeout"), 0, "must be > 0"),
    ("agent", ("hooks", 0, "priority"), -(2**63) - 1, "64-bit"),
    ("group", ("config",), {}, "must not be empty"),
    ("group", ("config",), {"agents": [{"x": math.inf}]}, "not finite at agents[0].x"),
    ("group", ("worker_entry",), "workers.entry", "dotted path"),
    ("group", ("model_host",), "", "must not be empty"),
    ("server", ("model",), "", "must not be empty"),
    ("server", ("path",), "", "must not be empty"),
    ("server", ("port",), -1, "must be >= 0"),
    ("server", ("port",), 65536, "must be <= 65535"),
    ("server", ("threads",), 0, "must be >= 1"),
    ("server", ("slots",), 0, "must be >= 1"),
    ("server", ("ctx_per_slot",), 0, "must be >= 1"),
]


@pytest.mark.parametrize(("kind", "path", "bad", "phrase"), OUT_OF_RANGE, ids=lambda v: str(v)[:30])
def test_every_field_out_of_range_is_refused_by_name(kind: str, path: tuple[Any, ...], bad: Any, phrase: str) -> None:
    assert_refused(kind, replaced(kind, path, bad), dotted(path), phrase)


def test_a_map_that_contains_itself_is_refused_not_walked_forever() -> None:
    loop: dict[str, Any] = {}
    loop["again"] = loop
    assert_refused("agent", replaced("agent", ("params",), loop), "params", "nested deeper than")


@pytest.mark.parametrize("kind", sorted(WIRES))
def test_unknown_and_missing_fields_and_non_maps_are_refused(kind: str) -> None:
    label = CLASSES[kind].label
    with pytest.raises(SpecError, match=rf"^{label}: unknown field 'surprise'$"):
        CLASSES[kind].from_wire({**WIRES[kind], "surprise": 1})
    first_required = next(iter(WIRES[kind]))
    wire = {k: v for k, v in WIRES[kind].items() if k != first_required}
    with pytest.raises(SpecError, match=rf"^{label}: missing field\(s\) {first_required}$"):
        CLASSES[kind].from_wire(wire)
    for not_a_map in ([1, 2], "spec", None, 3):
        with pytest.raises(SpecError, match=rf"^{label}: wrong type \w+, expected a map$"):
            CLASSES[kind].from_wire(not_a_map)


def test_a_nested_specs_unknown_and_missing_fields_are_named_with_its_path() -> None:
    wire = replaced("agent", ("llm", "surprise"), 1)
    with pytest.raises(SpecError, match=r"^agent spec: llm: unknown field 'surprise'$"):
        AgentSpec.from_wire(wire)
    wire = copy.deepcopy(WIRES["agent"])
    del wire["llm"]["price"]["input_per_1m"], wire["llm"]["price"]["output_per_1m"]
    with pytest.raises(SpecError, match=r"^agent spec: llm\.price: missing field\(s\) input_per_1m, output_per_1m$"):
        AgentSpec.from_wire(wire)


def test_the_widest_integers_fit_their_fields() -> None:
    wire = replaced("agent", ("max_cycles",), 2**64 - 1)
    wire["budget_usd"] = 2**64 - 1  # a number field takes the widest int too, as a float
    spec = AgentSpec.from_wire(wire)
    assert spec.max_cycles == 2**64 - 1 and spec.budget_usd == float(2**64 - 1)


def test_nested_specs_and_list_items_must_be_maps_and_lists() -> None:
    assert_refused("agent", replaced("agent", ("llm",), "scripted"), "llm", "wrong type str, expected a map")
    assert_refused("agent", replaced("agent", ("hooks",), {"on": "after_cycle"}), "hooks", "wrong type dict, expected a list")
    assert_refused("agent", replaced("agent", ("hooks", 0), "pkg:f"), "hooks[0]", "wrong type str, expected a map")
    assert_refused("agent", replaced("agent", ("python_path",), "/x"), "python_path", "expected a list")
    assert_refused("agent", replaced("agent", ("python_path",), ["/x", 3]), "python_path[1]", "wrong type int")


def test_a_bad_value_is_quoted_on_one_line_with_control_characters_escaped() -> None:
    wire = replaced("agent", ("llm", "provider"), "evil\n\x1b[31mred")
    with pytest.raises(SpecError) as info:
        AgentSpec.from_wire(wire)
    assert "\n" not in str(info.value) and "\x1b" not in str(info.value)
    assert "\\x1b[31mred" in str(info.value)


def test_the_sender_cannot_build_a_spec_the_receiver_would_refuse() -> None:
    with pytest.raises(SpecError, match=r"^checkpoint spec: keep: must be >= 1 \(got 0\)$"):
        CheckpointSpec(keep=0)
    with pytest.raises(SpecError, match=r"^agent spec: params: integer out of the 64-bit range at n$"):
        AgentSpec(agent="a", task="t", max_cycles=1, storage="s", llm=LLM, params={"n": 2**64})
    with pytest.raises(SpecError, match=r"^llm spec: latency: number out of range \(got an integer beyond 128 bits\)$"):
        LLMSpec(provider="scripted", host="h", model="m", latency=10**400)
    with pytest.raises(SpecError, match=r"^agent spec: python_path\[1\]: wrong type int$"):
        AgentSpec(agent="a", task="t", max_cycles=1, storage="s", llm=LLM, python_path=("/x", 3))  # type: ignore[arg-type]
    with pytest.raises(SpecError, match=r"^agent spec: llm: wrong type str$"):
        AgentSpec(agent="a", task="t", max_cycles=1, storage="s", llm="scripted")  # type: ignore[arg-type]
    with pytest.raises(SpecError, match=r"^llm spec: price: wrong type dict$"):
        LLMSpec(provider="scripted", host="h", model="m", price={"input_per_1m": 1.0})  # type: ignore[arg-type]
    with pytest.raises(SpecError, match=r"^agent spec: hooks: wrong type list$"):
        AgentSpec(agent="a", task="t", max_cycles=1, storage="s", llm=LLM, hooks=[])  # type: ignore[arg-type]
    with pytest.raises(SpecError, match=r"^hook spec: priority: wrong type bool$"):
        HookSpec(on="after_cycle", call="m:f", priority=True)


def test_a_worker_told_to_run_a_bad_spec_fails_in_one_line() -> None:
    """A real worker process: a Start whose spec is refused ends in Error(protocol) and Stopped(failed), exit 3."""
    wire = replaced("agent", ("checkpoint", "keep"), 0)
    worker = WorkerProcess.start("counter-a")
    messages: list[Any] = []
    try:
        worker.send(Start(agent="counter-a", spec=wire))
        deadline = time.monotonic() + 30
        while worker.pipe_open and time.monotonic() < deadline:
            select.select([worker.sock], [], [], 1.0)
            messages += worker.receive()
        assert worker.wait(10) == 3
    finally:
        worker.kill_tree()
        worker.close()
    errors = [m for m in messages if isinstance(m, Error)]
    assert [(e.kind, e.message, e.fatal) for e in errors] == [
        ("protocol", "agent spec: checkpoint.keep: must be >= 1 (got 0)", True)
    ]
    (stopped,) = [m for m in messages if isinstance(m, Stopped)]
    assert stopped.status == "failed" and stopped.reason == errors[0].message


def test_the_worker_entry_works_out_every_spec_plan_before_any_worker_is_forked():
    """The forkserver imports workers.entry before it forks: each worker must find the plans made, not make them."""
    probe = ("import workers.entry; from protocol import specs; "
             "print(' '.join(sorted(c.__name__ for c in specs._PLAN_CACHE)))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                          cwd=str(Path(__file__).resolve().parent.parent))
    assert done.returncode == 0, done.stderr
    planned = set(done.stdout.split())
    assert {"AgentSpec", "LLMSpec", "CheckpointSpec", "HookSpec", "PriceSpec", "GroupSpec", "ModelServerSpec"} <= planned
