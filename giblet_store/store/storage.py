"""Bytes under a store's root: the one seam the store's modules read, write, list and delete through.

:class:`Storage` is a local folder or an fsspec URL seen as paths relative to the store's root
(``"codes/3fa2c1d0e4b5a6f7/zarr.json"``). :class:`~giblet_store.store.core.Store`, the catalogue,
staging, publish, verify and gc use it; none of them touches another module's private members.
One object is written through zarr's own storage API (``zarr.storage.LocalStore`` /
``FsspecStore``: :meth:`Storage.put` is their ``set``, atomic on local disk); reads and listings go
through fsspec, which zarr's stores wrap (their API is asynchronous and has no recursive delete that
refuses links).

**No link is followed out of the store.** On local disk :meth:`Storage.delete` and
:meth:`Storage.move` open every folder below the root with ``O_NOFOLLOW`` and act relative to that
folder's descriptor, so a symbolic link anywhere below the root (``_staging`` pointing at a home
folder, a linked entry) is refused with a :class:`~giblet_store.errors.StoreError` that names it,
and a link swapped in while they run cannot redirect them. ``shutil.rmtree`` below such a descriptor
removes links it meets, never their targets. The root itself may be a link (a user's choice).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat

from ..errors import StoreError
from .regular import read_regular

__all__ = ["Storage"]


class Storage:
    """A store's bytes: ``get``/``put``/``delete``/``move``/``names`` under one root.

    Parameters
    ----------
    url : str
        The store's URL as given (credentials already redacted by the caller for messages).
    fs : fsspec.AbstractFileSystem
        The filesystem of the root.
    root : str
        The root path in ``fs`` (no trailing slash).
    zstore : zarr.abc.store.Store
        zarr's store over the same root (what ``xarray.to_zarr``/``open_zarr`` use).
    local : bool
        A local folder (atomic rename, symlinks possible) rather than an object store.
    read_only : bool
        Opened read-only: :meth:`check_writable` refuses.
    """

    def __init__(self, url: str, fs, root: str, zstore, local: bool, read_only: bool):
        self.url = url
        self.fs = fs
        self.root = root.rstrip("/")
        self.zstore = zstore
        self.local = local
        self.read_only = read_only

    # ------------------------------------------------------------------------------ paths and checks
    def path(self, rel: str = "") -> str:
        """The full path of ``rel`` in :attr:`fs`."""
        return f"{self.root}/{rel}" if rel else self.root

    def check_writable(self) -> None:
        """Raise :class:`StoreError` when the store was opened read-only."""
        if self.read_only:
            raise StoreError(f"store {self.url!r} was opened read-only; open it with mode='a' to write")

    def link_in(self, rel: str) -> str | None:
        """The first component of ``rel`` (``rel`` itself included) that is a symbolic link, or None."""
        if not self.local:
            return None
        parts = [p for p in rel.split("/") if p]
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            try:
                if stat.S_ISLNK(os.lstat(self.path(sub)).st_mode):
                    return sub
            except FileNotFoundError:
                return None
        return None

    def refuse_link_above(self, rel: str, what: str) -> None:
        """:meth:`link_error` when a folder above ``rel`` (below the root) is a symbolic link (local disk)."""
        if "/" in rel and (link := self.link_in(rel.rsplit("/", 1)[0])) is not None:
            raise self.link_error(link, what)

    # ------------------------------------------------------------------------------ reading
    def get(self, rel: str) -> bytes:
        """The bytes of one file/object (``FileNotFoundError`` when absent).

        On local disk only a regular file is read: a FIFO, socket or device raises
        :class:`~giblet_store.store.regular.NotRegularFileError` (an ``OSError``) without waiting.
        """
        return read_regular(self.path(rel)) if self.local else self.fs.cat_file(self.path(rel))

    def exists(self, rel: str) -> bool:
        return self.fs.exists(self.path(rel))

    def names(self, rel: str, dirs: bool | None = None) -> list[str]:
        """Sorted names of the sub-folders (``dirs``), files (``dirs=False``) or both (None) in ``rel``; [] when absent.

        A link is listed by what it points to (local disk), never entered.
        """
        if self.local:  # os.scandir knows the type without a stat per entry
            try:
                with os.scandir(self.path(rel)) as it:
                    return sorted(e.name for e in it if dirs is None or (e.is_dir() if dirs else e.is_file()))
            except (FileNotFoundError, NotADirectoryError):
                return []
        try:
            infos = self.fs.ls(self.path(rel), detail=True)
        except (FileNotFoundError, NotADirectoryError):
            return []
        want = {None: ("directory", "file"), True: ("directory",), False: ("file",)}[dirs]
        return sorted(i["name"].rstrip("/").rsplit("/", 1)[-1] for i in infos if i.get("type") in want)

    def read_group_attrs(self, rel: str) -> dict | None:
        """The attributes of the Zarr group at ``rel``; None when absent, unreadable or not a group."""
        try:
            meta = json.loads(self.get(f"{rel}/zarr.json"))
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or meta.get("node_type") != "group":
            return None
        attrs = meta.get("attributes") or {}
        return attrs if isinstance(attrs, dict) else None

    def kind_dirs(self) -> list[str]:
        """Top-level folders that may hold entries (names not starting with ``_``), sorted."""
        return [n for n in self.names("", dirs=True) if not n.startswith("_")]

    # ------------------------------------------------------------------------------ writing
    def put(self, rel: str, data: bytes) -> None:
        """Write one object (atomically on local disk, as one PUT on object stores); never through a link.

        Raises
        ------
        StoreError
            A folder above ``rel`` (below the root) is a symbolic link (``_staging`` pointing at a user's
            folder would otherwise receive a writer's lease it then cannot remove).
        """
        from zarr.core.buffer import cpu
        from zarr.core.sync import sync

        self.refuse_link_above(rel, "write anything into")
        sync(self.zstore.set(rel, cpu.Buffer.from_bytes(data)))

    def ensure_group(self, rel: str) -> None:
        """Create the (empty) Zarr group ``rel`` unless it exists."""
        import zarr

        if self.read_group_attrs(rel) is None:
            try:
                zarr.open_group(self.zstore, path=rel, mode="a", zarr_format=3)
            except zarr.errors.ContainsGroupError:  # another writer made it between our look and our create
                pass

    def delete(self, rel: str) -> None:
        """Remove the file or folder ``rel`` (absent is fine); never through a link.

        Raises
        ------
        StoreError
            ``rel`` or a folder above it (below the root) is a symbolic link.
        """
        if not rel.strip("/"):
            raise StoreError(f"refusing to delete the root of store {self.url!r}")
        if not self.local:
            try:
                if self.fs.isdir(self.path(rel)):
                    self.fs.rm(self.path(rel), recursive=True)
                elif self.fs.exists(self.path(rel)):
                    self.fs.rm_file(self.path(rel))
            except FileNotFoundError:  # a concurrent writer removed it first: gone is what was asked
                pass
            return
        parent, name = self._open_parent(rel)
        if parent is None:
            return
        try:
            mode = os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode
            if stat.S_ISLNK(mode):
                raise self.link_error(rel, "delete")
            if stat.S_ISDIR(mode):
                shutil.rmtree(name, dir_fd=parent)
            else:
                os.unlink(name, dir_fd=parent)
        except FileNotFoundError:
            pass
        finally:
            os.close(parent)

    def remove_unused_group(self, rel: str) -> None:
        """Remove the folder ``rel`` when it holds nothing, or nothing but an empty group's ``zarr.json`` (a kind
        folder a failed write made); local disk only. Anything else in it, a link, or absent: left as it is."""
        if not self.local or not rel.strip("/"):
            return
        removed_doc = False
        if self.names(rel) == ["zarr.json"]:
            attrs = self.read_group_attrs(rel)
            if attrs != {} or self.link_in(f"{rel}/zarr.json"):
                return
            self.delete(f"{rel}/zarr.json")
            removed_doc = True
        parent, name = self._open_parent(rel)
        if parent is None:
            return
        try:
            os.rmdir(name, dir_fd=parent)
        except OSError as exc:  # not empty (another writer's), absent, or not a folder
            if removed_doc and exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                self.ensure_group(rel)  # another writer published into it after our look: its group document back
        finally:
            os.close(parent)

    def move(self, src: str, dst: str) -> None:
        """Rename ``src`` to ``dst`` (a link at ``src`` itself moves as a link; none above is followed).

        Object stores have no rename: every object is copied, then the source removed.
        """
        if not self.local:
            self.fs.mv(self.path(src), self.path(dst), recursive=True)
            return
        src_dir, src_name = self._open_parent(src)
        if src_dir is None:
            raise FileNotFoundError(errno.ENOENT, "no such file or folder in the store", self.path(src))
        try:
            dst_dir, dst_name = self._open_parent(dst)
            if dst_dir is None:
                raise FileNotFoundError(errno.ENOENT, "no such folder in the store", self.path(dst))
            try:
                os.rename(src_name, dst_name, src_dir_fd=src_dir, dst_dir_fd=dst_dir)
            finally:
                os.close(dst_dir)
        finally:
            os.close(src_dir)

    # ------------------------------------------------------------------------------ no link followed
    def _open_parent(self, rel: str) -> tuple[int | None, str]:
        """(descriptor of the folder holding ``rel``, its last name); (None, name) when a folder is absent."""
        parts = [p for p in rel.split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            raise StoreError(f"{rel!r} is not a path inside store {self.url!r}")
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for i, part in enumerate(parts[:-1]):
                try:
                    nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                except FileNotFoundError:
                    os.close(fd)
                    return None, parts[-1]
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise self.link_error("/".join(parts[: i + 1]), "delete or move anything under") from None
                    raise
                os.close(fd)
                fd = nxt
        except BaseException:
            try:
                os.close(fd)
            except OSError:
                pass
            raise
        return fd, parts[-1]

    def link_error(self, rel: str, what: str) -> StoreError:
        """The error for a refused link at ``rel`` (``what``: the refused action, e.g. "delete")."""
        try:
            target = os.readlink(self.path(rel))
        except OSError:
            target = "?"
        return StoreError(
            f"{rel!r} in store {self.url!r} is a symbolic link (-> {target}) or not a folder; giblet_store never "
            f"follows a link out of a store, so it will not {what} it. If the link is not meant to be there, "
            "remove the link itself by hand (`rm` on the link, not its target), then rerun")
