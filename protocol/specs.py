"""The Start payloads: what a worker, a group's sub-supervisor and the model server run.

A `Start` message carries one of these as its `spec`, in plain data. Like the
messages, each spec is a frozen dataclass whose fields are msgpack-native
types (or nested specs), so it is its own wire schema: `to_wire` turns it into
a map, `from_wire` rebuilds it and rejects anything off-schema, naming the
field. Constructing a spec checks every field's type and range too, so the
sender cannot build one the receiver would refuse. A spec travels inside a
Start message, so `PROTOCOL_VERSION` versions it with the message.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Optional, TypeVar, Union

from protocol.errors import ProtocolError

__all__ = [
    "HOOK_POINTS",
    "PROVIDERS",
    "AgentSpec",
    "CheckpointSpec",
    "GroupSpec",
    "HookSpec",
    "APIS",
    "LLMSpec",
    "ModelServerSpec",
    "PriceSpec",
    "Spec",
    "SpecError",
    "server_key",
    "warm",
]

PROVIDERS = ("scripted", "ollama", "embedded", "openai")
APIS = ("ollama", "openai")  # the HTTP APIs a model server may speak to the workers
HOOK_POINTS = ("before_interrupt", "after_interrupt", "before_checkpoint", "after_checkpoint", "after_cycle")

INT_MIN = -(2**63)  # msgpack's integer range: a wider int cannot be encoded
INT_MAX = 2**64 - 1
MAX_DEPTH = 32  # the frame decoder's limit; it also ends the walk of a map that contains itself
_CALL_RE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*\Z")
_TRACEPARENT_RE = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}\Z")  # W3C trace context, version 00

S = TypeVar("S", bound="Spec")


class SpecError(ProtocolError):
    """A spec field of the wrong type or out of range; str() is one line naming the field."""

    def __init__(self, label: str, path: str, problem: str) -> None:
        self.label, self.path, self.problem = label, path, problem
        super().__init__(f"{label}: {path}: {problem}" if path else f"{label}: {problem}")


def _short(value: Any, limit: int = 60) -> str:
    """A value for an error line: repr (so control characters come escaped), cut short."""
    if isinstance(value, (dict, list, tuple)):
        return f"a {type(value).__name__}"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return "an integer beyond 128 bits"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _join(prefix: str, name: str) -> str:
    if not prefix:
        return name
    return f"{prefix}{name}" if name.startswith("[") else f"{prefix}.{name}"


def plain_data_problem(value: Any) -> Optional[str]:
    """Why `value` is not plain data a frame can carry (None if it is): one short phrase with its path."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, where, depth = stack.pop()
        at = f" at {where}" if where else ""
        if item is None or isinstance(item, (bool, str)):
            continue
        if isinstance(item, int):
            if not INT_MIN <= item <= INT_MAX:
                return f"integer out of the 64-bit range{at}"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return f"number {item} is not finite{at}"
        elif isinstance(item, (list, dict)):
            if depth >= MAX_DEPTH:
                return f"nested deeper than {MAX_DEPTH} levels{at}"
            if isinstance(item, list):
                stack.extend((element, f"{where}[{index}]", depth + 1) for index, element in enumerate(item))
            else:
                for key, element in item.items():
                    if not isinstance(key, str):
                        return f"map key {_short(key)} is not a string{at}"
                    stack.append((element, _join(where, key), depth + 1))
        else:
            return f"value of type {type(item).__name__} is not plain data{at}"
    return None


# ---- the base: type checks from the annotations ----------------------------------


@dataclass(frozen=True, kw_only=True)
class Spec:
    """Base class: subclasses declare fields and their ranges in `_check`."""

    label: ClassVar[str] = "spec"

    def __post_init__(self) -> None:
        for name, check, wants_float, each in _plan(type(self)).fields:
            value = getattr(self, name)
            if wants_float and isinstance(value, int) and not isinstance(value, bool):
                if not INT_MIN <= value <= INT_MAX:
                    raise SpecError(self.label, name, f"number out of range (got {_short(value)})")
                value = float(value)  # an int is a number, as in the messages
                object.__setattr__(self, name, value)
            if each is not None and isinstance(value, tuple):
                for index, item in enumerate(value):
                    problem = each(item)
                    if problem is not None:
                        raise SpecError(self.label, f"{name}[{index}]", problem)
                continue
            problem = check(value)
            if problem is not None:
                raise SpecError(self.label, name, problem)
        self._check()

    def _check(self) -> None:
        """Ranges of this spec's own fields; raise `self._bad(name, problem)`."""

    def _bad(self, name: str, problem: str) -> SpecError:
        return SpecError(self.label, name, problem)

    def to_wire(self) -> dict[str, Any]:
        """Plain msgpack-able data: nested specs become maps, tuples become lists."""
        return {name: _to_wire(getattr(self, name)) for name, _, _, _ in _plan(type(self)).fields}

    @classmethod
    def from_wire(cls: type[S], data: Any) -> S:
        """Rebuild a spec from decoded data; anything off-schema is a one-line SpecError."""
        return _build(cls, data, cls.label, "")


def _to_wire(value: Any) -> Any:
    if isinstance(value, Spec):
        return value.to_wire()
    if isinstance(value, tuple):
        return [_to_wire(item) for item in value]
    return value


Check = Callable[[Any], Optional[str]]  # why a value does not fit a field (None if it does)
Decode = Callable[[Any, str, str], Any]  # a field's wire value as the dataclass holds it (value, label, path)


@dataclass(frozen=True)
class _Plan:
    """What checking and decoding a spec class needs, worked out from its annotations once.

    A spec is built per worker start and decoded by every worker; a 1000-agent
    team built 10,000 of them at start-up. Reading the annotations each time,
    then looking each one up in a cache keyed by typing objects (whose hash is
    Python code), was most of that cost.
    """

    fields: tuple[tuple[str, Check, bool, Optional[Check]], ...]  # name, check, takes a float, a tuple's item check
    decoders: dict[str, Decode]
    required: tuple[str, ...]  # the fields without a default


_PLAN_CACHE: dict[type, _Plan] = {}


def _plan(cls: type) -> _Plan:
    plan = _PLAN_CACHE.get(cls)
    if plan is None:
        hints = typing.get_type_hints(cls)
        fields, decoders, required = [], {}, []
        for f in dataclasses.fields(cls):
            hint = hints[f.name]
            inner = typing.get_args(hint)[0] if typing.get_origin(hint) is tuple else None
            fields.append((f.name, _checker(hint), _wants_float(hint), None if inner is None else _checker(inner)))
            decoders[f.name] = _decoder(hint)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                required.append(f.name)
        plan = _PLAN_CACHE[cls] = _Plan(tuple(fields), decoders, tuple(required))
    return plan


def warm() -> None:
    """Work out every spec class's plan now, once, in a process that forks workers (the forkserver).

    Left to each worker, reading the annotations (`typing.get_type_hints`, which
    compiles each string annotation) was half the Python a worker ran before it
    was ready, times every worker of the team.
    """
    pending: list[type] = [Spec]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls is not Spec:
            _plan(cls)


def _wants_float(annotation: Any) -> bool:
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return float in typing.get_args(annotation)
    return annotation is float


def _optional_of(annotation: Any) -> Any:
    """The one non-None type of an Optional annotation; None for any other."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        return inner
    return None


def _wrong(value: Any) -> str:
    return f"wrong type {type(value).__name__}"


def _checker(annotation: Any) -> Check:
    """The check of one field's annotation, ranges every field shares included."""
    optional_of = _optional_of(annotation)
    if optional_of is not None:
        inner = _checker(optional_of)
        return lambda value: None if value is None else inner(value)
    if typing.get_origin(annotation) is tuple:  # its items are checked one by one, to name the bad one
        return lambda value: None if isinstance(value, tuple) else _wrong(value)
    if isinstance(annotation, type) and issubclass(annotation, Spec):
        return lambda value: None if isinstance(value, annotation) else _wrong(value)
    if annotation is bool:
        return lambda value: None if isinstance(value, bool) else _wrong(value)
    if annotation is int:
        return _int_problem
    if annotation is float:
        return _float_problem
    if annotation is str:
        return lambda value: None if isinstance(value, str) else _wrong(value)
    if annotation is dict:
        return lambda value: plain_data_problem(value) if isinstance(value, dict) else _wrong(value)
    raise TypeError(f"unsupported spec field annotation {annotation!r}")  # pragma: no cover - a bug here


def _int_problem(value: Any) -> Optional[str]:
    if not isinstance(value, int) or isinstance(value, bool):
        return _wrong(value)
    return None if INT_MIN <= value <= INT_MAX else f"out of the 64-bit range (got {_short(value)})"


def _float_problem(value: Any) -> Optional[str]:
    if not isinstance(value, float):
        return _wrong(value)
    return None if math.isfinite(value) else f"must be finite (got {value})"


def _build(cls: type[S], data: Any, label: str, prefix: str) -> S:
    """`cls` from decoded data; errors name the field from the top of the spec (`llm.latency`)."""
    if not isinstance(data, dict):
        raise SpecError(label, prefix, f"wrong type {type(data).__name__}, expected a map")
    plan = _plan(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        decode = plan.decoders.get(key) if isinstance(key, str) else None
        if decode is None:
            raise SpecError(label, prefix, f"unknown field {_short(key)}")
        kwargs[key] = value if decode is _as_is else decode(value, label, _join(prefix, key))  # most fields: as they are
    missing = [name for name in plan.required if name not in kwargs]
    if missing:
        raise SpecError(label, prefix, f"missing field(s) {', '.join(missing)}")
    try:
        return cls(**kwargs)
    except SpecError as exc:
        raise SpecError(label, _join(prefix, exc.path), exc.problem) from None


def _as_is(value: Any, label: str, path: str) -> Any:
    return value


def _decoder(annotation: Any) -> Decode:
    """How one field's wire value becomes what the dataclass holds: nested specs built, lists made tuples."""
    optional_of = _optional_of(annotation)
    if optional_of is not None:
        inner = _decoder(optional_of)
        if inner is _as_is:
            return _as_is
        return lambda value, label, path: None if value is None else inner(value, label, path)
    if isinstance(annotation, type) and issubclass(annotation, Spec):
        spec_class = annotation
        return lambda value, label, path: _build(spec_class, value, label, path)
    if typing.get_origin(annotation) is tuple:
        each = _decoder(typing.get_args(annotation)[0])

        def decode_list(value: Any, label: str, path: str) -> Any:
            if not isinstance(value, list):
                raise SpecError(label, path, f"wrong type {type(value).__name__}, expected a list")
            return tuple(each(item, label, f"{path}[{index}]") for index, item in enumerate(value))

        return decode_list
    return _as_is


# ---- range checks ----------------------------------------------------------------


def _at_least(spec: Spec, name: str, low: float, *, inclusive: bool = True) -> None:
    value = getattr(spec, name)
    if value is None:
        return
    if value < low or (not inclusive and value == low):
        raise spec._bad(name, f"must be {'>=' if inclusive else '>'} {low:g} (got {_short(value)})")


def _not_empty(spec: Spec, *names: str) -> None:
    for name in names:
        if not getattr(spec, name):
            raise spec._bad(name, "must not be empty")


def _dotted(spec: Spec, name: str) -> None:
    value = getattr(spec, name)
    if value is not None and not _CALL_RE.match(value):
        raise spec._bad(name, f"must be a dotted path like package.module:name (got {_short(value)})")


def _traceparent(spec: Any) -> None:
    value = spec.traceparent
    if value is not None and not (isinstance(value, str) and _TRACEPARENT_RE.match(value)):
        raise spec._bad("traceparent", f"must be a W3C traceparent 00-<32 hex>-<16 hex>-<2 hex> (got {value!r})")


def _one_of(spec: Spec, name: str, allowed: tuple[str, ...]) -> None:
    value = getattr(spec, name)
    if value not in allowed:
        raise spec._bad(name, f"must be one of {', '.join(allowed)} (got {_short(value)})")


# ---- the specs -------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PriceSpec(Spec):
    """USD per million tokens, prompt (input) and completion (output) apart."""

    label: ClassVar[str] = "price spec"
    input_per_1m: float
    output_per_1m: float

    def _check(self) -> None:
        _at_least(self, "input_per_1m", 0)
        _at_least(self, "output_per_1m", 0)


@dataclass(frozen=True, kw_only=True)
class LLMSpec(Spec):
    """How an agent talks to its model: the team's llm block with the agent's overrides."""

    label: ClassVar[str] = "llm spec"
    provider: str
    latency: float = 0.2  # scripted
    cost_per_reply: float = 0.0  # scripted
    system_prompt: str = ""
    host: str  # ollama and embedded
    model: str  # resolved: the default model when the config names none
    options: dict = field(default_factory=dict)  # handed to the model server as they are
    request_timeout: float = 120.0
    price_per_1k_tokens: float = 0.0  # the older, blended price; `price` replaces it when given
    price: Optional[PriceSpec] = None
    api: str = "ollama"  # the API the worker speaks: openai for provider openai, either for embedded
    base_url: Optional[str] = None  # api openai: the server's OpenAI API root, e.g. http://127.0.0.1:8000/v1
    api_key_env: Optional[str] = None  # the NAME of the environment variable holding the key; never the key
    max_concurrent: Optional[int] = None  # calls in flight to this server across the tree; None: not capped
    hosts: tuple[str, ...] = ()  # a pool (Ollama hosts or OpenAI base URLs): each call to the server the root names

    @property
    def servers(self) -> tuple[str, ...]:
        """The pool's servers as the supervisor keys them, or the one server."""
        return tuple(server_key(url) for url in self.hosts) if self.hosts else (self.server,)

    @property
    def server(self) -> str:
        """The model server this agent calls, as the supervisor keys its slots (see `server_key`)."""
        return server_key(self.base_url if self.api == "openai" and self.base_url else self.host)

    def _check(self) -> None:
        _one_of(self, "provider", PROVIDERS)
        _one_of(self, "api", APIS)
        _not_empty(self, "model", "host")
        _at_least(self, "latency", 0)
        _at_least(self, "cost_per_reply", 0)
        _at_least(self, "request_timeout", 0, inclusive=False)
        _at_least(self, "price_per_1k_tokens", 0)
        if self.provider == "openai" and self.api != "openai":
            raise self._bad("api", f"provider openai speaks the openai api (got {_short(self.api)})")
        if self.api == "openai" and not self.base_url:
            raise self._bad("base_url", "required for the openai api")
        if self.api_key_env is not None:
            _not_empty(self, "api_key_env")
        if self.max_concurrent is not None:
            _at_least(self, "max_concurrent", 1)

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        """USD for one call: input and output apart when `price` is given, else the blended older rate."""
        if self.price is not None:
            return (prompt_tokens * self.price.input_per_1m + completion_tokens * self.price.output_per_1m) / 1e6
        return (prompt_tokens + completion_tokens) / 1000.0 * self.price_per_1k_tokens


def server_key(url: str) -> str:
    """A model server as one key: scheme, host and port, lowercased (`http://Gpu:8000/v1` -> `http://gpu:8000`).

    The path is left out, so one server reached through both of its APIs
    (Ollama's and OpenAI's `/v1`) is one server, with one cap.
    """
    from urllib.parse import urlsplit

    text = url.strip()
    try:
        parts = urlsplit(text if "://" in text else "http://" + text)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return text.lower()
    scheme = parts.scheme.lower() or "http"
    default = 443 if scheme == "https" else 80
    return f"{scheme}://{host}:{port or default}"


@dataclass(frozen=True, kw_only=True)
class CheckpointSpec(Spec):
    """How often an agent saves, how many saves it keeps, and whether they are gzipped."""

    label: ClassVar[str] = "checkpoint spec"
    every: int = 1
    keep: int = 20
    compress: bool = True

    def _check(self) -> None:
        _at_least(self, "every", 1)
        _at_least(self, "keep", 1)


@dataclass(frozen=True, kw_only=True)
class HookSpec(Spec):
    """A function the worker calls at one point of an agent's life, within `timeout` seconds."""

    label: ClassVar[str] = "hook spec"
    on: str
    call: str
    priority: int = 100
    timeout: float = 5.0

    def _check(self) -> None:
        _one_of(self, "on", HOOK_POINTS)
        _dotted(self, "call")
        _at_least(self, "timeout", 0, inclusive=False)


@dataclass(frozen=True, kw_only=True)
class AgentSpec(Spec):
    """Everything a worker needs to run one agent; hooks come sorted by priority."""

    label: ClassVar[str] = "agent spec"
    agent: str
    task: str
    max_cycles: int
    storage: str
    llm: LLMSpec
    checkpoint: CheckpointSpec = field(default_factory=CheckpointSpec)
    budget_usd: Optional[float] = None  # this agent's own, USD across runs
    hooks: tuple[HookSpec, ...] = ()
    agent_class: Optional[str] = None  # None: the worker's built-in chat agent
    params: dict = field(default_factory=dict)  # the custom agent's own settings
    python_path: tuple[str, ...] = ()  # folders the worker adds to sys.path (the config's)
    await_grants: bool = False  # a team budget: each cycle starts on the supervisor's Proceed for the one before
    # Working together: the agents it may send to (empty: it sends nothing), whom the built-in chat agent
    # sends each reply to, and who sends to it that way (then it waits for a message before each cycle).
    peers: tuple[str, ...] = ()
    send_to: tuple[str, ...] = ()
    senders: tuple[str, ...] = ()
    traceparent: Optional[str] = None  # the run's span when traces are on: a worker's own spans join the run's trace
    tools: tuple[str, ...] = ()  # `package.module:function` the built-in chat agent's model may call
    tool_timeout: float = 60.0  # seconds one tool call may take before the model is told it did not finish

    def _check(self) -> None:
        _not_empty(self, "agent", "task", "storage")
        _at_least(self, "max_cycles", 1)
        _at_least(self, "budget_usd", 0, inclusive=False)
        _at_least(self, "tool_timeout", 0, inclusive=False)
        for path in self.tools:
            if not (isinstance(path, str) and _CALL_RE.match(path)):
                raise self._bad("tools", f"must be dotted paths like package.module:function (got {_short(path)})")
        _dotted(self, "agent_class")
        _traceparent(self)


@dataclass(frozen=True, kw_only=True)
class GroupSpec(Spec):
    """What a group's sub-supervisor runs: its team config, which the config room re-validates."""

    label: ClassVar[str] = "group spec"
    config: dict  # the group's TeamConfig as plain data
    worker_entry: str  # the entry point of its agents' workers
    model_host: Optional[str] = None  # the embedded model server the root started, if any
    traceparent: Optional[str] = None  # the run's span, handed on to the group's workers

    def _check(self) -> None:
        _not_empty(self, "config")
        _dotted(self, "worker_entry")
        if self.model_host is not None:
            _not_empty(self, "model_host")
        _traceparent(self)


@dataclass(frozen=True, kw_only=True)
class ModelServerSpec(Spec):
    """The embedded model server: which model file, on which port, with how many slots."""

    label: ClassVar[str] = "model server spec"
    model: str
    path: str
    port: int = 0  # 0: any free port; a restart asks for the one it had
    threads: int = 2
    slots: int = 2
    ctx_per_slot: int = 2048
    log: Optional[str] = None  # llama.cpp's own output goes here, never to the terminal

    def _check(self) -> None:
        _not_empty(self, "model", "path")
        _at_least(self, "port", 0)
        if self.port > 65535:
            raise self._bad("port", f"must be <= 65535 (got {self.port})")
        _at_least(self, "threads", 1)
        _at_least(self, "slots", 1)
        _at_least(self, "ctx_per_slot", 1)
