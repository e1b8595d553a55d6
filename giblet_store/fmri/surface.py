"""Surface BOLD (GIFTI pairs, CIFTI dtseries) -> one ``fmri`` entry (subject, tr, vertex) float32.

The entry is the NIfTI ingest's (:mod:`giblet_store.fmri.ingest`) with a ``vertex`` dimension in
place of ``voxel``: the same subjects, runs (``run``/``tr_in_run``/``tr_start_s`` and the ``runs``
attribute), TR, stimulus pairing, z-scoring per run on its training TRs, ``censored`` TRs and key.
What replaces the mask:

- ``vertex`` (vertex,) int64 0..n-1, the left hemisphere's vertices then the right's;
- ``hemi`` (vertex,) str "L"/"R" and ``vertex_index`` (vertex,) int64, the vertex on its hemisphere's
  surface (0..n_surface-1), so any (vertex,) or (tr, vertex) array goes back to a func.gii per
  hemisphere (:mod:`giblet_store.fmri.surface_export`);
- ``structure`` (vertex,) str: CIFTI's brain structure (``CIFTI_STRUCTURE_CORTEX_LEFT``), GIFTI's
  ``AnatomicalStructurePrimary`` (``CortexLeft``) or "";
- the ``surface`` attribute: ``space`` (fsaverage6, fsLR, ...), ``format`` (gifti/cifti),
  ``n_surface`` {hemi: vertices of the whole surface} and (CIFTI) ``volume_parts_dropped``
  {structure: grayordinates}: the subcortical voxels of a dtseries are left out.

Every vertex is kept (no mask is computed); vertices non-finite at some TR are an error, or with
``nan_policy="mask"`` dropped (``vertex_index`` keeps the others' positions). Two passes, both
before or inside the staged write: a scan (each series read once: non-finite vertices and the
z-score statistics of the values as stored, cleaned first when a cleaner is given), then the lazy
write (one Dask task per (subject, run), re-reading the run; a file changed since it was hashed is
refused). nibabel decodes a GIFTI whole, so a run is held in memory while it is read (a run of 1,000
TRs on fsaverage6 is 330 MB as float32), and its XML decode peaks near 8x that run's float32 size
(measured: 4 runs of 300 TRs x 2 x 10,242 vertices, 23 MiB each, ingest with z-scoring at ~500 MiB peak
RSS, 17-22 s on 2 shared cores).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import FmriError
from ..params import ALGORITHM_VERSION, content_key
from ..store.core import Store
from ..store.schema import FORMAT_VERSION
from ..store.verify import cache_hit
from ..validate import NanPolicy, file_name_text
from .ingest import FmriParams, IngestResult, auto_chunk_trs, fmri_encoding, with_provenance, write_staged
from .inputs import check_stimuli, layout_of, order_inputs
from .nifti import done
from .runs import DEFAULT_RUN, run_coords
from .surface_read import SurfaceSeries, open_surface, open_surface_pair, part_coords

__all__ = ["ingest_surface", "open_surface_inputs", "is_surface_entry"]

#: (tr, vertex) float64 of one run -> the same cleaned (censored TRs 0); None: values as read
Cleaner = Callable[[int, np.ndarray], np.ndarray]


def is_surface_entry(ds) -> bool:
    """Whether an fmri-side Dataset is on a surface (has a ``vertex`` dimension)."""
    return "vertex" in ds.dims


def _is_gifti(p) -> bool:
    return str(p).endswith(".gii")


def open_surface_inputs(files: Sequence) -> tuple[list, list[SurfaceSeries]]:
    """Plain paths -> one :class:`SurfaceSeries` per (subject, run): func.gii files in L/R pairs (each
    left file followed by its right one, or every left file then every right file in the same
    order), or one .dtseries.nii each. Returns the groups (one item per series) and the series."""
    files = [f for f in files]
    gii = [f for f in files if _is_gifti(f)]
    if gii and len(gii) != len(files):
        raise FmriError("give either func.gii pairs or .dtseries.nii files, not both in one ingest")
    if not gii:
        return files, [open_surface(f) for f in files]
    if len(gii) % 2:
        raise FmriError(f"{len(gii)} func.gii file(s): a surface run needs one file per hemisphere (hemi-L and "
                        "hemi-R), so the count must be even; one hemisphere is missing")
    names = [str(f) for f in gii]
    lefts = [f for f in gii if "hemi-L" in str(f)]
    rights = [f for f in gii if "hemi-R" in str(f)]
    if len(lefts) == len(rights) == len(gii) // 2 and names[: len(lefts)] == [str(f) for f in lefts]:
        pairs = list(zip(lefts, rights))
    else:
        pairs = [(gii[i], gii[i + 1]) for i in range(0, len(gii), 2)]
    return pairs, [open_surface_pair(p) for p in pairs]


def _check_same_surface(series: list[SurfaceSeries]) -> None:
    first = series[0]
    for s in series[1:]:
        if s.space != first.space:
            raise FmriError(f"{s.path.name} is in space {s.space!r} but {first.path.name} in {first.space!r}; one "
                            "entry holds one surface: ingest the spaces apart")
        if s.kind != first.kind:
            raise FmriError(f"{s.path.name} is {s.kind} but {first.path.name} is {first.kind}; one entry holds one "
                            "kind of surface file")
        for a, b in zip(s.parts, first.parts):
            if a.n_surface != b.n_surface or not np.array_equal(a.vertex_index, b.vertex_index):
                raise FmriError(f"{s.path.name} has {len(a.vertex_index)} hemi-{a.hemi} vertices (of {a.n_surface}) "
                                f"but {first.path.name} has {len(b.vertex_index)} (of {b.n_surface}); every "
                                "subject and run must be on the same surface mesh (resample them to one)")


def _check_count(series: list[SurfaceSeries], subjects) -> None:
    """One subject ID per surface run: per func.gii pair (not per file), or per dtseries."""
    n = 1 if isinstance(subjects, str) else len(list(subjects))
    if series and n != len(series):
        what = "func.gii pair(s) (hemi-L + hemi-R)" if series[0].kind == "gifti" else ".dtseries.nii file(s)"
        raise FmriError(f"{len(series)} surface run(s), {what}, but {n} subject ID(s); give one subject ID (and "
                        "one --run) per run, in order: a func.gii pair is one run")


def _tr(series: list[SurfaceSeries], tr_s: float | None) -> float:
    if tr_s is not None:
        return float(tr_s)
    trs = [s.header_tr_s for s in series]
    if any(t is None for t in trs):
        bad = series[trs.index(None)]
        raise FmriError(f"{bad.path.name} records no TR (GIFTI has no standard place for it); give it: "
                        "tr_s=... (CLI: --tr SECONDS), or ingest the BIDS study (--bids), whose sidecars give it")
    if any(not math.isclose(t, trs[0], rel_tol=1e-4) for t in trs):
        raise FmriError(f"the files give different TRs ({sorted(set(trs))}); one entry holds one TR grid")
    return float(trs[0])


def _scan(layout, params: FmriParams, cleaner: Cleaner | None) -> tuple[np.ndarray, np.ndarray | None, Any]:
    """Pass 1: (vertex,) bool kept vertices; per series mean/std (series, kept vertex) or None."""
    n_v = layout.series[0].n_vertices
    bad = np.zeros(n_v, bool)
    for label, s, n in zip(layout.labels, layout.series, layout.series_trs):
        x = s.load()[:n]
        nonfinite = ~np.isfinite(x)
        if nonfinite.all(axis=1).any():
            raise FmriError(f"{s.path.name}: volume {int(np.flatnonzero(nonfinite.all(axis=1))[0])} is NaN/inf "
                            "at every vertex; a TR cannot be dropped without shifting the grid")
        worse = nonfinite.any(axis=0)
        if worse.any() and params.nan_policy == NanPolicy.ERROR:
            raise FmriError(f"subject {label!r} ({s.path.name}): {int(worse.sum())} vertex(es) are NaN/inf at some "
                            "TR; pass nan_policy='mask' (CLI: --nan-policy mask) to leave them out")
        bad |= worse
    keep = ~bad
    if not keep.any():
        raise FmriError("every vertex is NaN/inf at some TR; nothing is left to store")
    if params.zscore_trs is None:
        return keep, None, None
    a, b = params.zscore_trs
    mean, std = [], []
    for j, (s, n) in enumerate(zip(layout.series, layout.series_trs)):  # one run held at a time
        x = _values(s, j, n, keep, cleaner, None)[a:b]
        mean.append(x.mean(axis=0))
        std.append(x.std(axis=0))
        del x
    std = np.stack(std)
    return keep, np.stack(mean), np.where(std == 0, 1.0, std)


def _values(s: SurfaceSeries, i: int, n: int, keep, cleaner, scale) -> np.ndarray:
    """(tr, kept vertex) of series ``i``: read, first ``n`` TRs, cleaned, then z-scored by ``scale``."""
    x = s.load()[:n][:, keep].astype(np.float64)
    if cleaner is not None:
        x = cleaner(i, x)
    if scale is not None:
        x = (x - scale[0]) / scale[1]
    return x


def _read_run(layout, k: int, keep, cleaner, mean, std, _after=None) -> np.ndarray:
    """(1, tr, kept vertex) float32 of series ``k`` (subject-major, then run) as stored."""
    scale = None if mean is None else (mean[k], std[k])
    n = layout.run_trs[k % layout.n_runs]
    return _values(layout.series[k], k, n, keep, cleaner, scale)[None].astype(np.float32)


def _lazy(layout, keep, cleaner, mean, std, chunk_trs: int):
    """(subject, tr, vertex) float32 Dask array in (1, chunk_trs, vertex) chunks: one read per (subject, run),
    in order, each after the previous one finished (a token, not its data), so about two runs are held."""
    import dask
    import dask.array as da

    n_v, prev, rows = int(keep.sum()), None, []
    for i in range(len(layout.subjects)):
        runs = []
        for j in range(layout.n_runs):
            d = dask.delayed(_read_run)(layout, i * layout.n_runs + j, keep, cleaner, mean, std, prev)
            prev = dask.delayed(done)(d)
            runs.append(da.from_delayed(d, shape=(1, layout.run_trs[j], n_v), dtype=np.float32))
        rows.append(da.concatenate(runs, axis=1))
    return da.concatenate(rows, axis=0).rechunk((1, chunk_trs, n_v))


def _records(layout, stims, tr_s, onsets) -> list[dict]:
    recs = []
    for j, (r, off, n, st) in enumerate(zip(layout.runs or [DEFAULT_RUN], layout.offsets, layout.run_trs, stims)):
        onset = float(st.attrs.get("onset_s", 0.0)) if st is not None else 0.0
        if onsets and onsets[j] is not None:
            onset = float(onsets[j])
        rec = {"run": r, "tr_offset": off, "n_trs": n, "onset_s": onset}
        if st is not None:
            rec.update(stimulus_key=st.key, stimulus_kind=st.kind, stimulus_sha256=st.attrs.get("source_sha256"),
                       stimulus_name=st.attrs.get("source_name"),
                       paired_trs=[0, min(int(st.attrs.get("n_trs", n)), n)])
        recs.append(rec)
    return recs


def _dataset(layout, data, keep, mean, std, records, tr_s):
    import xarray as xr

    first = layout.series[0]
    pc = {k: v[keep] for k, v in part_coords(first.parts).items()}
    trs = np.arange(layout.n_trs, dtype=np.int64)
    coords = {"subject": np.array(layout.subjects, dtype=object), "tr": trs,
              "vertex": np.arange(int(keep.sum()), dtype=np.int64), **{k: (("vertex",), v) for k, v in pc.items()}}
    coords.update(run_coords({"runs": records} if layout.runs else {"n_trs": layout.n_trs,
                                                                    "onset_s": records[0]["onset_s"]}, tr_s, trs))
    if layout.runs is None:
        coords = {k: v for k, v in coords.items() if k not in ("run", "tr_in_run")}
    ds = xr.Dataset({"fmri": (("subject", "tr", "vertex"), data)}, coords=coords)
    ds["fmri"].attrs.update(description="BOLD signal per surface vertex" + (" (z-scored)" if mean is not None else ""),
                            units="z" if mean is not None else "scanner units")
    ds["hemi"].attrs.update(description="hemisphere (L, R)", units="1")
    ds["vertex_index"].attrs.update(description="vertex index on its hemisphere's surface", units="1")
    ds["structure"].attrs.update(description="brain structure (CIFTI) or AnatomicalStructurePrimary", units="1")
    if mean is not None:
        dims = ("subject", "vertex") if layout.runs is None else ("subject", "run_id", "vertex")
        shp = (len(layout.subjects),) + (() if layout.runs is None else (layout.n_runs,)) + (mean.shape[-1],)
        if layout.runs is not None:
            ds = ds.assign_coords(run_id=np.array(layout.runs, dtype=object))
        ds["zscore_mean"] = (dims, mean.reshape(shp).astype(np.float32))
        ds["zscore_std"] = (dims, std.reshape(shp).astype(np.float32))
    return ds


def _inputs(layout, params: FmriParams, tr_s: float, stims, extra: dict) -> dict:
    first = layout.series[0]
    subj = [s for s in layout.subjects for _ in range(layout.n_runs)]
    runs = (layout.runs or [None]) * len(layout.subjects)
    return {"kind": "fmri", "layout": "surface", "algorithm_version": ALGORITHM_VERSION,
            "format_version": FORMAT_VERSION, "surface": {"format": first.kind, "space": first.space},
            "sources": [{"subject": x, "run": r, "sha256": list(s.sha256)} for x, r, s in zip(subj, runs,
                                                                                            layout.series)],
            "fmri": {**params.to_dict(), "tr_s": tr_s},
            "stimuli": [None if st is None else st.key for st in stims], **extra}


def _attrs(layout, ds, tr_s, params: FmriParams, records, n_dropped: int, chunk_trs: int) -> dict:
    first, z = layout.series[0], params.zscore_trs
    subj = [s for s in layout.subjects for _ in range(layout.n_runs)]
    sources = []
    for k, (x, s) in enumerate(zip(subj, layout.series)):
        rec = {"subject": x, "source_name": file_name_text(s.path), "source_sha256": s.sha256[0],
               "n_volumes": s.n_volumes, "files": [{"name": file_name_text(f), "sha256": h, "hemi": p.hemi}
                                                   for f, h, p in zip(s.files, s.sha256, s.parts)]}
        if layout.runs is not None:
            rec["run"] = layout.runs[k % layout.n_runs]
        sources.append(rec)
    surface = {"space": first.space, "format": first.kind, "n_surface": {p.hemi: p.n_surface for p in first.parts},
               "volume_parts_dropped": first.dropped}
    out = {"kind": "fmri", "layout": "surface", "surface": surface, "tr_s": tr_s, "n_trs": layout.n_trs,
           "n_subjects": len(layout.subjects), "n_vertices": int(ds.sizes["vertex"]),
           "n_voxels": int(ds.sizes["vertex"]), "subjects": layout.subjects, "sources": sources,
           "normalize": "zscore" if z else "none", "zscore_trs": list(z) if z else None,
           "nan_policy": params.nan_policy,
           "n_vertices_dropped_nonfinite": n_dropped, "chunk_trs": chunk_trs, "hrf": "none",
           "algorithm_version": ALGORITHM_VERSION, "onset_s": records[0]["onset_s"] if layout.runs is None else 0.0}
    if layout.runs is not None:
        out.update(runs=records, n_runs=layout.n_runs)
    else:
        out.update({k: v for k, v in records[0].items() if k.startswith("stimulus") or k == "paired_trs"})
    return out


def ingest_surface(
    store: Store, files: Sequence, subjects: Sequence[str], *, runs: Sequence[str] | None = None,
    params: FmriParams | None = None, stimulus: Any = None, chunk_trs: int | None = None, scheduler: Any = "threads",
    cleaner: Cleaner | None = None, provenance: dict | None = None,
) -> IngestResult:
    """Ingest surface BOLD as an ``fmri`` entry on ``vertex`` (or return the cached one).

    Parameters
    ----------
    store : Store
    files : per (subject, run) a (left, right) func.gii pair or one .dtseries.nii; or a flat list of
        func.gii files that :func:`open_surface_inputs` pairs
    subjects, runs, params, stimulus, chunk_trs, scheduler : as :func:`giblet_store.fmri.ingest.ingest_fmri`
        (no mask: every vertex is kept)
    cleaner : ``cleaner(i, x)`` -> series ``i``'s (tr, vertex) float64 values cleaned (the BIDS ingest's
        denoising); None: stored as read
    provenance : ``key``, ``inputs``, ``attrs``, ``sources``, ``runs``, ``censored`` (as ``ingest_fmri``'s)

    Returns
    -------
    IngestResult
        ``fmri`` (subject, tr, vertex) float32 with ``hemi``, ``vertex_index``, ``structure`` (vertex,).

    Raises
    ------
    FmriError
        Unreadable or empty files, one hemisphere missing, hemispheres, runs or subjects whose vertex
        counts or spaces differ, no TR, NaN vertices (policy "error"). Nothing is written.
    """
    params, prov = params or FmriParams(), provenance or {}
    flat = [f for f in files]
    if flat and all(isinstance(f, (str, bytes)) or hasattr(f, "__fspath__") for f in flat) and _is_gifti(flat[0]):
        _, series = open_surface_inputs(flat)
    else:
        series = [open_surface_pair(f) if isinstance(f, (list, tuple)) else open_surface(f) for f in flat]
    _check_count(series, subjects)
    ordered, subj, run_ids = order_inputs(series, subjects, runs, what="surface")
    _check_same_surface(ordered)
    layout = layout_of(ordered, subj, run_ids, params)
    tr_s = _tr(ordered, params.tr_s)
    stims = check_stimuli(store, stimulus, tr_s, layout.runs)
    inputs = {**_inputs(layout, params, tr_s, stims, {}), **prov.get("inputs", {})}
    key = prov.get("key") or content_key(inputs)
    if (hit := cache_hit(store, key, "fmri")) is not None:
        return IngestResult(hit, False)
    keep, mean, std = _scan(layout, params, cleaner)
    dropped = int((~keep).sum())
    if dropped:
        warnings.warn(f"nan_policy='mask': left out {dropped} vertex(es) that are NaN/inf at some TR",
                      UserWarning, stacklevel=2)
    c = int(chunk_trs) if chunk_trs else auto_chunk_trs(int(keep.sum()), layout.n_trs)
    records = _records(layout, stims, tr_s, prov.get("onsets"))
    ds = _dataset(layout, _lazy(layout, keep, cleaner, mean, std, c), keep, mean, std, records, tr_s)
    attrs = _attrs(layout, ds, tr_s, params, records, dropped, c)
    attrs.update(key=key, inputs=inputs)
    ds = with_provenance(ds, attrs, prov)
    return IngestResult(*write_staged(store, ds, attrs, fmri_encoding(ds, ["fmri"], c), scheduler))
