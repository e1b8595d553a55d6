"""What every ``giblet-store`` subcommand module shares: option parsing and JSON output."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from ..errors import ParameterError

__all__ = ["EXIT_ERROR", "parse_value", "where", "json_default", "dump", "tr_range", "field_default",
           "add_grid_options", "damaged_chunk_message", "no_room_message"]

#: Exit status of every error a user can act on.
EXIT_ERROR = 2


def parse_value(text: str) -> Any:
    """``--where`` values: JSON when it parses (6, 1.5, true, "x"), else the string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def where(items: list[str]) -> dict[str, Any]:
    """``--where NAME=VALUE`` options as a dict of parsed values."""
    out = {}
    for it in items or []:
        name, sep, value = it.partition("=")
        if not sep or not name:
            raise ParameterError(f"--where takes NAME=VALUE (e.g. bandwidth_kbps=6), got {it!r}")
        out[name.strip()] = parse_value(value.strip())
    return out


def json_default(o):
    """numpy scalars as Python numbers; anything else JSON cannot hold as its string."""
    try:
        return o.item()
    except AttributeError:
        return str(o)


def dump(obj) -> None:
    """Print ``obj`` as indented JSON to stdout (``--json``)."""
    print(json.dumps(obj, indent=2, default=json_default))


def tr_range(text: str | None) -> tuple[int, int] | None:
    """``--trs START:STOP`` as (start, stop), None when not given."""
    if text is None:
        return None
    a, sep, b = text.partition(":")
    try:
        return int(a), int(b)
    except ValueError:
        raise ParameterError(f"a TR range is START:STOP with integers (stop exclusive, e.g. 0:800), got {text!r}") from None


def field_default(cls: type, name: str) -> Any:
    """The default of field ``name`` of the parameter dataclass ``cls``: a mirroring CLI option's default.

    Options read their defaults from here, never from a hand-written copy, so ``--help`` and the
    Python API cannot drift apart.
    """
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is dataclasses.MISSING:
                raise TypeError(f"{cls.__name__}.{name} has no plain default")
            return f.default
    raise TypeError(f"{cls.__name__} has no field {name!r}")


def add_grid_options(p) -> None:
    """``--tr``, ``--onset``, ``--n-trs`` on parser ``p``: the :class:`~giblet_store.grid.TrGrid` a command
    writes on, defaults from its fields (extract, import, mel)."""
    from ..grid import TrGrid

    p.add_argument("--tr", type=float, default=field_default(TrGrid, "tr_s"), help="TR in seconds")
    p.add_argument("--onset", type=float, default=field_default(TrGrid, "onset_s"),
                   help="stimulus time (s) at which TR 0 starts")
    p.add_argument("--n-trs", type=int, default=field_default(TrGrid, "n_trs"),
                   help="pad with empty TRs or crop (with a warning)")


def damaged_chunk_message(exc: BaseException, store: Any = None) -> str | None:
    """The error for a chunk whose bytes a codec cannot decode (a truncated or overwritten chunk file), else None.

    Zarr reads chunks lazily, deep inside whatever computes with them, and passes the codec's own
    exception through (blosc: ``RuntimeError: error during blosc decompression``); the command that
    read it reports damaged store files, not an unexpected error.
    """
    text = str(exc)
    if not isinstance(exc, (RuntimeError, ValueError, OSError)) or "decompress" not in text.lower():
        return None
    where = store if isinstance(store, str) and store else "STORE"
    return (f"a chunk of the store could not be decoded ({type(exc).__name__}: {text}): a chunk file is damaged "
            f"(truncated or overwritten). `giblet-store verify {where}` names the entry, `--repair` moves it aside; "
            "then rerun the request that made it")


def no_room_message(exc: BaseException) -> str | None:
    """The error for a write outside the store's own writers that found no room (full disk, quota, ``ulimit -f``),
    else None. The store's writers raise :class:`~giblet_store.errors.DiskFullError` themselves, naming the file."""
    from ..store.disk_full import disk_full_error, is_disk_full

    if not is_disk_full(exc):
        return None
    what = repr(os.fsdecode(exc.filename)) if exc.filename else "a file"
    return str(disk_full_error(exc, what, "what this command was writing is incomplete or absent"))
