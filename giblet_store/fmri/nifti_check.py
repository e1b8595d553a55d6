"""Checks of a NIfTI header against its file, made before any voxel is read.

A header is a few hundred bytes that claims a data type, a shape, where the data starts
(``vox_offset``) and an affine. A damaged or hostile header can claim gigabytes in a 5 KB file, a data
type that is not a number, or an affine that cannot place a voxel. :func:`check_image` refuses each
with an :class:`~giblet_store.errors.FmriError` that names the file, what the header says, what the
file holds, and what to do, so nothing is allocated or read for it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import FmriError

__all__ = ["check_image", "check_finite_output", "may_overflow_float32", "check_float32_range", "MAX_DEFLATE_RATIO"]

_F32_MAX = float(np.finfo(np.float32).max)

#: The most bytes one compressed byte of a deflate (gzip) stream can expand to.
MAX_DEFLATE_RATIO = 1032

_FIX = "Re-export or re-download the file (or repair its header, e.g. with nibabel)"


def check_image(img, p: Path) -> None:
    """Refuse a 4D image whose data type, volume count, data extent or affine is unusable.

    Parameters
    ----------
    img : nibabel image, loaded lazily (nothing read but the header)
    p : its path, named in messages

    Raises
    ------
    FmriError
        A non-real data type (RGB, complex), zero volumes, data that starts or ends past the end of
        the file (``vox_offset``, ``dim``), or a non-finite or singular affine.
    """
    dtype = np.dtype(img.get_data_dtype())
    if dtype.fields is not None or dtype.kind not in "iuf":
        what = "RGB colour" if dtype.fields is not None else ("complex" if dtype.kind == "c" else str(dtype))
        how = " (e.g. the magnitude of complex data)" if dtype.kind == "c" else ""
        raise FmriError(f"{p.name} stores {what} values ({dtype}); an fMRI series holds one real number per voxel "
                        f"and TR. Convert it to a float or integer data type first{how}")
    shape = tuple(int(s) for s in img.shape)
    if shape[3] == 0 or 0 in shape[:3]:
        raise FmriError(f"{p.name}: the header's shape {shape} holds no volumes; give a 4D series with at least one "
                        "volume (dim[4] >= 1)")
    _check_extent(img, p, shape, dtype)
    _check_affine(np.asarray(img.affine, dtype=np.float64), p)


def _check_extent(img, p: Path, shape: tuple, dtype: np.dtype) -> None:
    """The data the header places in the file fits in the file (compressed: could fit, at most 1032:1)."""
    proxy = img.dataobj
    offset, file_like = getattr(proxy, "offset", None), getattr(proxy, "file_like", None)
    if offset is None or not isinstance(file_like, (str, os.PathLike)):
        return
    size = os.stat(file_like).st_size
    vol = int(np.prod(shape[:3])) * dtype.itemsize
    need = int(offset) + vol * shape[3]
    if str(file_like).endswith(".gz"):
        if need > size * MAX_DEFLATE_RATIO + 64 * 1024:
            raise FmriError(f"{p.name}: the header places {need:,} bytes of data (vox_offset {int(offset):,} + "
                            f"{shape[3]} volume(s) of {vol:,} bytes) in a {size:,}-byte .gz file, more than any gzip "
                            f"stream of that size holds; the header is damaged or the file truncated. {_FIX}")
        return
    if int(offset) > size:
        raise FmriError(f"{p.name}: the header's vox_offset is {int(offset):,} bytes, beyond the end of the "
                        f"{size:,}-byte file; the header is damaged. {_FIX}")
    if need > size:
        whole = (size - int(offset)) // vol if vol else 0
        raise FmriError(f"{p.name}: the header says {shape[3]} volume(s) of {vol:,} bytes from byte {int(offset):,} "
                        f"({need:,} bytes) but the file has {size:,} bytes: {whole} complete volume(s). The file is "
                        f"truncated or its dim[4] is wrong. {_FIX}")


def _check_affine(affine: np.ndarray, p: Path) -> None:
    """A finite, invertible voxel-to-world affine (to-nifti writes it back; masks are matched with it)."""
    if not np.isfinite(affine).all():
        raise FmriError(f"{p.name}: the header's affine (sform/qform) holds NaN or infinite values, so no voxel has "
                        "a position. Repair the header (e.g. nibabel img.set_sform(affine, code=1)) or re-export it")
    rzs = affine[:3, :3]
    scale = float(np.abs(rzs).max())
    if scale == 0 or abs(float(np.linalg.det(rzs))) <= 1e-12 * scale**3:
        raise FmriError(f"{p.name}: the header's affine (sform/qform) is singular (its 3x3 part has determinant "
                        f"{float(np.linalg.det(rzs)):g}), so voxels collapse onto a plane. Repair the header "
                        "(e.g. nibabel img.set_sform(affine, code=1)) or re-export it")


def _slope_inter(series) -> tuple[float, float]:
    proxy = series.img.dataobj
    slope, inter = getattr(proxy, "slope", 1.0), getattr(proxy, "inter", 0.0)
    return (1.0 if slope is None else float(slope)), (0.0 if inter is None else float(inter))


def may_overflow_float32(series) -> bool:
    """Whether some stored value of ``series``, once scaled, could lie beyond float32 (the store's type)."""
    dtype = np.dtype(series.img.get_data_dtype())
    slope, inter = _slope_inter(series)
    if dtype.kind in "iub":
        info = np.iinfo(dtype) if dtype.kind != "b" else np.iinfo(np.uint8)
        ends = [abs(float(v) * slope + inter) for v in (info.min, info.max)]
        return not all(np.isfinite(e) and e <= _F32_MAX for e in ends)
    return not (dtype.kind == "f" and dtype.itemsize <= 4 and slope == 1.0 and inter == 0.0)


def check_float32_range(x: np.ndarray, series) -> None:
    """Refuse finite scaled values ``x`` (any shape, float64) of ``series`` that float32 cannot hold."""
    with np.errstate(over="ignore"):
        if (np.isfinite(x) == np.isfinite(x.astype(np.float32))).all():
            return
    check_finite_output(np.array([np.inf], np.float32), series.path, *_slope_inter(series))


def check_finite_output(out: np.ndarray, path: Path, slope, inter) -> None:
    """Refuse float32 voxel values that became NaN/inf when scaled (scl_slope/scl_inter) and cast.

    The scan refuses stored NaN/inf (or masks them, by the NaN policy); this catches finite stored
    values that overflow float32 once scaled, e.g. ``scl_slope`` 1e38 on int16.
    """
    if np.isfinite(out).all():
        return
    raise FmriError(f"{Path(path).name}: scaling the stored values (scl_slope={float(slope):g}, "
                    f"scl_inter={float(inter):g}) gives values beyond float32 (|x| > 3.4e38), which the store would "
                    "hold as inf. The header's scaling is wrong: set scl_slope/scl_inter to the scanner's values "
                    "(nibabel: img.header.set_slope_inter(slope, inter)) or rescale the data")
