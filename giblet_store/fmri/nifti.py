"""NIfTI in and out, one block of volumes at a time (nibabel, never ``get_fdata()`` on a whole series).

Reading: :func:`open_series` checks a 4D series and reads its TR from the header (``pixdim[4]`` in the
header's time units); :func:`iter_blocks` streams it as ``(voxel_flat, k)`` float64 blocks of at most
``max_bytes``. The streamed passes of an fMRI ingest are built on it: :func:`scan_series` (non-finite
values, the mask vote, moments), :func:`voxel_moments` and :func:`read_masked` (one output chunk).
Writing back to NIfTI is :mod:`giblet_store.fmri.nifti_write`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import FmriError  # noqa: F401 (FmriError re-exported)
from ..grid import MAX_TR_S
from ..validate import MIN_SCAN_TR_S
from .nifti_check import check_finite_output, check_image

__all__ = [
    "FmriError", "NiftiSeries", "open_series", "header_tr", "iter_blocks", "flat_index", "load_mask", "Moments",
    "scan_series", "voxel_moments", "read_masked", "add_vote", "dead_volumes", "per_series",
    "count_finite_and_sample",
    "file_stamp",
    "check_unchanged",
]

#: default bound on one streamed block of full volumes (float64)
BLOCK_BYTES = 32 << 20



@dataclass(frozen=True)
class NiftiSeries:
    """One subject's 4D series, opened lazily (nothing but the header is read).

    Attributes
    ----------
    path : Path
    img : nibabel image whose ``dataobj`` is an unread proxy
    shape : (x, y, z) int, the volume shape
    n_volumes : int
    affine : (4, 4) float64, voxel -> mm
    xform_code : int, the header's sform code (qform code when sform is unset)
    header_tr_s : float or None, TR read from the header in seconds (None: the header has none)
    header_tr_note : str or None, why ``header_tr_s`` is a guess (see :func:`header_tr`)
    """

    path: Path
    img: object
    shape: tuple[int, int, int]
    n_volumes: int
    affine: np.ndarray
    xform_code: int
    header_tr_s: float | None
    header_tr_note: str | None
    zooms_mm: tuple[float, float, float]
    #: (size, mtime_ns, inode, ctime_ns) before anything was read: :func:`check_unchanged` compares it
    stamp: tuple | None = None


def file_stamp(path) -> tuple[int, int, int, int]:
    """(size, mtime_ns, inode, ctime_ns) of ``path``: a write to the file or a file renamed over it changes one."""
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns


def check_unchanged(series: "NiftiSeries") -> None:
    """Refuse a series whose file changed since it was opened (its hash would not name what was read)."""
    if series.stamp is not None and file_stamp(series.path) != series.stamp:
        raise FmriError(f"{str(series.path)!r} changed while it was being read (size, mtime, inode or ctime differ "
                        "from when it was opened); nothing was stored. Rerun once it is no longer being written")


def float32_decimal(x) -> float:
    """The shortest decimal that round-trips ``x`` as a float32 (pixdim 1.35 -> 1.35, not 1.350000023841858).

    NIfTI headers store the TR as float32; the TR a person wrote is the decimal that float32 stands for.
    """
    return float(str(np.float32(x)))


def header_tr(header, where: str = "header") -> tuple[float | None, str | None]:
    """The TR in seconds from ``pixdim[4]`` and the header's time units, and a note when it is a guess.

    ``pixdim[4]`` is float32: it is read as the shortest decimal that round-trips it
    (:func:`float32_decimal`), so 1.35 s is 1.35 and lies on the same grid as a stimulus at 1.35 s.

    ``msec``/``usec`` are converted. A header that says ``sec`` but holds a value above 60 (e.g.
    2000: a millisecond TR written with the wrong unit, common in real files) is read as
    milliseconds, with a note. Unset units are read as seconds (milliseconds above 60), with a note.
    A zero, negative or non-finite ``pixdim[4]`` gives ``(None, note)``: the header has no TR; so does a
    TR outside ``MIN_SCAN_TR_S``-``MAX_TR_S`` (0.05-60 s) once converted (1.5 msec, 1e-6 sec, 1e6 sec).

    Returns
    -------
    tr_s : float or None
    note : str or None
        Why the value is a guess; callers that use the guess warn with it.
    """
    try:
        value = float32_decimal(header.get_zooms()[3])
    except (IndexError, TypeError, ValueError):
        return None, f"{where}: the header has no pixdim[4] (TR); pass tr_s"
    if not math.isfinite(value) or value <= 0:
        return None, f"{where}: the header's pixdim[4] (TR) is {value:g}; pass tr_s"
    try:
        unit = header.get_xyzt_units()[1]
    except (AttributeError, KeyError, ValueError):  # Analyze headers have no units field
        unit = "unknown"
    if unit in ("msec", "usec"):
        seconds, note = value / (1000.0 if unit == "msec" else 1e6), None
    elif unit == "sec" and value <= MAX_TR_S:
        seconds, note = value, None
    elif unit == "sec":
        seconds = value / 1000.0
        note = (f"{where}: pixdim[4]={value:g} with time unit 'sec' is not a TR in seconds; reading it as "
                f"{value:g} ms = {seconds:g} s (the header's unit field is wrong). Pass tr_s to state the TR")
    else:
        seconds = value / 1000.0 if value > MAX_TR_S else value
        note = (f"{where}: the time unit of pixdim[4]={value:g} is {unit!r}; reading it as {seconds:g} s. "
                "Pass tr_s to state the TR")
    if not MIN_SCAN_TR_S <= seconds <= MAX_TR_S:
        return None, (f"{where}: the header's TR is pixdim[4]={value:g} {unit} = {seconds:g} s, outside the "
                      f"{MIN_SCAN_TR_S:g}-{MAX_TR_S:g} s of any fMRI scan (TRs are 0.5-3 s), so the header's TR or "
                      "time unit is wrong; pass the TR in seconds, or repair the header")
    return seconds, note


def open_series(path: str | os.PathLike) -> NiftiSeries:
    """Open a 4D NIfTI series lazily and describe it.

    Raises
    ------
    FmriError
        The file is missing, is not a NIfTI/Analyze image, or is not 4D (x, y, z, tr).
    """
    import nibabel as nib

    p = Path(path)
    if not p.is_file():
        raise FmriError(f"fMRI file {str(p)!r} does not exist; give a 4D NIfTI (.nii or .nii.gz)")
    stamp = file_stamp(p)  # before the header is read: every later read is checked against it
    try:
        # keep_file_open: blocks are read in order, so a .nii.gz is decompressed once, not per block
        img = nib.load(str(p), keep_file_open=True)
    except Exception as exc:  # nibabel raises many types for unreadable files
        raise FmriError(f"{str(p)!r} is not a readable NIfTI image ({type(exc).__name__}: {exc}); give a 4D NIfTI "
                        "series (.nii or .nii.gz)") from None
    shape = tuple(int(s) for s in img.shape)
    if len(shape) != 4:
        what = "3D (x, y, z): one volume" if len(shape) == 3 else f"{len(shape)}D {shape}"
        raise FmriError(
            f"{p.name} is {what}; an fMRI series must be 4D (x, y, z, tr). Give the 4D file, or merge the "
            "volumes first (e.g. nibabel.funcs.concat_images)"
        )
    check_image(img, p)
    hdr = img.header
    code = 0
    for field in ("sform_code", "qform_code"):
        try:
            code = int(hdr[field])
        except (KeyError, ValueError):
            code = 0
        if code:
            break
    zooms = tuple(float(z) for z in hdr.get_zooms()[:3])
    tr_s, note = header_tr(hdr, where=p.name)
    return NiftiSeries(
        path=p,
        img=img,
        shape=shape[:3],
        n_volumes=shape[3],
        affine=np.asarray(img.affine, dtype=np.float64),
        xform_code=code,
        header_tr_s=tr_s,
        header_tr_note=note,
        zooms_mm=zooms,
        stamp=stamp,
    )


def block_volumes(shape: tuple[int, int, int], max_bytes: int = BLOCK_BYTES) -> int:
    """How many float64 volumes of ``shape`` fit in ``max_bytes`` (at least 1)."""
    return max(1, int(max_bytes // (8 * int(np.prod(shape)))))


def iter_blocks(series: NiftiSeries, start: int = 0, stop: int | None = None, max_bytes: int = BLOCK_BYTES):
    """Stream volumes ``start:stop`` of a series in order.

    Yields
    ------
    t0 : int
        Index of the first volume of the block.
    block : (k, voxel_flat) float64, C-contiguous
        Scaled values, one volume per row, flattened in Fortran order (i fastest: the file's order
        and that of :func:`flat_index`), so gathering mask voxels reads each volume contiguously.
    """
    stop = series.n_volumes if stop is None else stop
    k = block_volumes(series.shape, max_bytes)
    n_flat = int(np.prod(series.shape))
    for t0 in range(start, stop, k):
        t1 = min(stop, t0 + k)
        raw = np.asarray(series.img.dataobj[..., t0:t1], dtype=np.float64)
        yield t0, np.ascontiguousarray(raw.reshape(n_flat, t1 - t0, order="F").T)


def may_be_nonfinite(series: NiftiSeries) -> bool:
    """False when the stored dtype is an integer with finite scaling (no value can be NaN/inf)."""
    if np.dtype(series.img.get_data_dtype()).kind not in "iub":
        return True
    proxy = series.img.dataobj
    scale = [getattr(proxy, "slope", 1.0), getattr(proxy, "inter", 0.0)]
    return not all(v is None or np.isfinite(v) for v in scale)


def flat_index(voxel_ijk: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """(voxel,) int64 positions of ``voxel_ijk`` (voxel, 3) in a Fortran-flattened volume."""
    return np.ravel_multi_index(tuple(np.asarray(voxel_ijk, dtype=np.int64).T), shape, order="F").astype(np.int64)


def load_mask(path: str | os.PathLike, shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    """A mask image as (x, y, z) bool (nonzero and finite = in), checked against the series.

    Raises
    ------
    FmriError
        Missing/unreadable file, a shape other than ``shape`` (a trailing axis of 1 is allowed), an
        affine other than the series', or no voxel in the mask.
    """
    import nibabel as nib

    p = Path(path)
    if not p.is_file():
        raise FmriError(f"mask file {str(p)!r} does not exist; give a 3D NIfTI mask in the space of the fMRI")
    try:
        img = nib.load(str(p))
    except Exception as exc:
        raise FmriError(f"mask {str(p)!r} is not a readable NIfTI image ({type(exc).__name__}: {exc})") from None
    mshape = tuple(int(s) for s in img.shape)
    if len(mshape) == 4 and mshape[3] == 1:
        mshape = mshape[:3]
    if mshape != tuple(shape):
        raise FmriError(
            f"mask {p.name} has shape {mshape}; the fMRI volumes are {tuple(shape)}. Give a mask in the "
            "same voxel grid (resample it, e.g. nilearn.image.resample_to_img(mask, fmri, 'nearest'))"
        )
    if not np.allclose(img.affine, affine, atol=1e-4):
        raise FmriError(
            f"mask {p.name} has affine\n{np.round(img.affine, 4)}\nbut the fMRI has\n{np.round(affine, 4)}; "
            "the mask must be in the same space: resample it to the fMRI grid"
        )
    data = np.asarray(img.dataobj).reshape(mshape)
    mask = np.isfinite(data) & (data != 0)
    if not mask.any():
        raise FmriError(f"mask {p.name} selects no voxel (all zero); give a mask with at least one nonzero voxel")
    return mask


# ------------------------------------------------------------------------------------ streamed passes
class Moments:
    """Per-voxel mean/std accumulated over streamed rows, shifted by the first row for precision."""

    def __init__(self, n: int):
        self.shift = None
        self.s1 = np.zeros(n)
        self.s2 = np.zeros(n)
        self.n = 0

    def add(self, rows: np.ndarray) -> None:  # rows: (k, voxel) float64
        if rows.shape[0] == 0:
            return
        if self.shift is None:
            self.shift = rows[0].copy()
        d = rows - self.shift
        self.s1 += d.sum(0)
        self.s2 += np.einsum("ij,ij->j", d, d)
        self.n += rows.shape[0]

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        m = self.s1 / self.n
        return self.shift + m, np.sqrt(np.maximum(self.s2 / self.n - m * m, 0.0))


def scan_series(series, subjects, n_trs, given_flat, std_percentile, sample_trs, zscore_trs, max_bytes):
    """Pass 1, streamed: non-finite values, the computed mask's votes, and (given mask) moments.

    Integer series with finite scaling cannot hold NaN/inf: only the TRs the vote needs are read.

    Parameters
    ----------
    series : list of NiftiSeries (one grid); subjects : their IDs (for messages)
    n_trs : volumes used from each: one count, or one per series (runs of different lengths)
    given_flat : (voxel,) Fortran-flat indices of a given mask, or None to vote for a computed one
    std_percentile, sample_trs : the vote: temporal std over the first ``sample_trs`` TRs (None: all)
        above this percentile of the subject's non-zero stds, at voxels finite at every TR
    zscore_trs : (start, stop) or None; with a given mask, moments of these TRs are accumulated
        when this pass reads them

    Returns
    -------
    votes : (voxel_flat,) int32, or None with a given mask
    nonfinite : per subject, ``np.packbits`` of (voxel_flat,) "non-finite at some TR" and of "non-finite
        at some TR but finite at others" (a voxel NaN at every TR is background, as SPM writes it)
    moments : per subject, a Moments of the given mask's voxels over ``zscore_trs``, or None when
        this pass did not read them (use :func:`voxel_moments`)
    thresholds : per subject, the std threshold of the vote

    Raises
    ------
    FmriError
        A volume holds no finite value.
    """
    n_flat = int(np.prod(series[0].shape))
    votes = np.zeros(n_flat, np.int32) if given_flat is None else None
    nonfinite, moments, thresholds = [], [], []
    for s, subj, n in zip(series, subjects, per_series(n_trs, len(series))):
        n_sample = n if sample_trs is None else min(sample_trs, n)
        check = may_be_nonfinite(s)
        stop = n if check else (n_sample if votes is not None else 0)
        n_finite = np.zeros(n_flat, np.int32) if check else None
        std_m = Moments(n_flat) if votes is not None else None
        z_m = (Moments(len(given_flat)) if (given_flat is not None and zscore_trs and stop >= zscore_trs[1])
               else None)
        for t0, x in iter_blocks(s, 0, stop, max_bytes):
            count_finite_and_sample(x, t0, n_finite, std_m, n_sample, s.path, subj)
            if z_m is not None:
                a, b = max(zscore_trs[0], t0), min(zscore_trs[1], t0 + x.shape[0])
                if a < b:
                    z_m.add(x[a - t0 : b - t0, given_flat])
        bad = n_finite < n if check else np.zeros(n_flat, bool)
        # (non-finite at some TR, non-finite at some but not every TR: not background)
        nonfinite.append((np.packbits(bad), np.packbits(bad & (n_finite > 0)) if check else np.packbits(bad)))
        if std_m is not None:
            thresholds.append(add_vote(votes, std_m, bad, std_percentile))
        moments.append(z_m)
    return votes, nonfinite, moments, thresholds


def per_series(n_trs, count: int) -> list[int]:
    """``n_trs`` (one count for every series, or one per series) as one count per series."""
    return [int(n_trs)] * count if isinstance(n_trs, (int, np.integer)) else [int(n) for n in n_trs]


def dead_volumes(fin: np.ndarray, t0: int, path, subj) -> None:
    """FmriError when a volume of the (k, voxel) finite-mask block starting at TR ``t0`` is all NaN/inf."""
    dead = ~fin.any(1)
    if dead.any():
        vols = (t0 + np.flatnonzero(dead)).tolist()
        raise FmriError(
            f"{path.name} (subject {subj!r}): volume(s) {vols[:10]} hold no finite value (all NaN/inf); a TR "
            "cannot be dropped without shifting the TR grid. Repair or interpolate those volumes"
        )


def count_finite_and_sample(x, t0: int, n_finite, std_m: "Moments | None", n_sample: int, path, subj) -> None:
    """Fold one (k, voxel) block of volumes starting at TR ``t0`` into a scan's running statistics.

    ``n_finite`` (int32 (voxel,) or None when the file cannot hold NaN/inf) counts finite TRs per
    voxel, refusing all-NaN volumes (:func:`dead_volumes`); ``std_m`` gathers the first ``n_sample``
    TRs for the mask vote, non-finite values as 0. ``x`` may be None when neither needs it.
    """
    fin = None
    if n_finite is not None:
        fin = np.isfinite(x)
        n_finite += fin.sum(0, dtype=np.int32)
        dead_volumes(fin, t0, path, subj)
    if std_m is not None and t0 < n_sample:
        part = x[: n_sample - t0]
        std_m.add(part if fin is None else np.where(fin[: n_sample - t0], part, 0.0))


def add_vote(votes: np.ndarray, std_m: "Moments", bad: np.ndarray, std_percentile: float) -> float:
    """Add one series' vote to ``votes`` (in place): finite voxels whose temporal std is above the
    ``std_percentile``-th percentile of the series' non-zero stds; returns that threshold."""
    _, std = std_m.mean_std()
    ok = ~bad
    nz = std[ok & (std > 0)]
    thr = float(np.percentile(nz, std_percentile)) if nz.size else math.inf
    votes += (ok & (std > thr)).astype(np.int32)
    return thr


def iter_masked(series: NiftiSeries, start: int, stop: int, flat, max_bytes: int = BLOCK_BYTES):
    """Yield ``(t0, rows)``: (k, voxel) float64 values of volumes ``t0:t0+k`` at voxels ``flat``.

    The same numbers and blocks as ``iter_blocks(...)`` then ``block[:, flat]``, but the voxels are
    gathered from the stored values before scaling (:mod:`giblet_store.fmri.nifti_read`).
    """
    from .nifti_read import raw_rows, scale

    k = block_volumes(series.shape, max_bytes)
    for t0 in range(start, stop, k):
        t1 = min(stop, t0 + k)
        yield t0, scale(raw_rows(series, t0, t1)[:, flat], series)


def voxel_moments(series, flat, trs, max_bytes) -> list["Moments"]:
    """Per subject, the moments of the voxels ``flat`` over TRs ``trs`` (start, stop), streamed."""
    out = []
    for s in series:
        m = Moments(len(flat))
        for _, x in iter_masked(s, trs[0], trs[1], flat, max_bytes):
            m.add(x)
        out.append(m)
    return out


def read_masked(series: NiftiSeries, a: int, b: int, flat, mean, std, max_bytes, _after=None) -> np.ndarray:
    """(1, b - a, voxel) float32: volumes ``a:b`` at voxels ``flat``, ``(x - mean) / std`` when given.

    ``_after`` is ignored: passing the previous task's result orders the reads of one file.
    """
    out = np.empty((1, b - a, len(flat)), np.float32)
    for t0, rows in iter_masked(series, a, b, flat, max_bytes):  # (k, voxel) float64
        if mean is not None:
            rows = (rows - mean) / std
        with np.errstate(over="ignore"):  # overflow to inf is refused just below, naming the file
            out[0, t0 - a : t0 - a + rows.shape[0]] = rows
    proxy = series.img.dataobj
    check_finite_output(out, series.path, getattr(proxy, "slope", 1.0), getattr(proxy, "inter", 0.0))
    check_unchanged(series)  # after the read: the bytes stored are the bytes the scan hashed
    return out


def done(_x) -> int:
    """A token that a read finished (orders the next read without holding its data)."""
    return 0
