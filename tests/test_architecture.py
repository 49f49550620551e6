"""The layers of docs/architecture.md, read from the code: every import (lazy ones inside functions included) of
every module under cyclesr_dist/ must go to its own layer or one the table allows."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cyclesr_dist"
BASE = {
    "config",
    "config_parse",
    "metrics",
    "errors",
    "atomic",
    "torch_utils",
    "checkpoint_format",
    "jpeg_tables",
    "__init__",
}
# layer -> the layers it may import (besides itself and the base modules)
ALLOWED = {
    "base": set(),
    "data": set(),
    "models": set(),
    "serve": {"data", "models"},
    "cyclesr": {"data", "models", "serve"},
    "engine": {"data"},
    "launch": set(),
    "testing": {"cyclesr", "models", "data"},
    "cli": {"data", "models", "serve", "cyclesr", "engine", "launch"},
}
MAX_LINES = 300
LONGER_FOR_A_REASON: set[str] = set()  # "path": a module with a stated reason to be longer


def layer(parts: tuple[str, ...]) -> str:
    top = parts[0].removesuffix(".py")
    return "base" if top in BASE else top


def imported_layers(path: Path) -> set[tuple[str, int]]:
    rel = path.relative_to(PACKAGE)
    package = rel.parent.parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[tuple[str, ...]] = []
        if isinstance(node, ast.Import):
            targets = [tuple(a.name.split(".")[1:]) for a in node.names if a.name.split(".")[0] == "cyclesr_dist"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                module = tuple(node.module.split(".")) if node.module else ()
                targets = [base + module if module else base + (a.name,) for a in node.names]
            elif node.module and node.module.split(".")[0] == "cyclesr_dist":
                module = tuple(node.module.split(".")[1:])
                targets = [module or (a.name,) for a in node.names]
        found |= {(layer(t), node.lineno) for t in targets if t}
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_layers(path: Path) -> None:
    own = layer(path.relative_to(PACKAGE).parts)
    allowed = ALLOWED[own] | {own, "base"}
    bad = sorted((name, line) for name, line in imported_layers(path) if name not in allowed)
    assert not bad, f"{path.relative_to(PACKAGE)} ({own}) imports {bad}; {own} may import {sorted(allowed)}"


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The check itself can fail: an engine module that imports a network is caught, lazily or not."""
    probe = PACKAGE / "engine" / "_probe_for_test.py"
    probe.write_text("def f():\n    from ..models import SR_NETS\n    from cyclesr_dist.cyclesr import Stage\n")
    try:
        assert {name for name, _ in imported_layers(probe)} == {"models", "cyclesr"}
    finally:
        probe.unlink()


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_stay_small(path: Path) -> None:
    rel = path.relative_to(PACKAGE).as_posix()
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES or rel in LONGER_FOR_A_REASON, f"{rel}: {lines} lines (> {MAX_LINES})"


def test_engine_never_names_a_network() -> None:
    names = ("gen_clean_to_real", "gen_real_to_clean", "disc_clean", "disc_real", '"sr"', "'sr'")
    for path in (PACKAGE / "engine").rglob("*.py"):
        text = path.read_text()
        assert not [n for n in names if n in text], f"{path.relative_to(PACKAGE)} names a network"
