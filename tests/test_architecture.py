"""The layers contract covers every module, and the tree keeps the house's size limits."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "giblet_store"


def _layered_modules() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["type"] == "layers"]
    return {m.strip() for layer in contract["layers"] for m in layer.split("|")}


def test_every_module_has_a_layer_so_import_linter_checks_it():
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    layered = _layered_modules()
    assert modules - layered == set(), "add these modules to [tool.importlinter] layers in pyproject.toml"
    assert layered - modules == set(), "these layers name modules that do not exist"


def test_layers_are_ordered_so_that_no_module_imports_one_above_it():
    """A cheap local re-check of what lint-imports enforces in `make test` (module-level and lazy imports)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["type"] == "layers"]
    level = {m.strip(): i for i, layer in enumerate(contract["layers"]) for m in layer.split("|")}
    bad = []
    for path in PACKAGE.glob("*.py"):
        if path.stem == "__init__":
            continue
        tree = ast.parse(path.read_text())
        type_checking = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                         and getattr(node.test, "id", "") == "TYPE_CHECKING" for n in ast.walk(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module and id(node) not in type_checking:
                target = node.module.split(".")[0]
                if target in level and level[target] <= level[path.stem] and target != path.stem:
                    same = level[target] == level[path.stem]
                    bad.append(f"{path.stem} imports {target} ({'same layer' if same else 'a higher layer'})")
    assert bad == []
