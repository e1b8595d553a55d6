"""4D NIfTI series of several subjects (and runs) -> one ``fmri`` entry (subject, tr, voxel) float32.

With runs (one file per (subject, run), ``runs=``), the runs lie one after the other along ``tr``
with ``run``/``tr_in_run`` coordinates and a ``runs`` attribute (:mod:`giblet_store.fmri.runs`); each
run keeps its own length and stimulus and is z-scored on its own training TRs. Without runs the
entry (and its key) is what it was before runs existed.

The series are read volume block by volume block (:mod:`giblet_store.fmri.nifti`), never as a whole:
peak memory is a few volumes plus one output chunk, whatever the number of TRs or subjects.

Three streamed passes, all before or inside the staged write (so bad input leaves the store as it was):

1. **scan**, one read of each file (:mod:`giblet_store.fmri.scan`): its sha256 (the key; a cache
   hit stops here), non-finite values, (for a computed mask) each subject's temporal std over its
   first ``MaskParams.sample_trs`` TRs and (for a given mask) the z-score moments;
2. **statistics** (only for z-scoring with a computed mask, whose voxels pass 1 decides): per-voxel
   mean/std over the training TRs, reading only those TRs and gathering only mask voxels;
3. **write**: one Dask task per output chunk ``(1 subject, chunk_trs, voxel)``; the tasks of one
   subject read in order, so a ``.nii.gz`` is decompressed once. Mask voxels are gathered from the
   stored values before scaling (:mod:`giblet_store.fmri.nifti_read`). A chunk that spans two runs
   reads the end of one run's file and the start of the next.

The inputs are opened and checked by :mod:`giblet_store.fmri.inputs`; the final mask, z-score
statistics and lazy array come from :mod:`giblet_store.fmri.write`.

The mask is stored with the data: ``mask`` (x, y, z) bool, ``voxel_ijk`` (voxel, ijk) int32 in
``np.argwhere(mask)`` order, and the affine in the attributes, so the voxel set never drifts between
runs and any (voxel,) or (tr, voxel) array goes back to NIfTI with :func:`to_nifti`.

Non-finite values (the policy ``nan_policy`` decides, and the attributes record what was done):
a volume that is entirely NaN/inf is always an error (a TR cannot be dropped without shifting the
grid); voxels that are non-finite at some TR of some subject are never in a computed mask's vote,
and in the final mask they are an error (``"error"``, default) or dropped with a warning (``"mask"``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

from ..store.conventions import pairing_warning, tr_start_s
from ..errors import ParameterError
from .inputs import check_stimuli, given_mask, mask_key, open_layout, raw_header_tr, resolve_tr
from .write import final_mask, lazy_fmri, zscore_stats
from .scan import scan_and_hash
from .nifti import BLOCK_BYTES, FmriError, check_unchanged, flat_index
from .nifti_check import check_finite_output
from .nifti_write import fmri_entry_of, to_nifti
from ..params import ALGORITHM_VERSION, Params, content_key
from .runs import DEFAULT_RUN, run_coords
from ..store.schema import FORMAT_VERSION
from ..store.core import Entry, Store, default_encoding
from ..validate import NanPolicy, choice, file_name_text, finite, int_in_range, scan_tr_seconds
from ..store.verify import cache_hit

__all__ = [
    "FmriError", "FmriParams", "MaskParams", "IngestResult", "ingest_fmri", "fmri_entry_of", "to_nifti",
    "fmri_encoding", "write_staged", "with_provenance", "auto_chunk_trs",
]

#: target bytes of one fmri chunk (1 subject x chunk_trs x every voxel, float32)
CHUNK_BYTES = 4 << 20


def _int_pair(v, what: str) -> tuple[int, int] | None:
    if v is None:
        return None
    try:
        a, b = (int(x) for x in v)
    except (TypeError, ValueError):
        raise ParameterError(f"{what} must be a (start, stop) pair of TR indices, got {v!r}") from None
    if not 0 <= a < b:
        raise ParameterError(f"{what}=({a}, {b}) is empty or negative; give 0 <= start < stop (stop exclusive)")
    return a, b


@dataclass(frozen=True)
class MaskParams(Params):
    """The computed-mask rule (the reference project's): temporal variability, then a vote.

    Per subject, a voxel votes when its temporal std over the first ``sample_trs`` TRs is above the
    ``std_percentile``-th percentile of that subject's non-zero stds (and it is finite at every TR);
    the mask is the voxels with votes from at least ``ceil(min_subject_fraction * n_subjects)``
    subjects.

    Parameters
    ----------
    std_percentile : float in [0, 100)
    min_subject_fraction : float in (0, 1]
    sample_trs : int or None
        TRs from the start used for the std (None: all).
    """

    name: ClassVar[str] = "mask"
    std_percentile: float = 10.0
    min_subject_fraction: float = 0.5
    sample_trs: int | None = 200

    def __post_init__(self):
        p = finite("std_percentile", self.std_percentile)
        f = finite("min_subject_fraction", self.min_subject_fraction)
        if not 0 <= p < 100:
            raise ParameterError(f"std_percentile must be in [0, 100), got {p!r}")
        if not 0 < f <= 1:
            raise ParameterError(f"min_subject_fraction must be in (0, 1], got {f!r}")
        object.__setattr__(self, "std_percentile", p)
        object.__setattr__(self, "min_subject_fraction", f)
        object.__setattr__(self, "sample_trs", int_in_range("sample_trs", self.sample_trs, 2, optional=True))


@dataclass(frozen=True)
class FmriParams(Params):
    """How NIfTI series become an fmri entry.

    Parameters
    ----------
    tr_s : float or None
        TR in seconds; None reads it from the headers (``pixdim[4]`` and its time unit).
    n_trs : int or None
        Keep the first ``n_trs`` volumes of every subject (None: all; subjects must then agree).
    zscore_trs : (start, stop) or None
        Z-score each voxel of each subject with the mean/std of TRs ``start:stop`` only (the training
        range), stored as ``zscore_mean``/``zscore_std``; None stores the values as read.
    nan_policy : {"error", "mask"}
        Voxels of the mask that are non-finite at some TR: an error, or dropped from the mask.
    """

    name: ClassVar[str] = "fmri"
    tr_s: float | None = None
    n_trs: int | None = None
    zscore_trs: tuple[int, int] | None = None
    nan_policy: str = "error"

    def __post_init__(self):
        if self.tr_s is not None:
            object.__setattr__(self, "tr_s", scan_tr_seconds(self.tr_s))
        object.__setattr__(self, "n_trs", int_in_range("n_trs", self.n_trs, 1, optional=True))
        z = _int_pair(self.zscore_trs, "zscore_trs")
        if z is not None and z[1] - z[0] < 2:
            raise ParameterError(f"zscore_trs={z} holds {z[1] - z[0]} TR; a std needs at least 2")
        object.__setattr__(self, "zscore_trs", z)
        object.__setattr__(self, "nan_policy", choice("nan_policy", self.nan_policy, NanPolicy))


@dataclass(frozen=True)
class IngestResult:
    """The fmri entry and whether it was written now (False: a cache hit, nothing was read)."""

    entry: Entry
    created: bool


def fmri_encoding(ds, chunked: Sequence[str], chunk_trs: int) -> dict:
    """Encoding of an fmri-like Dataset: ``chunked`` variables (subject, tr, voxel) in (1, chunk_trs, voxel).

    Those use Blosc zstd level 1 with byte shuffle: BOLD floats barely compress at any level (measured
    1.08x at level 1 and at level 5 on float32 noise), and level 1 made a Sherlock-scale ingest 2-2.8x
    faster than the store's default level 5 (bench/ingest.py; +16% bytes on quantised int16 input).
    """
    from zarr.codecs import BloscCodec, BloscShuffle

    enc = default_encoding(ds)
    for name in chunked:
        n_s, n_t, n_v = (int(x) for x in ds[name].shape)
        enc[name]["chunks"] = (1, max(1, min(chunk_trs, n_t)), n_v)
        enc[name]["compressors"] = (BloscCodec(cname="zstd", clevel=1, shuffle=BloscShuffle.shuffle),)
    return enc


def auto_chunk_trs(n_voxels: int, n_trs: int) -> int:
    """TRs per chunk so one chunk of float32 (voxel,) rows is about 4 MiB."""
    return int(max(1, min(n_trs, CHUNK_BYTES // max(4 * n_voxels, 1))))


# ------------------------------------------------------------------------------------ main
def ingest_fmri(
    store: Store,
    niftis: Sequence,
    subjects: Sequence[str],
    *,
    runs: Sequence[str] | None = None,
    params: FmriParams | None = None,
    mask: Any = None,
    mask_params: MaskParams | None = None,
    stimulus: Any = None,
    chunk_trs: int | None = None, block_bytes: int = BLOCK_BYTES, parallel_reads: int = 2, scheduler: Any = "threads",
    provenance: dict | None = None,
) -> IngestResult:
    """Ingest one 4D NIfTI per subject (or per (subject, run)) as an ``fmri`` entry (or return the cached one).

    Parameters
    ----------
    store : Store
    niftis, subjects : 4D NIfTI paths (x, y, z, tr) in one voxel grid, and a subject ID per file
    runs : a run ID per file (None: no runs, the layout before runs). Every subject needs every run
        once; runs lie along ``tr`` in order of first appearance (:mod:`giblet_store.fmri.runs`)
    params : FmriParams (TR, cropping, NaN policy, z-scoring on training TRs: with runs, TRs within
        each run, each run z-scored on its own)
    mask, mask_params : a 3D NIfTI mask path or (x, y, z) bool array; else computed by MaskParams
        (every (subject, run) series votes)
    stimulus : a stimulus entry or key on the fMRI's TR (with runs: a list in run order or
        ``{run: key}``), referenced, never copied; another TR count than its run's warns (PairingWarning)
    chunk_trs, block_bytes, parallel_reads, scheduler : stored chunk TRs (default ~4 MiB chunks),
        bound on one read block, files read at once, Dask scheduler (name or distributed Client)
    provenance : what the files came from (:mod:`giblet_store.fmri.bids`; see :func:`with_provenance`)

    Returns
    -------
    IngestResult
        ``fmri`` (subject, tr, voxel) float32, ``mask`` (x, y, z) bool, ``voxel_ijk`` (voxel, ijk) int32;
        z-scored: ``zscore_mean``/``zscore_std`` (subject, voxel) float32 (subject, run_id, voxel) with runs

    Raises
    ------
    FmriError
        3D input, shapes/affines/TRs/lengths that differ, all-NaN volumes, NaN voxels (policy "error"), a
        bad mask, a stimulus on another TR, runs that do not match the files. ParameterError: bad
        parameters. In every case nothing was written.
    """
    params, mask_params, prov = params or FmriParams(), mask_params or MaskParams(), provenance or {}
    layout = open_layout(niftis, subjects, runs, params)
    tr_s = resolve_tr(layout.series, params.tr_s)
    stims = check_stimuli(store, stimulus, tr_s, layout.runs)
    given = given_mask(mask, layout.series[0])
    given_flat = flat_index(np.argwhere(given), layout.series[0].shape) if given is not None else None
    scan = scan_and_hash(layout.series, layout.labels, layout.series_trs, given_flat, mask_params.std_percentile,
                         mask_params.sample_trs, params.zscore_trs, block_bytes)
    inputs = {**_inputs(layout, scan[0], params, tr_s, given, mask_params, stims), **prov.get("inputs", {})}
    key = prov.get("key") or content_key(inputs)
    if (hit := cache_hit(store, key, "fmri")) is not None:
        return IngestResult(hit, False)
    ds, attrs, c = _build(layout, scan, given_flat, params, mask_params, tr_s, stims, chunk_trs, block_bytes,
                          parallel_reads, prov.get("onsets"))
    ds = _finish(ds, attrs, key, inputs, None if given is not None else mask_params, prov)
    return IngestResult(*write_staged(store, ds, attrs, fmri_encoding(ds, ["fmri"], c), scheduler))


def write_staged(store: Store, ds, attrs: dict, encoding: dict, scheduler) -> tuple[Entry, bool]:
    """The staged write, computing the lazy reads on ``scheduler`` (a name or a distributed Client)."""
    import dask

    ctx = dask.config.set(scheduler=scheduler) if isinstance(scheduler, str) else dask.config.set(scheduler=scheduler.get)
    with ctx:
        return store.write(ds, attrs, encoding)


def _finish(ds, attrs: dict, key: str, inputs: dict, mask_params, prov: dict):
    """The key, inputs and mask rule (``mask_params`` None: a given mask) in ``attrs``; then the provenance."""
    attrs.update(key=key, inputs=inputs, onset_s=inputs["onset_s"], mask_rule="given", mask_params=None)
    if mask_params is not None:
        attrs.update(mask_rule="std_percentile_vote", mask_params=mask_params.to_dict())
    return with_provenance(ds, attrs, prov)


def with_provenance(ds, attrs: dict, prov: dict):
    """Merge what ``prov`` says of the files behind the series: ``key`` (replaced the key), ``inputs`` and
    ``attrs`` (merged), ``sources`` and ``runs`` (merged into each record), ``onsets`` (each run's
    ``onset_s``), ``censored`` (subject, tr) bool (stored as a variable)."""
    attrs.update(prov.get("attrs", {}))
    for rec, more in zip(attrs["sources"], prov.get("sources", [])):
        rec.update(more)
    for rec, more in zip(attrs.get("runs") or [], prov.get("runs", [])):
        rec.update(more)
    if prov.get("censored") is not None:
        ds["censored"] = (("subject", "tr"), np.asarray(prov["censored"], dtype=bool))
        ds["censored"].attrs["description"] = "True: the TR was scrubbed (no part of the cleaning; values 0)"
    return ds


def _build(layout, scan, given_flat, params, mask_params, tr_s, stims, chunk_trs, block_bytes, parallel_reads,
           onsets=None):
    """Passes 2 and 3 (lazily): the final mask, the z-score statistics, the Dataset; its attributes; chunk TRs."""
    for s in layout.series:  # changed since the scan hashed it: refuse before anything is staged
        check_unchanged(s)
    shape = layout.series[0].shape
    mask_flat, dropped = final_mask(shape, layout.labels, given_flat, *scan[1:3], mask_params, params.nan_policy)
    if dropped:
        warnings.warn(f"nan_policy='mask': dropped {dropped} voxel(s) that are NaN/inf at some TR from the mask",
                      UserWarning, stacklevel=3)
    mask3 = mask_flat.reshape(shape, order="F")
    flat = flat_index(np.argwhere(mask3), shape)
    mean = std = None
    n_const = 0
    if params.zscore_trs is not None:
        mean, std, n_const = zscore_stats(layout.series, scan[3], mask_flat, given_flat, flat, params.zscore_trs,
                                          block_bytes)
        _check_stats(layout.series, mean, std)
    c = int(chunk_trs) if chunk_trs else auto_chunk_trs(len(flat), layout.n_trs)
    data = lazy_fmri(layout, flat, mean, std, c, block_bytes, parallel_reads)
    records = _records(layout, stims, tr_s)
    for rec, onset in zip(records, onsets or []):
        if onset is not None:
            rec["onset_s"] = float(onset)
    ds = _dataset(layout, data, mask3, mean, std, records, tr_s)
    attrs = _attrs(layout, ds, tr_s, params, scan, stims, records, zscore_constant_voxels=n_const,
                   n_voxels_dropped_nonfinite=dropped, chunk_trs=c)
    return ds, attrs, c


def _check_stats(series, mean, std) -> None:
    """The z-score statistics (series, voxel) as stored (float32) are finite: each file's scaling is sane."""
    for i, s in enumerate(series):
        with np.errstate(over="ignore"):
            stored = np.stack([mean[i], std[i]]).astype(np.float32)
        proxy = s.img.dataobj
        check_finite_output(stored, s.path, getattr(proxy, "slope", 1.0), getattr(proxy, "inter", 0.0))


def _inputs(layout, digests, params, tr_s, given, mask_params, stims) -> dict:
    """Everything the key covers; an ingest without runs has the inputs (and key) it had before runs."""
    subj = [s for s in layout.subjects for _ in range(layout.n_runs)]
    inputs = {
        "kind": "fmri", "algorithm_version": ALGORITHM_VERSION, "format_version": FORMAT_VERSION,
        "sources": [{"subject": s, "sha256": d} for s, d in zip(subj, digests)],
        "fmri": {**params.to_dict(), "tr_s": tr_s},
        "mask": ({"given": mask_key(given, layout.series[0].affine)} if given is not None
                 else {"computed": mask_params.to_dict()}),
        "stimulus_sha256": stims[0].attrs.get("source_sha256") if stims[0] is not None else None,
        "onset_s": float(stims[0].attrs.get("onset_s", 0.0)) if stims[0] is not None else 0.0,
    }
    if layout.runs is not None:
        for src, run in zip(inputs["sources"], layout.runs * len(layout.subjects)):
            src["run"] = run
        inputs["runs"] = [{"run": r, "n_trs": n, "stimulus_sha256": st.attrs.get("source_sha256") if st else None,
                           "onset_s": float(st.attrs.get("onset_s", 0.0)) if st else 0.0}
                          for r, n, st in zip(layout.runs, layout.run_trs, stims)]
        inputs["stimulus_sha256"], inputs["onset_s"] = None, 0.0
    return inputs


def _records(layout, stims, tr_s) -> list[dict]:
    """Per run (one without runs): ``run``, ``tr_offset``, ``n_trs``, ``onset_s`` (its stimulus')."""
    return [{"run": r, "tr_offset": off, "n_trs": n, "tr_s": tr_s,
             "onset_s": float(st.attrs.get("onset_s", 0.0)) if st is not None else 0.0}
            for r, off, n, st in zip(layout.runs or [DEFAULT_RUN], layout.offsets, layout.run_trs, stims)]


def _dataset(layout, data, mask3, mean, std, records, tr_s):
    """The (not yet written) fmri Dataset: ``fmri``, ``mask``, coordinates, z-score statistics."""
    import xarray as xr

    n_trs = layout.n_trs
    voxel_ijk = np.argwhere(mask3)
    trs = np.arange(n_trs, dtype=np.int64)
    coords = {"subject": np.array(layout.subjects, dtype=object), "tr": trs,
              "voxel": np.arange(len(voxel_ijk), dtype=np.int64),
              "voxel_ijk": (("voxel", "ijk"), voxel_ijk.astype(np.int32))}
    if layout.runs is None:
        coords["tr_start_s"] = (("tr",), tr_start_s(records[0]["onset_s"], tr_s, trs))
    else:
        coords.update(run_coords({"runs": records}, tr_s, trs))
    ds = xr.Dataset({"fmri": (("subject", "tr", "voxel"), data), "mask": (("x", "y", "z"), mask3)}, coords=coords)
    z = mean is not None
    ds["fmri"].attrs.update(description="BOLD signal per mask voxel" + (" (z-scored)" if z else ""),
                            units="z" if z else "scanner units")
    if z:
        if layout.runs is None:
            dims, shp = ("subject", "voxel"), mean.shape
        else:
            dims, shp = ("subject", "run_id", "voxel"), (len(layout.subjects), layout.n_runs, mean.shape[-1])
            ds = ds.assign_coords(run_id=np.array(layout.runs, dtype=object))
        ds["zscore_mean"] = (dims, mean.reshape(shp).astype(np.float32))
        ds["zscore_std"] = (dims, std.reshape(shp).astype(np.float32))
    return ds


def _stimulus_attrs(layout, stims, records: list[dict]) -> dict:
    """Stimulus references (and the TRs that pair), top-level without runs, per run in ``runs`` with them."""
    tr_s = records[0]["tr_s"]
    out: dict = {}
    for rec, st in zip(records, stims):
        if st is None:
            continue
        n_stim, n_run = int(st.attrs.get("n_trs", rec["n_trs"])), rec["n_trs"]
        ref = {"stimulus_key": st.key, "stimulus_kind": st.kind, "stimulus_sha256": st.attrs.get("source_sha256"),
               "stimulus_name": st.attrs.get("source_name"), "paired_trs": [0, min(n_stim, n_run)]}
        if layout.runs is None:
            out.update(ref)
            pairing_warning(n_stim, n_run, tr_s)
        else:
            rec.update(ref)
            pairing_warning(n_stim, n_run, tr_s, run=rec["run"], tr_offset=rec["tr_offset"])
    for rec in records:
        rec.pop("tr_s")
    if layout.runs is not None:
        out.update(runs=records, n_runs=layout.n_runs)
    return out


def _attrs(layout, ds, tr_s, params, scan, stims, records, **more) -> dict:
    """The entry's attributes but its key, inputs and mask rule (``more``: counts and the chunking)."""
    first, z = layout.series[0], params.zscore_trs
    subj = [s for s in layout.subjects for _ in range(layout.n_runs)]
    sources = [{"subject": x, "source_name": file_name_text(s.path), "source_sha256": d, "n_volumes": s.n_volumes}
               for x, s, d in zip(subj, layout.series, scan[0])]
    if layout.runs is not None:
        for src, run in zip(sources, layout.runs * len(layout.subjects)):
            src["run"] = run
    return {
        "kind": "fmri", "tr_s": tr_s, **raw_header_tr(layout.series, params.tr_s), "n_trs": layout.n_trs,
        "n_subjects": len(layout.subjects), "n_voxels": int(ds.sizes["voxel"]), "subjects": layout.subjects,
        "sources": sources,
        "volume_shape": list(first.shape), "voxel_size_mm": list(first.zooms_mm),
        "affine": np.asarray(first.affine).tolist(), "xform_code": first.xform_code,
        "mask_thresholds": [None if not math.isfinite(t) else t for t in scan[4]],
        "normalize": "zscore" if z else "none", "zscore_trs": list(z) if z else None, **more,
        "nan_policy": params.nan_policy, "hrf": "none", "algorithm_version": ALGORITHM_VERSION,
        **_stimulus_attrs(layout, stims, [dict(r) for r in records]),
    }
