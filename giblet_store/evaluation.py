"""The evaluation of a predictions entry against its fmri target: per-voxel Pearson r, stored.

:func:`evaluate` builds the correlation lazily with xarray on the Dask-backed entries and stores it
as an ``evaluation`` entry: ``r`` (subject, voxel) and ``r_mean`` (voxel,) float32, plus the
encoding scores of :mod:`giblet_store.scores`. :func:`undefined_note` says why some r are undefined.
"""

from __future__ import annotations

import numpy as np

from .errors import PredictionsError
from .params import ALGORITHM_VERSION, content_key
from .runs import target_coords as _time_voxel_coords
from .schema import FORMAT_VERSION
from .store import Entry, Store

__all__ = ["evaluate", "undefined_note"]


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
