"""The pre-flight of a pool of model servers: it starts if at least one server is usable.

Each server is checked as a lone server would be; a pool with none usable is
the first server's problem and the others' in one line (exit 3), and a pool
with some usable runs on those, the others named in a warning each (the
root's slot bank rests them from the start, and tries them again after).
"""

from __future__ import annotations

from typing import Callable

from supervisor.errors import SupervisorError

Skipped = list[tuple[str, str]]  # (server, why it was not usable at the start)


def check_pool(servers: tuple[str, ...], check: Callable[[str], None]) -> Skipped:
    """`check` each server (it raises SupervisorError); the servers that failed, unless all did."""
    if len(servers) == 1:
        check(servers[0])
        return []
    failed: Skipped = []
    for server in servers:
        try:
            check(server)
        except SupervisorError as exc:
            failed.append((server, str(exc)))
    if len(failed) == len(servers):
        raise SupervisorError("no server of the pool (llm.hosts) is usable: " + " | ".join(why for _, why in failed), 3)
    return failed
