"""Text a person reads in a terminal: entry tables (``ls``, ``demo``)."""

from __future__ import annotations

import sys

__all__ = ["print_table", "summary"]


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
    rows = [(e.key[:16], e.kind, str(e.attrs.get("source_name", "-")), summary(e.attrs), e.path) for e in entries]
    header = ("KEY", "KIND", "SOURCE", "PARAMETERS", "PATH")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    for r in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip(), file=file)
    if not rows:
        print("(no entries)", file=file)
