"""What is validated before anything starts: the team's YAML, as frozen models.

Everything a run, a tool or a worker's Start payload needs from the config is
read from these models; a mistake in the file is one `ConfigError` line.

`fields` holds the value types (names, durations, hosts, dotted paths, plain
data), `models` the frozen models, `loader` the YAML reading and `errors` the
one-line messages.
"""

from supervisor.config.errors import ConfigError
from supervisor.config.fields import parse_duration
from supervisor.config.loader import load_config
from supervisor.config.models import (
    AGENT,
    DEFAULT_HANG_TIMEOUT,
    GROUP,
    AgentConfig,
    CheckpointConfig,
    GroupConfig,
    HookConfig,
    LLMConfig,
    RestartPolicy,
    ShutdownConfig,
    TeamConfig,
)

__all__ = [
    "AGENT",
    "DEFAULT_HANG_TIMEOUT",
    "GROUP",
    "AgentConfig",
    "CheckpointConfig",
    "ConfigError",
    "GroupConfig",
    "HookConfig",
    "LLMConfig",
    "RestartPolicy",
    "ShutdownConfig",
    "TeamConfig",
    "load_config",
    "parse_duration",
]
