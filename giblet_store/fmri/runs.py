"""The run structure of fMRI-side entries (fmri, predictions, evaluation): which TRs belong to which run.

A scan session has runs; an fmri entry stores them **concatenated along** ``tr`` (one stored array,
chunked along ``tr`` as before), with per-TR coordinates that say where each TR comes from:

- ``run`` (tr) str: the run ID;
- ``tr_in_run`` (tr) int64: the TR index within its run;
- ``tr_start_s`` (tr) float64: the stimulus time at which the TR starts, *in its run's stimulus*.

and the ``runs`` attribute, one record per run in order: ``{"run", "tr_offset", "n_trs", "onset_s",
"stimulus_key", "stimulus_sha256", "stimulus_name", "paired_trs"}`` (``paired_trs``: the TRs of
the run, within the run, that have both stimulus and BOLD). Global TR ``tr_offset + i`` is TR ``i``
of the run. An entry written before runs existed (no ``run`` coordinate) is read as one run ``"1"``
holding every TR: :func:`run_table` and :func:`run_coords` give both kinds the same shape.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..store.conventions import SPACE_DIMS, space_dim

__all__ = ["DEFAULT_RUN", "SPACE_DIMS", "space_dim", "run_table", "run_coords", "target_coords", "select_run",
           "run_of_trs"]


#: the run ID of an entry written without runs
DEFAULT_RUN = "1"


def run_table(attrs: dict) -> list[dict]:
    """Per run, in order: ``run``, ``tr_offset``, ``n_trs`` (and the stimulus fields when recorded).

    An entry without a ``runs`` attribute is one run ``"1"`` of ``n_trs`` TRs at offset 0.
    """
    runs = attrs.get("runs")
    if runs:
        return [dict(r) for r in runs]
    one: dict[str, Any] = {"run": DEFAULT_RUN, "tr_offset": 0, "n_trs": int(attrs.get("n_trs", 0)),
                           "onset_s": float(attrs.get("onset_s", 0.0))}
    for name in ("stimulus_key", "stimulus_sha256", "stimulus_name", "paired_trs"):
        if attrs.get(name) is not None:
            one[name] = attrs[name]
    return [one]


def run_of_trs(attrs: dict, trs) -> tuple[np.ndarray, np.ndarray]:
    """(run IDs (n,) object, TR within the run (n,) int64) of global TR indices ``trs``."""
    t = np.asarray(trs, dtype=np.int64)
    table = run_table(attrs)
    starts = np.array([r["tr_offset"] for r in table], dtype=np.int64)
    pos = np.searchsorted(starts, t, side="right") - 1
    ids = np.array([str(r["run"]) for r in table], dtype=object)
    return ids[pos], t - starts[pos]


def run_coords(attrs: dict, tr_s: float, trs) -> dict:
    """``run``, ``tr_in_run`` and ``tr_start_s`` (tr,) coordinates of global TR indices ``trs``."""
    from ..store.conventions import tr_start_s

    run, within = run_of_trs(attrs, trs)
    onset = {str(r["run"]): float(r.get("onset_s", 0.0)) for r in run_table(attrs)}
    start = np.array([onset[r] for r in run], dtype=np.float64) + float(tr_s) * within.astype(np.float64)
    if not len(run):
        start = tr_start_s(0.0, tr_s, within)
    return {"run": (("tr",), np.array([str(x) for x in run], dtype=object)), "tr_in_run": (("tr",), within),
            "tr_start_s": (("tr",), start)}


def target_coords(fe, fds, tr) -> dict:
    """``voxel``/``voxel_ijk`` (on a surface ``vertex``/``hemi``/``vertex_index``/``structure``; for a
    parcellated entry ``parcel``, the atlas labels) and (for ``tr`` TR indices; None: no time axis) time
    coordinates of the fmri entry ``fe`` (opened as ``fds``) that predictions or an evaluation of it carry.

    The time coordinates are ``tr_start_s``, plus ``run`` and ``tr_in_run`` when ``fe`` holds runs.
    """
    from ..store.conventions import SPACE_COORDS, tr_start_s

    dim = space_dim(fds)
    if dim == "parcel":
        out = {dim: np.asarray(fds[dim].values)}  # the atlas labels
    else:
        out = {dim: np.arange(int(fds.sizes[dim]), dtype=np.int64)}
    for name in SPACE_COORDS:  # voxel_ijk (voxel, ijk); hemi, vertex_index, structure (vertex,)
        if name in fds.variables:
            out[name] = (tuple(fds[name].dims), np.asarray(fds[name].values))
    if tr is None:
        return out
    if fe.attrs.get("runs"):
        out.update(run_coords(fe.attrs, fe.attrs["tr_s"], tr))
    else:
        out["tr_start_s"] = (("tr",), tr_start_s(fe.attrs.get("onset_s", 0.0), fe.attrs["tr_s"], tr))
    return out


def select_run(ds, run: str):
    """The TRs of run ``run`` of an fmri-side entry or Dataset, on that run's grid.

    ``ds`` is an xarray Dataset or an :class:`~giblet_store.store.core.Entry` (opened). An entry
    without runs is run ``"1"`` and comes back whole. The result's attributes describe the run, not
    the whole entry: ``onset_s`` (its stimulus onset), ``n_trs`` (its TRs), ``tr_s``, ``run`` (the
    ID), ``tr_offset`` (where its TRs start in the entry: ``tr`` keeps the entry's indices) and
    ``runs`` (its one record, with its stimulus fields), so :func:`~giblet_store.fmri.join.join`
    pairs it with that run's features.

    Examples
    --------
    >>> part2 = select_run(store.open(fmri_entry), "2")        # doctest: +SKIP
    >>> gs.join(run2_features, gs.select_run(fmri_entry, "2"))  # doctest: +SKIP
    """
    from ..errors import ParameterError

    if not hasattr(ds, "data_vars") and callable(getattr(ds, "open", None)) and hasattr(ds, "kind"):
        ds = ds.open()  # an Entry
    if not hasattr(ds, "data_vars"):
        raise ParameterError(f"select_run takes an entry or an xarray Dataset of one, got {type(ds).__name__}")
    if "run" not in ds.coords:
        if str(run) != DEFAULT_RUN:
            raise ParameterError(f"this entry holds one run, {DEFAULT_RUN!r} (it was ingested without runs); "
                                 f"got run {run!r}")
        return ds
    ids = np.array([str(x) for x in ds["run"].values], dtype=object)
    if str(run) not in set(ids):
        raise ParameterError(f"run {run!r} is not in this entry; it holds runs {list(dict.fromkeys(ids))}")
    part = ds.isel(tr=np.flatnonzero(ids == str(run)))
    part.attrs = _run_attrs(ds.attrs, part, str(run))
    return part


def _run_attrs(attrs: dict, part, run: str) -> dict:
    """The attributes of one run's TRs ``part``: the entry's, with the run's grid and its record."""
    recs = [dict(r) for r in attrs.get("runs") or [] if str(r.get("run")) == run]
    if recs:
        rec = recs[0]
    else:  # an entry whose attributes carry no run table (e.g. predictions): the run's grid from its coords
        tr_s = float(attrs.get("tr_s", 0.0))
        first = int(np.argmin(part["tr_in_run"].values)) if "tr_in_run" in part.coords else 0
        within = int(part["tr_in_run"].values[first]) if "tr_in_run" in part.coords else 0
        onset = (float(part["tr_start_s"].values[first]) - tr_s * within if "tr_start_s" in part.coords
                 else float(attrs.get("onset_s", 0.0)))
        rec = {"run": run, "tr_offset": int(part["tr"].values[first]) - within, "n_trs": int(part.sizes["tr"]),
               "onset_s": round(onset, 9)}
    out = dict(attrs)
    out.update(run=run, runs=[rec], n_runs=1, n_trs=int(rec["n_trs"]), onset_s=float(rec.get("onset_s", 0.0)),
               tr_offset=int(rec["tr_offset"]))
    for name in ("stimulus_key", "stimulus_sha256", "stimulus_name", "paired_trs"):
        if name in rec:
            out[name] = rec[name]
    return out
