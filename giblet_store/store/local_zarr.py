"""zarr's ``LocalStore`` whose failed writes name their file, and whose abandoned writes can be stopped.

A write that finds no room (:mod:`giblet_store.store.disk_full`) fails inside ``file.write`` with an
``OSError`` that names no file. :class:`NamedLocalStore` re-raises it with the key (the path relative
to the store's root) as its ``filename``, so the message can say which file of which entry it was.
zarr's own atomic write has already removed its ``*.partial`` temporary file by then.

zarr writes the documents and chunks of one call concurrently; when one fails, the others go on in
zarr's I/O thread. Before a failed write's staging folder is removed, :meth:`NamedLocalStore.abandon`
stops every later write below it and waits for those in flight, so none re-creates it afterwards.
"""

from __future__ import annotations

import threading

from zarr.storage import LocalStore

from .disk_full import is_disk_full

__all__ = ["NamedLocalStore"]

_idle = threading.Condition()
_in_flight = 0
_abandoned: set[str] = set()


class NamedLocalStore(LocalStore):
    """:class:`zarr.storage.LocalStore`; an ``OSError`` for lack of room carries the key as its filename."""

    async def _set(self, key: str, value, exclusive: bool = False) -> None:
        global _in_flight
        with _idle:
            if any(key.startswith(prefix) for prefix in _abandoned):
                return  # a sibling of a write that failed: its folder is being removed
            _in_flight += 1
        try:
            await super()._set(key, value, exclusive=exclusive)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            raise OSError(exc.errno, exc.strerror, key) from None
        finally:
            with _idle:
                _in_flight -= 1
                _idle.notify_all()

    def abandon(self, prefix: str, timeout_s: float = 60.0) -> None:
        """Drop every later write below the folder ``prefix`` and wait (up to ``timeout_s``) for those in flight."""
        with _idle:
            _abandoned.add(prefix.rstrip("/") + "/")
            _idle.wait_for(lambda: _in_flight == 0, timeout_s)
