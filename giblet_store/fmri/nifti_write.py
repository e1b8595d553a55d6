"""Masked (voxel,) or (tr, voxel) arrays back to NIfTI, one volume at a time.

:func:`write_nifti` streams an array back into a volume with a mask and an affine, volume by volume,
so a long series never has to fit in memory as a 4D array; :func:`to_nifti` does it with an fmri
entry's stored mask and affine; :func:`fmri_entry_of` finds the fmri entry behind a derived one.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import FmriError, ParameterError
from .nifti import flat_index

if TYPE_CHECKING:
    from ..store.core import Entry, Store

__all__ = ["write_nifti", "to_nifti", "fmri_entry_of"]


def write_nifti(
    path: str | os.PathLike,
    data,
    mask: np.ndarray,
    affine: np.ndarray,
    tr_s: float | None = None,
    fill: float = 0.0,
    xform_code: int = 2,
    block_trs: int = 64,
) -> Path:
    """Write masked values back to a NIfTI volume (3D) or series (4D), volume by volume.

    Parameters
    ----------
    path : .nii or .nii.gz
    data : (voxel,) or (tr, voxel) array (numpy, dask or xarray), any real dtype; written float32
    mask : (x, y, z) bool with ``data.shape[-1]`` True voxels, in ``np.argwhere`` order
    affine : (4, 4) voxel -> mm
    tr_s : TR in seconds for 4D output (pixdim[4], unit sec)
    fill : value outside the mask
    xform_code : sform/qform code (1 scanner, 2 aligned, 3 Talairach, 4 MNI)
    block_trs : TRs pulled from ``data`` at a time (bounds memory for lazy arrays)

    Returns
    -------
    Path
        Written atomically (temporary file, then rename).
    """
    mask = np.asarray(mask, dtype=bool)
    shape3 = tuple(int(s) for s in mask.shape)
    n_vox = int(mask.sum())
    if data.ndim not in (1, 2) or int(data.shape[-1]) != n_vox:
        raise FmriError(
            f"an array of shape {tuple(data.shape)} cannot be written with this mask; expected (voxel,) or "
            f"(tr, voxel) with voxel = {n_vox} (the mask's voxel count)"
        )
    n_t = None if data.ndim == 1 else int(data.shape[0])
    flat = flat_index(np.argwhere(mask), shape3)
    hdr = _header(shape3, n_t, affine, tr_s, xform_code)
    out = Path(path)
    tmp = out.with_name(out.name + ".tmp")
    opener = gzip.open if out.name.endswith(".gz") else open
    vol = np.full(int(np.prod(shape3)), fill, dtype="<f4")
    try:
        with opener(tmp, "wb") as f:
            f.write(hdr.binaryblock)
            f.write(b"\x00" * 4)  # no extensions
            _write_volumes(f, data, flat, vol, n_t, block_trs)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


def _header(shape3: tuple, n_t: int | None, affine, tr_s, xform_code: int):
    """A float32 NIfTI-1 header for a volume (``n_t`` None) or a series of ``n_t`` volumes."""
    import nibabel as nib

    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape3 if n_t is None else shape3 + (n_t,))
    hdr.set_data_dtype(np.float32)
    hdr.set_qform(affine, code=int(xform_code) or 2)
    hdr.set_sform(affine, code=int(xform_code) or 2)
    hdr.set_xyzt_units("mm", "sec")
    if n_t is not None:
        hdr.set_zooms(tuple(hdr.get_zooms()[:3]) + (float(tr_s or 0.0),))
    hdr["vox_offset"] = 352
    hdr["scl_slope"] = 1.0
    hdr["scl_inter"] = 0.0
    return hdr


def _write_volumes(f, data, flat, vol: np.ndarray, n_t: int | None, block_trs: int) -> None:
    """Write (voxel,) or (tr, voxel) ``data`` into file ``f`` volume by volume through ``vol``."""
    if n_t is None:
        vol[flat] = np.asarray(data, dtype=np.float32)
        f.write(vol.tobytes())
        return
    for t0 in range(0, n_t, block_trs):
        block = np.asarray(data[t0 : t0 + block_trs], dtype=np.float32)
        for row in block:
            vol[flat] = row
            f.write(vol.tobytes())


# ------------------------------------------------------------------------------------ back out
def fmri_entry_of(store: Store, entry: Entry | str) -> Entry:
    """The fmri entry behind ``entry``: itself, or the one named by its ``fmri_key`` attribute."""
    entry = store.get(entry)
    if entry.kind == "fmri":
        return entry
    key = entry.attrs.get("fmri_key")
    if not key:
        raise ParameterError(
            f"entry {entry.key[:16]} is a {entry.kind!r} entry with no fmri_key; NIfTI export needs an fmri entry "
            "or one derived from it (predictions, evaluation)"
        )
    found = store.lookup(key, "fmri")
    if found is None:
        raise ParameterError(f"entry {entry.key[:16]} names fmri entry {key[:16]}, which is not in the store")
    return found


def to_nifti(store: Store, fmri: Entry | str, data, path, fill: float = 0.0):
    """Write a (voxel,) or (tr, voxel) array to NIfTI with the fmri entry's stored mask and affine.

    Parameters
    ----------
    store : Store
    fmri : the fmri entry (or an entry derived from it: predictions, evaluation)
    data : (voxel,) or (tr, voxel) array, numpy/dask/xarray; voxel = the entry's voxel count
    path : output .nii or .nii.gz (3D for (voxel,), 4D with the entry's TR for (tr, voxel))
    fill : value outside the mask

    Returns
    -------
    Path
    """
    entry = fmri_entry_of(store, fmri)
    if entry.attrs.get("layout") == "surface":
        raise ParameterError(f"fmri entry {entry.key[:16]} is on a surface (vertices), which has no NIfTI grid; "
                             "export it per hemisphere with to_gifti (CLI: giblet-store to-gifti)")
    mask = store.open(entry)["mask"].values
    if hasattr(data, "dims") and hasattr(data, "variable"):  # xarray.DataArray -> its dask/numpy array
        data = data.data
    return write_nifti(path, data, mask, np.asarray(entry.attrs["affine"]), tr_s=entry.attrs["tr_s"], fill=fill,
                       xform_code=int(entry.attrs.get("xform_code") or 2))
