"""A writer's lease: proof to ``gc`` that a write of one key is alive, renewed while the writer works.

A writer holds ``_staging/<key16>-l<host6>-<pid>-<id8>.lease`` from before its first byte until
its entry is published (extract's whole write, a batch from its template to its commit). A daemon
thread rewrites the object every :data:`RENEW_S` seconds, so the lease stays fresh while the writer
encodes, waits on a slow PUT, or publishes; it is removed when the write ends, and a killed writer's
lease simply stops being renewed.

``gc`` treats every group of a key with a lease younger than :data:`EXPIRES_S` as a live write,
whatever ``--older-than`` says, and measures that age on the storage's own clock (an object's
modification time against a probe object it writes: :func:`storage_now`), so neither a short
``--older-than`` nor a collector whose clock runs ahead can take a live writer's files.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid

from .entry import KEY_PATH_LEN, STAGING
from .leftovers import host_tag

__all__ = ["Lease", "LEASE_SUFFIX", "RENEW_S", "EXPIRES_S", "storage_now"]

LEASE_SUFFIX = ".lease"
#: Seconds between renewals (``GIBLET_STORE_LEASE_RENEW_S`` changes it, e.g. in tests).
RENEW_S = float(os.environ.get("GIBLET_STORE_LEASE_RENEW_S", "10"))
#: A lease renewed less than this long ago is alive: six missed renewals, longer than s3fs's retries
#: of one request, so a writer stalled in a retried PUT keeps its files.
EXPIRES_S = 6 * RENEW_S

_log = logging.getLogger(__name__)


class Lease:
    """Hold a lease on each key given (now or with :meth:`add`) while the ``with`` block runs.

    One daemon thread renews them all every :data:`RENEW_S` seconds.

    Parameters
    ----------
    storage : giblet_store.store.storage.Storage
        The store's bytes.
    *keys : str
        Entry content keys (their first 16 hex digits name each lease's group).

    Examples
    --------
    >>> with Lease(store.storage, key):            # doctest: +SKIP
    ...     store.write(ds, attrs)
    """

    def __init__(self, storage, *keys: str):
        self.storage = storage
        self.paths: list[str] = []
        self._keys = list(keys)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, key: str) -> None:
        """Take a lease on ``key`` too (written now, renewed with the others)."""
        path = f"{STAGING}/{key[:KEY_PATH_LEN]}-l{host_tag()}-{os.getpid()}-{uuid.uuid4().hex[:8]}{LEASE_SUFFIX}"
        self._write(path)
        with self._lock:
            self.paths.append(path)

    def _write(self, path: str) -> None:
        doc = {"pid": os.getpid(), "host": host_tag(), "renewed": time.time(), "renew_s": RENEW_S}
        self.storage.put(path, json.dumps(doc, sort_keys=True).encode())

    def _renew(self) -> None:
        while not self._stop.wait(RENEW_S):
            with self._lock:
                paths = list(self.paths)
            for path in paths:
                try:
                    self._write(path)
                except Exception as exc:  # a missed renewal is retried; gc waits EXPIRES_S before it counts
                    _log.warning("could not renew the lease %s of %s (%s); retrying", path, self.storage.url, exc)

    def __enter__(self) -> "Lease":
        for key in self._keys:
            self.add(key)
        self._thread = threading.Thread(target=self._renew, name="giblet_store lease", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for path in self.paths:
            try:
                self.storage.delete(path)
            except Exception as err:  # an expired lease is harmless: gc removes it
                _log.warning("could not remove the lease %s of %s (%s); `giblet-store gc` removes it",
                             path, self.storage.url, err)


def storage_now(storage, write: bool) -> float:
    """The storage's clock (epoch s): the modification time of a probe object written now.

    On local disk (``write`` False, or a probe that cannot be written) this is ``time.time()``,
    the clock file modification times come from.
    """
    if not write or storage.local:
        return time.time()
    probe = f"{STAGING}/.clock-{uuid.uuid4().hex[:8]}"
    try:
        storage.put(probe, b"")
        return object_mtime(storage.fs.info(storage.path(probe))) or time.time()
    except OSError as exc:  # cannot write here: the collector's clock it is, said
        _log.warning("could not write a clock probe to %s (%s); ages are measured on this machine's clock",
                     storage.url, exc)
        return time.time()
    finally:
        try:
            storage.delete(probe)
        except Exception as exc:
            _log.warning("could not remove the clock probe %s (%s); `giblet-store gc` removes it", probe, exc)


def object_mtime(info: dict) -> float:
    """Modification time (epoch s) in an fsspec ``info`` dict; 0.0 when it has none."""
    for k in ("LastModified", "mtime", "last_modified", "created"):
        v = info.get(k)
        if v is None:
            continue
        return v.timestamp() if hasattr(v, "timestamp") else float(v)
    return 0.0
