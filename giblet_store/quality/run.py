"""Score audio per TR, lazily with Dask, and store the scores as a ``quality`` entry.

:func:`score_per_tr` builds one Dask task per block of TRs (each task gets exactly the samples of
its TRs) plus one task for the whole signal; nothing runs until computed. :func:`score_audio`
resolves the sources (files or codes entries, :mod:`giblet_store.quality.sources`), computes (where
:mod:`giblet_store.quality.pool` decides: a warmed process pool for long signals), and
with a store writes (or finds, a cache hit) the ``quality`` entry:

- variables: one per metric variable (``snr_db``, ``si_sdr_db``, ``lsd_db``, ``mel_distance_db``,
  ``stoi``, ``estoi``, ``pesq_wb``, ``pesq_nb``), each (tr) float64, NaN where undefined;
- coordinates ``tr``, ``tr_start_s`` and ``n_samples`` (samples scored in each TR);
- attributes: ``metrics``, ``reference`` / ``degraded`` (file sha256 or entry key), ``metric_versions``,
  ``quality_params``, the grid (``tr_s``, ``onset_s``, ``trs``, ``grid_source``), ``sample_rate_hz``,
  ``whole`` (whole-signal values; null where undefined or infinite), ``whole_notes`` and
  ``nan_reasons`` ({variable: {reason: [tr, ...]}}), ``trimmed_samples``, ``parent`` (entry keys).
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..grid import TrGrid
from ..params import ALGORITHM_VERSION, content_key
from .metrics import QualityParams, metric_versions, score_segment
from ..store.schema import FORMAT_VERSION
from ..store.verify import cache_hit

__all__ = ["QualityResult", "score_per_tr", "score_audio", "quality_key_inputs"]


@dataclass(frozen=True)
class QualityResult:
    """What :func:`score_audio` returns.

    Attributes
    ----------
    metrics : {variable: float} whole-signal values (NaN where undefined, inf for identical signals)
    per_tr : xarray.Dataset, one (tr) float64 variable per metric variable
    notes : {variable: str} why a whole-signal value is NaN or infinite
    entry : Entry or None (no store given)
    created : bool, False for a cache hit (or no store)
    nan_reasons : {variable: {reason: [tr, ...]}} why per-TR values are NaN (the entry's ``nan_reasons``)
    """

    metrics: dict
    per_tr: Any
    notes: dict
    entry: Any = None
    created: bool = False
    nan_reasons: dict = field(default_factory=dict)


def _score_block(ref, deg, bounds, sr, params):
    """(values (variable, tr) float64, {variable: {reason: [local tr]}}) for one block of TRs."""
    names = params.variables
    vals = np.full((len(names), len(bounds) - 1), np.nan)
    reasons: dict[str, dict[str, list[int]]] = {}
    for k in range(len(bounds) - 1):
        v, why = score_segment(ref[bounds[k] : bounds[k + 1]], deg[bounds[k] : bounds[k + 1]], sr, params)
        vals[:, k] = [v[n] for n in names]
        for n, r in why.items():
            reasons.setdefault(n, {}).setdefault(r, []).append(k)
    return vals, reasons


def _boxed(block) -> np.ndarray:
    """A block's reasons dict as a (1,) object array (a chunk of the ``reasons`` Dask array)."""
    out = np.empty(1, dtype=object)
    out[0] = block[1]
    return out


def score_per_tr(ref, deg, sample_rate_hz: int, bounds, params: QualityParams | None = None):
    """Lazy per-TR and whole-signal scores: one Dask task per ``params.block_trs`` TRs.

    Parameters
    ----------
    ref, deg : (sample,) float mono at ``sample_rate_hz``, equal lengths
    bounds : (tr + 1,) int sample index where each TR starts; TR ``k`` is ``ref[bounds[k]:bounds[k+1]]``
    params : QualityParams

    Returns
    -------
    values : dask.array.Array, (variable, tr) float64 in the order of ``params.variables``
    reasons : dask.array.Array, (block,) object: per block {variable: {reason: [local tr]}}
    whole : dask.delayed of (values, reasons) for the whole signal
    starts : list of int, the first TR (local index) of each block

    ``values`` and ``reasons`` are Dask arrays over the same block tasks, so computing them together
    (``dask.compute(values, reasons)``) scores each block once (a dask.delayed ``reasons`` next to an
    array ``values`` was optimised apart from it and scored every block twice).
    """
    import dask
    import dask.array as da

    params = params or QualityParams()
    bounds = np.asarray(bounds, dtype=np.int64)
    n_tr, n_var = len(bounds) - 1, len(params.variables)
    parts, reasons, starts = [], [], []
    for i in range(0, n_tr, params.block_trs):
        j = min(i + params.block_trs, n_tr)
        lo, hi = int(bounds[i]), int(bounds[j])
        blk = dask.delayed(_score_block, pure=True)(ref[lo:hi], deg[lo:hi], bounds[i : j + 1] - lo,
                                                    sample_rate_hz, params)
        parts.append(da.from_delayed(dask.delayed(operator.getitem)(blk, 0), shape=(n_var, j - i), dtype=np.float64))
        reasons.append(da.from_delayed(dask.delayed(_boxed)(blk), shape=(1,), dtype=object))
        starts.append(i)
    values = da.concatenate(parts, axis=1) if parts else da.zeros((n_var, 0), dtype=np.float64)
    reasons = da.concatenate(reasons) if reasons else da.zeros((0,), dtype=object)
    whole = dask.delayed(score_segment, pure=True)(ref, deg, sample_rate_hz, params)
    return values, reasons, whole, starts


def quality_key_inputs(reference: dict, degraded: dict, params: QualityParams, grid: dict, trs, align: bool,
                       sample_rate_hz: int, versions: dict, deg_start=None) -> dict[str, Any]:
    """Everything that determines a quality entry's values: hashed into its key, stored as ``inputs``."""
    p = params.to_dict()
    p.pop("block_trs")  # how the work is split does not change a value
    placed = {} if deg_start is None else {"deg_start_s": float(deg_start)}  # absent: the keys made before it
    return {**placed,
        "kind": "quality", "algorithm_version": ALGORITHM_VERSION, "format_version": FORMAT_VERSION,
        "reference": reference, "degraded": degraded, "quality_params": p,
        "grid": {k: grid[k] for k in ("tr_s", "onset_s", "n_trs") if k in grid}, "trs": trs, "align": bool(align),
        "sample_rate_hz": int(sample_rate_hz), "metric_versions": versions,
    }


def _jsonable(values: dict, reasons: dict) -> tuple[dict, dict]:
    """Whole-signal values for JSON: NaN/inf become None with a note."""
    out, notes = {}, dict(reasons)
    for k, v in values.items():
        if math.isfinite(v):
            out[k] = float(v)
        else:
            out[k] = None
            if math.isinf(v):
                notes[k] = f"{'+' if v > 0 else '-'}infinite: the degraded signal equals the reference (no error)"
    return out, notes


def _from_json(values: dict, notes: dict) -> dict:
    """Inverse of :func:`_jsonable`: None becomes +-inf when its note says so, else NaN."""
    out = {}
    for k, v in values.items():
        note = notes.get(k, "")
        out[k] = float(v) if v is not None else (math.inf if note.startswith("+inf") else
                                                  -math.inf if note.startswith("-inf") else math.nan)
    return out


def _merge_reasons(blocks: list, starts: list, trs: np.ndarray) -> dict:
    merged: dict[str, dict[str, list[int]]] = {}
    for blk, s in zip(blocks, starts):
        for var, by_reason in blk.items():
            for reason, local in by_reason.items():
                merged.setdefault(var, {}).setdefault(reason, []).extend(int(trs[s + k]) for k in local)
    return merged


def _dataset(pair, params, values):
    import xarray as xr

    data = {n: (("tr",), values[i]) for i, n in enumerate(params.variables)}
    ds = xr.Dataset(data, coords={"tr": pair.trs, "tr_start_s": (("tr",), pair.tr_start_s),
                                  "n_samples": (("tr",), np.diff(pair.bounds).astype(np.int64))})
    units = {"snr_db": "dB", "si_sdr_db": "dB", "lsd_db": "dB", "mel_distance_db": "dB", "stoi": "1",
             "estoi": "1", "pesq_wb": "MOS-LQO", "pesq_nb": "MOS-LQO"}
    for n in params.variables:
        ds[n].attrs.update(units=units[n], description=f"{n} of each TR's samples; NaN where undefined")
    ds["tr_start_s"].attrs.update(units="s")
    return ds


def _compute(pair, params: QualityParams, scheduler, workers):
    from .pool import compute_scores

    values, reasons, whole, starts = score_per_tr(pair.ref, pair.deg, pair.sample_rate_hz, pair.bounds, params)
    values, reasons, whole = compute_scores(values, reasons, whole, params=params, n_trs=int(pair.trs.size),
                                            scheduler=scheduler, workers=workers)
    return np.asarray(values), _merge_reasons(reasons, starts, pair.trs), whole


def score_audio(ref, deg, store=None, params: QualityParams | None = None, grid: TrGrid | None = None,
                trs=None, align: bool = False, model: str | None = None, device: str = "cpu",
                scheduler: Any = None, workers: int | None = None, deg_start: float | None = None) -> QualityResult:
    """Score a degraded signal against a reference, whole and per TR; with a store, as a cached entry.

    Parameters
    ----------
    ref, deg : audio file paths, or codes, mel or reconstruction entries / keys of ``store`` (decoded)
    store : Store, optional; required for entry keys, and to keep the result as a ``quality`` entry
    params : QualityParams (metrics and their analysis settings)
    grid : TrGrid for two files (default 1.5 s, onset 0); a codes entry brings its own grid
    trs : "A:B" or (A, B) TR range (stop exclusive); default every TR
    align : trim both to the shorter instead of refusing lengths that differ by more than one frame
    deg_start : stimulus time (s) at which a degraded file starts; default what ``decode`` recorded in
        the file (:mod:`giblet_store.audio.start`), else 0
    model : the model directory for entries made with a local model
    scheduler : where the per-TR tasks run: None (default: a warmed process pool from 200 TRs on, else
        this process; :mod:`giblet_store.quality.pool`), "sync", "threads", "processes", a Client
    workers : processes (or threads) scoring at once; default the cores this process may use

    Raises
    ------
    QualityError, AudioError, ParameterError, EntryNotFoundError
        Before anything is written; the store is left unchanged.
    """
    from .sources import analysis_rate, resolve_pair, source_descriptor

    params = params or QualityParams()
    versions = metric_versions(params)  # missing pystoi/pesq: the install hint, before any work
    rd, dd = source_descriptor(store, ref), source_descriptor(store, deg)
    trs_req = _normalise_trs(trs)
    grid_in = {} if grid is None else grid.to_dict()
    sr = analysis_rate(store, ref, deg)
    inputs = quality_key_inputs(rd, dd, params, grid_in, trs_req, align, sr, versions, deg_start)
    key = content_key(inputs)
    if store is not None and (hit := cache_hit(store, key, "quality")) is not None:
        notes = dict(hit.attrs.get("whole_notes", {}))
        return QualityResult(_from_json(hit.attrs["whole_values"], notes), store.open(hit), notes, hit, False,
                             dict(hit.attrs.get("nan_reasons", {})))
    pair = resolve_pair(store, ref, deg, grid, trs, align, model, device, deg_start)
    if pair.ref.size == 0 or float(np.max(np.abs(pair.ref))) < 10 ** (params.silence_dbfs / 20):
        from ..errors import QualityError

        raise QualityError(f"the reference is silent (peak below {params.silence_dbfs:g} dBFS) over the scored "
                           "range; no metric compares against silence. Check the file or the TR range")
    values, reasons, (whole, whole_why) = _compute(pair, params, scheduler, workers)
    ds = _dataset(pair, params, values)
    whole_json, notes = _jsonable(whole, whole_why)
    if store is None:
        return QualityResult(whole, ds, notes, nan_reasons=reasons)
    attrs = _attrs(pair, params, inputs, key, whole_json, notes, reasons, versions, rd, dd)
    entry, created = store.write(ds, attrs)
    return QualityResult(whole, ds if created else store.open(entry), notes, entry, created, reasons)


def _normalise_trs(trs):
    if trs is None:
        return "all"
    if isinstance(trs, str):
        return trs.strip()
    return f"{int(trs[0])}:{int(trs[1])}"


def _attrs(pair, params, inputs, key, whole_json, notes, reasons, versions, rd, dd) -> dict:
    parents = [d["entry_key"] for d in (rd, dd) if "entry_key" in d]
    attrs = {
        "kind": "quality", "key": key, "metrics": list(params.metrics), "variables": list(params.variables),
        "reference": rd, "degraded": dd, "metric_versions": versions, "quality_params": params.to_dict(),
        "tr_s": pair.grid["tr_s"], "onset_s": pair.grid["onset_s"], "grid_source": pair.grid["source"],
        "n_trs": int(pair.trs.size),
        "trs": [int(pair.trs[0]), int(pair.trs[-1]) + 1] if pair.trs.size else [0, 0],
        "sample_rate_hz": int(pair.sample_rate_hz), "n_samples": int(pair.ref.size),
        "whole_values": whole_json, "whole_notes": notes, "nan_reasons": reasons,
        "trimmed_samples": pair.trimmed, "algorithm_version": ALGORITHM_VERSION, "inputs": inputs,
    }
    if parents:
        attrs["parent"] = parents
    return attrs
