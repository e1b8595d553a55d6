"""How :meth:`Store.find` (and ``giblet-store ls --where``) compares entry attributes with wanted values.

Numbers compare by value within a relative 1e-9 (``bandwidth_kbps=6`` matches 6.0), booleans
exactly (``==``, never by closeness), a wanted list matches any of its values (unless the attribute is a list itself), and
dotted names reach into nested attributes (``hrf_params.peak_delay_s``).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

__all__ = ["MISSING", "match", "lookup_attr", "matches"]

#: What :func:`lookup_attr` returns for an attribute the entry does not have.
MISSING = object()


def match(value: Any, wanted: Any) -> bool:
    """Whether the attribute ``value`` matches ``wanted`` (see the module docstring)."""
    if isinstance(wanted, (list, tuple)) and not isinstance(value, (list, tuple)):
        return any(match(value, w) for w in wanted)
    if isinstance(value, bool) or isinstance(wanted, bool):
        return value is wanted or value == wanted
    if isinstance(value, (int, float)) and isinstance(wanted, (int, float)):
        return math.isclose(value, wanted, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(value, (list, tuple)) and isinstance(wanted, (list, tuple)):
        return len(value) == len(wanted) and all(match(a, b) for a, b in zip(value, wanted))
    return value == wanted


def lookup_attr(attrs: Mapping, name: str) -> Any:
    """``attrs[name]``, following dots into nested mappings; :data:`MISSING` when absent."""
    cur: Any = attrs
    for part in name.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return MISSING
        cur = cur[part]
    return cur


def matches(attrs: Mapping, where: Mapping[str, Any]) -> bool:
    """Whether every ``name: wanted`` of ``where`` is an attribute of ``attrs`` that matches."""
    return all((v := lookup_attr(attrs, n)) is not MISSING and match(v, w) for n, w in where.items())
