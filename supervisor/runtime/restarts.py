"""Restart decisions, after Erlang/OTP's supervisor, as plain logic.

Which exits restart an agent (its restart kind), how often it may be restarted
before it has failed (intensity: `max_restarts` within `restart_window`
seconds), how long to wait before each attempt (a doubling delay), and which
other agents restart with it (the team's strategy). No processes, no clocks of
its own: the arbiter passes `now` in, so every rule is testable as data.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Optional

from protocol import COMPLETED, FAILED
from supervisor.config import RestartPolicy

FIRST_DELAY = 0.1  # seconds before the first restart of a window
MAX_DELAY = 5.0  # the doubling stops here


def wants_restart(kind: str, status: str) -> bool:
    """Whether an exit with `status` restarts an agent of restart `kind`.

    A completed agent has nothing left to do, whatever its kind. `temporary`
    is never restarted, `transient` only after an abnormal exit (a crash, a
    kill, a hang, a broken protocol), `permanent` after any exit short of
    completion.
    """
    if status == COMPLETED or kind == "temporary":
        return False
    if kind == "transient":
        return status == FAILED
    return True


@dataclass
class RestartBook:
    """One agent's restarts within the current window."""

    policy: RestartPolicy
    times: deque[float] = field(default_factory=deque)
    attempts: int = 0  # every restart this run, for the worker_restarted event

    def admit(self, now: float) -> Optional[float]:
        """Record a restart at `now` and return its delay, or None past the intensity."""
        while self.times and now - self.times[0] > self.policy.restart_window:
            self.times.popleft()
        if len(self.times) >= self.policy.max_restarts:
            return None
        self.times.append(now)
        self.attempts += 1
        return min(FIRST_DELAY * 2 ** (len(self.times) - 1), MAX_DELAY)


def restarts_with(strategy: str, order: list[str], failed: str) -> list[str]:
    """The agents restarted when `failed` restarts, in start order, `failed` included."""
    if strategy == "one_for_all":
        return list(order)
    if strategy == "rest_for_one":
        return order[order.index(failed) :]
    return [failed]
