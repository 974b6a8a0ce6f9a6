"""The start order that `after:` sets up, as plain graph rules over agent names."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def start_order_loop(after: Mapping[str, Sequence[str]]) -> list[str]:
    """One loop in the `after` graph, as the names along it; empty when there is none.

    Iterative depth-first search, so a long chain of agents cannot exhaust the
    stack. Names outside `after` (another part of the team) end a path.
    """
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in after:
        if state.get(root):
            continue
        path: list[str] = [root]
        todo: list[list[str]] = [list(after.get(root, ()))]
        state[root] = 1
        while path:
            if not todo[-1]:
                state[path.pop()] = 2
                todo.pop()
                continue
            name = todo[-1].pop()
            mark = state.get(name, 0)
            if mark == 1:
                return path[path.index(name):]
            if mark == 0 and name in after:
                state[name] = 1
                path.append(name)
                todo.append(list(after.get(name, ())))
    return []


def ready_to_start(after: Sequence[str], completed: set[str]) -> bool:
    """An agent held by `after` may start once every one of those has completed."""
    return all(name in completed for name in after)
