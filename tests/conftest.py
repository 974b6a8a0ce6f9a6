"""Shared fixtures: a team in a temp folder, cleaned up whatever happens; disks that fill up."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Callable, Iterator

import pytest

from harness import Team


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
