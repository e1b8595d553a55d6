"""Text a person reads in a terminal: entry tables (``ls``, ``demo``).

A table shows what tells the listed entries apart: their key prefix and kind, then one column per
identifying attribute of the entry repr (:data:`giblet_store.store.entry_repr.IDENTIFYING`: source,
model, kbps, feature, onset_s, model_name, ...) that any listed entry has, then the path. ``ls
--columns`` chooses the columns: ``key``, ``kind``, ``path``, a repr label (``kbps``) or any attribute
name (``bandwidth_kbps``, ``hrf_params.peak_delay_s``).
"""

from __future__ import annotations

import sys
import unicodedata

from ..errors import ParameterError
from ..store.attr_match import MISSING, lookup_attr
from ..store.entry_repr import IDENTIFYING, short_value

__all__ = ["print_table", "table_columns", "printable"]

_LABELS = {label: name for name, label in IDENTIFYING}  # repr label -> attribute name
_FIXED = {"key": lambda e: e.key[:16], "kind": lambda e: e.kind, "path": lambda e: e.path}

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
#: Unicode categories a table cell never prints as they are: controls (newline), formats (the
#: right-to-left override U+202E that reorders what follows), line/paragraph separators, surrogates.
_HIDDEN = {"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"}


def printable(text: str) -> str:
    """``text`` with every character that could break or reorder a terminal line escaped (``\\n``,
    ``\\u202e``); a backslash is doubled, so an escape cannot be forged by a name that spells one."""
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif unicodedata.category(ch) in _HIDDEN:
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}" if ord(ch) < 0x10000
                       else f"\\U{ord(ch):08x}")
        else:
            out.append(ch)
    return "".join(out)


def _attr_name(column: str) -> str:
    return _LABELS.get(column, column)


def table_columns(entries, wanted: list[str] | None = None) -> list[str]:
    """The columns of a table of ``entries``: ``wanted`` (checked), else key, kind, the repr's labels any entry has, path.

    Raises
    ------
    ParameterError
        A wanted column that is neither key/kind/path nor an attribute (or repr label) of any listed entry.
    """
    if wanted is None:
        present = [label for name, label in IDENTIFYING if any(e.attrs.get(name) not in (None, "") for e in entries)]
        return ["key", "kind", *present, "path"]
    unknown = [c for c in wanted if c not in _FIXED and entries
               and all(lookup_attr(e.attrs, _attr_name(c)) is MISSING for e in entries)]
    if unknown:
        names = sorted({*_FIXED, *(label for name, label in IDENTIFYING if any(name in e.attrs for e in entries)),
                        *(k for e in entries for k in e.attrs)})
        raise ParameterError(f"no listed entry has a column {unknown[0]!r}; --columns takes key, kind, path, a label "
                             f"of the entry repr or an attribute name: {', '.join(names)}")
    return list(wanted)


def _cell(entry, column: str) -> str:
    if column in _FIXED:
        return _FIXED[column](entry)
    value = lookup_attr(entry.attrs, _attr_name(column))
    return "-" if value is MISSING or value is None else short_value(value)


def print_table(entries, file=None, columns: list[str] | None = None) -> None:
    """One line per entry, one column per :func:`table_columns`, to ``file`` (stdout)."""
    file = file or sys.stdout
    cols = table_columns(entries, columns)
    rows = [tuple(printable(_cell(e, c)) for c in cols) for e in entries]
    header = tuple(c.upper() for c in cols)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(cols))]
    for r in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip(), file=file)
    if not rows:
        print("(no entries)", file=file)
