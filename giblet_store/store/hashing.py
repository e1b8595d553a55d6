"""Content hashes of files: what identifies a source (audio, NIfTI, checkpoint) in a key.

:class:`HashedFile` makes the hash cover exactly the bytes a decoder reads. It opens the file once,
hashes it front to back (sha256, the key's ``source_sha256``) and records a blake2b digest of every
1 MiB block. Decoders then read through :meth:`HashedFile.open`, a file object on the same open
descriptor that re-reads each block and compares it with the digest recorded while hashing: a block
that differs (the file was rewritten in place), a file that grew or shrank, raises
:class:`SourceChangedError`. A file renamed over the path changes nothing: the descriptor still
reads the inode that was hashed. So whatever a decoder got is part of the bytes the
key names, whatever happens to the path meanwhile (up to a blake2b-256 collision).
"""

from __future__ import annotations

import hashlib
import io
import os
import stat

from ..errors import GibletStoreError

__all__ = ["sha256_file", "HashedFile", "SourceChangedError"]

_BLOCK = 1 << 20


class SourceChangedError(GibletStoreError, ValueError):
    """An input file changed between hashing it and reading it: nothing was stored."""


def changed_message(path) -> str:
    return (f"{os.fspath(path)!r} changed while it was being read (it was rewritten after it was hashed); "
            "nothing was stored. Rerun once the file is no longer being written")


def sha256_file(path: str | os.PathLike, block: int = _BLOCK) -> str:
    """sha256 hex digest of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def _pread_full(fd: int, n: int, offset: int) -> bytes:
    parts, got = [], 0
    while got < n:
        b = os.pread(fd, n - got, offset + got)
        if not b:
            break
        parts.append(b)
        got += len(b)
    return b"".join(parts)


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


class HashedFile:
    """A file hashed once, then read only as it was hashed (see the module doc).

    Use as a context manager (closes the descriptor). ``sha256`` is the hex digest of the bytes;
    ``size`` their count.
    """

    def __init__(self, path: str | os.PathLike, block: int = _BLOCK):
        self.path, self.block = os.fspath(path), block
        self.changed = False  # set by a read through open() that found changed bytes (it then reads as EOF)
        # O_NONBLOCK: a FIFO put at the path opens at once (and is refused below) instead of waiting for a writer
        self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0))
        try:
            if not stat.S_ISREG(os.fstat(self._fd).st_mode):
                raise GibletStoreError(f"{self.path!r} is not a regular file; expected a file to read")
            self._hash_all()
        except BaseException:
            os.close(self._fd)
            raise

    def _hash_all(self) -> None:
        h, self._digests, off = hashlib.sha256(), [], 0
        while True:
            data = _pread_full(self._fd, self.block, off)
            if data:
                h.update(data)
                self._digests.append(_digest(data))
                off += len(data)
            if len(data) < self.block:
                break
        self.sha256, self.size = h.hexdigest(), off

    def read_block(self, i: int) -> bytes:
        """Block ``i`` (b"" past the end) as it was hashed, or :class:`SourceChangedError`."""
        if i >= len(self._digests):
            return b""
        want = min(self.block, self.size - i * self.block)
        data = _pread_full(self._fd, self.block, i * self.block)
        if len(data) != want or _digest(data) != self._digests[i]:
            raise SourceChangedError(changed_message(self.path))
        return data

    def raise_if_changed(self) -> None:
        """:class:`SourceChangedError` if a read through :meth:`open` found a block that differs from its hash."""
        if self.changed:
            raise SourceChangedError(changed_message(self.path))

    def check_unchanged(self) -> None:
        """Re-read every block (and the end of file) against the digests: :class:`SourceChangedError` if any differ."""
        for i in range(len(self._digests)):
            self.read_block(i)
        if os.pread(self._fd, 1, self.size):
            raise SourceChangedError(changed_message(self.path))

    def open(self) -> io.BufferedReader:
        """A new binary file object (own position) reading the hashed bytes; blocks are verified as read.

        A block that changed reads as the end of the file and sets :attr:`changed` (decoders call file
        objects from C and drop their exceptions): call :meth:`raise_if_changed` after decoding.
        """
        return io.BufferedReader(_VerifiedRaw(self), buffer_size=self.block)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "HashedFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _VerifiedRaw(io.RawIOBase):
    """Raw reads of a :class:`HashedFile`, a verified block at a time (the last one kept)."""

    def __init__(self, src: HashedFile):
        self.src, self.pos, self._i, self._data = src, 0, -1, b""
        self.name = src.path

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.src.size}[whence]
        self.pos = max(0, base + int(offset))
        return self.pos

    def readinto(self, b) -> int:
        i, off = divmod(self.pos, self.src.block)
        if i != self._i:
            try:
                self._i, self._data = i, self.src.read_block(i)
            except SourceChangedError:  # decoders' callbacks swallow exceptions: end of file, and a flag
                self.src.changed = True
                self._i, self._data = -1, b""
                return 0
        piece = self._data[off : off + len(b)]
        b[: len(piece)] = piece
        self.pos += len(piece)
        return len(piece)
