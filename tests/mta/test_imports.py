"""The import rule from the style guide: daemons never import each other; they share mta/ modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

MTA = Path(__file__).resolve().parents[2] / "mta"
DAEMONS = ("smtpd", "cleanup", "pickup", "postdrop", "qmgr", "local", "showq", "anvil", "error", "discard", "smtp",
           "pipe", "bounce", "master")


def daemon_files(name: str) -> list[Path]:
    package = MTA / name
    if package.is_dir():
        return sorted(package.rglob("*.py"))
    module = MTA / f"{name}.py"
    return [module] if module.exists() else []


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("daemon", DAEMONS)
def test_daemon_imports_no_other_daemon(daemon: str) -> None:
    files = daemon_files(daemon)
    if not files:
        pytest.skip(f"mta/{daemon} is not there yet")
    others = [d for d in DAEMONS if d != daemon]
    offending = []
    for path in files:
        for module in imported_modules(path):
            parts = module.split(".")
            if len(parts) >= 2 and parts[0] == "mta" and parts[1] in others:
                offending.append(f"{path.relative_to(MTA.parent)} imports {module}")
    assert offending == []


def test_shared_modules_import_no_daemon() -> None:
    shared = [p for p in MTA.glob("*.py") if p.stem not in DAEMONS]
    offending = []
    for path in shared:
        for module in imported_modules(path):
            parts = module.split(".")
            # skeleton.py maps master.cf commands to module names as strings, never imports them.
            if len(parts) >= 2 and parts[0] == "mta" and parts[1] in DAEMONS:
                offending.append(f"{path.name} imports {module}")
    assert offending == []
