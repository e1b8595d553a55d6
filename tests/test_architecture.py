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


# ------------------------------------------------------------------------------ size limits
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60

#: Known offenders (module, or module.qualname of a function -> its size in lines when this list was
#: written). A listed item may shrink but never grow; once it is within the limit, remove it from the
#: list (the next test says so). Empty the list as the owners split these; add nothing to it.
ALLOWED_OVERSIZE: dict[str, int] = {}


def _function_sizes(tree: ast.AST, prefix: str) -> dict[str, int]:
    """Lines of every function or method in ``tree`` (``prefix.qualname``), decorators and docstrings
    included; a nested function counts on its own and inside its parent."""
    sizes: dict[str, int] = {}

    def visit(node, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}.{child.name}"
                if not isinstance(child, ast.ClassDef):
                    start = min([child.lineno] + [d.lineno for d in child.decorator_list])
                    sizes[name] = child.end_lineno - start + 1
                visit(child, name)
            else:
                visit(child, prefix)

    visit(tree, prefix)
    return sizes


def _sizes() -> dict[str, int]:
    """Lines of every module of the package (``name``) and of its functions (``module.qualname``)."""
    sizes: dict[str, int] = {}
    for path in sorted(PACKAGE.glob("*.py")):
        text = path.read_text()
        sizes[path.stem] = len(text.splitlines())
        sizes.update(_function_sizes(ast.parse(text), path.stem))
    return sizes


def _limit(name: str) -> int:
    return MAX_FUNCTION_LINES if "." in name else MAX_MODULE_LINES


def test_no_module_over_450_lines_and_no_function_over_60_beyond_the_shrinking_allow_list():
    over = {n: s for n, s in _sizes().items() if s > _limit(n)}
    new = {n: s for n, s in over.items() if n not in ALLOWED_OVERSIZE}
    grown = {n: (ALLOWED_OVERSIZE[n], s) for n, s in over.items() if n in ALLOWED_OVERSIZE and s > ALLOWED_OVERSIZE[n]}
    assert new == {}, ("over the limit (modules 450 lines, functions 60): split them into named steps or "
                       "modules named for what they do")
    assert grown == {}, "allow-listed items grew (listed size, now): shrink them instead"


def test_the_allow_list_names_only_current_offenders():
    sizes = _sizes()
    stale = {n: sizes.get(n) for n in ALLOWED_OVERSIZE if sizes.get(n, 0) <= _limit(n)}
    assert stale == {}, "these are gone or within the limit now (None: gone): remove them from ALLOWED_OVERSIZE"


def test_the_size_check_sees_long_functions_methods_and_nested_ones():
    """The measure itself, on code made here: a 61-line function, a decorated method, a nested function."""
    body = "\n".join(f"    x{i} = {i}" for i in range(58))
    inner = "\n".join(f"            y{i} = {i}" for i in range(60))
    code = (f"def f():\n    'doc'\n{body}\n    return x0\n\n"
            f"class C:\n    @property\n    def m(self):\n        def g():\n{inner}\n        return g\n")
    sizes = _function_sizes(ast.parse(code), "mod")
    assert sizes == {"mod.f": 61, "mod.C.m": 64, "mod.C.m.g": 61}
    assert {n for n, s in sizes.items() if s > _limit(n)} == {"mod.f", "mod.C.m", "mod.C.m.g"}
    assert _sizes()["store.Store.get"] > 5  # the package's methods are measured under their class
