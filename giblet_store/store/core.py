"""The store: one Zarr v3 group of entries identified by content keys held in their attributes.

An entry is a subgroup ``<kind>/<key[:16]>`` holding one xarray Dataset. Its identity and meaning
live in its attributes (``kind``, ``key``, parameters, ``status``); :meth:`Store.find` searches them
as data. Writes go to a staging group ``_staging/...`` and are published by an atomic rename on
local disk; on object stores (no atomic rename) the entry is written in place and ``status:
complete`` is the last thing written. Readers never serve an entry whose status is not
``complete``. A request whose key exists is a cache hit that computes nothing.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Callable, Mapping

from ..errors import AmbiguousKeyError, EntryNotFoundError, FormatVersionError, NotAStoreError, SchemaError, StoreError
from .entry import KEY_PATH_LEN, STAGING, Entry, check_kind, default_encoding, entry_path, lineage
from .conventions import eager_coords
from .schema import FORMAT_VERSION, entry_document, validate_entry
from .staging import StagedWriter, Staging, publish_group
from .storage import Storage
from .lease import Lease
from .attr_match import check_where, matches
from .attr_match import MISSING as _MISSING, lookup_attr as _lookup_attr, match as _match  # noqa: F401 (bench/catalog.py)
from .version import __version__
from ..validate import is_format_version, parse_key, parse_kind, redact_url
from .url_check import check_store_url

__all__ = ["Store", "Entry", "Staging", "open_store", "default_encoding", "STAGING"]

ROOT_ATTR = "giblet_store"

#: what a chunk-by-chunk write that found no room leaves (see :meth:`Store.begin_write`)
_RESUMABLE = "the entry was not published (chunks already written stay staged; a rerun writes only the rest)"


def _check_version(attrs: Mapping, where: str) -> None:
    version = attrs.get("format_version")
    if not is_format_version(version, FORMAT_VERSION):
        raise FormatVersionError(
            f"{where} has format_version {version!r}; this giblet_store reads 1 to {FORMAT_VERSION}. "
            f"Upgrade giblet_store (pip install -U giblet_store) to read it, or delete the entry"
        )


class Store:
    """A giblet store. Use :func:`open_store` to get one.

    Chunk-by-chunk writes (batch) go through ``store.staged``, a :class:`~giblet_store.store.staging.StagedWriter`;
    :meth:`begin_write`, :meth:`write_chunk`, :meth:`done_chunks` and :meth:`commit` delegate to it.

    Examples
    --------
    >>> store = open_store("my_store")                                   # doctest: +SKIP
    >>> [e.key[:12] for e in store.find(kind="codes", bandwidth_kbps=6)]  # doctest: +SKIP
    """

    def __init__(self, url: str, fs, root: str, zstore, local: bool, read_only: bool,
                 storage_options: dict | None = None):
        self.url = url
        self._storage_options = dict(storage_options or {})  # may hold credentials: never shown
        self.fs = fs
        self.root = root.rstrip("/")
        self.zstore = zstore
        self.local = local
        self.read_only = read_only
        #: the store's bytes (read, write, list, delete under the root): see :mod:`giblet_store.store.storage`
        self.storage = Storage(url, fs, self.root, zstore, local, read_only)
        self.staged = StagedWriter(self)

    def __repr__(self) -> str:
        return f"<giblet_store.Store {redact_url(self.url)!r}>"

    def __reduce__(self):  # picklable: reopen by URL in the other process
        return (open_store, (self.url, "r" if self.read_only else "a", self._storage_options or None))

    # ------------------------------------------------------------------------------ queries
    def entries(self, kind: str | None = None, include_incomplete: bool = False) -> list[Entry]:
        """Every complete entry (of ``kind``), sorted by path (from the catalogue; see :mod:`giblet_store.store.catalog`)."""
        if kind is not None:
            kind = parse_kind(kind)  # a user-given segment: never a path outside the store
        if not include_incomplete:
            from .catalog import entries

            return entries(self, kind)
        out = []
        for k in [parse_kind(kind)] if kind else self.storage.kind_dirs():
            try:
                children = self.fs.ls(self.storage.path(k), detail=True)
            except FileNotFoundError:
                continue
            for info in children:
                if info.get("type") != "directory":
                    continue
                path = f"{k}/{info['name'].rstrip('/').rsplit('/', 1)[-1]}"
                attrs = self.storage.read_group_attrs(path)
                if not attrs or "key" not in attrs:
                    continue
                if attrs.get("status") != "complete" and not include_incomplete:
                    continue
                out.append(Entry(self, path, attrs))
        return sorted(out, key=lambda e: e.path)

    def find(self, kind: str | None = None, **where: Any) -> list[Entry]:
        """Complete entries whose attributes equal every ``where`` value.

        Numbers compare by value (``bandwidth_kbps=6`` and ``"6"`` match 6.0); a list matches any of
        its values; dotted names reach into nested attributes (``hrf_params.peak_delay_s=6``). A name no
        entry of ``kind`` has (a typo) or a non-number for a number attribute is a ParameterError
        (:func:`~giblet_store.store.attr_match.check_where`).
        """
        entries = self.entries(kind)  # kind checked here
        check_where([e.attrs for e in entries], where, f"{kind} entry" if kind else "entry")
        return [e for e in entries if matches(e.attrs, where)]

    def lookup(self, key: str, kind: str | None = None) -> Entry | None:
        """The complete entry with exactly this key, or None. Cheap: reads one zarr.json per kind.

        Raises
        ------
        FormatVersionError
            The entry with this key was written by a newer giblet_store: it is neither served nor
            rewritten (a request for it must not be reported as cached).
        """
        key = parse_key(key, self.url, prefix=False)
        for k in [parse_kind(kind)] if kind else self.storage.kind_dirs():
            path = entry_path(k, key)
            attrs = self.storage.read_group_attrs(path)
            if attrs and attrs.get("key") == key and attrs.get("status") == "complete":
                _check_version(attrs, f"entry {key[:16]} ({path})")
                return Entry(self, path, attrs)
        return None

    def get(self, key_or_prefix: "str | Entry", kind: "str | tuple[str, ...] | None" = None,
            purpose: str = "this") -> Entry:
        """The one complete entry whose key starts with ``key_or_prefix`` (of ``kind``, if given).

        ``purpose`` words the error for another kind: "{purpose} needs a codes entry".

        Raises
        ------
        EntryNotFoundError, AmbiguousKeyError
        ParameterError
            The entry is not of ``kind``.
        """
        entry = self._get(key_or_prefix)
        return entry if kind is None else check_kind(entry, kind, purpose)

    def _get(self, key_or_prefix: "str | Entry") -> Entry:
        if isinstance(key_or_prefix, Entry):
            return key_or_prefix
        prefix = parse_key(key_or_prefix, self.url)
        if len(prefix) == 64 and (e := self.lookup(prefix)):
            return e
        hits = [e for e in self.entries() if e.key.startswith(prefix)]
        if not hits:
            raise EntryNotFoundError(
                f"no complete entry in {self.url!r} has a key starting with {prefix!r}; "
                f"`giblet-store ls {self.url}` lists the keys"
            )
        if len(hits) > 1:
            listing = ", ".join(f"{e.key[:16]} ({e.kind})" for e in hits[:10])
            raise AmbiguousKeyError(
                f"key prefix {prefix!r} matches {len(hits)} entries: {listing}; give more hex digits"
            )
        return hits[0]

    def open(self, entry: "Entry | str", validate: bool = True, **xarray_kwargs):
        """Open an entry lazily as an :class:`xarray.Dataset` backed by Dask.

        ``xarray_kwargs`` go to :func:`xarray.open_zarr` (e.g. ``chunks=None`` for no Dask).
        Small 1-D coordinates are loaded eagerly and ``tr_start_s`` is indexed
        (:func:`giblet_store.store.conventions.eager_coords`).

        Raises
        ------
        FormatVersionError
            The entry was written by a newer giblet_store.
        SchemaError
            The entry does not match its kind's schema.
        """
        import xarray as xr

        from .codecs_allowed import check_entry_codecs

        entry = self.get(entry)
        _check_version(entry.attrs, f"entry {entry.key[:16]}")
        check_entry_codecs(self.fs, self.storage.path(entry.path), f"entry {entry.key[:16]} ({entry.path})")
        repair = f"`giblet-store verify {self.url} --repair` moves a broken entry aside"
        try:
            kwargs = {"consolidated": False, "zarr_format": 3, **xarray_kwargs}
            ds = xr.open_zarr(self.zstore, group=entry.path, **kwargs)
        except Exception as exc:  # damaged array metadata (hand-edited dtype, shape, fill value, ...)
            raise SchemaError(f"entry {entry.key[:16]} ({entry.path}) cannot be opened: {type(exc).__name__}: "
                              f"{exc}; {repair}") from None
        if validate:
            try:
                validate_entry(entry_document(ds), where=f"entry {entry.key[:16]}")
            except SchemaError as exc:
                raise SchemaError(f"{exc}; {repair}") from None
        return eager_coords(ds)

    # ------------------------------------------------------------------------------ writing
    def write(self, ds, attrs: Mapping[str, Any], encoding: dict | None = None) -> tuple[Entry, bool]:
        """Write ``ds`` as a new entry with ``attrs`` (must hold ``kind`` and ``key``).

        Returns ``(entry, created)``; ``created`` is False when a complete entry with the same key
        already exists (a cache hit, or another writer won the race) and nothing was written.
        The document is validated before anything touches the store; a failure while writing
        removes the staging group, so the store is left as it was.
        """
        ds, attrs, existing = self.staged.prepare(ds, attrs)
        if existing is not None:
            return existing, False
        from .leftovers import sweep_dead_writers

        with self._no_room_said(f"entry {entry_path(attrs['kind'], attrs['key'])}"):
            with Lease(self.storage, attrs["key"]):  # gc leaves a write with a live lease alone
                sweep_dead_writers(self, attrs["key"][:KEY_PATH_LEN])  # stagings and leases of killed writes
                if not self.local:  # no rename: chunks in place, zarr.json (status complete) last
                    from .object_write import write_in_place

                    return write_in_place(self, ds, attrs, encoding)
                return self._write_local(ds, attrs, encoding)

    @contextlib.contextmanager
    def _no_room_said(self, what: str, outcome: str = "nothing was stored"):
        """A full disk, quota or file-size limit met in the block is a :class:`DiskFullError` naming the file."""
        from .disk_full import disk_full_error, is_disk_full, relative_to

        try:
            yield
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            rel = relative_to(exc.filename, self.root, "a file")
            raise disk_full_error(exc, f"{rel} ({what}) in store {self.url!r}", outcome) from None

    def _write_local(self, ds, attrs: dict, encoding: dict | None) -> tuple[Entry, bool]:
        """:meth:`write` on local disk: a staging group of this process, renamed into place."""
        import zarr

        kind, key = attrs["kind"], attrs["key"]
        final = entry_path(kind, key)
        from .leftovers import staging_name

        target = f"{STAGING}/{staging_name(key[:KEY_PATH_LEN])}"
        enc = default_encoding(ds) if encoding is None else encoding
        kind_existed = self.storage.names(kind) != []
        try:
            ds.to_zarr(self.zstore, group=target, mode="w", consolidated=False, zarr_format=3, encoding=enc,
                       write_empty_chunks=True)  # every chunk on disk: `verify` can tell a missing one
            # status (in attrs) is the last thing written: before it, readers skip the group
            zarr.open_group(self.zstore, path=target, mode="r+", zarr_format=3).attrs.put(attrs)
            self.storage.ensure_group(kind)
            if (existing := publish_group(self, target, final, key, kind)) is not None:
                return existing, False
        except BaseException as exc:
            if hasattr(self.zstore, "abandon"):  # zarr's other writes of this call still running: stopped first
                self.zstore.abandon(target)
            self.storage.delete(target)
            if not kind_existed:  # made for this entry: an empty group, or a folder without its zarr.json
                self.storage.remove_unused_group(kind)
            if isinstance(exc, PermissionError):
                raise StoreError(f"cannot write to store {self.url!r}: permission denied ({exc.filename}); "
                                 "make the store writable, or give a store you can write to") from None
            if isinstance(exc, FileNotFoundError):  # its staging folder was removed under it
                raise StoreError(f"the staging folder {target} of this write vanished while it was written "
                                 f"(removed by hand, or by a collector that ignores leases); nothing was published "
                                 f"to {self.url!r}: rerun") from None
            raise
        entry = Entry(self, final, attrs)
        from .catalog import record

        record(self, entry)
        return entry, True

    #: The function behind :meth:`derive`, registered by :mod:`giblet_store.features.derive` when it is
    #: imported (``import giblet_store`` does): the store sits below the transforms and never
    #: imports them.
    _deriver: Callable | None = None

    @classmethod
    def register_deriver(cls, deriver: Callable) -> None:
        """Set the function behind :meth:`derive` (called once by :mod:`giblet_store.features.derive`)."""
        cls._deriver = deriver

    def derive(self, entry: "Entry | str", transform, **kwargs) -> Entry:
        """Write (or return cached) the entry ``transform`` derives from ``entry``; see :mod:`giblet_store.features.derive`."""
        if Store._deriver is None:
            raise StoreError("giblet_store.features.derive is not imported; `import giblet_store` loads it")
        return Store._deriver(self, entry, transform, **kwargs)

    def lineage(self, entry: "Entry | str") -> list[Entry]:
        """``entry`` and its parents up to the source entry; see :func:`giblet_store.store.entry.lineage`."""
        return lineage(self, entry)

    def delete(self, entry: "Entry | str") -> None:
        """Remove an entry (derived entries that name it as parent stay, and say so when used)."""
        self.storage.check_writable()
        entry = self.get(entry)
        self.storage.delete(entry.path)
        from .catalog import forget

        forget(self, entry.kind, entry.path.split("/", 1)[1])

    def clean_staging(self, older_than: "str | float" = "1h") -> int:
        """Remove what dead writers left in ``_staging`` (:func:`giblet_store.store.gc.collect`); how many paths.

        Only names this package writes, only groups without a live lease and untouched for
        ``older_than``; anything else is left.
        """
        from .gc import collect

        return sum(it.removed and it.action == "remove" for it in collect(self, older_than)
                   if it.path.startswith(f"{STAGING}/"))

    # ------------------------------------------------------------------------------ staged chunk writes
    def begin_write(self, ds, attrs: Mapping[str, Any], encoding: dict | None = None) -> "Staging | Entry":
        """Start, join or resume writing ``ds`` chunk by chunk; see :meth:`StagedWriter.begin_write`."""
        with self._no_room_said(f"the staging of {attrs.get('kind')} entry {str(attrs.get('key'))[:16]}", _RESUMABLE):
            return self.staged.begin_write(ds, attrs, encoding)

    def done_chunks(self, staging: Staging) -> set[str]:
        """Names (``"<name>.<i>"``) of the chunks already written; see :meth:`StagedWriter.done_chunks`."""
        return self.staged.done_chunks(staging)

    def write_chunk(self, staging: Staging, name: str, i: int, data) -> bool:
        """Write chunk ``i`` of ``name`` whole, then its marker; see :meth:`StagedWriter.write_chunk`."""
        with self._no_room_said(f"chunk {i} of {name}", _RESUMABLE):
            return self.staged.write_chunk(staging, name, i, data)

    def commit(self, staging: Staging) -> tuple[Entry, bool]:
        """Publish a staging whose every chunk is written; see :meth:`StagedWriter.commit`."""
        with self._no_room_said("the entry's last document", _RESUMABLE):
            return self.staged.commit(staging)


def _is_url(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def _filesystem(url: str, given_options: dict) -> tuple[str, Any, str, bool, dict]:
    """``(url, fs, root, local, storage_options)`` of a store path or fsspec URL (see :func:`open_store`)."""
    import fsspec

    storage_options: dict = {}
    if url.startswith("file://"):
        url = url[len("file://"):]
    if not _is_url(url):
        url = os.path.abspath(os.path.expanduser(url))
        if os.path.isfile(url):
            raise NotAStoreError(f"{url!r} is a regular file, not a giblet store; give a directory path")
        return url, fsspec.filesystem("file"), url, True, storage_options
    from .remote import refuse_userinfo, storage_options_for, unknown_protocol_error

    refuse_userinfo(url)
    storage_options = storage_options_for(url, given_options)
    try:
        fs, root = fsspec.core.url_to_fs(url, **storage_options)
    except (ImportError, ValueError) as exc:
        raise unknown_protocol_error(url, exc) from None
    from fsspec.implementations.local import LocalFileSystem

    if isinstance(fs, LocalFileSystem):
        # local://path: a local directory with object-store semantics (no rename; status last)
        fs = fsspec.filesystem("file", auto_mkdir=True)
        storage_options = {"auto_mkdir": True}
    return url, fs, root, False, storage_options


def open_store(url: "str | os.PathLike", mode: str = "a", storage_options: dict | None = None) -> Store:
    """Open (``mode="a"``, creating it if absent) or read (``mode="r"``) a giblet store.

    Parameters
    ----------
    url : str or PathLike
        A local directory, or any fsspec URL (``memory://name``, ``s3://bucket/path``, ...).
    mode : {"a", "r"}
    storage_options : dict, optional
        fsspec options for an object store (``endpoint_url``, ``key``, ``secret``, ...), merged over
        the defaults of :mod:`giblet_store.store.remote`. Credentials may also come from ``AWS_*``
        environment variables or an fsspec config; they are never written anywhere.

    Raises
    ------
    NotAStoreError
        The path is a regular file, or a non-empty directory that is not a giblet store.
    FormatVersionError
        The store was written by a newer giblet_store.
    StoreError
        The store does not exist (mode "r"), or its filesystem is not installed.
    """
    import zarr

    from .remote import OBJECT_PROTOCOLS, probe, protocol_of
    from .root import check_root, create_root, root_document

    if mode not in ("a", "r"):
        raise StoreError(f"mode must be 'a' (read/write, create if absent) or 'r' (read-only), got {mode!r}")
    given_options = dict(storage_options or {})
    if "://" in os.fspath(url):
        from .remote import refuse_userinfo

        refuse_userinfo(os.fspath(url))  # first: every later message may echo the URL
    check_store_url(os.fspath(url))  # a path the OS cannot hold, a bucket S3 refuses: said before any I/O
    url, fs, root, local, storage_options = _filesystem(os.fspath(url), given_options)
    if not local and protocol_of(url) in OBJECT_PROTOCOLS:
        probe(fs, root, url, write=(mode == "a"))  # unreachable, no bucket, bad credentials: said here
    marker = check_root(fs, root, url, mode, ROOT_ATTR, FORMAT_VERSION)
    if local:
        from .local_zarr import NamedLocalStore

        zstore = NamedLocalStore(root, read_only=(mode == "r"))
    else:
        zstore = zarr.storage.FsspecStore.from_url(url, read_only=(mode == "r"), storage_options=storage_options)
    if marker is None:
        doc = root_document(ROOT_ATTR, {"format_version": FORMAT_VERSION, "created_by": f"giblet_store {__version__}"})
        create_root(fs, root, url, local, doc)
    return Store(url, fs, root, zstore, local, read_only=(mode == "r"), storage_options=given_options)
