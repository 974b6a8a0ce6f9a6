"""Import direction is architecture: these rules keep the rooms apart.

- `protocol/` is the leaf: it imports neither `supervisor` nor `workers`.
- `supervisor/` and `workers/` talk only through `protocol/` and storage.
- Inside `supervisor/`: `tools/` (what an operator runs against storage) and
  `runtime/` (what runs during a run) never import each other; `runtime/` never
  imports `terminal/` (decisions emit events, presentation renders them); the
  shared base (`config/`, `storage`, `vocabulary`, `errors`) imports none of the
  rooms; and nothing imports `cli`.

Every import counts, including those inside functions and under TYPE_CHECKING:
a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("protocol", "supervisor", "workers")
ROOMS = ("runtime", "tools", "terminal")
BASE = ("config", "storage", "vocabulary", "errors")


def imports_of(path: Path, text: str | None = None) -> Iterator[str]:
    """Every module name this file imports, absolute (relative imports resolved)."""
    tree = ast.parse(path.read_text() if text is None else text, filename=str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)  # `from supervisor import cli`


def module_files() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def owner(path: Path) -> str:
    """`supervisor.runtime`, `supervisor.storage`, `workers`, ... : the unit a rule speaks of."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[0] != "supervisor" or len(parts) == 1:
        return parts[0]
    return f"supervisor.{parts[1]}"


def breaks(importer: str, imported: str) -> str | None:
    """The rule `importer` importing `imported` breaks, or None."""
    top = imported.split(".")[0]
    if importer == "protocol" and top in ("supervisor", "workers"):
        return "protocol/ is the leaf: it imports neither supervisor/ nor workers/"
    if importer == "workers" and top == "supervisor":
        return "workers/ never imports supervisor/: they talk through protocol/ and storage"
    if importer.startswith("supervisor") and top == "workers":
        return "supervisor/ never imports workers/: it starts a worker by its entry point"
    if (imported == "supervisor.cli" or imported.startswith("supervisor.cli.")) and importer != "supervisor.__main__":
        return "nothing imports cli: it is the outermost shell"
    room = imported.split(".")[1] if imported.startswith("supervisor.") and imported.count(".") >= 1 else ""
    if importer == "supervisor.tools" and room == "runtime":
        return "tools/ never imports runtime/"
    if importer == "supervisor.runtime" and room in ("tools", "terminal"):
        return f"runtime/ never imports {room}/: it emits events, the terminal renders them"
    if importer in {f"supervisor.{b}" for b in BASE} and room in ROOMS:
        return f"the shared base never imports a room ({room}/)"
    return None


def violations(files: list[Path]) -> list[str]:
    found = []
    for path in files:
        importer = owner(path)
        for imported in imports_of(path):
            rule = breaks(importer, imported)
            if rule is not None:
                found.append(f"{path.relative_to(ROOT)} imports {imported}: {rule}")
    return sorted(set(found))


def test_the_tree_keeps_every_import_rule() -> None:
    assert violations(module_files()) == []


@pytest.mark.parametrize(
    ("where", "line"),
    [
        ("supervisor/runtime/planted.py", "from workers.agent import Agent"),
        ("supervisor/storage_planted.py", "import workers.checkpoints"),
        ("protocol/planted.py", "from supervisor.config import TeamConfig"),
        ("workers/planted.py", "from supervisor import vocabulary"),
        ("supervisor/tools/planted.py", "from supervisor.runtime.events import EventLog"),
        ("supervisor/runtime/planted.py", "from supervisor.terminal.console import Console"),
        ("supervisor/runtime/planted.py", "from ..tools import report"),
        ("supervisor/api.py", "from supervisor import cli"),
        ("supervisor/config/planted.py", "from supervisor.runtime import arbiter"),
    ],
)
def test_a_planted_import_against_the_rules_is_caught(where: str, line: str) -> None:
    """The checker itself fails on each kind of wrong import, even one inside a function."""
    planted = ROOT / where
    names = list(imports_of(planted, text=f"def f():\n    {line}\n"))
    assert [n for n in names if breaks(owner(planted), n)], (where, line, names)
