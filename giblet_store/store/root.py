"""The store's root document: what a directory holds, and creating a new store in one atomic write.

A store's root ``zarr.json`` is a Zarr group whose attributes hold the ``giblet_store`` marker. On
local disk it is written whole, once (temporary file, then an exclusive link), so a kill while a
store is being created leaves either nothing, an empty folder, or Zarr's ``*.partial`` temporary
file: each is recognised here as an interrupted creation and finished by the next write. A root
``zarr.json`` without the marker that is not such a leftover is a foreign Zarr group and is never
adopted.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import uuid
from enum import Enum

from ..errors import FormatVersionError, NotAStoreError, StoreError
from ..validate import is_format_version

log = logging.getLogger(__name__)

__all__ = ["RootState", "root_state", "root_document", "create_local_root", "check_root", "create_root",
           "missing_local_ancestor", "remove_unused_root", "empty_local_folder", "remove_unused_root_document"]


class RootState(Enum):
    """What a store path holds."""

    ABSENT = "absent"              # nothing there (or an empty folder)
    INTERRUPTED = "interrupted"    # leftovers of a creation killed before the marker was written
    STORE = "store"                # a root document with the giblet_store marker
    FOREIGN = "foreign"            # anything else: a non-empty folder that is not a giblet store


def _is_leftover(name: str) -> bool:
    return name.endswith(".partial")


def root_state(fs, root: str, marker_attr: str) -> tuple[RootState, dict | None]:
    """(state, marker) of ``root``; marker is the ``giblet_store`` attribute of a store, else None."""
    if not fs.exists(root):
        return RootState.ABSENT, None
    names = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)]
    meta = None
    if "zarr.json" in names:
        try:
            meta = json.loads(fs.cat_file(f"{root.rstrip('/')}/zarr.json"))
        except (ValueError, OSError):
            meta = None
    if isinstance(meta, dict):
        marker = (meta.get("attributes") or {}).get(marker_attr)
        if marker is not None:
            return RootState.STORE, marker
    others = [n for n in names if n != "zarr.json" and not _is_leftover(n)]
    bare = isinstance(meta, dict) and meta.get("node_type") == "group" and not meta.get("attributes")
    if not names:
        return RootState.ABSENT, None
    if not others and any(_is_leftover(n) for n in names) and ("zarr.json" not in names or bare):
        return RootState.INTERRUPTED, None
    return RootState.FOREIGN, None


def root_document(marker_attr: str, marker: dict) -> bytes:
    """The bytes of a store's root ``zarr.json``, exactly as Zarr writes a group with ``marker``."""
    import zarr

    mem = zarr.storage.MemoryStore()
    zarr.open_group(mem, mode="w", zarr_format=3).attrs.put({marker_attr: marker})
    return bytes(mem._store_dict["zarr.json"].to_bytes())


def create_local_root(root: str, document: bytes) -> None:
    """Write a new store's root ``zarr.json`` in one atomic step; leftovers of a killed creation go.

    Another process creating the same store at the same moment is fine: the first link wins and
    both see the same document.
    """
    made = missing_local_ancestor(root)
    os.makedirs(root, exist_ok=True)
    try:
        _write_root_document(root, document)
    except BaseException:  # a full disk, a file-size limit: the folders this call made go again
        _remove_empty_folders(made, root)
        raise


def _write_root_document(root: str, document: bytes) -> None:
    """Remove stale temporary files of killed creations, then write ``document`` as ``root/zarr.json`` (tmp + link)."""
    import time

    for name in os.listdir(root):  # a killed creation's temporary file (not a live one: > 60 s old)
        path = os.path.join(root, name)
        try:
            if _is_leftover(name) and time.time() - os.stat(path).st_mtime > 60:
                os.unlink(path)
        except OSError:
            pass
    final = os.path.join(root, "zarr.json")
    tmp = os.path.join(root, f"zarr.{uuid.uuid4().hex}.partial")
    try:
        with open(tmp, "wb") as f:
            f.write(document)
        if os.path.exists(final):  # an interrupted creation's bare group: replace it
            os.replace(tmp, final)
        else:
            try:
                os.link(tmp, final)
            except FileExistsError:  # another process made the store first
                pass
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def check_root(fs, root: str, url: str, mode: str, marker_attr: str, format_version: int) -> dict | None:
    """The store's marker at ``root``, or None when there is no store yet (``mode="a"`` creates one).

    Raises
    ------
    NotAStoreError
        ``root`` is a regular file, or a non-empty directory that is not a giblet store.
    FormatVersionError
        The store was written by a newer giblet_store (its ``format_version`` > ``format_version``).
    StoreError
        No store there and ``mode="r"``.
    """
    state, marker = root_state(fs, root, marker_attr)
    if state is RootState.FOREIGN:
        if fs.isfile(root):
            raise NotAStoreError(f"{url!r} is a regular file, not a giblet store; give a directory path")
        raise NotAStoreError(
            f"{url!r} is a non-empty directory that is not a giblet store (no zarr.json with "
            f"'{marker_attr}' attributes); give a new or empty directory, or the store's own directory"
        )
    if marker is not None:
        version = marker.get("format_version") if isinstance(marker, dict) else None
        if not is_format_version(version, format_version):
            raise FormatVersionError(
                f"store {url!r} has format_version {version!r}; this giblet_store reads 1 to "
                f"{format_version}. Upgrade giblet_store to use it"
            )
    elif mode == "r":
        hint = (" (its creation was interrupted; any write, e.g. `giblet-store extract`, finishes it)"
                if state is RootState.INTERRUPTED else "")
        raise StoreError(f"no giblet store at {url!r}{hint}; create one with open_store(path) or "
                         "`giblet-store extract`")
    return marker


def create_root(fs, root: str, url: str, local: bool, document: bytes) -> None:
    """Write a new store's root document (:func:`create_local_root` on local disk, one PUT elsewhere)."""
    try:
        if local:
            create_local_root(root, document)
        else:
            fs.pipe_file(f"{root.rstrip('/')}/zarr.json", document)
    except PermissionError as exc:
        raise StoreError(f"cannot create a store at {url!r}: permission denied ({exc.filename}); "
                         "give a directory you can write to") from None
    except OSError as exc:
        from .disk_full import disk_full_error, is_disk_full

        if not is_disk_full(exc):
            raise
        raise disk_full_error(exc, f"zarr.json (the root document of the new store {url!r})",
                              "no store was created") from None


def _remove_empty_folders(top: str | None, root: str) -> None:
    """Remove ``root`` and its parents up to ``top`` (the first folder a creation made), each only if empty."""
    if top is None:
        return
    path = os.path.abspath(root)
    while True:
        try:
            os.rmdir(path)
        except OSError:  # not empty (another process wrote there), or gone: leave it
            return
        if path == top or os.path.dirname(path) == path:
            return
        path = os.path.dirname(path)


def missing_local_ancestor(url: str) -> str | None:
    """The outermost folder of the local store path ``url`` that does not exist yet (None: it exists, or a URL).

    Recorded before a command opens (and so creates) a store, for :func:`remove_unused_root`.
    """
    if "://" in str(url) and not str(url).startswith("file://"):
        return None
    path = os.path.abspath(str(url).removeprefix("file://"))
    if os.path.lexists(path):
        return None
    while not os.path.lexists(os.path.dirname(path)):
        path = os.path.dirname(path)
    return path


def remove_unused_root(created: str | None, root: str) -> None:
    """Remove a store root this command created (``created``, from :func:`missing_local_ancestor`) when it holds
    nothing but the root document (and the empty group documents of ``_staging`` or a kind folder, which a write
    that failed for lack of room may have made): a command refused for every input leaves the disk as it found it.

    Anything else in it (an entry, another writer's files) keeps the whole folder.
    """
    if created is None or not os.path.isdir(root):
        return
    for dirpath, _dirs, files in os.walk(created):
        if any(not _unused_document(root, dirpath, f) for f in files):
            return
    try:
        for dirpath, _dirs, files in os.walk(created, topdown=False):
            for f in files:
                os.remove(os.path.join(dirpath, f))
            os.rmdir(dirpath)
    except OSError as exc:  # another process wrote into it meanwhile: leave it
        log.info("kept the store folder %s: %s", created, exc)


def _unused_document(root: str, dirpath: str, name: str) -> bool:
    """Whether ``dirpath/name`` is the root document, or an empty group's ``zarr.json`` one level below ``root``."""
    if name != "zarr.json":
        return False
    if dirpath == root:
        return True
    if os.path.dirname(dirpath) != root:
        return False
    path = os.path.join(dirpath, name)
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode) or os.path.getsize(path) > 4096:
            return False
        with open(path, "rb") as f:
            meta = json.loads(f.read())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("node_type") == "group" and not meta.get("attributes")


def empty_local_folder(url: str) -> str | None:
    """The local store path ``url`` when it is an existing, empty folder (a store would be created in it), else None."""
    if "://" in str(url) and not str(url).startswith("file://"):
        return None
    path = os.path.abspath(str(url).removeprefix("file://"))
    if os.path.isdir(path) and not os.path.islink(path) and not os.listdir(path):
        return path
    return None


def remove_unused_root_document(folder: str | None) -> None:
    """Remove the root document a command wrote into the empty folder ``folder`` (from :func:`empty_local_folder`)
    when the folder holds nothing else; the folder itself, which the user made, stays."""
    if folder is None or "zarr.json" not in os.listdir(folder):
        return
    for dirpath, _dirs, files in os.walk(folder):
        if any(not _unused_document(folder, dirpath, f) for f in files):
            return
    try:
        for dirpath, _dirs, files in os.walk(folder, topdown=False):
            for f in files:
                os.remove(os.path.join(dirpath, f))
            if dirpath != folder:
                os.rmdir(dirpath)
    except OSError as exc:  # pragma: no cover - written meanwhile by another process
        log.info("kept the root document in %s: %s", folder, exc)
