"""Where decoded samples go when their number is known only once decoded: RAM, or a nameless temporary file.

:class:`SampleSink` grows with what a decoder actually produces (never with what a header claims), then
hands back exactly the number of samples asked for. Containers (:mod:`giblet_store.audio.container`)
and compressed files read with soundfile (:mod:`giblet_store.audio.load`) decode into one.
"""

from __future__ import annotations

import os

import numpy as np

from ..store.disk_full import disk_full_error, is_disk_full

__all__ = ["SampleSink", "anonymous_file", "no_room_for_samples"]


def anonymous_file(folder: str | os.PathLike):
    """A new file in ``folder`` that has no name (``O_TMPFILE``, else unlinked as soon as it is created).

    Long audio is resampled into one: its space is freed when the last map of it is dropped or the
    process ends, however it ends (a kill included), so nothing is ever left in ``folder``.
    """
    import tempfile

    return tempfile.TemporaryFile(dir=os.fspath(folder), prefix="giblet_audio_")


def no_room_for_samples(exc: OSError, nbytes: int, path, folder):
    """The :class:`~giblet_store.errors.DiskFullError` for the resampled samples of ``path`` in ``folder``."""
    return disk_full_error(exc, f"the resampled samples of {str(path)!r} ({nbytes:,} bytes, a nameless temporary "
                                f"file in {os.fspath(folder)!r})", "nothing was stored")


class SampleSink:
    """Where resampled samples go: a list in RAM, or appended to a raw float32 file (then memory-mapped)."""

    def __init__(self, channels: int, out: str | None, path: str = "the input"):
        self.channels, self.n, self.out = channels, 0, out
        self.parts: list[np.ndarray] = []
        self.f = anonymous_file(out) if out is not None else None  # nameless: a kill leaves nothing
        self.path = path

    def put(self, block: np.ndarray) -> None:
        if block.size == 0:
            return
        block = np.ascontiguousarray(block, dtype=np.float32)
        if self.f is not None:
            self._write(block.tobytes())
        else:
            self.parts.append(block)
        self.n += len(block)

    def _write(self, data: bytes | None) -> None:
        """Append ``data`` to the temporary file (None: flush what is buffered)."""
        try:
            self.f.write(data) if data is not None else self.f.flush()
        except OSError as exc:  # a full disk, ulimit -f: said, naming the input
            if not is_disk_full(exc):
                raise
            nbytes = self.n * self.channels * 4 + len(data or b"")
            raise no_room_for_samples(exc, nbytes, self.path, self.out) from None

    def finish(self, n_out: int) -> np.ndarray:
        """(channel, sample) float32 of exactly ``n_out`` samples (trimmed, or zero-padded at the end)."""
        if self.n < n_out:
            self.put(np.zeros((n_out - self.n, self.channels), np.float32))
        if self.f is None:
            data = np.concatenate(self.parts) if self.parts else np.zeros((0, self.channels), np.float32)
            return np.ascontiguousarray(data[:n_out].T)
        self._write(None)
        if n_out == 0:
            return np.zeros((self.channels, 0), np.float32)
        return np.memmap(self.f, dtype=np.float32, mode="r", shape=(n_out, self.channels)).T

    def close(self) -> None:
        if self.f is not None and not self.f.closed:
            try:
                self.f.close()
            except OSError:  # what is still buffered cannot be flushed (a full disk): the file is nameless, dropped
                pass
