"""Shared fixtures: a team in a temp folder, cleaned up whatever happens."""

from __future__ import annotations

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
