"""Path segments and output paths taken from a user, checked before any filesystem call.

A kind, a key or a key prefix given on the command line or to the Python API becomes part of a path
inside the store (``<kind>/<key[:16]>``). Each one is checked here first: a kind must be one the
package knows (:data:`KINDS`), a key hex digits only, so ``--kind ../../other_store/codes`` can never
reach outside the store. One rule, one wording, one place; other modules call these ``parse_*``
functions.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import EntryNotFoundError, ParameterError

__all__ = ["KINDS", "parse_kind", "parse_key", "parse_output_path", "register_kind"]

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
