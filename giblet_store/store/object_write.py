"""Publishing an entry on a store without atomic rename (object stores: ``s3://``, ``memory://``, ``local://``).

Protocol (the same one :meth:`Store.begin_write` uses for batch writes):

1. The array metadata and the small, in-memory variables are PUT under the entry's final path
   ``<kind>/<key16>/``; the entry's own ``zarr.json`` (which holds ``status: complete``) is withheld
   and kept as ``_staging/<key16>-<tag>.done/_group.json``.
2. Every chunk of every variable is written whole, each as one PUT, and a marker object
   ``_staging/<key16>-<tag>.done/<var>.<i>`` records it.
3. ``zarr.json`` is PUT last (:meth:`Store.commit`); before that, readers see no group and skip it.

Nothing is ever deleted or renamed inside an entry. Chunk bytes are deterministic (same inputs, same
bytes), so a writer that was SIGKILLed and rerun, or two writers of the same entry at once, PUT
identical objects: a reader can never observe a torn chunk, and the first ``zarr.json`` PUT publishes
a complete entry. A rerun after a crash writes only the chunks without a marker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

if TYPE_CHECKING:
    from .entry import Entry
    from .core import Store

__all__ = ["write_in_place"]


class _ChunkTarget:
    """A ``dask.array.store`` target that writes whole chunks through :meth:`Store.write_chunk`."""

    def __init__(self, store: "Store", staging, name: str, chunk_len: int):
        self.store, self.staging, self.name, self.chunk_len = store, staging, name, chunk_len

    def __setitem__(self, region, value) -> None:
        start = region[0].start if isinstance(region, tuple) else region.start
        self.store.write_chunk(self.staging, self.name, int(start) // self.chunk_len, np.asarray(value))


def write_in_place(store: "Store", ds, attrs: Mapping[str, Any], encoding: dict | None) -> tuple["Entry", bool]:
    """Write ``ds`` as the entry ``attrs`` describes on a store without rename; see the module docstring.

    Returns ``(entry, created)`` like :meth:`Store.write`; the chunks of every variable are computed
    in one Dask graph (shared inputs once) and written as they come.
    """
    import dask.array as da

    from .entry import Entry, default_encoding

    ds = ds.copy()
    for name, var in ds.data_vars.items():  # every array variable is written chunk by chunk
        if var.ndim and var.size and not hasattr(var.data, "dask"):
            ds[name] = var.chunk()
    enc = default_encoding(ds) if encoding is None else encoding
    staging = store.begin_write(ds, attrs, enc)
    if isinstance(staging, Entry):
        return staging, False
    done = store.done_chunks(staging)
    sources, targets, regions = [], [], []
    for name, chunk_len, n in staging.regions:
        arr = ds[name].data
        arr = arr.rechunk((chunk_len, *arr.shape[1:]))
        target = _ChunkTarget(store, staging, name, chunk_len)
        for i in range(n):
            if f"{name}.{i}" in done:
                continue
            stop = min((i + 1) * chunk_len, arr.shape[0])
            sources.append(arr.blocks[i])
            targets.append(target)
            regions.append((slice(i * chunk_len, stop),) + tuple(slice(0, s) for s in arr.shape[1:]))
    if sources:
        da.store(sources, targets, regions=regions, lock=False, compute=True)
    return store.commit(staging)
