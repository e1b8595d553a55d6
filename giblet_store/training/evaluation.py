"""The evaluation of a predictions entry against its fmri target: per-voxel Pearson r, stored.

:func:`evaluate` builds the correlation lazily with xarray on the Dask-backed entries and stores it
as an ``evaluation`` entry: ``r`` (subject, voxel) and ``r_mean`` (voxel,) float32 (``parcel`` in
place of ``voxel`` for a parcellated fmri entry, labels kept), plus the encoding scores of :mod:`giblet_store.training.scores`. :func:`undefined_note` says why some r are undefined.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import PredictionsError
from ..params import ALGORITHM_VERSION, content_key
from ..fmri.runs import target_coords as _time_voxel_coords
from ..store.conventions import space_dim
from ..store.schema import FORMAT_VERSION
from ..store.core import Entry, Store
from ..store.verify import cache_hit

__all__ = ["evaluate", "undefined_note"]


def _pearson(p, y, dim: str = "tr"):
    """Lazy Pearson r along ``dim`` (NaN where either series is constant; no 0/0 warnings)."""
    pc = p - p.mean(dim)
    yc = y - y.mean(dim)
    den = np.sqrt((pc * pc).sum(dim) * (yc * yc).sum(dim))
    return (pc * yc).sum(dim) / den.where(den > 0)


def _selected(pe: Entry, ptr: np.ndarray, trs) -> tuple[np.ndarray, list[int], Any]:
    """The predicted TRs in ``trs`` (a (start, stop) pair or a list of them); their span; the key's record."""
    if trs is None:
        a, b = int(ptr.min()), int(ptr.max()) + 1
        return ptr, [a, b], [a, b]
    pairs = [tuple(trs)] if len(trs) == 2 and all(np.ndim(x) == 0 for x in trs) else [tuple(t) for t in trs]
    try:
        pairs = [(int(a), int(b)) for a, b in pairs]
    except (TypeError, ValueError):
        raise PredictionsError(f"trs must be a (start, stop) pair or a list of them, got {trs!r}") from None
    keep = np.zeros(ptr.shape, bool)
    for a, b in pairs:
        keep |= (ptr >= a) & (ptr < b)
    sel = ptr[keep]
    span = [min(a for a, _ in pairs), max(b for _, b in pairs)]
    if sel.size < 3:
        raise PredictionsError(
            f"TR range {span[0]}:{span[1]} holds {sel.size} predicted TR(s) (predicted: {int(ptr.min())}:"
            f"{int(ptr.max()) + 1}); a correlation needs at least 3")
    return sel, span, (span if len(pairs) == 1 else [list(p) for p in pairs])


def _targets(store: Store, predictions) -> tuple[Entry, Entry]:
    pe = store.get(predictions)
    if pe.kind != "predictions":
        raise PredictionsError(f"entry {pe.key[:16]} is a {pe.kind!r} entry; evaluate takes a predictions entry")
    fe = store.lookup(pe.attrs["fmri_key"], "fmri")
    if fe is None:
        raise PredictionsError(f"the fmri entry {pe.attrs['fmri_key'][:16]} of predictions {pe.key[:16]} is not in the store")
    return pe, fe


def _mean_r(r):
    """Mean over subjects of (subject, ...) r, ignoring NaN (NaN where every subject is NaN)."""
    count = r.notnull().sum("subject")
    return (r.fillna(0).sum("subject") / count.where(count > 0)).astype(np.float32)


def evaluate(store: Store, predictions: Entry | str, trs=None,
             include_censored: bool = False) -> tuple[Entry, bool]:
    """Per-voxel Pearson r between a predictions entry and its fmri target on a TR range, and per run.

    Parameters
    ----------
    store : Store
    predictions : the predictions entry (or key)
    trs : (start, stop) TR range, or a list of ranges (e.g. ``split_trs(runs=..., leave_out=...)["test"]``)
        (default: every predicted TR); use the test range
    include_censored : an fmri entry with a ``censored`` (subject, tr) variable (scrubbed at ingest):
        False (default) leaves each subject's censored TRs out of its r, R² and ceiling; True keeps them

    Returns
    -------
    (Entry, created)
        kind ``evaluation``: ``r`` (subject, voxel) float32 (NaN where a series is constant) and
        ``r_mean`` (voxel,) float32, the mean over subjects; ``parent`` = {predictions, fmri}. Also
        ``r2`` (subject, voxel); ``noise_ceiling`` (voxel,), the r a perfect model of the shared response
        reaches, from the pairwise ISC on the same TRs (:mod:`giblet_store.training.ceiling`);
        ``r_normalised`` (subject, voxel) = r / ceiling where the ceiling is reliable, else NaN; ``isc_loso``
        (subject, voxel), each subject against the mean of the others (not a ceiling); per-subject and
        overall means in ``attrs["scores"]`` (see :mod:`giblet_store.training.scores`).
        For an fmri entry with runs, also per run: ``r_run`` (subject, run_id, voxel) and
        ``r_run_mean`` (run_id, voxel) float32 (r within each run's TRs; NaN for a run with fewer
        than 3 evaluated TRs) and ``attrs["runs"]`` (each run's TRs used and mean r).
        Export the map with :func:`entry_to_nifti`.

    Raises
    ------
    PredictionsError
        Not a predictions entry, its fmri entry is gone, or fewer than 3 predicted TRs in ``trs``.
    """
    pe, fe = _targets(store, predictions)
    pds, fds = store.open(pe), store.open(fe)
    sel, span, trs_record = _selected(pe, pds["tr"].values, trs)
    inputs = _key_inputs(pe, fe, fds, trs_record, include_censored)
    key = content_key(inputs)
    if (hit := cache_hit(store, key, "evaluation")) is not None:
        return hit, False
    p = pds["predictions"].sel(tr=sel).astype(np.float64)
    y = fds["fmri"].sel(subject=p["subject"].values, tr=sel).astype(np.float64)
    y = y.assign_coords(subject=p["subject"])
    p, y, all_y, n_censored = _uncensored(fds, p, y, sel, include_censored)
    ds, attrs = _scores(p, y, fds, fe, sel, all_y)
    if n_censored is not None:
        attrs["n_censored_left_out"] = n_censored
    if fe.attrs.get("runs"):
        ds, attrs["runs"] = _per_run(ds, p, y, fe, sel)
    attrs.update({"kind": "evaluation", "key": key, "metric": "pearson_r",
                  "parent": {"predictions": pe.key, "fmri": fe.key}, "predictions_key": pe.key, "fmri_key": fe.key,
                  "model_name": pe.attrs.get("model_name"), "trs": span, "tr_s": fe.attrs["tr_s"],
                  "algorithm_version": ALGORITHM_VERSION, "inputs": inputs})
    if trs_record is not span:
        attrs["tr_ranges"] = trs_record
    return store.write(ds, attrs)


def _key_inputs(pe: Entry, fe: Entry, fds, trs_record, include_censored: bool) -> dict:
    """Everything an evaluation's content depends on (its key's inputs)."""
    inputs = {"kind": "evaluation", "metric": "pearson_r", "algorithm_version": ALGORITHM_VERSION,
              "format_version": FORMAT_VERSION, "predictions_key": pe.key, "fmri_key": fe.key, "trs": trs_record,
              "scores": ["r2", "noise_ceiling_pairwise_isc", "r_normalised_reliable", "isc_loso"]}
    if fe.attrs.get("runs"):
        inputs["per_run"] = True
    if "censored" in fds.variables:  # entries without censoring keep the key they had
        inputs["include_censored"] = bool(include_censored)
    return inputs


def _uncensored(fds, p, y, sel, include: bool):
    """``p``, ``y`` and every subject's fmri on ``sel`` with censored (subject, tr) values NaN (left out of
    every sum), unless ``include`` or the entry has no ``censored``; and how many (subject, tr) were left out."""
    all_y = fds["fmri"].sel(tr=sel)
    if include or "censored" not in fds.variables:
        return p, y, all_y, None
    cens = fds["censored"].sel(tr=sel).astype(bool).compute()
    mine = cens.sel(subject=y["subject"].values).assign_coords(subject=y["subject"])
    return (p.where(~mine), y.where(~mine), all_y.astype(np.float64).where(~cens),
            int(mine.sum()))


def _scores(p, y, fds, fe, sel, all_y=None):
    """The evaluation Dataset (r, r_mean, encoding scores) and its score attributes."""
    import xarray as xr

    from .scores import encoding_scores

    dim = space_dim(fds)  # voxel, or parcel for a parcellated entry
    r = _pearson(p, y).astype(np.float32).compute()  # (subject, voxel): small
    subj = [str(s) for s in r["subject"].values]
    ds = xr.Dataset({"r": (("subject", dim), r.values), "r_mean": ((dim,), _mean_r(r).values)},
                    coords={"subject": np.array(subj, dtype=object), **_time_voxel_coords(fe, fds, None)})
    all_y = fds["fmri"].sel(tr=sel) if all_y is None else all_y
    more, score_attrs = encoding_scores(p.values, y.values, r.values, subj, all_y.values,
                                        [str(s) for s in all_y["subject"].values], dim=dim)
    finite = r.values[np.isfinite(r.values)]
    flat = (p.std("tr") == 0).sum().compute(), (y.std("tr") == 0).sum().compute()
    attrs = {
        "n_trs_used": int(sel.size), "subjects": subj, "n_voxels": int(r.sizes[dim]),
        "n_undefined": int(r.size - finite.size),
        "r_mean_all": float(finite.mean()) if finite.size else None,
        "r_median_all": float(np.median(finite)) if finite.size else None,
        "n_constant_predictions": int(flat[0]), "n_constant_fmri": int(flat[1]), **score_attrs,
    }
    return ds.assign(more), attrs


def _per_run(ds, p, y, fe, sel):
    """``r_run`` (subject, run_id, voxel), ``r_run_mean`` (run_id, voxel) and one record per run."""
    from ..fmri.runs import run_of_trs, run_table

    run_ids, _ = run_of_trs(fe.attrs, sel)
    table = run_table(fe.attrs)
    rs, records = [], []
    for rec in table:
        mine = sel[run_ids == rec["run"]]
        r = (_pearson(p.sel(tr=mine), y.sel(tr=mine)).astype(np.float32).compute() if mine.size >= 3
             else _nan_like(ds["r"]))
        finite = r.values[np.isfinite(r.values)]
        records.append({"run": rec["run"], "n_trs_used": int(mine.size),
                        "trs": [int(mine.min()), int(mine.max()) + 1] if mine.size else None,
                        "r_mean_all": float(finite.mean()) if finite.size else None})
        rs.append(r.values)
    r_run = np.stack(rs, axis=1)  # (subject, run_id, voxel)
    ds = ds.assign_coords(run_id=np.array([r["run"] for r in table], dtype=object))
    ds["r_run"] = (("subject", "run_id", space_dim(ds)), r_run)
    ds["r_run_mean"] = _mean_r(ds["r_run"])
    return ds, records


def _nan_like(r):
    """A copy of the (subject, voxel) DataArray ``r`` filled with NaN (a run with too few TRs)."""
    return r.copy(data=np.full(r.shape, np.nan, np.float32))


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
