"""Validators of what a user gives: one rule, one wording, one place.

Every frozen parameter dataclass and every function that takes a number, a count or a string
option from a user checks it here, so a rule (and the message a user reads when breaking it) is
written once. Path segments too: a kind, a key or a key prefix becomes part of a path inside the
store (``<kind>/<key[:16]>``), so each is checked here before any filesystem call — a kind must be
one the package knows (:data:`KINDS`), a key hex digits only, so ``--kind ../../other_store/codes``
can never reach outside the store. Each ``parse_*`` returns the value normalised (``float``/``int``/the enum's value)
or raises :class:`~giblet_store.errors.ParameterError` saying what was expected and what came.
"""

from __future__ import annotations

import enum
import math
import os
import re
import reprlib
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .errors import EntryNotFoundError, ParameterError

__all__ = [
    "MAX_TR_S", "MIN_SCAN_TR_S", "scan_tr_seconds", "finite", "number_like", "positive_seconds", "int_in_range", "flag", "choice", "tr_seconds",
    "is_integer", "is_choice", "is_format_version",
    "ResampleMethod", "HrfModel", "NanPolicy", "KINDS", "parse_kind", "parse_key", "parse_output_path", "register_kind",
    "file_name_text", "path_text", "redact_url",
]

#: Longest TR accepted anywhere (grid, fMRI, resampling); the JSON schemas are tested against it.
MAX_TR_S = 60.0
#: Shortest TR an fMRI scan is taken to have (the fastest whole-brain sequences reach ~0.1 s).
MIN_SCAN_TR_S = 0.05

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
        raise ParameterError(f"{name} must be a number, got {reprlib.repr(value)}") from None
    return finite(name, x)


def positive_seconds(name: str, value: Any, *, maximum: float | None = None, hint: str = "") -> float:
    """A duration in seconds, > 0 and at most ``maximum``."""
    if isinstance(value, bool) or not isinstance(value, _REAL) or not math.isfinite(value) or value <= 0:
        raise ParameterError(f"{name} must be a positive number of seconds, got {value!r}")
    if maximum is not None and value > maximum:
        raise ParameterError(f"{name}={value} s is longer than {maximum:g} s{hint}")
    return float(value)


def tr_seconds(value: Any, name: str = "tr_s") -> float:
    """A repetition time in seconds: 0 < TR <= :data:`MAX_TR_S`."""
    return positive_seconds(
        name, value, maximum=MAX_TR_S,
        hint="; fMRI TRs are 0.5-3 s. Did you give milliseconds? Give the TR in seconds",
    )


def scan_tr_seconds(value: Any, name: str = "tr_s") -> float:
    """An fMRI repetition time in seconds: :data:`MIN_SCAN_TR_S` <= TR <= :data:`MAX_TR_S`."""
    tr = tr_seconds(value, name)
    if tr < MIN_SCAN_TR_S:
        raise ParameterError(f"{name}={tr:g} s is shorter than {MIN_SCAN_TR_S:g} s, faster than any fMRI scan (TRs are "
                             "0.5-3 s). Give the TR in seconds")
    return tr


def int_in_range(name: str, value: Any, lo: int | None = None, hi: int | None = None, *, optional: bool = False,
                 hint: str = "") -> int | None:
    """An integer in ``[lo, hi]`` (either bound may be open); ``None`` passes when ``optional``.

    ``hint`` is appended to the message (e.g. ``"; FIR delays are whole TRs"``).
    """
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, _INTEGER):
        raise ParameterError(f"{name} must be an integer, got {value!r}{hint}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        if hi is None and lo in (0, 1):
            wanted = "a non-negative integer" if lo == 0 else "a positive integer"
        else:
            wanted = f"an integer in [{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
        raise ParameterError(f"{name} must be {wanted}, got {value}{hint}")
    return int(value)


def is_integer(value: Any) -> bool:
    """Whether ``value`` is an integer (``int`` or numpy integer; ``bool`` is not).

    The predicate behind :func:`int_in_range`, for callers whose error is not a
    :class:`ParameterError` (an audio stream index raises :class:`~giblet_store.errors.AudioError`).
    """
    return not isinstance(value, bool) and isinstance(value, _INTEGER)


def is_format_version(value: Any, newest: int) -> bool:
    """Whether ``value`` is a format version this code reads: an integer in ``[1, newest]``.

    Callers raise :class:`~giblet_store.errors.FormatVersionError` with their own ``where`` when not.
    """
    return isinstance(value, int) and is_integer(value) and 1 <= value <= newest


def flag(name: str, value: Any) -> bool:
    """``value`` if it is ``True`` or ``False`` (not 1, 0, "yes" or None)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ParameterError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _values(options: "type[enum.Enum] | Iterable[str]") -> list:
    return [m.value for m in options] if isinstance(options, type) and issubclass(options, enum.Enum) else list(options)


def choice(name: str, value: Any, options: "type[enum.Enum] | Iterable[str]") -> str:
    """One of ``options`` (an Enum of strings, or strings): returns the plain string."""
    allowed = _values(options)
    if isinstance(value, enum.Enum):
        value = value.value
    if value not in allowed:
        raise ParameterError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


def is_choice(value: Any, options: "type[enum.Enum] | Iterable[str]") -> bool:
    """Whether ``value`` (a string or an enum member) is one of ``options``; :func:`choice` without the raise.

    For options whose message names more than the list (e.g. the HRF model's pointer to ``Fir``).
    """
    return (value.value if isinstance(value, enum.Enum) else value) in _values(options)


class ResampleMethod(str, enum.Enum):
    """How :class:`~giblet_store.features.resample.Resample` moves a series to another TR grid.

    ``auto``: linear for float arrays, previous for integer codes.
    """

    AUTO = "auto"
    LINEAR = "linear"
    PREVIOUS = "previous"
    STRETCH = "stretch"


class HrfModel(str, enum.Enum):
    """The double-gamma HRF shapes :class:`~giblet_store.features.hrf.Hrf` offers."""

    SPM = "spm"
    GLOVER = "glover"


class NanPolicy(str, enum.Enum):
    """What fMRI ingest does with voxels that hold NaN/inf: refuse, or drop them from the mask."""

    ERROR = "error"
    MASK = "mask"


# ------------------------------------------------------------------------------ path segments
#: Every kind of entry giblet_store writes (DESIGN.md, "Data model").
KINDS: tuple[str, ...] = (
    "codes", "mel", "embeddings", "features", "fmri", "predictions", "evaluation", "reconstruction", "quality",
)
_KIND_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}\Z")
_HEX = re.compile(r"[0-9a-f]{1,64}\Z")


def register_kind(kind: str) -> None:
    """Add a kind (a new module's entries) to :data:`KINDS`: lower-case letters, digits and ``_``."""
    global KINDS
    if not isinstance(kind, str) or not _KIND_NAME.match(kind):
        raise ParameterError(f"a kind is lower-case letters, digits and '_' (e.g. 'codes'), got {kind!r}")
    if kind not in KINDS:
        KINDS = (*KINDS, kind)


def parse_kind(kind: object, what: str = "kind") -> str:
    """``kind`` if it is one of :data:`KINDS`, else :class:`ParameterError` naming the choices.

    Raises
    ------
    ParameterError
        Not a string, or not a known kind (a path such as ``../x`` included).
    """
    if isinstance(kind, str) and kind in KINDS:
        return kind
    raise ParameterError(
        f"{what} {kind!r} is not a kind of entry giblet_store writes; choose one of {', '.join(KINDS)}"
    )


def parse_key(key: object, store: str = "STORE", prefix: bool = True) -> str:
    """A key (64 hex digits) or, with ``prefix``, a key prefix (1-64 hex digits), lower-cased.

    Raises
    ------
    EntryNotFoundError
        Anything else (``../``, ``/``, spaces, non-hex letters): it cannot name an entry.
    """
    text = key.strip().lower() if isinstance(key, str) else None
    if text is not None and _HEX.match(text) and (prefix or len(text) == 64):
        return text
    wanted = "a key or key prefix (1-64 hex digits)" if prefix else "a key (64 hex digits)"
    raise EntryNotFoundError(f"{key!r} is not {wanted}; `giblet-store ls {store}` lists the keys")


def parse_output_path(path: "str | os.PathLike", what: str = "output file") -> Path:
    """``path`` as a Path whose folder exists and which is not itself a folder.

    Raises
    ------
    ParameterError
        The folder is missing or is a file, or ``path`` is a directory: nothing is written.
    """
    out = Path(os.fspath(path)).expanduser()
    parent = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise ParameterError(f"{what} {str(out)!r} is a directory; give a file name inside it (e.g. {out / 'out.wav'})")
    if not parent.exists():
        raise ParameterError(f"the folder of {what} {str(out)!r} does not exist; create it first (mkdir -p {parent})")
    if not parent.is_dir():
        raise ParameterError(f"{what} {str(out)!r}: {str(parent)!r} is a file, not a folder; give a path in a folder")
    if not os.access(parent, os.W_OK):
        raise ParameterError(f"cannot write {what} {str(out)!r}: permission denied on {str(parent)!r}; "
                             "choose a folder you can write to")
    return out


def file_name_text(path: "str | os.PathLike") -> str:
    """The last part of ``path`` as valid text for attributes and messages.

    A name whose bytes are not UTF-8 (``caf\\xe9.wav`` written in Latin-1; Python holds it with lone
    surrogates) keeps every UTF-8 character and writes each other byte as ``\\xNN``: the result is
    valid UTF-8 (JSON-serialisable) and tells the user which byte was there.
    """
    return path_text(Path(os.fspath(path)).name)


def path_text(path: "str | os.PathLike") -> str:
    """``path`` as valid text (each byte that is not UTF-8 as ``\\xNN``; see :func:`file_name_text`)."""
    return os.fsencode(os.fspath(path)).decode("utf-8", "backslashreplace")


_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s'\"]*@")


def redact_url(text: object) -> str:
    """``text`` with the user info (``KEY:SECRET@``) of every URL in it replaced by ``***@``.

    The one place credentials are taken out of what is printed, logged or stored: the CLI applies it to
    every message, and a store's ``url`` and ``repr`` use it.
    """
    return _USERINFO.sub(r"\1***@", str(text))
