"""Open files: room for a team's descriptors, or one line saying how to make it.

The supervisor holds about PER_CHILD descriptors for each child process (its
socket, its exit status from the forkserver, the forkserver's connection) and
its forkserver one more each, on top of a fixed BASE. The common desktop
default soft limit of 1024 open files thus ends a team of a few hundred agents
halfway through its start. A process may raise its own soft limit up to the
hard one without privilege, so the supervisor does, before its forkserver
starts (which inherits it); when even the hard limit is short, the run refuses
before any worker starts: exit 2, naming `ulimit -n` and the number needed.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass
from typing import Any, Optional

from supervisor.errors import SupervisorError

BASE = 64  # the supervisor's own: standard streams, event log, lock, selector, wake-up, control socket, spare
PER_CHILD = 3
EARLY_CEILING = 1 << 16  # raised this far before the team is known; beyond, only as far as a team needs
EXIT_CONFIG = 2


@dataclass(frozen=True)
class OpenFiles:
    was: int  # the soft limit we were started with
    soft: int  # the soft limit now
    hard: int


_first: Optional[int] = None


def needed(processes: int) -> int:
    """Descriptors a team of `processes` direct children needs in the supervisor."""
    return BASE + PER_CHILD * processes


def raise_soft_limit(wanted: int = EARLY_CEILING) -> OpenFiles:
    """Raise the soft RLIMIT_NOFILE toward the hard one (never lower it); idempotent."""
    global _first
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if _first is None:
        _first = soft
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):  # beyond fs.nr_open, or a kernel that says no: keep what we have
            pass
    return OpenFiles(_first, soft, hard)


def make_room(processes: int) -> OpenFiles:
    """Room for `processes` children, or a one-line SupervisorError (exit 2) naming `ulimit -n`."""
    need = needed(processes)
    limits = raise_soft_limit(max(need, EARLY_CEILING))
    if limits.soft != resource.RLIM_INFINITY and limits.soft < need:
        hard = "unlimited" if limits.hard == resource.RLIM_INFINITY else str(limits.hard)
        raise SupervisorError(
            f"a team of {processes} agents needs about {need} open files, but the limit here is "
            f"{limits.soft} (hard limit {hard}): raise it with `ulimit -n {need}` and run again",
            EXIT_CONFIG,
        )
    return limits


def announced(limits: OpenFiles) -> dict[str, Any]:
    """The fields `supervisor_started` carries: the limit, and what it was if we raised it."""
    fields: dict[str, Any] = {"open_files_limit": limits.soft}
    if limits.soft != limits.was:
        fields["open_files_limit_was"] = limits.was
    return fields
