"""The README and docs/ stay true: every config shown loads, every command shown exists, every link resolves.

The Python examples are run where their subject is tested (test_api.py runs
docs/python-api.md's, test_custom_agents.py runs docs/custom-agents.md's).
Examples may name the user's own modules (`my_agents:Critic`, `my_hooks:notify`)
kept beside the config, as the docs say a user would; those placeholders, and
only names starting with `my_`, are written as empty modules beside the config
under test. Everything else an example names must import for real.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml
from harness import REPO

from supervisor.config import ConfigError, TeamConfig, load_config

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
PLACEHOLDER = re.compile(r"\b(?:agent|call):\s*(my_\w+)[.:]")
TEAM_KEYS = frozenset(info.alias or name for name, info in TeamConfig.model_fields.items()) - {"source"}


class Block(NamedTuple):
    page: Path
    line: int
    lang: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"

    def __str__(self) -> str:
        return self.where


def _blocks(page: Path) -> Iterator[Block]:
    text = page.read_text(encoding="utf-8")
    for match in FENCE.finditer(text):
        yield Block(page, text.count("\n", 0, match.start()) + 1, match.group(1), match.group(2))


def _yaml_blocks() -> list[Block]:
    return [block for page in PAGES for block in _blocks(page) if block.lang == "yaml"]


def _parsed(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return None  # reported by test_every_yaml_block_parses


def _is_full_config(data: Any) -> bool:
    return isinstance(data, dict) and "team" in data and ("agents" in data or "groups" in data)


def _is_team_fragment(data: Any) -> bool:
    return isinstance(data, dict) and not _is_full_config(data) and set(map(str, data)) <= TEAM_KEYS


def _quote_on(text: str) -> str:
    """The block with each hook's `on` key written `"on"`: plain YAML 1.1 (safe_load) would read `true`."""
    return re.sub(r"(^[ \t]*(?:-\s+)?|[{,]\s*)on:", r'\1"on":', text, flags=re.MULTILINE)


def _config_cases() -> Iterator[Any]:
    """Each full config, exactly as shown (a hook's bare `on:` included)."""
    for block in _yaml_blocks():
        if _is_full_config(_parsed(block.text)):
            yield pytest.param(block, block.text, id=block.where)


def _write_config(folder: Path, text: str, example: Block) -> Path:
    """The config in its own folder, with the placeholders of the user's modules that `example` names beside it."""
    for module in set(PLACEHOLDER.findall(example.text)):
        (folder / f"{module}.py").write_text('"""A placeholder for the user\'s own module."""\n')
    path = folder / "team.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_docs_show_full_configs_and_fragments() -> None:
    shown = [(block.page.name, _parsed(block.text)) for block in _yaml_blocks()]
    assert any(_is_full_config(data) for page, data in shown if page == "README.md")
    assert any(_is_full_config(data) for page, data in shown if page == "configuration.md")
    assert any(_is_team_fragment(data) for page, data in shown)


@pytest.mark.parametrize("block", _yaml_blocks(), ids=str)
def test_every_yaml_block_parses(block: Block) -> None:
    yaml.safe_load(block.text)


@pytest.mark.parametrize("block,text", list(_config_cases()))
def test_every_full_config_shown_loads(block: Block, text: str, tmp_path: Path) -> None:
    try:
        config = load_config(_write_config(tmp_path, text, block))
    except ConfigError as exc:
        pytest.fail(f"{block.where}: {exc}")
    assert config.all_agents()


@pytest.mark.parametrize("block", [b for b in _yaml_blocks() if _is_team_fragment(_parsed(b.text))], ids=str)
def test_every_fragment_of_team_keys_loads_in_a_team(block: Block, tmp_path: Path) -> None:
    """A fragment made only of team keys must load once the keys it leaves out are filled in."""
    filled = {"team": "docs", "storage": "state", **yaml.safe_load(_quote_on(block.text))}
    if "agents" not in filled and "groups" not in filled:
        filled["agents"] = [{"name": "docs-agent", "task": "Check the docs.", "max_cycles": 1}]
    try:
        load_config(_write_config(tmp_path, yaml.safe_dump(filled, sort_keys=False), block))
    except ConfigError as exc:
        pytest.fail(f"{block.where}: {exc}")


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda path: path.name)
def test_every_config_in_configs_loads(path: Path) -> None:
    try:
        config = load_config(path)
    except ConfigError as exc:
        pytest.fail(str(exc))
    assert config.all_agents()


def _command_rows() -> list[str]:
    """The first code span of each row of the README's Commands table."""
    section = (REPO / "README.md").read_text(encoding="utf-8").split("\n## Commands", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [re.match(r"\| `([^`]+)`", row).group(1) for row in rows]  # type: ignore[union-attr]


def _help(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "supervisor", *args, "--help"], check=False, capture_output=True,
                          text=True, timeout=60, cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_readme_has_a_commands_table() -> None:
    assert len(_command_rows()) >= 5


@pytest.mark.e2e  # runs the CLI
@pytest.mark.parametrize("shown", _command_rows(), ids=lambda shown: shown.split(" [")[0])
def test_every_command_in_the_readme_table_exists(shown: str) -> None:
    words = shown.split()
    if words[:3] == ["python", "-m", "supervisor"]:
        words = words[3:]
    command = "run" if words[0] == "CONFIG" else words[0]
    assert re.search(rf"^\s+{re.escape(command)}\b", _help(), re.MULTILINE), f"{command!r} is not in --help"
    if words[0] == "CONFIG":
        assert "`python -m supervisor CONFIG` is short for `run CONFIG`" in _help()
    options = _help(command)
    for flag in re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", " ".join(words)):
        assert re.search(rf"(?<![\w-]){re.escape(flag)}\b", options), f"{command} has no {flag}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+)$", text, re.MULTILINE)}


def _links() -> list[tuple[Path, str]]:
    found = []
    for page in PAGES:
        text = FENCE.sub("", page.read_text(encoding="utf-8"))
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if not re.match(r"[a-z]+:", target):  # http:, https:, mailto: are not ours to check
                found.append((page, target))
    return found


def test_the_docs_link_to_each_other() -> None:
    assert {target.split("#")[0] for page, target in _links() if page.name == "README.md"} >= {
        f"docs/{page.name}" for page in PAGES if page.parent.name == "docs"
    }


@pytest.mark.parametrize("page,target", _links(), ids=lambda v: v if isinstance(v, str) else v.name)
def test_every_relative_link_points_to_an_existing_file(page: Path, target: str) -> None:
    path, _, anchor = target.partition("#")
    file = (page.parent / path).resolve() if path else page
    assert file.is_file(), f"{page.relative_to(REPO)}: {target} does not exist"
    if anchor and file.suffix == ".md":
        assert anchor in _anchors(file), f"{page.relative_to(REPO)}: {target} has no heading for #{anchor}"


def test_ci_runs_exactly_the_readmes_test_command() -> None:
    bash = [b.text.strip() for b in _blocks(REPO / "README.md") if b.lang == "bash"]
    assert len(bash) >= 2, "the README shows the run command, then the test command"
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    assert ci == bash[1]
