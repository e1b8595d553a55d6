"""Parameter validators: one rule, one wording, one place.

Every frozen parameter dataclass and every function that takes a number, a count or a string
option from a user checks it here, so a rule (and the message a user reads when breaking it) is
written once. Each ``parse_*`` returns the value normalised (``float``/``int``/the enum's value)
or raises :class:`~giblet_store.errors.ParameterError` saying what was expected and what came.
"""

from __future__ import annotations

import enum
import math
from typing import Any, Iterable

import numpy as np

from .errors import ParameterError

__all__ = [
    "MAX_TR_S", "finite", "positive_seconds", "int_in_range", "choice", "tr_seconds",
    "ResampleMethod", "HrfModel", "NanPolicy",
]

#: Longest TR accepted anywhere (grid, fMRI, resampling); the JSON schemas are tested against it.
MAX_TR_S = 60.0

_REAL = (int, float, np.integer, np.floating)
_INTEGER = (int, np.integer)


def finite(name: str, value: Any, *, minimum: float | None = None, positive: bool = False) -> float:
    """``value`` as a finite float (``bool`` is not a number); ``positive`` means > 0."""
    if isinstance(value, bool) or not isinstance(value, _REAL) or not math.isfinite(value):
        raise ParameterError(f"{name} must be a finite number, got {value!r}")
    value = float(value)
    if positive and value <= 0:
        raise ParameterError(f"{name} must be > 0, got {value:g}")
    if minimum is not None and value < minimum:
        raise ParameterError(f"{name} must be >= {minimum:g}, got {value:g}")
    return value


def number_like(name: str, value: Any) -> float:
    """Like :func:`finite` but also accepts numeric strings (manifest cells, CLI text)."""
    if isinstance(value, bool):
        raise ParameterError(f"{name} must be a number, got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a number, got {value!r}") from None
    return finite(name, x)


def positive_seconds(name: str, value: Any, *, maximum: float | None = None, hint: str = "") -> float:
    """A duration in seconds, > 0 and at most ``maximum``."""
    if isinstance(value, bool) or not isinstance(value, _REAL) or not math.isfinite(value) or value <= 0:
        raise ParameterError(f"{name} must be a positive number of seconds, got {value!r}")
    if maximum is not None and value > maximum:
        raise ParameterError(f"{name}={value:g} s is longer than {maximum:g} s{hint}")
    return float(value)


def tr_seconds(value: Any, name: str = "tr_s") -> float:
    """A repetition time in seconds: 0 < TR <= :data:`MAX_TR_S`."""
    return positive_seconds(
        name, value, maximum=MAX_TR_S,
        hint="; fMRI TRs are 0.5-3 s. Did you give milliseconds? Give the TR in seconds",
    )


def int_in_range(name: str, value: Any, lo: int | None = None, hi: int | None = None, *, optional: bool = False) -> int | None:
    """An integer in ``[lo, hi]`` (either bound may be open); ``None`` passes when ``optional``."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, _INTEGER):
        raise ParameterError(f"{name} must be an integer, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        if hi is None and lo in (0, 1):
            wanted = "a non-negative integer" if lo == 0 else "a positive integer"
        else:
            wanted = f"an integer in [{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
        raise ParameterError(f"{name} must be {wanted}, got {value}")
    return int(value)


def choice(name: str, value: Any, options: "type[enum.Enum] | Iterable[str]") -> str:
    """One of ``options`` (an Enum of strings, or strings): returns the plain string."""
    allowed = [m.value for m in options] if isinstance(options, type) and issubclass(options, enum.Enum) else list(options)
    if isinstance(value, enum.Enum):
        value = value.value
    if value not in allowed:
        raise ParameterError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


class ResampleMethod(str, enum.Enum):
    """How :class:`~giblet_store.resample.Resample` moves a series to another TR grid."""

    LINEAR = "linear"
    PREVIOUS = "previous"
    STRETCH = "stretch"


class HrfModel(str, enum.Enum):
    """The double-gamma HRF shapes :class:`~giblet_store.hrf.Hrf` offers."""

    SPM = "spm"
    GLOVER = "glover"


class NanPolicy(str, enum.Enum):
    """What fMRI ingest does with voxels that hold NaN/inf: refuse, or drop them from the mask."""

    ERROR = "error"
    MASK = "mask"
