"""Model predictions stored beside their target with provenance, their evaluation, and NIfTI export.

- :func:`write_predictions`: a ``predictions`` entry (subject, tr, voxel) float32 with the same dims
  as the fmri it predicts, recording the model name, the sha256 of the checkpoint, the training
  parameters and the keys of the fmri and feature entries it came from (``parent``).
- :func:`evaluate` (in :mod:`giblet_store.training.evaluation`, re-exported here): per-voxel Pearson r
  between predictions and fmri, stored as an ``evaluation`` entry.
- :func:`entry_to_nifti`: any of these (or an fmri entry) back to NIfTI with the stored mask/affine;
  :func:`entry_to_gifti`: of a surface entry, a func.gii per hemisphere.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from ..errors import PredictionsError  # noqa: F401 (re-exported)
from .evaluation import evaluate  # noqa: F401 (re-exported)
from ..fmri.ingest import auto_chunk_trs, fmri_encoding, fmri_entry_of, to_nifti
from ..params import ALGORITHM_VERSION, content_key
from ..store.provenance import ModelProvenance, as_array, digests, tr_range, tr_rows
from ..fmri.runs import target_coords as _time_voxel_coords
from ..store.conventions import space_dim
from ..store.schema import FORMAT_VERSION
from ..store.core import Entry, Store
from ..store.verify import cache_hit

__all__ = ["PredictionsError", "write_predictions", "evaluate", "entry_to_nifti", "entry_to_gifti"]


def _target(store: Store, fmri) -> tuple[Entry, Any]:
    fe = store.get(fmri)
    if fe.kind != "fmri":
        raise PredictionsError(f"entry {fe.key[:16]} is a {fe.kind!r} entry; predictions target an fmri entry")
    return fe, store.open(fe)


def _checked(predictions, fe: Entry, fds, subjects, trs) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(values (subject, tr, voxel) float32, subject IDs, target TR index of each row), all checked."""
    target_dims = tuple(fds["fmri"].dims)
    values, dims, coords = as_array(predictions)
    if dims is not None and dims != target_dims:
        raise PredictionsError(f"predictions have dims {dims}; their target {fe.key[:16]}'s fmri has {target_dims}")
    if values.ndim != 3:
        raise PredictionsError(
            f"predictions have shape {values.shape} ({values.ndim} dims); expected {target_dims} like the target "
            f"(add a subject axis of 1 for one subject: x[None])")
    if values.dtype.kind not in "fiu":
        raise PredictionsError(f"predictions must be real numbers, got dtype {values.dtype}")
    dim = space_dim(fds)
    n_vox = int(fds.sizes[dim])
    if values.shape[2] != n_vox:
        what = {"voxel": "its mask's count", "vertex": "its surface vertices", "parcel": "its atlas's count"}[dim]
        raise PredictionsError(
            f"predictions have {values.shape[2]} {dim}s; fmri entry {fe.key[:16]} has {n_vox} ({what})")
    all_subjects = [str(s) for s in fds["subject"].values]
    subj = coords.get("subject", subjects)
    subj = all_subjects if subj is None else [str(s) for s in np.atleast_1d(subj)]
    if len(subj) != values.shape[0] or len(set(subj)) != len(subj) or any(s not in all_subjects for s in subj):
        raise PredictionsError(
            f"subjects {subj} do not fit the {values.shape[0]} predicted subject(s) or are not in the target "
            f"({all_subjects})")
    tr = tr_rows(coords.get("tr", trs), values.shape[1], int(fds.sizes["tr"]), PredictionsError, "predictions array")
    values = np.ascontiguousarray(values, dtype=np.float32)
    if not np.isfinite(values).all():
        raise PredictionsError(f"predictions hold {int((~np.isfinite(values)).sum())} NaN/inf value(s); fix the model")
    return values, subj, tr


def write_predictions(
    store: Store,
    predictions,
    fmri: Entry | str,
    *,
    model_name: str,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_sha256: str | None = None,
    training_params: dict | None = None,
    features: Sequence[Entry | str] = (),
    subjects: Sequence[str] | None = None,
    trs=None,
    chunk_trs: int | None = None,
) -> tuple[Entry, bool]:
    """Store model predictions of an fmri entry, with their provenance.

    Parameters
    ----------
    store : Store
    predictions : (subject, tr, voxel) float array (numpy, torch, or xarray with those dims and optional
        ``subject``/``tr`` coordinates), voxel = the target's count (``parcel`` for a parcellated target)
    fmri : the fmri entry predicted (the target)
    model_name : what the model is (class name, architecture)
    checkpoint, checkpoint_sha256 : the checkpoint file (hashed here) or its sha256; one is required
    training_params : JSON-able dict of the training parameters (epochs, lr, seed, TR splits, ...)
    features : the feature entries (or keys) the model read
    subjects : subject IDs along the first axis (default: the target's, all of them)
    trs : TR indices along the second axis, or (start, stop) (default: every TR of the target)

    Returns
    -------
    (Entry, created)
        ``predictions`` (subject, tr, voxel) float32 with ``subject``/``tr`` coordinates; ``parent``
        lists the fmri key then the feature keys.

    Raises
    ------
    PredictionsError
        Dims, voxel count, subjects or TRs that do not match the target; non-finite values; no
        checkpoint; a feature entry not in the store. Nothing is written.
    """
    import xarray as xr

    fe, fds = _target(store, fmri)
    values, subj, tr = _checked(predictions, fe, fds, subjects, trs)
    prov = ModelProvenance.of(model_name, checkpoint, checkpoint_sha256, training_params, PredictionsError)
    inputs = {
        "kind": "predictions", "algorithm_version": ALGORITHM_VERSION, "format_version": FORMAT_VERSION,
        "fmri_key": fe.key, "target_var": "fmri", **prov.to_dict(),
        "feature_keys": [store.get(f).key for f in features],
        "subjects": subj, **digests(tr, values),
    }
    key = content_key(inputs)
    if (hit := cache_hit(store, key, "predictions")) is not None:
        return hit, False
    ds = xr.Dataset({"predictions": (tuple(fds["fmri"].dims), values)},
                    coords={"subject": np.array(subj, dtype=object), "tr": tr, **_time_voxel_coords(fe, fds, tr)})
    ds["predictions"].attrs.update(description="predicted fmri values (same units as the target's fmri)")
    c = int(chunk_trs) if chunk_trs else auto_chunk_trs(values.shape[2], max(1, tr.size))
    return store.write(ds, _attrs(fe, key, inputs, tr, values.shape[2]), fmri_encoding(ds, ["predictions"], c))


def _attrs(fe: Entry, key: str, inputs: dict, tr: np.ndarray, n_vox: int) -> dict:
    """A predictions entry's attributes: its inputs, parents (fmri, then features) and TR grid."""
    subj = inputs["subjects"]
    return {
        "kind": "predictions", "key": key, "parent": [fe.key, *inputs["feature_keys"]], "fmri_key": fe.key,
        "feature_keys": inputs["feature_keys"], "target_var": "fmri", "model_name": inputs["model_name"],
        "checkpoint_sha256": inputs["checkpoint_sha256"], "training_params": inputs["training_params"],
        "tr_s": fe.attrs["tr_s"], "onset_s": fe.attrs.get("onset_s", 0.0), "n_trs": int(tr.size),
        "tr_range": tr_range(tr), "subjects": subj,
        "n_subjects": len(subj), "n_voxels": n_vox, "normalize": fe.attrs.get("normalize", "none"),
        "algorithm_version": ALGORITHM_VERSION, "inputs": inputs,
    }


def entry_to_nifti(store: Store, entry: Entry | str, path, *, subject: str | None = None,
                   variable: str | None = None, trs: tuple[int, int] | None = None, run: str | None = None,
                   fill: float = 0.0, atlas=None):
    """Export an fmri, predictions or evaluation entry to NIfTI with the fmri entry's mask and affine.

    Parameters
    ----------
    entry : fmri / predictions (4D: one subject's (tr, voxel)) or evaluation (3D: ``r`` of one
        subject, or ``r_mean`` when no subject is given; with ``run``, ``r_run`` / ``r_run_mean``)
    subject : subject ID (needed for a variable over several subjects)
    variable : the variable to export (default: fmri, predictions, r or r_mean); a per-voxel one such
        as ``noise_ceiling`` (voxel,) needs no subject
    trs : (start, stop) TRs for 4D exports (default: all)
    run : the run of a per-run variable (``r_run``, ``r_run_mean``: dim ``run_id``), or of a 4D
        export (its TRs, by the ``run`` coordinate)

    fill : value outside the mask (and, for a parcel entry, of voxels in no parcel)
    atlas : a parcel entry's atlas, when it is no longer at the path recorded when it was derived

    A parcel entry's values (``parcel``) are painted back onto the voxels of the entry it was derived from,
    each voxel taking its parcel's value (:func:`giblet_store.fmri.parcels.parcels_on_space`). A surface entry
    (dimension ``vertex``) is refused with a pointer to :func:`entry_to_gifti`.
    """
    from ..errors import ParameterError
    from ..validate import parse_output_path

    parse_output_path(path, "output NIfTI")
    entry, x = _export_array(store, entry, subject, variable, trs, run, "NIfTI")
    fe, x = _painted(store, entry, x, atlas, fill)
    if "vertex" in x.dims:
        raise ParameterError(f"entry {entry.key[:16]} is on a surface (dimension vertex), which has no NIfTI "
                             "grid; export it per hemisphere to GIFTI: entry_to_gifti (CLI: giblet-store to-gifti)")
    if x.dims not in (("voxel",), ("tr", "voxel")):
        raise ParameterError(f"variable {x.name!r} has dims {x.dims}; NIfTI export needs (voxel,) or (tr, voxel)")
    return to_nifti(store, fe, x, path, fill=fill)


def _painted(store: Store, entry: Entry, x, atlas, fill: float):
    """(the fmri entry to export on, x): a parcel entry's ``x`` painted onto the voxels or vertices it averaged."""
    from ..fmri.parcels import parcels_on_space

    fe = fmri_entry_of(store, entry)
    if "parcel" not in x.dims:
        return fe, x
    return parcels_on_space(store, fe, x, atlas=atlas, fill=fill)


def entry_to_gifti(store: Store, entry: Entry | str, path, *, subject: str | None = None,
                   variable: str | None = None, trs: tuple[int, int] | None = None, run: str | None = None,
                   fill: float = 0.0, atlas=None):
    """Export a surface fmri, predictions or evaluation entry as a func.gii per hemisphere.

    The selection (``subject``, ``variable``, ``trs``, ``run``) is :func:`entry_to_nifti`'s; ``path`` is
    a prefix: ``PREFIX_hemi-L.func.gii`` and ``PREFIX_hemi-R.func.gii`` are written
    (:func:`giblet_store.fmri.surface_export.to_gifti`). Returns the two paths.
    """
    from ..errors import ParameterError
    from ..fmri.surface_export import gifti_paths, to_gifti

    gifti_paths(path)
    entry, x = _export_array(store, entry, subject, variable, trs, run, "GIFTI")
    fe, x = _painted(store, entry, x, atlas, fill)
    if "voxel" in x.dims:
        raise ParameterError(f"entry {entry.key[:16]} is a volume (dimension voxel); export it with "
                             "entry_to_nifti (CLI: giblet-store to-nifti)")
    if x.dims not in (("vertex",), ("tr", "vertex")):
        raise ParameterError(f"variable {x.name!r} has dims {x.dims}; GIFTI export needs (vertex,) or (tr, vertex)")
    return to_gifti(store, fe, x, path, fill=fill)


def _export_array(store: Store, entry, subject, variable, trs, run, what: str):
    """(entry, the DataArray to export): the variable, one subject, one run, a TR range."""
    from ..errors import ParameterError

    entry = store.get(entry)
    ds = store.open(entry)
    ev = ("r_run" if subject else "r_run_mean") if run is not None else ("r" if subject else "r_mean")
    default = {"fmri": "fmri", "predictions": "predictions", "evaluation": ev}
    if entry.kind not in default:
        raise ParameterError(f"entry {entry.key[:16]} is a {entry.kind!r} entry; {what} export takes fmri, "
                             "predictions or evaluation entries")
    var = variable or default[entry.kind]
    if var not in ds.data_vars:
        raise ParameterError(f"entry {entry.key[:16]} has no variable {var!r}; it has {sorted(ds.data_vars)}")
    x = ds[var]
    if "subject" in x.dims:
        names = [str(s) for s in ds["subject"].values]
        if subject is None and len(names) > 1:
            raise ParameterError(f"variable {var!r} of entry {entry.key[:16]} holds subjects {names}; say which "
                                 "(subject=..., --subject)")
        s = names[0] if subject is None else str(subject)
        if s not in names:
            raise ParameterError(f"subject {s!r} is not in entry {entry.key[:16]} ({names})")
        x = x.isel(subject=names.index(s))
    x = _one_run(x, var, run, entry)
    if "tr" in x.dims and trs is not None:
        x = x.sel(tr=slice(int(trs[0]), int(trs[1]) - 1))
    return entry, x


def _one_run(x, var: str, run: str | None, entry: Entry):
    """``x`` restricted to run ``run``: along ``run_id`` (a per-run map) or ``tr`` (by the ``run`` coordinate)."""
    from ..errors import ParameterError

    if "run_id" in x.dims:
        ids = [str(r) for r in x["run_id"].values]
        if run is None and len(ids) > 1:
            raise ParameterError(f"variable {var!r} of entry {entry.key[:16]} holds runs {ids}; say which "
                                 "(run=..., --run)")
        r = ids[0] if run is None else str(run)
        if r not in ids:
            raise ParameterError(f"run {r!r} is not in variable {var!r} of entry {entry.key[:16]}; its runs are {ids}")
        return x.isel(run_id=ids.index(r))
    if run is None:
        return x
    if "tr" in x.dims and "run" in x.coords:
        ids = np.array([str(r) for r in x["run"].values], dtype=object)
        if str(run) not in set(ids):
            raise ParameterError(f"run {run!r} is not in entry {entry.key[:16]}; its runs are "
                                 f"{list(dict.fromkeys(ids))}")
        return x.isel(tr=np.flatnonzero(ids == str(run)))
    per_run = " (its per-run maps: r_run, r_run_mean)" if entry.kind == "evaluation" else ""
    raise ParameterError(f"variable {var!r} of entry {entry.key[:16]} is not per run; drop the run or export a "
                         f"per-run variable{per_run}")
