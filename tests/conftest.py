"""Shared fixtures (teams, tools' state, disks that fill up), and the line between unit and e2e tests.

A test is `e2e` when it starts processes, sends signals, opens a pseudo-terminal,
runs the CLI in a subprocess or starts a team. A test that asks for one of
E2E_FIXTURES is marked automatically (a team is started through them); any
other such test carries `@pytest.mark.e2e` itself. `pytest -m "not e2e"` is then
the inner loop, and an unmarked test slower than UNIT_BUDGET_S is named at the
end of the run (a warning, not a failure: the machine may just be busy), so that
a process-level test cannot hide among the unit tests unnoticed.
"""

from __future__ import annotations

import compileall
import os
import subprocess
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from harness import PACKED, Team
from tools_state import write_team

E2E_FIXTURES = frozenset({"make_team", "mounts", "backend"})
UNIT_BUDGET_S = 0.5

_unit_seconds: dict[str, float] = {}


@pytest.fixture(params=["local", "ray", PACKED])
def backend(request: pytest.FixtureRequest) -> str:
    """Where the team's children run: the tests that matter run on both backends, and with agents sharing processes."""
    if request.param == "ray":
        pytest.importorskip("ray", reason="the Ray backend's tests need `pip install '.[ray]'`")
    return str(request.param)


@pytest.fixture
def make_team(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Team]]:
    teams: list[Team] = []
    # A test that asks for `backend` runs its teams there (both backends, by the fixture's parameters);
    # every other test on the local tree, or where AGS_TEST_BACKEND says (`ray`: the whole suite on Ray).
    default = os.environ.get("AGS_TEST_BACKEND", "local")
    where = request.getfixturevalue("backend") if "backend" in request.fixturenames else default

    def make(**kwargs: object) -> Team:
        kwargs.setdefault("backend", where)
        root = tmp_path / f"team{len(teams)}"
        root.mkdir()
        team = Team(root, **kwargs)  # type: ignore[arg-type]
        teams.append(team)
        return team

    yield make
    for team in teams:
        team.cleanup()


def pytest_sessionstart(session: pytest.Session) -> None:
    """Write the project's bytecode once, before any test, as a user's first run does.

    Where PYTHONDONTWRITEBYTECODE is set (the sandboxes this suite runs in set it), no process
    writes `__pycache__`: each of the hundreds of supervisors, forkservers and CLIs the suite starts
    compiled the project anew, about 0.2 s each.
    """
    root = Path(__file__).resolve().parent.parent
    for package in ("protocol", "workers", "supervisor", "tests"):
        compileall.compile_dir(str(root / package), quiet=1)


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


class Mounts:
    """Real file systems for tests that need a full disk: a small tmpfs, and bind mounts onto files."""

    def __init__(self) -> None:
        self.points: list[Path] = []

    def tmpfs(self, folder: Path, size: str) -> Path:
        """A tmpfs of `size` (e.g. "64k") at `folder`, mode 0700 like a storage folder."""
        folder.mkdir(parents=True, exist_ok=True)
        self._mount("-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(folder))
        return folder

    def bind(self, source: Path, target: Path) -> None:
        """`source` seen at `target` too (both must exist, of the same kind)."""
        self._mount("--bind", str(source), str(target))

    def _mount(self, *args: str) -> None:
        result = subprocess.run(["mount", *args], capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount here: {result.stderr.strip()}")
        self.points.append(Path(args[-1]))

    def unmount_all(self) -> None:
        for point in reversed(self.points):
            subprocess.run(["umount", "-l", str(point)], capture_output=True)  # lazy: a leftover process may hold it


@pytest.fixture
def mounts() -> Iterator[Mounts]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs (a disk a test can fill) needs root")
    found = Mounts()
    try:
        yield found
    finally:
        found.unmount_all()
