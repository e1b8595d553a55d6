"""How an entry shows itself: one line in a terminal, a small table in a notebook.

The full attribute dict (the key's ``inputs``, the affine, ...) is ~1,500 characters; a listing of
``store.find(...)`` should instead show what tells entries apart: kind, key prefix, source, the
parameters that identify it, and its size along ``tr``.
"""

from __future__ import annotations

import html
from typing import Any

__all__ = ["describe", "identifying_attrs", "entry_html", "IDENTIFYING", "short_value"]

#: attributes that tell entries apart, in display order, with short labels
IDENTIFYING: tuple[tuple[str, str], ...] = (
    ("source_name", "source"), ("stimulus_name", "stimulus"), ("model", "model"),
    ("bandwidth_kbps", "kbps"), ("n_codebooks", "codebooks"), ("n_mels", "mels"),
    ("feature", "feature"), ("transform", "transform"), ("hrf", "hrf"), ("method", "method"), ("tr_s", "tr_s"), ("onset_s", "onset_s"), ("n_trs", "n_trs"),
    ("n_subjects", "subjects"), ("n_voxels", "voxels"), ("n_parcels", "parcels"), ("model_name", "model_name"),
    ("trs", "trs"),
)


def identifying_attrs(attrs: dict) -> dict[str, Any]:
    """The few attributes that identify an entry (label -> value), skipping empty ones."""
    out = {}
    for name, label in IDENTIFYING:
        value = attrs.get(name)
        if value in (None, "none", "", attrs.get("kind")) or (name == "onset_s" and value == 0):
            continue  # (a feature or transform that only repeats the kind says nothing)
        out[label] = value
    return out


def describe(attrs: dict) -> str:
    """One line: ``source=a.wav kbps=6 tr_s=1.5 n_trs=14`` (no key, no kind)."""
    return " ".join(f"{k}={short_value(v)}" for k, v in identifying_attrs(attrs).items())


def short_value(value: Any) -> str:
    """A value as a table cell: floats with %g, lists as A:B:C, at most 40 characters."""
    if isinstance(value, float):
        return f"{value:g}"
    text = str(value) if not isinstance(value, (list, tuple)) else ":".join(map(str, value))
    return text if len(text) <= 40 else text[:37] + "..."


def entry_html(entry) -> str:
    """An HTML table: kind, key prefix, variables with dims and shape, identifying attributes."""
    rows = [("kind", entry.kind), ("key", entry.key[:16] + "..."), ("path", entry.path)]
    try:
        ds = entry.store.open(entry, validate=False, chunks=None)
        for name, var in ds.data_vars.items():
            dims = ", ".join(f"{d}: {n}" for d, n in zip(var.dims, var.shape))
            rows.append((f"<b>{html.escape(str(name))}</b>", f"({dims}) {var.dtype}"))
    except Exception as exc:  # a repr must never raise
        rows.append(("variables", f"(cannot open: {type(exc).__name__})"))
    rows += [(k, short_value(v)) for k, v in identifying_attrs(entry.attrs).items()]
    body = "".join(
        f"<tr><th style='text-align:left'>{k if k.startswith('<b>') else html.escape(k)}</th>"
        f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table><caption style='text-align:left'>giblet_store Entry</caption>{body}</table>"
