"""Reading only regular files: a FIFO, socket or device where a file is expected is refused, never opened
for a blocking read.

Opening a FIFO for reading waits for a writer forever, so one ``mkfifo zarr.json`` in a shared store (or
a model folder) would hang every ``ls``, ``verify`` or ``extract`` of every user. Here a local path is
opened with ``O_NONBLOCK`` (which never waits) and checked with ``fstat`` on that same descriptor
before a byte is read, so nothing can be swapped in between. Object stores hold only objects: their
reads go through fsspec unchanged.
"""

from __future__ import annotations

import os
import stat

__all__ = ["NotRegularFileError", "regular_file", "open_regular", "read_regular", "cat_regular", "non_regular_files"]


class NotRegularFileError(OSError):
    """A path that should be a file is a FIFO, socket or device (an ``OSError``: callers that treat an
    unreadable file as damage keep doing so)."""


def _kind(mode: int) -> str:
    return ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a directory" if stat.S_ISDIR(mode)
            else "not a regular file")


def regular_file(path: "str | os.PathLike") -> bool:
    """Whether ``path`` (its target, for a link) is a regular file; False when it does not exist."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def open_regular(path: "str | os.PathLike"):
    """``open(path, "rb")`` of a regular file (links followed), checked on the open descriptor.

    Raises
    ------
    NotRegularFileError
        ``path`` is a FIFO, socket, device or directory (nothing was read, nothing waited for).
    FileNotFoundError, PermissionError
        As ``open`` raises them.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(f"{os.fspath(path)!r} is {_kind(mode)}, not a regular file")
        return os.fdopen(fd, "rb", closefd=True)
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: "str | os.PathLike") -> bytes:
    """All bytes of the regular file ``path`` (:func:`open_regular`)."""
    with open_regular(path) as f:
        return f.read()


def _is_local(fs) -> bool:
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(fs, LocalFileSystem)


def cat_regular(fs, path: str) -> bytes:
    """``fs.cat_file(path)``, refusing a local path that is not a regular file (:func:`read_regular`)."""
    return read_regular(path) if _is_local(fs) else fs.cat_file(path)


def non_regular_files(fs, root: str) -> list[str]:
    """Paths under ``root`` (relative, ``/``-separated) that are neither folders nor regular files; a
    local store only (object stores hold objects). Links are followed for the check, not for the walk."""
    if not _is_local(fs):
        return []
    found = []
    for folder, dirs, files in os.walk(root):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            full = os.path.join(folder, name)
            try:
                mode = os.stat(full).st_mode
            except OSError:  # a dangling link: a missing file, which the chunk check reports
                continue
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                found.append(os.path.relpath(full, root).replace(os.sep, "/") + f" ({_kind(mode)})")
    return sorted(found)
