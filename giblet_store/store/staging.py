"""Staged writes: an entry written chunk by chunk, by any number of processes, published once.

Used by batch extraction (:mod:`giblet_store.batch.run`) for entries too big or too slow for one
process. Each chunk is written whole and a marker (outside the entry) records it, so a rerun after a
crash writes only the missing chunks. Local disk: the arrays live in ``_staging/<key16>-<tag>`` (a
template made whole-or-absent by a rename) and :meth:`StagedWriter.commit` renames it into place.
Object stores (no atomic rename): the arrays are written in place and the entry's own ``zarr.json``,
holding ``status: complete``, is withheld until ``commit`` writes it last; readers skip a group
without it. Chunk bytes are deterministic, so concurrent writers of one key write identical objects.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .entry import KEY_PATH_LEN, STAGING, Entry, default_encoding, entry_path
from ..errors import StoreError
from .conventions import annotate
from .schema import FORMAT_VERSION, entry_document, validate_entry

__all__ = ["Staging", "StagedWriter", "STAGING", "publish_group"]


@dataclass(frozen=True)
class Staging:
    """An entry being written chunk by chunk (:meth:`Store.begin_write`), possibly by several processes.

    Picklable (plain values): a worker reopens the store from ``url``.

    Attributes
    ----------
    regions : tuple of (name, chunk_len, n_chunks)
        The variables filled by :meth:`Store.write_chunk`, chunked along their first dim only.
    tag : str
        Hash of the chunk layout: a rerun with another layout does not reuse these chunks.
    """

    url: str
    kind: str
    key: str
    tag: str
    regions: tuple
    local: bool

    @property
    def final(self) -> str:
        """Path of the published entry."""
        return entry_path(self.kind, self.key)

    @property
    def data(self) -> str:
        """Where the arrays are written: a staging group on local disk, the entry itself on object stores."""
        return f"{STAGING}/{self.key[:KEY_PATH_LEN]}-{self.tag}" if self.local else self.final

    @property
    def markers(self) -> str:
        """Folder of one marker per finished chunk (outside the entry, so it never becomes part of it)."""
        return f"{STAGING}/{self.key[:KEY_PATH_LEN]}-{self.tag}.done"

    def chunk_names(self) -> list[str]:
        """``"<name>.<i>"`` of every chunk :meth:`Store.commit` waits for."""
        return [f"{name}.{i}" for name, _, n in self.regions for i in range(n)]

    def chunk_len(self, name: str) -> tuple[int, int]:
        """(chunk length along the first dim, number of chunks) of variable ``name``."""
        for n, length, count in self.regions:
            if n == name:
                return length, count
        raise StoreError(f"{name!r} is not a chunk-written variable of this entry; expected one of "
                         f"{[r[0] for r in self.regions]}")


class StagedWriter:
    """Writes entries chunk by chunk into one store, possibly alongside other processes; publishes them once.

    A collaborator of :class:`giblet_store.store.core.Store` (``store.staged``): ``Store.begin_write``,
    ``write_chunk``, ``done_chunks`` and ``commit`` delegate here. It reaches the store only through
    its public state (``url``, ``local``, ``fs``, ``zstore``, ``lookup``) and its bytes (``store.storage``, :class:`giblet_store.store.storage.Storage`).
    """

    def __init__(self, store):
        self.store = store

    def prepare(self, ds, attrs: Mapping[str, Any]):
        """Before any byte is written: ``(ds without attrs, complete attrs, existing entry or None)``.

        Raises SchemaError (nothing written) when the entry would not match its kind's schema.
        """
        self.store.storage.check_writable()
        attrs = dict(attrs)
        kind, key = attrs["kind"], attrs["key"]
        if (existing := self.store.lookup(key, kind)) is not None:
            return ds, attrs, existing
        attrs.setdefault("format_version", FORMAT_VERSION)
        attrs["all_chunks_stored"] = True  # written with write_empty_chunks: a missing chunk is damage
        attrs["status"] = "complete"
        ds = annotate(ds.copy())  # units + long_name on every variable (giblet_store.store.conventions)
        ds.attrs = {}
        doc = entry_document(ds)
        doc["attrs"] = json.loads(json.dumps(attrs))
        validate_entry(doc, where=f"new {kind} entry")
        return ds, attrs, None

    def begin_write(self, ds, attrs: Mapping[str, Any], encoding: dict | None = None) -> "Staging | Entry":
        """Start, join or resume writing ``ds`` chunk by chunk.

        Parameters
        ----------
        ds : xarray.Dataset
            Variables backed by Dask arrays are placeholders (never computed): their metadata is
            written now and :meth:`write_chunk` fills them one chunk (along their first dim) at a
            time. Every other variable and coordinate is written now.
        attrs : mapping
            The entry's attributes, holding ``kind`` and ``key`` (validated now, published by
            :meth:`commit`).
        encoding : dict, optional
            Zarr encoding (default :func:`default_encoding`); its ``chunks`` set the chunk layout.

        Returns
        -------
        Staging, or the complete Entry when one with this key exists.
        """
        from ..params import content_key

        ds, attrs, existing = self.prepare(ds, attrs)
        if existing is not None:
            return existing
        enc = default_encoding(ds) if encoding is None else encoding
        regions, layout = [], {}
        for name, var in ds.data_vars.items():
            if not hasattr(var.data, "dask"):
                continue
            chunks = tuple(max(1, int(c)) for c in (enc.get(name, {}).get("chunks") or var.shape))
            regions.append((str(name), chunks[0], -(-var.shape[0] // chunks[0])))
            ds[name] = var.chunk(dict(zip(var.dims, chunks)))
            layout[str(name)] = [list(var.shape), list(chunks)]
        st = self.store
        from .leftovers import sweep_dead_writers

        staging = Staging(st.url, attrs["kind"], attrs["key"], content_key(layout)[:8], tuple(regions), st.local)
        st.storage.refuse_link_above(staging.data, "write anything into")  # its template would land in the link
        sweep_dead_writers(st, attrs["key"][:KEY_PATH_LEN])  # a killed client's lease of this key
        if st.local:
            if self._staging_id(staging) is None:  # else resume or join: the template is whole
                self._make_local_template(staging, ds, attrs, enc)
        elif self._marker(f"{staging.markers}/{_GROUP_DOC}") is None:  # else the template is whole: join it
            self._put_object_template(staging, ds, attrs, enc)
        return staging

    def _make_local_template(self, staging: Staging, ds, attrs: dict, enc: dict) -> None:
        """Local disk: the staged template (metadata, eager variables), made whole-or-absent by a rename."""
        import zarr

        st = self.store
        tmp = f"{staging.data}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            ds.to_zarr(st.zstore, group=tmp, mode="w", compute=False, consolidated=False,
                       zarr_format=3, encoding=enc, write_empty_chunks=True)
            staged = {**attrs, "status": "writing", "staging_id": uuid.uuid4().hex}
            zarr.open_group(st.zstore, path=tmp, mode="r+", zarr_format=3).attrs.put(staged)
            for attempt in range(2):
                try:
                    st.storage.move(tmp, staging.data)
                    return
                except OSError:  # the path is taken
                    if self._staging_id(staging) is not None:
                        return  # another writer's template (same bytes): join it, never remove it
                    if attempt:
                        raise
                    st.storage.delete(staging.data)  # no template: chunks a late writer left after a publish
        finally:
            st.storage.delete(tmp)

    def _put_object_template(self, staging: Staging, ds, attrs: dict, enc: dict) -> None:
        """Object stores: the template written in place, its group document withheld among the markers."""
        import zarr

        mem = zarr.storage.MemoryStore()
        ds.to_zarr(mem, mode="w", compute=False, consolidated=False, zarr_format=3, encoding=enc,
                   write_empty_chunks=True)
        zarr.open_group(mem, mode="r+", zarr_format=3).attrs.put(attrs)
        files = _store_items(mem)
        for name, data in files.items():
            if name != "zarr.json":
                self.store.storage.put(f"{staging.data}/{name}", data)
        self.store.storage.put(f"{staging.markers}/{_GROUP_DOC}", files["zarr.json"])

    def _staging_id(self, staging: "Staging") -> str | None:
        """The id of the staged template chunks are counted against (object stores: always "")."""
        if not staging.local:
            return ""
        attrs = self.store.storage.read_group_attrs(staging.data)
        if not attrs or attrs.get("key") != staging.key:
            return None
        return attrs.get("staging_id")

    def done_chunks(self, staging: "Staging") -> set[str]:
        """Names (``"<name>.<i>"``) of the chunks already written into this staging."""
        sid = self._staging_id(staging)
        if sid is None:
            return set()
        try:
            names = self.store.fs.ls(self.store.storage.path(staging.markers), detail=False)
        except FileNotFoundError:
            return set()
        wanted = set(staging.chunk_names())
        done = set()
        for path in names:
            name = path.rstrip("/").rsplit("/", 1)[-1]
            if name in wanted and self._marker(f"{staging.markers}/{name}") == sid:
                done.add(name)
        return done

    def _marker(self, path: str) -> str | None:
        try:
            return self.store.fs.cat_file(self.store.storage.path(path)).decode()
        except (FileNotFoundError, OSError, UnicodeDecodeError):
            return None

    def write_chunk(self, staging: "Staging", name: str, i: int, data: np.ndarray) -> bool:
        """Write chunk ``i`` of variable ``name`` whole, then its marker.

        Parameters
        ----------
        data : array
            The chunk: ``chunk_len`` rows along the first dim (fewer for the last chunk), the other
            dims whole.

        Returns
        -------
        bool
            False when nothing was written: the chunk was already there, or the entry is complete
            (another writer published it).
        """
        st = self.store
        st.storage.check_writable()
        chunk_len, n = staging.chunk_len(name)
        if not 0 <= i < n:
            raise StoreError(f"chunk {i} of {name!r} does not exist; the variable has chunks 0..{n - 1}")
        marker = f"{staging.markers}/{name}.{i}"
        sid = self._staging_id(staging)
        if st.lookup(staging.key, staging.kind) is not None:
            return False
        if sid is None:
            raise StoreError(f"no staged template for {staging.kind} entry {staging.key[:16]} in "
                             f"{st.url!r}; call begin_write first (or rerun the batch)")
        if self._marker(marker) == sid:
            return False
        try:
            self._write_rows(staging, name, i * chunk_len, (i + 1) * chunk_len, i, data)
        except StoreError:
            raise
        except Exception:
            # another writer published the entry while we wrote (its rename moved our path)
            if st.lookup(staging.key, staging.kind) is not None or self._marker(marker) == sid:
                return False
            raise
        st.storage.put(marker, sid.encode())
        if st.lookup(staging.key, staging.kind) is not None:
            # another writer published the entry while we wrote: what we wrote (a re-created staging
            # path, a marker) is left over; the published entry is complete without it
            self._discard(staging)
            return False
        return True

    def _write_rows(self, staging: Staging, name: str, start: int, stop: int, i: int, data) -> None:
        """Rows ``start:stop`` (clipped to the array) of staged variable ``name``: chunk ``i``, whole."""
        import zarr

        arr = zarr.open_array(self.store.zstore, path=f"{staging.data}/{name}", mode="r+", zarr_format=3)
        arr = arr.with_config({"write_empty_chunks": True})  # every chunk on disk (see `verify`)
        stop = min(stop, arr.shape[0])
        data = np.asarray(data)
        if data.shape != (stop - start, *arr.shape[1:]):
            raise StoreError(f"chunk {i} of {name!r} must have shape {(stop - start, *arr.shape[1:])}, "
                             f"got {data.shape}")
        arr[start:stop] = data

    def commit(self, staging: "Staging") -> tuple[Entry, bool]:
        """Publish a staging whose every chunk is written.

        Returns ``(entry, created)``; ``created`` is False when another writer published it first.

        Raises
        ------
        StoreError
            Chunks are missing (rerun to write them); nothing becomes visible.
        """
        st = self.store
        st.storage.check_writable()
        if (existing := st.lookup(staging.key, staging.kind)) is not None:
            self._discard(staging)
            return existing, False
        missing = [c for c in staging.chunk_names() if c not in self.done_chunks(staging)]
        if missing and (existing := st.lookup(staging.key, staging.kind)) is not None:
            # another writer published the entry (and discarded the markers) while we counted them
            self._discard(staging)
            return existing, False
        if missing:
            raise StoreError(
                f"cannot publish {staging.kind} entry {staging.key[:16]}: {len(missing)} chunk(s) are not "
                f"written ({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}); rerun to write them"
            )
        try:
            st.storage.ensure_group(staging.kind)
            attrs = self._publish(staging)
        except Exception:
            if (existing := st.lookup(staging.key, staging.kind)) is not None:
                self._discard(staging)
                return existing, False
            raise
        self._discard(staging)
        entry = Entry(st, staging.final, attrs)
        from .catalog import record

        record(st, entry)
        return entry, True

    def _publish(self, staging: Staging) -> dict:
        """Make the staged entry visible (rename on local disk; its ``zarr.json`` last on object stores).

        Raises when another writer published it first: :meth:`commit` then returns that entry.
        """
        import zarr

        st = self.store
        if not st.local:
            doc = st.storage.get(f"{staging.markers}/{_GROUP_DOC}")
            st.storage.put(f"{staging.final}/zarr.json", doc)  # the last write: now it is visible
            self._check_published_whole(staging)
            return json.loads(doc)["attributes"]
        group = zarr.open_group(st.zstore, path=staging.data, mode="r+", zarr_format=3)
        attrs = group.attrs.asdict()
        attrs.pop("staging_id", None)
        attrs["status"] = "complete"
        group.attrs.put(attrs)
        self._sweep_partials(staging.data)  # temp files of writers killed mid-chunk
        # the rename that publishes whole writes too (a broken entry in the way is quarantined)
        if publish_group(st, staging.data, staging.final, staging.key, staging.kind) is not None:
            raise StoreError(f"{staging.kind} entry {staging.key[:16]} was published by another writer")
        self._sweep_partials(staging.final)  # a concurrent writer's temp file moved along
        return attrs

    def _check_published_whole(self, staging: Staging) -> None:
        """After the final PUT on an object store: every chunk is still there, or the entry is withdrawn.

        A PUT that stalled past every lease renewal could land after a collector removed the chunks;
        then the ``zarr.json`` just written (ours) is removed again and the write fails, never
        reported as created.
        """
        from .verify import missing_chunks

        if missing := missing_chunks(self.store, staging.final):
            self.store.storage.delete(f"{staging.final}/zarr.json")
            raise StoreError(
                f"{staging.kind} entry {staging.key[:16]} lost {len(missing)} chunk(s) ({', '.join(missing[:3])}) while "
                f"it was being published to {self.store.url!r} (a collector removed them during a stalled write); "
                "it was withdrawn, nothing is visible: rerun to write it again")

    def _discard(self, staging: "Staging") -> None:
        """Remove the staging's markers (and its local template) once the entry is published.

        A concurrent writer may add a marker or chunk file while the folder is being removed
        (``Directory not empty``): removal is retried. Cleanup never fails a write whose entry is
        published; what could not be removed is left for ``giblet-store gc`` and logged.
        """
        import time

        for attempt in range(5):
            try:
                self.store.storage.delete(staging.markers)
                if staging.local:
                    self.store.storage.delete(staging.data)
                return
            except OSError as exc:
                if attempt == 4:
                    logging.getLogger(__name__).warning(
                        "could not remove the staging of %s entry %s (%s); `giblet-store gc` removes it",
                        staging.kind, staging.key[:16], exc)
                    return
                time.sleep(0.02 * (attempt + 1))

    def _sweep_partials(self, path: str) -> None:
        for folder, _, files in os.walk(self.store.storage.path(path)):
            for f in files:
                if f.endswith(".partial"):
                    try:
                        os.unlink(os.path.join(folder, f))
                    except FileNotFoundError:  # its writer renamed or removed it meanwhile
                        pass
                    except OSError as exc:  # a stray temp file must not fail the publish: say it stays
                        logging.getLogger(__name__).warning("could not remove the temporary file %s (%s); "
                                                            "remove it by hand", os.path.join(folder, f), exc)


_GROUP_DOC = "_group.json"


def _store_items(zstore) -> dict[str, bytes]:
    """Every key of a (small, in-memory) zarr store and its bytes."""
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    async def items():
        proto = default_buffer_prototype()
        return {k: (await zstore.get(k, proto)).to_bytes() async for k in zstore.list()}

    return sync(items())


def publish_group(store, target: str, final: str, key: str, kind: str) -> "Entry | None":
    """Rename the staged group ``target`` to ``final`` (local disk); the existing entry if another writer won.

    A broken entry in the way (invalid ``zarr.json``, no ``key``, not complete) is moved aside to
    ``_quarantine/`` with a warning, so it never blocks its own rebuild.
    """
    from .verify import quarantine

    quarantined = False
    for attempt in range(3):
        try:
            store.storage.move(target, final)
            return None
        except OSError:
            if (existing := store.lookup(key, kind)) is not None:  # lost a race: same bytes
                store.storage.delete(target)
                return existing
            if attempt < 2 and not os.path.isdir(store.storage.path(kind)):  # a failed first write of this kind
                store.storage.ensure_group(kind)  # removed the empty kind folder after our ensure_group: again
                continue
            if attempt == 2 or quarantined or not os.path.isdir(store.storage.path(final)):
                raise
            quarantine(store, final, "it is not a complete entry with its own key; rebuilt")
            quarantined = True
    return None  # pragma: no cover
