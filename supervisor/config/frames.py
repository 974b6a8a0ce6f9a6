"""Every Start message the config will make must be one frame the receiver accepts.

A config that validates but whose Start cannot be sent (a 5 MB task, params
nested past the decoder's depth, text that is not valid Unicode) would fail
only once the run has started. So validation builds each agent's and each
group's Start, encodes it with the protocol's own encoder, decodes it back as
the receiver would, and names the field that is too big.

Sizes are first estimated from the parts a user can shrink, without building
the message: a group's Start repeats the team's llm block for every agent,
so a modest file could otherwise ask for a gigabyte-sized encode.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import msgpack

from protocol import MAX_FRAME_BYTES, ProtocolError, Start, decode_payload, encode
from protocol.framing import FrameTooLarge
from protocol.specs import AgentSpec, GroupSpec, Spec
from supervisor.config.errors import LocatedError

if TYPE_CHECKING:
    from supervisor.config.models import AgentConfig, TeamConfig

__all__ = ["FRAME_LIMIT", "check_start_frames"]

# What the runtime adds after validation: the embedded model server's host in
# place of an agent's, a custom worker entry point in a group's Start.
HEADROOM = 1024
FRAME_LIMIT = MAX_FRAME_BYTES - HEADROOM
_ENTRY_PLACEHOLDER = "workers.entry:run_worker"  # a group's Start names its workers' entry point
_LLM_PARTS = ("system_prompt", "options", "model", "host")

Loc = tuple[Any, ...]
Parts = list[tuple[Loc, int]]


def check_start_frames(config: TeamConfig) -> None:
    """Raise LocatedError at the field to fix if some Start of this config cannot be sent.

    Locations are from the top of the file: call this from a model-level validator.
    """
    for index, agent in enumerate(config.agents):
        _check_agent(config, agent, ("agents", index))
    for g, group in enumerate(config.groups):
        for index, agent in enumerate(group.agents):
            _check_agent(config, agent, ("groups", g, "agents", index))
        _check_child(group.name, ("groups", g), "group", _group_parts(config, g), partial(config.group_spec, group.name, _ENTRY_PLACEHOLDER), GroupSpec)


def _check_agent(config: TeamConfig, agent: AgentConfig, where: Loc) -> None:
    _check_child(agent.name, where, "agent", _agent_parts(config, agent, where), partial(config.agent_spec, agent.name), AgentSpec)


def _check_child(name: str, where: Loc, noun: str, parts: Parts, build: Callable[[], Spec], kind: type[Spec]) -> None:
    """Estimate, build, encode, decode: the first step that fails names the field to fix."""
    receiver = "worker" if noun == "agent" else "process"

    def too_large(size: int, exact: bool) -> LocatedError:
        blame, _ = max(parts, key=lambda part: part[1])
        amount = f"{size}-byte" if exact else f"more than {FRAME_LIMIT}-byte"
        return LocatedError(blame, f"too large: {noun} {name!r} would be started with a {amount} message (at most {FRAME_LIMIT})")

    if sum(size for _, size in parts) > FRAME_LIMIT:
        raise too_large(0, exact=False)
    try:
        frame = encode(Start(agent=name, spec=build().to_wire()), max_frame_bytes=FRAME_LIMIT)
        message = decode_payload(frame[4:])
        if not isinstance(message, Start):  # pragma: no cover - encode and decode disagree
            raise ProtocolError(f"a start frame decoded as {message.type}")
        kind.from_wire(message.spec)
    except FrameTooLarge as exc:
        raise too_large(exc.size, exact=True) from None
    except ProtocolError as exc:
        raise LocatedError(where, f"cannot be sent to its {receiver}: {exc}") from None


def _size(value: Any) -> int:
    try:
        return len(msgpack.packb(value, use_bin_type=True))
    except (TypeError, ValueError, OverflowError):
        return 0  # unencodable: the encode step reports it, at the child


def _agent_parts(config: TeamConfig, agent: AgentConfig, where: Loc) -> Parts:
    """(location, encoded bytes) of each part of an agent's Start that a user can shrink."""
    tally: dict[Loc, int] = {}
    _own_parts(tally, config, agent, where)
    _team_parts(tally, config)
    return list(tally.items())


def _group_parts(config: TeamConfig, g: int) -> Parts:
    """A group's Start holds the team's blocks once, and each of its agents whole, llm merged in."""
    tally: dict[Loc, int] = {}
    for index, agent in enumerate(config.groups[g].agents):
        _own_parts(tally, config, agent, ("groups", g, "agents", index))
    _team_parts(tally, config)
    for key in _LLM_PARTS:
        _add(tally, ("llm", key), getattr(config.llm, key))
    return list(tally.items())


def _own_parts(tally: dict[Loc, int], config: TeamConfig, agent: AgentConfig, where: Loc) -> None:
    _add(tally, (*where, "task"), agent.task)
    _add(tally, (*where, "params"), agent.params)
    _add(tally, (*where, "hooks"), [h.model_dump(mode="json") for h in agent.hooks])
    _add(tally, (*where, "agent"), agent.agent_class)
    for key in _LLM_PARTS:
        value = getattr(agent.llm, key)
        inherited = value == getattr(config.llm, key)  # then the team's block is the place to shrink it
        _add(tally, ("llm", key) if inherited else (*where, "llm", key), value)


def _team_parts(tally: dict[Loc, int], config: TeamConfig) -> None:
    _add(tally, ("hooks",), [h.model_dump(mode="json") for h in config.hooks])
    _add(tally, ("storage",), str(config.storage))
    _add(tally, ("agent",), config.agent_class)


def _add(tally: dict[Loc, int], loc: Loc, value: Any) -> None:
    tally[loc] = tally.get(loc, 0) + _size(value)
