"""Shared fixtures, and the line between fast unit tests and process-level (e2e) tests.

A test is `e2e` when it starts processes, sends signals, opens a pseudo-terminal,
runs the CLI in a subprocess or starts a team. A test that asks for one of
E2E_FIXTURES is marked automatically (a team is started through them); any
other such test carries `@pytest.mark.e2e` itself. `pytest -m "not e2e"` is then
the inner loop, and an unmarked test slower than UNIT_BUDGET_S is named at the
end of the run (a warning, not a failure: the machine may just be busy), so that
a process-level test cannot hide among the unit tests unnoticed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from harness import Team
from tools_state import write_team

E2E_FIXTURES = frozenset({"make_team"})
UNIT_BUDGET_S = 0.5

_unit_seconds: dict[str, float] = {}


@pytest.fixture
def make_team(tmp_path: Path) -> Iterator[Callable[..., Team]]:
    teams: list[Team] = []

    def make(**kwargs: object) -> Team:
        root = tmp_path / f"team{len(teams)}"
        root.mkdir()
        team = Team(root, **kwargs)  # type: ignore[arg-type]
        teams.append(team)
        return team

    yield make
    for team in teams:
        team.cleanup()


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Add up setup, call and teardown of every test that is not marked e2e."""
    if "e2e" not in report.keywords:
        _unit_seconds[report.nodeid] = _unit_seconds.get(report.nodeid, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    slow = sorted(((s, n) for n, s in _unit_seconds.items() if s > UNIT_BUDGET_S), reverse=True)
    if not slow:
        return
    terminalreporter.write_sep("=", f"unmarked tests slower than {UNIT_BUDGET_S} s", yellow=True)
    for seconds, nodeid in slow:
        terminalreporter.write_line(f"WARNING {seconds:.2f}s {nodeid}: not marked e2e; mark it if it starts processes, else make it faster")


@pytest.fixture
def team(tmp_path: Path) -> dict[str, Any]:
    """State for the operator's tools: a config, checkpoints for two of three agents, an events.jsonl with a torn last line."""
    return write_team(tmp_path)
