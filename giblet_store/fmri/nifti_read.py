"""Fast NIfTI reads for ingest: the file's sha256 in the same read as its volumes; mask voxels
gathered from the stored (raw) values before scaling.

nibabel's ``dataobj[..., t0:t1]`` scales whole volumes (``raw * slope + inter``) before anything can
be selected, and a separate sha256 pass reads the file once more. Here:

* :class:`HashedVolumes` reads a single-file ``.nii``/``.nii.gz`` front to back exactly once,
  feeding every byte of the file (compressed bytes for ``.gz``) to sha256 while yielding its volumes
  as stored, ``(k, voxel_flat)`` rows (Fortran-flat, the file's own order: no copy, no transpose);
* :func:`raw_rows` reads volumes ``t0:t1`` as stored (random access, through a nibabel proxy with
  unit scaling, so ``.gz`` and memory maps behave as nibabel's);
* :func:`scale` turns stored values into nibabel's float64 values with nibabel's own rule
  (``apply_read_scaling`` with the header's slope/intercept dtypes, then float64), so scaling
  gathered voxels gives the same float64 numbers, bit for bit, as gathering
  ``np.asarray(dataobj[..., t0:t1], dtype=np.float64)``; only a third of a Sherlock volume is
  in the brain, so two thirds of the scaling work goes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import threading
import zlib
from pathlib import Path

import numpy as np

from ..errors import FmriError

__all__ = ["one_read_supported", "HashedVolumes", "raw_rows", "scale"]

_READ = 1 << 20
_PROXY_LOCK = threading.Lock()


def _proxy(series):
    return series.img.dataobj


def one_read_supported(series) -> bool:
    """True for a single-file NIfTI (.nii/.nii.gz) whose data is in the file that is hashed."""
    p = _proxy(series)
    try:
        same = Path(p.file_like).resolve() == Path(series.path).resolve()
    except TypeError:  # an open file object: not ours to read again
        return False
    return same and getattr(p, "order", "F") == "F" and hasattr(p, "offset")


def scale(raw: np.ndarray, series) -> np.ndarray:
    """float64 values of stored ``raw`` values: nibabel's ``dataobj[...]`` scaling, then float64."""
    from nibabel.volumeutils import apply_read_scaling

    p = _proxy(series)
    out = apply_read_scaling(raw, np.asanyarray(p.slope), np.asanyarray(p.inter))
    return np.asarray(out, dtype=np.float64)


class _HashingReader(io.RawIOBase):
    """A raw file whose every byte read goes through sha256."""

    def __init__(self, path: Path):
        self.f = open(path, "rb")
        self.h = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self.f.readinto(b)
        if n:
            self.h.update(memoryview(b)[:n])
        return n

    def close(self) -> None:
        self.f.close()
        super().close()


class HashedVolumes:
    """Read a single-file NIfTI once: its volumes in order, and the sha256 of all its bytes.

    Use :meth:`blocks` (once), then :meth:`hexdigest`, which reads (and hashes) whatever the blocks
    did not: volumes past ``stop`` and trailing bytes. Equal to ``sha256_file(path)``.
    """

    def __init__(self, series):
        p = _proxy(series)
        self.dtype = np.dtype(p.dtype)
        self.offset = int(p.offset)
        self.n_flat = int(np.prod(series.shape))
        self.path = Path(series.path)
        self.raw = _HashingReader(self.path)
        self.gz = str(series.path).endswith(".gz")
        self.src = gzip.GzipFile(fileobj=self.raw, mode="rb") if self.gz else self.raw

    def _read(self, n: int) -> bytes:
        buf = bytearray(n)
        view, got = memoryview(buf), 0
        while got < n:
            try:
                r = self.src.readinto(view[got:])
            except (EOFError, OSError, zlib.error) as exc:  # a cut or damaged .gz stream
                raise self._truncated(f"its compressed data is damaged ({exc})") from None
            if not r:
                raise self._truncated(f"it ended {n - got:,} bytes before the data its header describes")
            got += r
        return buf

    def _truncated(self, why: str) -> FmriError:
        return FmriError(f"{self.path.name} is truncated or damaged: {why}. Re-export or re-download it")

    def _skip(self, n: int) -> None:
        """Read (and hash) ``n`` bytes without holding more than one read of them."""
        while n > 0:
            n -= len(self._read(min(n, _READ)))

    def blocks(self, stop: int, k: int):
        """Yield ``(t0, raw)``: raw (k, voxel_flat) stored values of volumes ``t0:t0+k``, up to ``stop``."""
        self._skip(self.offset)  # header and extensions: hashed, not decoded
        vol = self.n_flat * self.dtype.itemsize
        for t0 in range(0, stop, k):
            n = min(k, stop - t0)
            yield t0, np.frombuffer(self._read(n * vol), dtype=self.dtype).reshape(n, self.n_flat)

    def hexdigest(self) -> str:
        """Hash the rest of the file, close it, and return the sha256 of all of its bytes."""
        try:
            while self.raw.read(_READ):  # the compressed (or plain) bytes not read yet
                pass
            return self.raw.h.hexdigest()
        finally:
            self.close()

    def close(self) -> None:
        if self.gz:
            self.src.close()
        self.raw.close()


def _raw_proxy(series):
    """A proxy on the same file that returns stored values (unit scaling), one per series."""
    from nibabel.arrayproxy import ArrayProxy

    with _PROXY_LOCK:  # chunks of one uncompressed series are read by several threads: one proxy (one open file)
        cache = series.img.__dict__.setdefault("_giblet_raw_proxy", {})
        got = cache.get("raw")
        if got is None:
            p = _proxy(series)
            got = ArrayProxy(p.file_like, (tuple(p.shape), p.dtype, p.offset, 1.0, 0.0), order="F",
                             keep_file_open=True)
            cache["raw"], cache["lock"] = got, threading.Lock()
    return got, cache["lock"]


def raw_rows(series, t0: int, t1: int) -> np.ndarray:
    """(t1 - t0, voxel_flat) stored values of volumes ``t0:t1``; a row is a Fortran-flat volume."""
    proxy, lock = _raw_proxy(series)
    with lock:  # nibabel opens a kept-open file on the first read without a lock: two threads would open two
        raw = np.asarray(proxy[..., t0:t1])
    return raw.reshape(-1, t1 - t0, order="F").T
