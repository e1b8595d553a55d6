"""The catalogue: ``find``/``ls``/``get`` answer from a per-kind index instead of one read per entry.

Layout (beside the entries, skipped by every listing because it starts with ``_``)::

    _catalog/<kind>/index.v1.json       compacted snapshot {"catalog_version", "kind", "records": {name: attrs}}
    _catalog/<kind>/log/<name>.json     one record per publish, written after the entry's status: complete

A query costs one listing of ``<kind>/`` (one LIST request per 1,000 entries on S3), one GET of the
index, one listing of the log and a GET per log record not yet compacted. The listing is the ground
truth of *which* entries exist; the catalogue only saves reading their ``zarr.json``:

* a record is written only after its entry is published, so it never names an incomplete entry;
* a listed entry without a record (a writer that crashed between publish and record, an older
  giblet_store, an entry copied in by hand) is read directly -- all such reads in parallel -- and
  served only if its ``status`` is ``complete``;
* a record whose entry is no longer listed (deleted, by :meth:`Store.delete` or by hand) is dropped;
* an index of another ``catalog_version`` has another name (``index.v<N>.json``) and an unreadable
  one counts as missing: everything is read (in parallel) and the index rebuilt.

Queries never write (a failed command leaves the store byte-identical). Publishing does the upkeep:
after appending its record, a writer that finds the index missing or more than :data:`COMPACT_AT`
log records rebuilds the index from the listing, the index and the log (repairing all of the above),
then deletes the log records merged into it. Two compactors at once may drop a record from the
index; queries find that entry unrecorded and read it until the next compaction re-adds it.
On local disk each record also keeps its ``zarr.json``'s (mtime, size), checked with one ``stat`` per
entry, so a ``zarr.json`` rewritten in place (another status, other attributes) is read again. On
object stores that check would cost a request per entry: after editing an entry's ``zarr.json`` in
place by hand, run ``giblet-store reindex``.
"""

from __future__ import annotations

import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Iterable

from ..errors import StoreError
from .regular import NotRegularFileError

if TYPE_CHECKING:
    from .entry import Entry
    from .core import Store

__all__ = ["CATALOG", "CATALOG_VERSION", "COMPACT_AT", "entries", "record", "forget", "reindex"]

_log = logging.getLogger(__name__)

CATALOG = "_catalog"
CATALOG_VERSION = 1
INDEX = f"index.v{CATALOG_VERSION}.json"
#: log records a writable store tolerates before it folds them into the index
COMPACT_AT = 64
_THREADS = 32


_MISSING = (FileNotFoundError, NotADirectoryError)  # removed since it was listed: a concurrent delete or gc


def _missing_or_raise(store: "Store", path: str, got) -> bytes | None:
    """``got`` if bytes; None if it is a missing-file error; any other error as a :class:`StoreError`."""
    if isinstance(got, bytes):
        return got
    if got is None or isinstance(got, _MISSING):
        return None
    raise StoreError(f"cannot read {path!r} in {store.url!r} ({type(got).__name__}: {got}); check that this "
                     "user may read the store (permissions, credentials), then rerun")


def _read_many(store: "Store", paths: list[str]) -> dict[str, bytes | None]:
    """Bytes of many objects at once (a thread pool; s3fs batches them concurrently).

    None for an object removed since it was listed; any other failure (permission denied, I/O
    error) raises :class:`StoreError` naming the object rather than passing for "missing".
    """
    if not paths:
        return {}
    if not store.local:
        full = [store.storage.path(p) for p in paths]
        got = store.fs.cat(full, on_error="return")
        return {p: _missing_or_raise(store, p, got.get(f)) for p, f in zip(paths, full)}

    def one(p: str) -> bytes | None:
        try:
            return store.storage.get(p)
        except NotRegularFileError:  # a FIFO/socket/device named like a document: never opened, not ours
            return None
        except _MISSING:
            return None
        except OSError as exc:
            return _missing_or_raise(store, p, exc)

    with ThreadPoolExecutor(min(_THREADS, len(paths))) as pool:
        return dict(zip(paths, pool.map(one, paths)))


def _group_attrs(raw: bytes | None) -> dict | None:
    try:
        meta = json.loads(raw) if raw else None
    except ValueError:
        return None
    if not isinstance(meta, dict) or meta.get("node_type") != "group":
        return None
    attrs = meta.get("attributes") or {}
    return attrs if isinstance(attrs, dict) else None  # wrongly typed: no entry (verify calls it broken)


def _stamp(store: "Store", kind: str, name: str) -> list | None:
    """Local stores: (mtime_ns, size) of the entry's zarr.json, to notice it rewritten in place."""
    if not store.local:
        return None
    try:
        st = os.stat(store.storage.path(f"{kind}/{name}/zarr.json"))
    except _MISSING:
        return None
    return [st.st_mtime_ns, st.st_size]


def _load(store: "Store", kind: str) -> tuple[dict[str, dict], dict[str, list], list[str], bool]:
    """(records by entry folder name, their zarr.json stamps, log record names, index usable)."""
    raw = _read_many(store, [f"{CATALOG}/{kind}/{INDEX}"]).get(f"{CATALOG}/{kind}/{INDEX}")
    records, stamps, ok = {}, {}, False
    try:
        doc = json.loads(raw) if raw else None
        if isinstance(doc, dict) and doc.get("catalog_version") == CATALOG_VERSION and doc.get("kind") == kind:
            records, stamps, ok = dict(doc["records"]), dict(doc.get("stamps") or {}), True
    except (ValueError, KeyError, TypeError):
        pass
    logs = [n for n in store.storage.names(f"{CATALOG}/{kind}/log", dirs=False) if n.endswith(".json")]
    new = [n for n in logs if n[:-5] not in records]
    for path, raw in _read_many(store, [f"{CATALOG}/{kind}/log/{n}" for n in new]).items():
        try:
            rec = json.loads(raw) if raw else None
        except ValueError:
            rec = None
        if isinstance(rec, dict) and rec.get("catalog_version") == CATALOG_VERSION:
            name = path.rsplit("/", 1)[-1][:-5]
            records[name], stamps[name] = rec["attrs"], rec.get("stamp")
    return records, stamps, logs, ok


def _complete(attrs) -> bool:
    return isinstance(attrs, dict) and "key" in attrs and attrs.get("status") == "complete"


def kind_entries(store: "Store", kind: str, maintain: bool = False) -> list["Entry"]:
    """Every complete entry of ``kind``, from the catalogue; ``maintain``: also rewrite the index (compact)."""
    from .entry import Entry

    names = store.storage.names(kind, dirs=True)
    records, stamps, logs, ok = _load(store, kind)
    if store.local:  # a zarr.json rewritten since it was recorded is read again
        records = {n: a for n, a in records.items() if stamps.get(n) == _stamp(store, kind, n)}
    listed = set(names)
    unknown = [n for n in names if n not in records]
    found = {}
    for path, raw in _read_many(store, [f"{kind}/{n}/zarr.json" for n in unknown]).items():
        attrs = _group_attrs(raw)
        if _complete(attrs):
            name = path.split("/")[1]
            found[name], stamps[name] = attrs, _stamp(store, kind, name)
    current = {n: a for n, a in records.items() if n in listed and _complete(a)}
    current.update(found)
    if maintain and not store.read_only:
        _compact(store, kind, current, logs, stamps)
    return [Entry(store, f"{kind}/{n}", current[n]) for n in sorted(current)]


def entries(store: "Store", kind: str | None) -> list["Entry"]:
    """Every complete entry (of ``kind``), sorted by path; kinds are read in parallel."""
    kinds = [kind] if kind else store.storage.kind_dirs()
    if len(kinds) <= 1:
        out = [e for k in kinds for e in kind_entries(store, k)]
    else:
        with ThreadPoolExecutor(min(8, len(kinds))) as pool:
            out = [e for part in pool.map(lambda k: kind_entries(store, k), kinds) for e in part]
    return sorted(out, key=lambda e: e.path)


def _compact(store: "Store", kind: str, records: dict[str, dict], merged_logs: Iterable[str],
             stamps: dict | None = None) -> OSError | None:
    """Write ``kind``'s index and drop the logs it merged; the error (also logged) when it could not."""
    stamps = {n: (stamps or {}).get(n) for n in records} if store.local else {}
    doc = {"catalog_version": CATALOG_VERSION, "kind": kind, "records": records, "stamps": stamps}
    try:
        store.storage.put(f"{CATALOG}/{kind}/{INDEX}", json.dumps(doc, sort_keys=True).encode())
        for n in merged_logs:
            store.storage.delete(f"{CATALOG}/{kind}/log/{n}")
    except OSError as exc:  # the catalogue is a cache: the next query repairs it
        _log.warning("could not rewrite the %s catalogue of %s (%s); queries read the entries until it is rewritten",
                     kind, store.url, exc)
        return exc
    return None


def record(store: "Store", entry: "Entry") -> None:
    """Append the record of a just-published entry (its attributes as stored in its ``zarr.json``)."""
    name = entry.path.split("/", 1)[1]
    attrs = store.storage.read_group_attrs(entry.path) or entry.attrs
    rec = {"catalog_version": CATALOG_VERSION, "path": entry.path, "attrs": attrs,
           "stamp": _stamp(store, entry.kind, name)}
    try:
        store.storage.put(f"{CATALOG}/{entry.kind}/log/{name}.json", json.dumps(rec, sort_keys=True).encode())
        logs = store.storage.names(f"{CATALOG}/{entry.kind}/log", dirs=False)
        if len(logs) > COMPACT_AT or not store.fs.exists(store.storage.path(f"{CATALOG}/{entry.kind}/{INDEX}")):
            kind_entries(store, entry.kind, maintain=True)
    except (OSError, StoreError) as exc:  # a missing record is found by the next query, re-added by the next compaction
        _log.warning("could not record %s entry %s in the catalogue of %s (%s); queries read it directly",
                     entry.kind, entry.key[:16], store.url, exc)


def forget(store: "Store", kind: str, name: str) -> None:
    """Drop an entry's record (after :meth:`Store.delete` removed it), so a later rewrite is not listed early."""
    store.storage.delete(f"{CATALOG}/{kind}/log/{name}.json")
    kind_entries(store, kind, maintain=True)  # its folder is gone: the rebuilt index drops it


def reindex(store: "Store") -> dict[str, int]:
    """Rebuild every kind's index from the entries themselves (parallel reads); returns entries per kind.

    Raises
    ------
    StoreError
        An index could not be written (permissions, a full disk): the catalogue was not rebuilt.
    """
    store.storage.check_writable()
    counts, failed = {}, {}
    for kind in store.storage.kind_dirs():
        names = store.storage.names(kind, dirs=True)
        logs = store.storage.names(f"{CATALOG}/{kind}/log", dirs=False)
        got = _read_many(store, [f"{kind}/{n}/zarr.json" for n in names])
        records = {p.split("/")[1]: a for p, raw in got.items() if _complete(a := _group_attrs(raw))}
        if (exc := _compact(store, kind, records, logs, {n: _stamp(store, kind, n) for n in records})) is not None:
            failed[kind] = exc
        counts[kind] = len(records)
    if failed:
        why = "; ".join(f"{k}: {type(e).__name__}: {e}" for k, e in sorted(failed.items()))
        raise StoreError(f"reindex could not write the catalogue of {len(failed)} kind(s) in {store.url!r} ({why}); "
                         f"the entries are untouched and queries still read them. Make {CATALOG}/ writable (permissions, "
                         "free space), then rerun reindex")
    return counts
