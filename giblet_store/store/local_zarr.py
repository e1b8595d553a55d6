"""zarr's ``LocalStore`` whose failed writes name the file they were writing.

A write that finds no room (:mod:`giblet_store.store.disk_full`) fails inside ``file.write`` with an
``OSError`` that names no file. :class:`NamedLocalStore` re-raises it with the key (the path relative
to the store's root) as its ``filename``, so the message can say which file of which entry it was.
zarr's own atomic write has already removed its ``*.partial`` temporary file by then.
"""

from __future__ import annotations

from zarr.storage import LocalStore

from .disk_full import is_disk_full

__all__ = ["NamedLocalStore"]


class NamedLocalStore(LocalStore):
    """:class:`zarr.storage.LocalStore`; an ``OSError`` for lack of room carries the key as its filename."""

    async def _set(self, key: str, value, exclusive: bool = False) -> None:
        try:
            await super()._set(key, value, exclusive=exclusive)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            raise OSError(exc.errno, exc.strerror, key) from None
