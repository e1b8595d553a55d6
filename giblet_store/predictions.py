"""Model predictions stored beside their target with provenance, their evaluation, and NIfTI export.

- :func:`write_predictions`: a ``predictions`` entry (subject, tr, voxel) float32 with the same dims
  as the fmri it predicts, recording the model name, the sha256 of the checkpoint, the training
  parameters and the keys of the fmri and feature entries it came from (``parent``).
- :func:`evaluate`: per-voxel Pearson r between predictions and fmri over a TR range, built lazily
  with xarray on the Dask-backed entries and stored as an ``evaluation`` entry: ``r`` (subject,
  voxel) and ``r_mean`` (voxel,) float32.
- :func:`entry_to_nifti`: any of these (or an fmri entry) back to NIfTI with the stored mask/affine.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from .errors import PredictionsError  # noqa: F401 (re-exported)
from .fmri import auto_chunk_trs, fmri_encoding, fmri_entry_of, to_nifti
from .params import ALGORITHM_VERSION, content_key
from .provenance import ModelProvenance, as_array, digests, tr_range, tr_rows
from .schema import FORMAT_VERSION
from .store import Entry, Store

__all__ = ["PredictionsError", "write_predictions", "evaluate", "entry_to_nifti"]


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
    n_vox = int(fds.sizes["voxel"])
    if values.shape[2] != n_vox:
        raise PredictionsError(
            f"predictions have {values.shape[2]} voxels; fmri entry {fe.key[:16]} has {n_vox} (its mask's count)")
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
    predictions : (subject, tr, voxel) float array (numpy, torch, or xarray with those dims and
        optional ``subject``/``tr`` coordinates); voxel must equal the target's voxel count
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
    if (hit := store.lookup(key, "predictions")) is not None:
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


def _pearson(p, y, dim: str = "tr"):
    """Lazy Pearson r along ``dim`` (NaN where either series is constant; no 0/0 warnings)."""
    pc = p - p.mean(dim)
    yc = y - y.mean(dim)
    den = np.sqrt((pc * pc).sum(dim) * (yc * yc).sum(dim))
    return (pc * yc).sum(dim) / den.where(den > 0)


def evaluate(store: Store, predictions: Entry | str, trs: tuple[int, int] | None = None) -> tuple[Entry, bool]:
    """Per-voxel Pearson r between a predictions entry and its fmri target on a TR range.

    Parameters
    ----------
    store : Store
    predictions : the predictions entry (or key)
    trs : (start, stop) TR range (default: every predicted TR); use the test range

    Returns
    -------
    (Entry, created)
        kind ``evaluation``: ``r`` (subject, voxel) float32 (NaN where a series is constant) and
        ``r_mean`` (voxel,) float32, the mean over subjects; ``parent`` = {predictions, fmri}. Also
        ``r2``, ``noise_ceiling`` (leave-one-subject-out ISC) and ``r_normalised`` (subject, voxel)
        with per-subject and overall means in ``attrs["scores"]`` (see :mod:`giblet_store.scores`).
        Export the map with :func:`entry_to_nifti`.

    Raises
    ------
    PredictionsError
        Not a predictions entry, its fmri entry is gone, or fewer than 3 predicted TRs in ``trs``.
    """
    import xarray as xr

    pe = store.get(predictions)
    if pe.kind != "predictions":
        raise PredictionsError(f"entry {pe.key[:16]} is a {pe.kind!r} entry; evaluate takes a predictions entry")
    fe = store.lookup(pe.attrs["fmri_key"], "fmri")
    if fe is None:
        raise PredictionsError(f"the fmri entry {pe.attrs['fmri_key'][:16]} of predictions {pe.key[:16]} is not in the store")
    pds = store.open(pe)
    ptr = pds["tr"].values
    a, b = (int(ptr.min()), int(ptr.max()) + 1) if trs is None else (int(trs[0]), int(trs[1]))
    sel = ptr[(ptr >= a) & (ptr < b)]
    if sel.size < 3:
        raise PredictionsError(
            f"TR range {a}:{b} holds {sel.size} predicted TR(s) (predicted: {int(ptr.min())}:{int(ptr.max()) + 1}); "
            "a correlation needs at least 3")
    inputs = {"kind": "evaluation", "metric": "pearson_r", "algorithm_version": ALGORITHM_VERSION,
              "format_version": FORMAT_VERSION, "predictions_key": pe.key, "fmri_key": fe.key, "trs": [a, b],
              "scores": ["r2", "noise_ceiling_loso_isc", "r_normalised"]}
    key = content_key(inputs)
    if (hit := store.lookup(key, "evaluation")) is not None:
        return hit, False
    p = pds["predictions"].sel(tr=sel).astype(np.float64)
    y = store.open(fe)["fmri"].sel(subject=p["subject"].values, tr=sel).astype(np.float64)
    y = y.assign_coords(subject=p["subject"])
    r = _pearson(p, y).astype(np.float32).compute()  # (subject, voxel): small
    count = r.notnull().sum("subject")
    r_mean = (r.fillna(0).sum("subject") / count.where(count > 0)).astype(np.float32)
    subj = [str(s) for s in r["subject"].values]
    fds = store.open(fe)
    ds = xr.Dataset({"r": (("subject", "voxel"), r.values), "r_mean": (("voxel",), r_mean.values)},
                    coords={"subject": np.array(subj, dtype=object), **_time_voxel_coords(fe, fds, None)})
    from .scores import encoding_scores

    all_y = fds["fmri"].sel(tr=sel)
    more, score_attrs = encoding_scores(p.values, y.values, r.values, subj, all_y.values,
                                        [str(s) for s in all_y["subject"].values])
    ds = ds.assign(more)
    finite = r.values[np.isfinite(r.values)]
    flat = (p.std("tr") == 0).sum().compute(), (y.std("tr") == 0).sum().compute()
    attrs = {
        "kind": "evaluation", "key": key, "metric": "pearson_r", "parent": {"predictions": pe.key, "fmri": fe.key},
        "predictions_key": pe.key, "fmri_key": fe.key, "model_name": pe.attrs.get("model_name"),
        "trs": [a, b], "n_trs_used": int(sel.size), "subjects": subj, "n_voxels": int(r.sizes["voxel"]),
        "tr_s": fe.attrs["tr_s"], "n_undefined": int(r.size - finite.size),
        "r_mean_all": float(finite.mean()) if finite.size else None,
        "r_median_all": float(np.median(finite)) if finite.size else None,
        "n_constant_predictions": int(flat[0]), "n_constant_fmri": int(flat[1]),
        "algorithm_version": ALGORITHM_VERSION, "inputs": inputs, **score_attrs,
    }
    return store.write(ds, attrs)


def entry_to_nifti(store: Store, entry: Entry | str, path, *, subject: str | None = None,
                   variable: str | None = None, trs: tuple[int, int] | None = None, fill: float = 0.0):
    """Export an fmri, predictions or evaluation entry to NIfTI with the fmri entry's mask and affine.

    Parameters
    ----------
    entry : fmri / predictions (4D: one subject's (tr, voxel)) or evaluation (3D: ``r`` of one
        subject, or ``r_mean`` when no subject is given)
    subject : subject ID (needed for fmri/predictions of several subjects)
    variable : the variable to export (default: fmri, predictions, r or r_mean)
    trs : (start, stop) TRs for 4D exports (default: all)
    """
    from .errors import ParameterError
    from .validate import parse_output_path

    parse_output_path(path, "output NIfTI")
    entry = store.get(entry)
    ds = store.open(entry)
    default = {"fmri": "fmri", "predictions": "predictions", "evaluation": "r" if subject else "r_mean"}
    if entry.kind not in default:
        raise ParameterError(f"entry {entry.key[:16]} is a {entry.kind!r} entry; NIfTI export takes fmri, "
                             "predictions or evaluation entries")
    var = variable or default[entry.kind]
    if var not in ds.data_vars:
        raise ParameterError(f"entry {entry.key[:16]} has no variable {var!r}; it has {sorted(ds.data_vars)}")
    x = ds[var]
    if "subject" in x.dims:
        names = [str(s) for s in ds["subject"].values]
        if subject is None and len(names) > 1:
            raise ParameterError(f"entry {entry.key[:16]} holds subjects {names}; say which (subject=..., --subject)")
        s = names[0] if subject is None else str(subject)
        if s not in names:
            raise ParameterError(f"subject {s!r} is not in entry {entry.key[:16]} ({names})")
        x = x.isel(subject=names.index(s))
    if "tr" in x.dims and trs is not None:
        x = x.sel(tr=slice(int(trs[0]), int(trs[1]) - 1))
    if x.dims not in (("voxel",), ("tr", "voxel")):
        raise ParameterError(f"variable {var!r} has dims {x.dims}; NIfTI export needs (voxel,) or (tr, voxel)")
    return to_nifti(store, fmri_entry_of(store, entry), x, path, fill=fill)


def _time_voxel_coords(fe, fds, tr) -> dict:
    """``tr_start_s`` (for ``tr`` TR indices; None: no time axis), ``voxel`` and ``voxel_ijk``
    coordinates of the target fmri entry (computed from its attributes for older entries)."""
    from .conventions import tr_start_s

    out = {"voxel": np.arange(int(fds.sizes["voxel"]), dtype=np.int64)}
    if "voxel_ijk" in fds.variables:
        out["voxel_ijk"] = (("voxel", "ijk"), np.asarray(fds["voxel_ijk"].values))
    if tr is not None:
        out["tr_start_s"] = (("tr",), tr_start_s(fe.attrs.get("onset_s", 0.0), fe.attrs["tr_s"], tr))
    return out


def undefined_note(attrs: dict) -> str:
    """Why some (or all) of an evaluation entry's r values are undefined, or ``""``."""
    n = attrs.get("n_undefined") or 0
    if not n:
        return ""
    parts = []
    for what, name in (("predictions", "n_constant_predictions"), ("fMRI", "n_constant_fmri")):
        if attrs.get(name):
            parts.append(f"the {what} are constant over the TRs for {attrs[name]}")
    why = "; ".join(parts) or "a series is constant"
    total = attrs.get("n_voxels", 0) * len(attrs.get("subjects", [])) or n
    return (f"r is undefined (NaN) for {n} of {total} voxel x subject pair(s): {why} "
            f"(Pearson r divides by the standard deviation, which is 0 for a constant series)")
