"""Text a person reads in a terminal: entry tables (``ls``, ``demo``)."""

from __future__ import annotations

import sys
import unicodedata

__all__ = ["print_table", "summary", "printable"]

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


def summary(attrs: dict) -> str:
    """The few attributes that tell entries apart, as ``name=value`` words."""
    keys = [
        ("bandwidth_kbps", "kbps"), ("n_codebooks", "cb"), ("tr_s", "tr"), ("n_trs", "trs"),
        ("hrf", "hrf"), ("n_mels", "mels"), ("method", "method"), ("n_subjects", "subjects"),
    ]
    parts = [f"{label}={attrs[k]}" for k, label in keys if k in attrs and attrs[k] not in (None, "none")]
    return " ".join(parts)


def print_table(entries, file=None) -> None:
    """One line per entry (key prefix, kind, source, identifying parameters, path) to ``file``."""
    file = file or sys.stdout
    rows = [tuple(printable(c) for c in (e.key[:16], e.kind, str(e.attrs.get("source_name", "-")),
                                        summary(e.attrs), e.path)) for e in entries]
    header = ("KEY", "KIND", "SOURCE", "PARAMETERS", "PATH")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    for r in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip(), file=file)
    if not rows:
        print("(no entries)", file=file)
