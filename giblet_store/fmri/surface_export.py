"""Surface entries back out: one ``.func.gii`` per hemisphere of any (vertex,) or (tr, vertex) array.

The entry's ``hemi`` and ``vertex_index`` coordinates place each value on its hemisphere's surface
of ``surface.n_surface[hemi]`` vertices; vertices the entry does not hold (a CIFTI's medial wall,
vertices left out for NaN) get ``fill``. A (tr, vertex) array is written as fMRIPrep writes BOLD, one
data array per volume (``NIFTI_INTENT_TIME_SERIES``, with the TR in ms as ``TimeStep``); a (vertex,)
map as one data array. Both carry ``AnatomicalStructurePrimary`` (CortexLeft / CortexRight), so the
pair ingests again (values equal).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import ParameterError
from ..store.core import Entry, Store
from ..validate import parse_output_path
from .nifti_write import fmri_entry_of

__all__ = ["to_gifti", "gifti_paths"]

_STRUCTURE = {"L": "CortexLeft", "R": "CortexRight"}


def gifti_paths(path: str | os.PathLike) -> dict[str, Path]:
    """``{"L": PREFIX_hemi-L.func.gii, "R": ...}`` of an output ``path`` (``PREFIX`` or ``PREFIX.func.gii``)."""
    out = Path(os.fspath(path))
    name = out.name[: -len(".func.gii")] if out.name.endswith(".func.gii") else out.name
    if not name:
        raise ParameterError(f"output {str(path)!r} has no file name; give a prefix such as out/sub-01_r")
    return {h: parse_output_path(out.with_name(f"{name}_hemi-{h}.func.gii"), "output GIFTI") for h in _STRUCTURE}


def _image(values: np.ndarray, hemi: str, tr_s: float | None):
    """A GiftiImage of (n_surface,) or (tr, n_surface) float32 ``values``."""
    import nibabel as nib

    img = nib.gifti.GiftiImage(meta=nib.gifti.GiftiMetaData({"AnatomicalStructurePrimary": _STRUCTURE[hemi]}))
    if values.ndim == 1:
        img.add_gifti_data_array(nib.gifti.GiftiDataArray(values, intent="NIFTI_INTENT_NONE", datatype="float32"))
        return img
    meta = {"TimeStep": f"{1000.0 * tr_s:.6g}"} if tr_s else {}
    for row in values:
        img.add_gifti_data_array(nib.gifti.GiftiDataArray(np.ascontiguousarray(row), datatype="float32",
                                                          intent="NIFTI_INTENT_TIME_SERIES",
                                                          meta=nib.gifti.GiftiMetaData(meta)))
    return img


def to_gifti(store: Store, fmri: Entry | str, data, path, fill: float = 0.0) -> list[Path]:
    """Write a (vertex,) or (tr, vertex) array as a func.gii per hemisphere of the surface entry's mesh.

    Parameters
    ----------
    store : Store
    fmri : the surface fmri entry (or an entry derived from it: predictions, evaluation)
    data : (vertex,) or (tr, vertex) array, numpy/dask/xarray; vertex = the entry's vertex count
    path : output prefix (``PREFIX_hemi-L.func.gii`` and ``PREFIX_hemi-R.func.gii`` are written)
    fill : value of the surface's vertices the entry does not hold

    Returns
    -------
    [Path, Path] : the left and right files

    Raises
    ------
    ParameterError
        Not a surface entry (use to_nifti), a vertex count other than the entry's, an output folder
        that is missing. Nothing is written.
    """
    entry = fmri_entry_of(store, fmri)
    surface = entry.attrs.get("surface")
    if entry.attrs.get("layout") != "surface" or not surface:
        raise ParameterError(f"fmri entry {entry.key[:16]} is a volume (voxels); export it with to_nifti "
                             "(CLI: giblet-store to-nifti), not to GIFTI")
    ds = store.open(entry)
    hemi = np.array([str(h) for h in ds["hemi"].values], dtype=object)
    index = np.asarray(ds["vertex_index"].values, dtype=np.int64)
    if hasattr(data, "dims") and hasattr(data, "variable"):
        data = data.data
    values = np.asarray(data, dtype=np.float32)
    if values.ndim not in (1, 2) or values.shape[-1] != hemi.size:
        raise ParameterError(f"data of shape {values.shape} does not fit fmri entry {entry.key[:16]}: GIFTI export "
                             f"needs (vertex,) or (tr, vertex) with its {hemi.size} vertices")
    paths = gifti_paths(path)
    import nibabel as nib

    for h, out in paths.items():
        n = int(surface["n_surface"][h])
        full = np.full(values.shape[:-1] + (n,), fill, dtype=np.float32)
        full[..., index[hemi == h]] = values[..., hemi == h]
        nib.save(_image(full, h, float(entry.attrs["tr_s"]) if values.ndim == 2 else None), str(out))
    return [paths["L"], paths["R"]]
