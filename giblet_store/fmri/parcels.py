"""Parcels: an fmri entry's voxels averaged within the labels of an atlas image.

``derive(fmri_entry, Parcellate(atlas="atlas.nii.gz"))`` follows nilearn's ``NiftiLabelsMasker``
(``strategy="mean"``, ``keep_masked_labels=False``): label 0 is background; each label that holds at
least one of the entry's voxels (its mask) becomes one ``parcel``, whose value at each (subject, tr)
is the mean of those voxels. The parcels are ordered by label value, and the label values are the
``parcel`` coordinate. The atlas must lie on the data's grid (shape and affine); ``resample=True``
resamples it first with ``nilearn.image.resample_to_img(..., interpolation="nearest")``.

A surface entry (GIFTI or CIFTI, on ``vertex``) takes a surface atlas instead, one file per hemisphere
(``Parcellate(atlas=("lh.NAME.annot", "rh.NAME.annot"))`` or ``.label.gii``), on the data's mesh: nilearn's
``SurfaceLabelsMasker`` semantics (one label value is one parcel, bilateral when both hemispheres hold
it), :mod:`giblet_store.fmri.surface_atlas`.

The atlas is named in the key by its sha256 (not its path): the same atlas file anywhere gives the
same entry. The result is an ``fmri`` entry whose brain dim is ``parcel`` instead of ``voxel``, so
everything that takes an fmri entry (``StoreDataset``, ``join``, ``write_predictions``, ``evaluate``, the
noise ceiling, censoring) takes it as the brain side. Torch-free; registered with :func:`giblet_store.store.core.Store.derive` by
:mod:`giblet_store.training.parcel_derive` (this package cannot import the feature transforms).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..errors import ParameterError
from ..params import Params
from ..store.entry import Entry
from ..store.hashing import sha256_file
from ..validate import flag
from .surface_atlas import integer_labels, is_surface_atlas, surface_atlas_hemis, surface_labels

__all__ = ["Parcellate", "parcel_plan", "atlas_labels", "parcels_on_space"]

#: how far (mm) an atlas affine may differ from the data's and still be the same grid
AFFINE_ATOL = 1e-4


@dataclass(frozen=True)
class Parcellate(Params):
    """Average an fmri entry's voxels within each label of ``atlas`` (a 3-D label NIfTI; 0 = background).

    Parameters
    ----------
    atlas : path of the label image (integer labels; a 4-D image with one volume is taken as 3-D); for a
        surface entry, two paths: one ``.label.gii`` or FreeSurfer ``.annot`` per hemisphere (any order)
    resample : False (default): an atlas on another grid than the data is refused; True: resample it
        to the data's grid with nearest-neighbour interpolation (nilearn ``resample_to_img``); volumes only

    ``to_dict()`` (attributes and key) holds the atlas' sha256 (a surface atlas: {hemi: sha256}), not its path.
    """

    name: ClassVar[str] = "parcellate"
    atlas: Any = ""
    resample: bool = False
    atlas_sha256: Any = field(default="", init=False)

    def __post_init__(self):
        paths = [self.atlas] if isinstance(self.atlas, (str, os.PathLike)) else list(self.atlas or [])
        paths = [os.fspath(p) for p in paths]
        for path in paths or [""]:
            if not path or not os.path.isfile(path):
                raise ParameterError(f"atlas {path!r} is not a file; give the path of a label image (NIfTI, e.g. a "
                                     "Schaefer or Harvard-Oxford atlas), or for a surface entry one label file per "
                                     "hemisphere (.label.gii or FreeSurfer .annot)")
        flag("resample", self.resample)
        if len(paths) == 1 and not is_surface_atlas(paths[0]):
            object.__setattr__(self, "atlas", paths[0])
            object.__setattr__(self, "atlas_sha256", sha256_file(paths[0]))
            return
        if self.resample:
            raise ParameterError("resample=True resamples a volume atlas to the data's grid; a surface atlas must be "
                                 "on the data's mesh already (give the atlas for the entry's surface space)")
        pairs = surface_atlas_hemis(paths)
        object.__setattr__(self, "atlas", pairs)  # ((hemi, path), ...), L then R
        object.__setattr__(self, "atlas_sha256", tuple((h, sha256_file(p)) for h, p in pairs))

    @property
    def on_surface(self) -> bool:
        """Whether this is a surface atlas (one file per hemisphere)."""
        return not isinstance(self.atlas, str)

    def to_dict(self) -> dict[str, Any]:
        sha = dict(self.atlas_sha256) if self.on_surface else self.atlas_sha256
        return {"atlas_sha256": sha, "resample": self.resample}


def _load_atlas(path: str):
    import nibabel as nib

    try:
        img = nib.load(path)
        data = np.asanyarray(img.dataobj)
    except Exception as e:  # nibabel raises many types for a file that is not an image
        raise ParameterError(f"atlas {path} could not be read as a NIfTI label image ({type(e).__name__}: {e}); "
                             "give a .nii or .nii.gz label image") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
        img = nib.Nifti1Image(data, img.affine)
    if data.ndim != 3:
        raise ParameterError(f"atlas {path} has shape {data.shape}; a label atlas is one 3-D volume (for a "
                             "probabilistic 4-D atlas use nilearn's NiftiMapsMasker outside the store)")
    return img, data


def _on_grid(img, data: np.ndarray, parent: Entry, transform: Parcellate) -> np.ndarray:
    """The atlas' labels on the data's grid (resampled only when asked)."""
    shape = tuple(int(x) for x in parent.attrs["volume_shape"])
    affine = np.asarray(parent.attrs["affine"], dtype=np.float64)
    same = data.shape == shape and np.allclose(img.affine, affine, rtol=0, atol=AFFINE_ATOL)
    if same:
        return data
    if not transform.resample:
        raise ParameterError(
            f"atlas {transform.atlas} is on another grid than fmri entry {parent.key[:16]}: shape {data.shape} "
            f"vs the data's {shape}, affine {np.round(img.affine, 4).tolist()} vs {np.round(affine, 4).tolist()}; "
            "give an atlas in the data's space and resolution, or resample it (Parcellate(resample=True), CLI "
            "--resample-atlas: nearest neighbour)")
    import nibabel as nib
    from nilearn.image import resample_to_img

    target = nib.Nifti1Image(np.zeros(shape, np.int8), affine)
    out = resample_to_img(img, target, interpolation="nearest", force_resample=True, copy_header=True)
    return np.asanyarray(out.dataobj)


def atlas_labels(parent: Entry, ds, transform: Parcellate) -> np.ndarray:
    """(voxel,) int64 label of each of the entry's voxels (0: background) from the atlas on its grid."""
    img, data = _load_atlas(transform.atlas)
    data = integer_labels(_on_grid(img, data, parent, transform), f"atlas {transform.atlas}")
    ijk = np.asarray(ds["voxel_ijk"].values, dtype=np.int64)
    return data[ijk[:, 0], ijk[:, 1], ijk[:, 2]]


def _labels(parent: Entry, ds, transform: Parcellate) -> np.ndarray:
    """(voxel,) or (vertex,) int64 atlas label of each of the entry's voxels or vertices (checks first)."""
    if parent.kind != "fmri":
        raise ParameterError(f"Parcellate averages the voxels of an fmri entry; entry {parent.key[:16]} is a "
                             f"{parent.kind!r} entry")
    surface = "vertex" in ds.dims
    if surface != transform.on_surface:
        have = ("a surface atlas (one file per hemisphere)" if transform.on_surface
                else f"the volume atlas {transform.atlas}")
        raise ParameterError(f"fmri entry {parent.key[:16]} is {'on a surface (vertices)' if surface else 'a volume'}"
                             f" but Parcellate was given {have}; give "
                             f"{'one .label.gii or .annot per hemisphere' if surface else 'a NIfTI label image'}")
    if surface:
        return surface_labels(parent.key, dict(parent.attrs.get("surface") or {}), ds["hemi"].values,
                              ds["vertex_index"].values, transform.atlas)
    if "voxel_ijk" not in ds.variables:
        raise ParameterError(f"Parcellate averages the voxels of an fmri entry; entry {parent.key[:16]} is already "
                             f"over {list(ds['fmri'].dims)[-1]!r}, not voxels: parcellate its parent "
                             f"{str(parent.attrs.get('parent', '?'))[:16]} instead")
    return atlas_labels(parent, ds, transform)


def parcel_plan(parent: Entry, ds, transform: Parcellate) -> tuple[dict, Any]:
    """(options hashed into the key, build) for :func:`giblet_store.training.parcel_derive` (checks first)."""
    labels = _labels(parent, ds, transform)
    unit = "vertices" if transform.on_surface else "voxels"
    values = np.unique(labels[labels != 0])
    if values.size == 0:
        raise ParameterError(f"atlas {transform.atlas} labels none of the {labels.size} {unit} of fmri entry "
                             f"{parent.key[:16]} (every one is background, 0); give an atlas of the data's space")
    order = np.argsort(labels, kind="stable")
    order = order[labels[order] != 0]  # the labelled voxels, grouped by label
    starts = np.searchsorted(labels[order], values)
    counts = np.diff(np.append(starts, order.size))
    options = {"axis": "tr", "atlas_sha256": transform.to_dict()["atlas_sha256"], "strategy": "mean",
               "background_label": 0}
    hemis = _parcel_hemis(ds, order, starts, values) if transform.on_surface else None
    paths = dict(transform.atlas) if transform.on_surface else transform.atlas

    def build():
        return _parcel_dataset(ds, order, starts, counts, values, unit, hemis), {
            "atlas": {"path": paths, "sha256": options["atlas_sha256"], "resampled": transform.resample},
            "n_parcels": int(values.size), f"n_{unit}_in_parcels": int(order.size), "variables": ["fmri"],
            "axis": "tr", "hrf": "none"}

    return options, build


def _parcel_hemis(ds, order, starts, values) -> np.ndarray:
    """(parcel,) "L", "R" or "L+R": the hemispheres each parcel's vertices lie on (warns for bilateral ones)."""
    import warnings

    hemi = np.asarray(ds["hemi"].values)[order]
    out = np.array(["+".join(sorted(set(part))) for part in np.split(hemi, starts[1:])], dtype=object)
    both = values[out == "L+R"]
    if both.size:
        warnings.warn(f"{both.size} atlas label(s) ({both[:8].tolist()}{' ...' if both.size > 8 else ''}) lie on "
                      "both hemispheres: each is one bilateral parcel, as in nilearn's SurfaceLabelsMasker "
                      "(parcel_hemi says L+R); number the right hemisphere's labels apart for one parcel per "
                      "hemisphere", stacklevel=3)
    return out


def _parcel_means(block: np.ndarray, order: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(subject, tr, voxel) -> (subject, tr, parcel) float32: each label's voxel mean (in float64)."""
    x = np.asarray(block, dtype=np.float64)[..., order]
    return (np.add.reduceat(x, starts, axis=-1) / counts).astype(np.float32)


def _parcel_dataset(ds, order, starts, counts, values, unit: str = "voxels", hemis=None):
    import xarray as xr

    x = ds["fmri"].data.rechunk({2: -1})
    means = x.map_blocks(_parcel_means, order, starts, counts, dtype=np.float32,
                         chunks=(x.chunks[0], x.chunks[1], (values.size,)))
    keep = {n: ds[n] for n in ds.data_vars if set(ds[n].dims) <= {"subject", "tr"}}  # censored, ...
    out = xr.Dataset({"fmri": (("subject", "tr", "parcel"), means), **keep},
                     coords={c: ds.coords[c] for c in ds.coords if set(ds.coords[c].dims) <= {"subject", "tr"}})
    out = out.assign_coords(parcel=values.astype(np.int64))
    out[f"parcel_n_{unit}"] = (("parcel",), counts.astype(np.int64))
    out["fmri"].attrs["description"] = f"mean of the entry's {unit} within each atlas label (parcel = label value)"
    out[f"parcel_n_{unit}"].attrs["description"] = f"{unit} of the entry averaged into each parcel"
    if hemis is not None:
        out["parcel_hemi"] = (("parcel",), np.asarray(hemis, dtype=object))  # variable-length strings
        out["parcel_hemi"].attrs["description"] = "hemispheres of the parcel's vertices: L, R or L+R (bilateral)"
    return out


def parcels_on_space(store, parcel_entry: Entry, x, atlas: Any = None, fill: float = 0.0):
    """``x`` (..., parcel) of a parcel entry painted back onto the voxels or vertices it averaged.

    Returns (the voxel or surface fmri entry ``parcel_entry`` was derived from, an (..., voxel|vertex) DataArray):
    each voxel or vertex takes its parcel's value; one in no parcel (background, or a label ``x`` lacks) takes
    ``fill``. The atlas is read from the path its attributes record, or from ``atlas`` (a moved copy); its sha256
    must be the one in the entry's key.
    """
    import xarray as xr

    rec = dict(parcel_entry.attrs.get("atlas") or {})
    path = rec.get("path") if atlas is None else atlas
    path = tuple(path.values()) if isinstance(path, dict) else path
    try:
        transform = Parcellate(atlas=path, resample=bool(rec.get("resampled", False)))
    except ParameterError as e:
        raise ParameterError(f"cannot read the atlas of parcel entry {parcel_entry.key[:16]} to paint its parcels "
                             f"back: {e}. Give the atlas it was made with (atlas=..., CLI --atlas)") from None
    want = dict(parcel_entry.attrs.get("inputs") or {}).get("options", {}).get("atlas_sha256")
    if transform.to_dict()["atlas_sha256"] != want:
        raise ParameterError(f"atlas {path} is not the atlas parcel entry {parcel_entry.key[:16]} was made with (its "
                             "sha256 differs from the one in the entry's key); give that atlas (atlas=..., --atlas)")
    parent = store.get(parcel_entry.attrs["parent"])
    labels = _labels(parent, store.open(parent), transform)
    values = np.asarray(x["parcel"].values)
    idx = np.clip(np.searchsorted(values, labels), 0, max(values.size - 1, 0))
    hit = (labels != 0) & (values[idx] == labels) if values.size else np.zeros(labels.shape, bool)
    data = np.asarray(x.transpose(..., "parcel").values)[..., idx].astype(np.float32)
    data[..., ~hit] = fill
    dim = "vertex" if transform.on_surface else "voxel"
    dims = (*[d for d in x.dims if d != "parcel"], dim)
    coords = {c: x.coords[c] for c in x.coords if "parcel" not in x.coords[c].dims}
    return parent, xr.DataArray(data, dims=dims, coords=coords, name=x.name)
