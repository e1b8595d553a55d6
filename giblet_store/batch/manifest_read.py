"""Reading a manifest file safely: bounded size, UTF-8 text, no YAML alias bombs, bounded nesting.

A manifest is small text a person writes. Everything here refuses what is not (binary files, other
encodings, documents that expand far beyond their size, cells longer than the CSV limit) with a
:class:`~giblet_store.errors.ManifestError` that names the file and the fix, before any structure is
built from it; messages show values through :func:`short_repr`, never an exploded structure.
"""

from __future__ import annotations

import csv
import json
import reprlib
from pathlib import Path
from typing import Any

from ..errors import ManifestError

__all__ = ["MAX_MANIFEST_BYTES", "MAX_NODES", "MAX_CELL_CHARS", "read_text", "parse_mapping", "csv_rows",
           "short_repr", "resolve_path"]

#: Largest manifest file read (a manifest of 100,000 stimuli is ~10 MB).
MAX_MANIFEST_BYTES = 64 * 1024**2
#: Most values (scalars, lists, mappings) a YAML/JSON manifest may hold once its aliases are expanded.
MAX_NODES = 1_000_000
#: Longest CSV cell (the csv module's default field limit).
MAX_CELL_CHARS = 131_072

_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 80
_SHORT.maxlist = _SHORT.maxdict = _SHORT.maxtuple = 4
_SHORT.maxlevel = 2


def short_repr(value: Any) -> str:
    """``repr(value)`` cut to a line (long strings and big structures end in ``...``)."""
    return _SHORT.repr(value)


def resolve_path(p: Path) -> Path | None:
    """``p`` made absolute with its links followed; None when its links loop (or cannot be followed)."""
    try:
        return p.resolve()
    except (RuntimeError, OSError):  # Python 3.11 raises RuntimeError("Symlink loop from ...")
        return None


def read_text(p: Path) -> str:
    """The manifest's text: at most :data:`MAX_MANIFEST_BYTES`, UTF-8, no NUL bytes."""
    name = str(p)
    with open(p, "rb") as f:
        data = f.read(MAX_MANIFEST_BYTES + 1)
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(name, [f"the file is larger than {MAX_MANIFEST_BYTES // 1024**2} MiB; a manifest lists "
                                   "stimuli and parameters. Split it into several manifests"])
    nul = data.find(b"\x00")
    if nul >= 0:
        raise ManifestError(name, [f"the file holds NUL bytes (first at byte {nul}); a manifest is "
                                   "text. Give the .csv/.yaml/.json file, not a binary one"])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(name, [f"the file is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                                   f"{exc.start}); save it as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)"]) from None


def parse_mapping(p: Path, suffix: str) -> Any:
    """The parsed YAML/JSON document of manifest ``p`` (aliases and nesting bounded before building)."""
    text = read_text(p)
    if suffix != ".json":
        import yaml  # not installed: an ImportError, which the CLI turns into the extra to install
    try:
        return json.loads(text) if suffix == ".json" else _safe_yaml(text, p)
    except RecursionError:
        raise ManifestError(str(p), [f"{p.name} is nested too deeply; a manifest is a mapping with a list of "
                                     "stimuli (a few levels)"]) from None
    except ManifestError:
        raise
    except Exception as exc:  # yaml.YAMLError / json.JSONDecodeError carry the line
        raise ManifestError(str(p), [f"cannot parse {p.name}: {short_repr(str(exc))}"]) from None


def _safe_yaml(text: str, p: Path) -> Any:
    """``yaml.safe_load`` that counts the values the aliases would expand to before building any."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        n = _expanded_size(node, {}, set())
        if n > MAX_NODES:
            raise ManifestError(str(p), [f"{p.name} expands to more than {MAX_NODES:,} values through its YAML "
                                         f"aliases (&anchor / *alias), from {len(text):,} characters; write the "
                                         "values out instead of nesting aliases"])
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _expanded_size(node: Any, memo: dict, active: set) -> int:
    """Values under ``node`` with every alias expanded (shared nodes counted once per use); capped."""
    import yaml

    key = id(node)
    if key in memo:
        return memo[key]
    if key in active:  # an alias to an enclosing anchor: infinite once expanded
        return MAX_NODES + 1
    active.add(key)
    total = 1
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    else:
        children = []
    for child in children:
        total += _expanded_size(child, memo, active)
        if total > MAX_NODES:
            break
    active.discard(key)
    memo[key] = total
    return total


def csv_rows(p: Path) -> tuple[list[str], list[int]]:
    """(lines, their line numbers) of a CSV manifest: blank and ``#`` lines left out; every cell of at most
    :data:`MAX_CELL_CHARS` characters (checked here, so ``csv`` never raises its own field-limit error)."""
    text = read_text(p)
    numbered = [(n, ln) for n, ln in enumerate(text.splitlines(keepends=True), start=1)
                if ln.strip() and not ln.lstrip().startswith("#")]
    lines = [ln for _, ln in numbered]
    reader = csv.reader(lines)
    try:
        for _ in reader:
            pass
    except csv.Error as exc:
        n = numbered[min(max(reader.line_num, 1), len(numbered)) - 1][0]
        limit = "longer than" in str(exc) or "field limit" in str(exc)
        raise ManifestError(str(p), [f"line {n}: a cell is longer than {MAX_CELL_CHARS:,} characters; a cell holds a "
                                     "path or a few values. Check the quoting (an unclosed quote runs to the end)"
                                     if limit else f"cannot parse {p.name}: {exc}"]) from None
    return lines, [n for n, _ in numbered]
