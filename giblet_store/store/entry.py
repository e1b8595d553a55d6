"""Entries: what one store entry is, where it lives, how its arrays are encoded, whose child it is.

An entry is a Zarr subgroup ``<kind>/<key[:16]>`` holding one xarray Dataset; its identity and
meaning live in its attributes (``kind``, ``key``, parameters, ``status``, ``parent``). This module
sits below :mod:`giblet_store.store.core` and :mod:`giblet_store.store.staging` (both use it; it uses neither):
functions here take the store as an argument.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .entry_repr import describe, entry_html
from ..errors import EntryNotFoundError, ParameterError

if TYPE_CHECKING:  # for annotations only: store.py imports this module
    from .core import Store

__all__ = [
    "Entry", "ExtractResult", "entry_path", "default_encoding", "parents_of", "lineage", "STAGING", "KEY_PATH_LEN",
]

#: Folder (group) of writes in progress; never listed as entries.
STAGING = "_staging"
#: Hex digits of the key in an entry's path (the full key is in its attributes).
KEY_PATH_LEN = 16


def entry_path(kind: str, key: str) -> str:
    """The group path of the entry of ``kind`` with ``key``: ``<kind>/<key[:16]>``."""
    return f"{kind}/{key[:KEY_PATH_LEN]}"


@dataclass(frozen=True, eq=False)
class Entry:
    """A complete entry: where it is and what its attributes say.

    Entries compare equal when their keys are equal.
    """

    store: "Store" = field(repr=False)
    path: str
    attrs: dict

    @property
    def key(self) -> str:
        return self.attrs["key"]

    @property
    def kind(self) -> str:
        return self.attrs["kind"]

    def open(self, validate: bool = True, **xarray_kwargs):
        """The entry as an :class:`xarray.Dataset`, lazy (Dask-backed) by default.

        ``xarray_kwargs`` go to :func:`xarray.open_zarr` (``chunks=None``: no Dask, lazily indexed
        numpy; ``chunks={"tr": 64}``; ``decode_cf=False``, ...). Small 1-D coordinates
        (``tr_start_s``, ``mel_hz``) are always loaded, and ``tr_start_s`` is indexed.
        """
        return self.store.open(self, validate=validate, **xarray_kwargs)

    def __repr__(self) -> str:
        return f"<Entry {self.kind} {self.key[:12]} {describe(self.attrs)}>"

    def _repr_html_(self) -> str:
        return entry_html(self)

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "kind": self.kind, "path": self.path, "attrs": self.attrs}

    def __eq__(self, other) -> bool:
        return isinstance(other, Entry) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)


def default_encoding(ds, chunk_dim: str = "tr", target_bytes: int = 1 << 20) -> dict:
    """Zarr encoding: chunk along ``chunk_dim`` only (~``target_bytes`` a chunk), Blosc zstd.

    Integers use bit-shuffle (codes: measured ~1.00x their entropy bound), floats byte-shuffle.
    """
    from zarr.codecs import BloscCodec, BloscShuffle

    enc = {}
    for name, var in ds.data_vars.items():
        chunks = []
        per_row = int(np.prod([ds.sizes[d] for d in var.dims if d != chunk_dim] or [1])) * var.dtype.itemsize
        for d in var.dims:
            if d == chunk_dim:
                chunks.append(int(max(1, min(ds.sizes[d], target_bytes // max(per_row, 1)))))
            else:
                chunks.append(int(ds.sizes[d]))
        shuffle = BloscShuffle.bitshuffle if var.dtype.kind in "iub" else BloscShuffle.shuffle
        enc[name] = {"compressors": (BloscCodec(cname="zstd", clevel=5, shuffle=shuffle),)}
        if var.ndim and all(c > 0 for c in chunks):
            enc[name]["chunks"] = tuple(chunks)
    return enc


def check_kind(entry: Entry, kinds: "str | tuple[str, ...]", purpose: str) -> Entry:
    """``entry`` if its kind is one of ``kinds``, else a :class:`ParameterError` naming both.

    ``purpose`` completes the sentence "... needs a codes entry": e.g. ``"decoding to audio"``.
    """
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    if entry.kind not in kinds:
        wanted = " or ".join(repr(k) for k in kinds)
        raise ParameterError(
            f"entry {entry.key[:16]} is a {entry.kind!r} entry; {purpose} needs a {wanted} entry. "
            f"`giblet-store ls {entry.store.url} --kind {kinds[0]}` lists those"
        )
    return entry


@dataclass(frozen=True)
class ExtractResult:
    """One extracted input: the entry and whether it was made now (False: cache hit)."""

    entry: Entry
    created: bool
    source: str


# ------------------------------------------------------------------------------------- parents
def parents_of(entry: Entry) -> list[str]:
    """The parent key(s) named in ``entry``'s attributes (none for a source entry)."""
    p = entry.attrs.get("parent")
    if p is None:
        return []
    if isinstance(p, str):
        return [p]
    if isinstance(p, dict):
        return list(p.values())
    return list(p)


def refresh(store: "Store", entry: "Entry | str") -> Entry:
    """The complete entry, re-read from the store; a deleted one is an error that says so."""
    if isinstance(entry, Entry):
        found = store.lookup(entry.key, entry.kind)
        if found is None:
            raise EntryNotFoundError(
                f"entry {entry.key[:16]} ({entry.kind}) is no longer in {store.url!r} (deleted?); "
                "Re-create it (giblet-store extract/mel/derive) or pick another with "
                f"`giblet-store ls {store.url}`"
            )
        return found
    return store.get(entry)


def lineage(store: "Store", entry: "Entry | str") -> list[Entry]:
    """``entry`` followed by its parents, grandparents, ... up to the source entry.

    Raises
    ------
    EntryNotFoundError
        ``entry`` does not exist, or an ancestor was deleted (the message names which).
    """
    first = refresh(store, entry)
    out, seen, queue = [first], {first.key}, [(first, k) for k in parents_of(first)]
    while queue:
        child, key = queue.pop(0)
        if key in seen:
            continue
        found = store.lookup(key)
        if found is None:
            raise EntryNotFoundError(
                f"entry {child.key[:16]} ({child.kind}) names parent {key[:16]}, which is no longer in "
                f"{store.url!r} (deleted); the lineage is broken there. The derived entry's data is "
                "complete, but its provenance can only be read from its attributes (inputs)"
            )
        seen.add(key)
        out.append(found)
        queue.extend((found, k) for k in parents_of(found))
    return out
