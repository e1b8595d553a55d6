"""How :meth:`Store.find` (and ``giblet-store ls --where``) compares entry attributes with wanted values.

Numbers compare by value within a relative 1e-9 (``bandwidth_kbps=6`` matches 6.0, and so does the
string ``"6"``), booleans exactly (``==``, never by closeness), a wanted list matches any of its values
(unless the attribute is a list itself), and dotted names reach into nested attributes
(``hrf_params.peak_delay_s``). :func:`check_where` refuses a name no entry has (with the closest
names) and a non-number for an attribute that is a number in every entry: such a query would
silently find nothing.
"""

from __future__ import annotations

import difflib
import math
from typing import Any, Iterable, Mapping

from ..errors import ParameterError

__all__ = ["MISSING", "match", "lookup_attr", "matches", "check_where"]

#: What :func:`lookup_attr` returns for an attribute the entry does not have.
MISSING = object()


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _number(x: Any) -> float | None:
    """``x`` as a number: a number, or a string that reads as one ("6", "1.5e3"); else None."""
    if _is_number(x):
        return float(x)
    if isinstance(x, str):
        try:
            return float(x)
        except ValueError:
            return None
    return None


def match(value: Any, wanted: Any) -> bool:
    """Whether the attribute ``value`` matches ``wanted`` (see the module docstring)."""
    if isinstance(wanted, (list, tuple)) and not isinstance(value, (list, tuple)):
        return any(match(value, w) for w in wanted)
    if isinstance(value, bool) or isinstance(wanted, bool):
        return value is wanted or value == wanted
    if _is_number(value) or _is_number(wanted):  # a number, against a number or a string that reads as one
        a, b = _number(value), _number(wanted)
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
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


def _names(attrs: Mapping, prefix: str = "", depth: int = 3) -> Iterable[str]:
    """Every attribute name of ``attrs``, nested ones dotted (``hrf_params.peak_delay_s``), ``depth`` levels deep."""
    for k, v in attrs.items():
        yield prefix + k
        if isinstance(v, Mapping) and depth > 1:
            yield from _names(v, f"{prefix}{k}.", depth - 1)


def check_where(attr_sets: list[Mapping], where: Mapping[str, Any], what: str) -> None:
    """Refuse a query that could only find nothing by mistake; ``attr_sets`` are the attributes of the entries searched.

    ``what`` names them in the message ("codes entry"). Nothing is checked when there are no entries.

    Raises
    ------
    ParameterError
        A name in ``where`` that none of the entries has (naming the closest ones and every top-level
        name), or a wanted value that is not a number (nor a string that reads as one) for an
        attribute that is a number in every entry that has it.
    """
    if not attr_sets or not where:
        return
    for name, wanted in where.items():
        values = [v for a in attr_sets if (v := lookup_attr(a, name)) is not MISSING]
        if not values:
            known = sorted({n for a in attr_sets for n in _names(a)})
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
            hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
            top = sorted({k for a in attr_sets for k in a})
            raise ParameterError(f"no {what} has an attribute {name!r}{hint}; the {what} attributes are: "
                                 f"{', '.join(top)}")
        wants = wanted if isinstance(wanted, (list, tuple)) else [wanted]
        if all(_is_number(v) for v in values):
            bad = [w for w in wants if isinstance(w, bool) or _number(w) is None]
            if bad:
                raise ParameterError(f"{name} is a number in every {what} (e.g. {values[0]!r}); got {bad[0]!r}. "
                                     f"Give a number, e.g. {name}={values[0]!r}")
