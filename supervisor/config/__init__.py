"""What is validated before anything starts: the team's YAML, as frozen models.

Everything a run, a tool or a worker's Start payload needs from the config is
read from these models; a mistake in the file is one `ConfigError` line.
"""

from supervisor.config.models import (
    AGENT,
    DEFAULT_HANG_TIMEOUT,
    GROUP,
    AgentConfig,
    CheckpointConfig,
    ConfigError,
    GroupConfig,
    HookConfig,
    LLMConfig,
    RestartPolicy,
    ShutdownConfig,
    TeamConfig,
    load_config,
    parse_duration,
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
