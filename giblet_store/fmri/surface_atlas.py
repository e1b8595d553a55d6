"""Surface label atlases for :class:`~giblet_store.fmri.parcels.Parcellate`: one file per hemisphere.

Two formats, the ones surface atlases ship in: a GIFTI label file (``.label.gii``: one integer array
over the hemisphere's mesh, e.g. Schaefer/Glasser on fs_LR or fsaverage) and a FreeSurfer annotation
(``lh.*.annot`` / ``rh.*.annot``, nibabel's ``read_annot``: its color-table indices are the labels).
The hemisphere comes from the GIFTI's ``AnatomicalStructurePrimary`` (CortexLeft/CortexRight), else
from the name: a ``hemi-L`` entity, an ``lh.``/``rh.`` prefix, or ``.L.``/``.R.`` (HCP's
``*.L.label.gii``). Label 0 is background, and so is an annotation's -1 (no color-table entry).

A surface fmri entry's vertex ``v`` takes the label of vertex ``vertex_index[v]`` in its hemisphere's
atlas, whose length must be that hemisphere's surface (``surface.n_surface``): an atlas of another
mesh (fsaverage5 for fsaverage6 data) is refused, never resampled. As nilearn's
``SurfaceLabelsMasker``, one label value is one parcel even when both hemispheres hold it (a bilateral
region); ``parcel_hemi`` says which hemispheres each parcel spans, and a warning names such labels.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ..errors import ParameterError

__all__ = ["SURFACE_ATLAS_SUFFIXES", "integer_labels", "is_surface_atlas", "surface_atlas_hemis", "surface_labels"]

#: file name endings read as a surface atlas (one hemisphere each)
SURFACE_ATLAS_SUFFIXES = (".label.gii", ".gii", ".annot")
_HEMIS = ("L", "R")
_STRUCTURES = {"cortexleft": "L", "cortexright": "R"}


def is_surface_atlas(path) -> bool:
    """Whether ``path`` names a surface atlas file (:data:`SURFACE_ATLAS_SUFFIXES`)."""
    return str(path).lower().endswith(SURFACE_ATLAS_SUFFIXES)


def _hemi_from_name(name: str) -> str | None:
    low = name.lower()
    if m := re.search(r"(?:^|[_.-])hemi-([lr])(?:[_.-]|$)", low):
        return m.group(1).upper()
    if low.startswith(("lh.", "rh.")):
        return low[0].upper()
    if m := re.search(r"\.([lr])\.", low):
        return m.group(1).upper()
    return None


def _read_gifti(path: str) -> tuple[np.ndarray, str | None]:
    import nibabel as nib

    try:
        img = nib.load(path)
        arrays = img.darrays
    except Exception as e:  # nibabel raises many types for a file that is not a GIFTI
        raise ParameterError(f"surface atlas {path} could not be read as a GIFTI label file ({type(e).__name__}: "
                             f"{e}); give a .label.gii (one integer label per vertex)") from None
    if len(arrays) != 1 or np.ndim(arrays[0].data) != 1:
        raise ParameterError(f"surface atlas {path} holds {len(arrays)} data array(s) of shapes "
                             f"{[np.shape(d.data) for d in arrays]}; a label atlas is one (n_vertices,) array "
                             "of integer labels per hemisphere")
    meta = {str(k).lower(): str(v).lower() for k, v in dict(img.meta or {}).items()}
    meta.update({str(k).lower(): str(v).lower() for k, v in dict(arrays[0].meta or {}).items()})
    return np.asarray(arrays[0].data), _STRUCTURES.get(meta.get("anatomicalstructureprimary", ""))


def _read_annot(path: str) -> np.ndarray:
    import nibabel as nib

    try:
        labels, _, _ = nib.freesurfer.read_annot(path)
    except Exception as e:  # a damaged or foreign file: struct errors, ValueError, ...
        raise ParameterError(f"surface atlas {path} could not be read as a FreeSurfer annotation "
                             f"({type(e).__name__}: {e}); give lh./rh. .annot files as FreeSurfer writes them"
                             ) from None
    return np.where(labels < 0, 0, labels)  # -1: a vertex with no color-table entry, i.e. unlabelled


def _read(path: str) -> tuple[str, np.ndarray]:
    """(hemisphere, (n_vertices,) int64 labels) of one atlas file."""
    if path.lower().endswith(".annot"):
        data, hemi = _read_annot(path), None
    else:
        data, hemi = _read_gifti(path)
    hemi = hemi or _hemi_from_name(Path(path).name)
    if hemi not in _HEMIS:
        raise ParameterError(f"surface atlas {path}: which hemisphere it labels is unknown (no AnatomicalStructure"
                             "Primary CortexLeft/CortexRight, and no hemi-L, lh./rh. or .L./.R. in its name); "
                             "name it as FreeSurfer (lh.NAME.annot) or HCP (NAME.L.label.gii) does")
    return hemi, integer_labels(data, f"surface atlas {path}")


def integer_labels(data, what: str) -> np.ndarray:
    """``data`` as int64 labels; float data must hold whole numbers (``what`` names the atlas in the error)."""
    data = np.asarray(data)
    if data.dtype.kind == "f":
        if not np.isfinite(data).all() or not np.array_equal(data, np.round(data)):
            raise ParameterError(f"{what} holds non-integer values; a label atlas holds whole numbers (0 = background)")
    elif data.dtype.kind not in "iub":
        raise ParameterError(f"{what} has dtype {data.dtype}; give integer labels")
    return data.astype(np.int64)


def surface_atlas_hemis(paths) -> tuple[tuple[str, str], ...]:
    """((hemi, path), ...) of a surface atlas given as one file per hemisphere, in order L, R."""
    paths = [os.fspath(p) for p in paths]
    if len(paths) != 2:
        raise ParameterError(f"a surface atlas is one file per hemisphere; got {len(paths)} ({paths}): give the "
                             "left and the right one (lh.NAME.annot and rh.NAME.annot, or NAME.L/R.label.gii)")
    hemis = [_read(p)[0] for p in paths]
    if sorted(hemis) != list(_HEMIS):
        raise ParameterError(f"surface atlas files {[Path(p).name for p in paths]} both label hemisphere "
                             f"{hemis[0]}; give one left and one right")
    return tuple(sorted(zip(hemis, paths)))


def surface_labels(entry_key: str, surface: dict, hemi: np.ndarray, vertex_index: np.ndarray,
                   atlas: tuple[tuple[str, str], ...]) -> np.ndarray:
    """(vertex,) int64 label of each of an entry's vertices (0: background) from its hemispheres' atlases."""
    out = np.zeros(len(hemi), dtype=np.int64)
    n_surface = dict(surface.get("n_surface") or {})
    for h, path in atlas:
        got, labels = _read(path)
        if got != h:
            raise ParameterError(f"surface atlas {path} now labels hemisphere {got}, not {h}: it changed; rerun")
        want = int(n_surface.get(h, -1))
        if labels.size != want:
            raise ParameterError(
                f"surface atlas {path} has {labels.size} vertices but fmri entry {entry_key[:16]}'s hemi-{h} surface "
                f"has {want} (space {surface.get('space')!r}); give an atlas on the data's mesh (fsaverage6: "
                "40962 per hemisphere, fsaverage5: 10242, fs_LR 32k: 32492)")
        sel = np.asarray(hemi) == h
        out[sel] = labels[np.asarray(vertex_index)[sel]]
    return out
