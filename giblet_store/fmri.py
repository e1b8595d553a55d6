"""4D NIfTI series of several subjects -> one ``fmri`` entry (subject, tr, voxel) float32.

The series are read volume block by volume block (:mod:`giblet_store.nifti`), never as a whole:
peak memory is a few volumes plus one output chunk, whatever the number of TRs or subjects.

Three streamed passes, all before or inside the staged write (so bad input leaves the store as it was):

1. **scan**, one read of each file (:mod:`giblet_store.ingest_scan`): its sha256 (the key; a cache
   hit stops here), non-finite values, (for a computed mask) each subject's temporal std over its
   first ``MaskParams.sample_trs`` TRs and (for a given mask) the z-score moments;
2. **statistics** (only for z-scoring with a computed mask, whose voxels pass 1 decides): per-voxel
   mean/std over the training TRs, reading only those TRs and gathering only mask voxels;
3. **write**: one Dask task per output chunk ``(1 subject, chunk_trs, voxel)``; the tasks of one
   subject read in order, so a ``.nii.gz`` is decompressed once. Mask voxels are gathered from the
   stored values before scaling (:mod:`giblet_store.nifti_read`).

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

from .validate import int_in_range, tr_seconds
from .conventions import pairing_warning, tr_start_s
from .errors import ParameterError
from .grid import exact
from .nifti import (
    BLOCK_BYTES, FmriError, NiftiSeries, done, flat_index, fmri_entry_of, load_mask, open_series, read_masked,
    to_nifti, voxel_moments,
)
from .ingest_scan import scan_and_hash
from .params import ALGORITHM_VERSION, Params, content_key
from .schema import FORMAT_VERSION
from .store import Entry, Store, default_encoding

__all__ = [
    "FmriError", "FmriParams", "MaskParams", "IngestResult", "ingest_fmri", "fmri_entry_of", "to_nifti",
    "fmri_encoding",
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
        p, f, n = self.std_percentile, self.min_subject_fraction, self.sample_trs
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 100:
            raise ParameterError(f"std_percentile must be in [0, 100), got {p!r}")
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1:
            raise ParameterError(f"min_subject_fraction must be in (0, 1], got {f!r}")
        if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2):
            raise ParameterError(f"sample_trs must be an integer >= 2 or None (all TRs), got {n!r}")
        object.__setattr__(self, "std_percentile", float(p))
        object.__setattr__(self, "min_subject_fraction", float(f))
        if n is not None:
            object.__setattr__(self, "sample_trs", int(n))


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
            object.__setattr__(self, "tr_s", tr_seconds(self.tr_s))
        object.__setattr__(self, "n_trs", int_in_range("n_trs", self.n_trs, 1, optional=True))
        z = _int_pair(self.zscore_trs, "zscore_trs")
        if z is not None and z[1] - z[0] < 2:
            raise ParameterError(f"zscore_trs={z} holds {z[1] - z[0]} TR; a std needs at least 2")
        object.__setattr__(self, "zscore_trs", z)
        if self.nan_policy not in ("error", "mask"):
            raise ParameterError(f"nan_policy must be 'error' or 'mask', got {self.nan_policy!r}")


@dataclass(frozen=True)
class IngestResult:
    """The fmri entry and whether it was written now (False: a cache hit, nothing was read)."""

    entry: Entry
    created: bool


# ------------------------------------------------------------------------------------ inputs
def _resolve_tr(series: list[NiftiSeries], params: FmriParams) -> float:
    if params.tr_s is not None:
        for s in series:
            if s.header_tr_s is not None and s.header_tr_note is None and not math.isclose(
                s.header_tr_s, params.tr_s, rel_tol=1e-3
            ):
                warnings.warn(
                    f"{s.path.name}: the header says TR {s.header_tr_s:g} s; using the given tr_s={params.tr_s:g} s",
                    UserWarning,
                    stacklevel=3,
                )
        return params.tr_s
    trs = []
    for s in series:
        if s.header_tr_s is None:
            raise FmriError(f"{s.header_tr_note}; e.g. tr_s=1.5 (CLI: --tr 1.5)")
        if s.header_tr_note:
            warnings.warn(s.header_tr_note, UserWarning, stacklevel=3)
        trs.append(s.header_tr_s)
    if any(not math.isclose(t, trs[0], rel_tol=1e-4) for t in trs):
        listing = ", ".join(f"{s.path.name}: {t:g} s" for s, t in zip(series, trs))
        raise FmriError(f"the subjects' headers give different TRs ({listing}); one entry holds one TR grid")
    return float(trs[0])


def _raw_header_tr(series: list[NiftiSeries], params: FmriParams) -> dict:
    """``{"tr_s_header_float32": pixdim[4] as stored}`` when the TR came from the first header, else ``{}``."""
    if params.tr_s is not None or series[0].header_tr_s is None:
        return {}
    try:
        return {"tr_s_header_float32": float(series[0].img.header.get_zooms()[3])}
    except (AttributeError, IndexError, TypeError, ValueError):
        return {}


def _open_all(niftis: Sequence, subjects: Sequence[str], params: FmriParams) -> tuple[list[NiftiSeries], int]:
    niftis = [niftis] if isinstance(niftis, (str, bytes)) or hasattr(niftis, "__fspath__") else list(niftis)
    subjects = [subjects] if isinstance(subjects, str) else list(subjects)
    if not niftis:
        raise FmriError("no fMRI file given; give one 4D NIfTI per subject")
    if len(subjects) != len(niftis):
        raise FmriError(f"{len(niftis)} NIfTI file(s) but {len(subjects)} subject ID(s); give one ID per file, in order")
    bad = [s for s in subjects if not isinstance(s, str) or not s.strip()]
    if bad or len(set(subjects)) != len(subjects):
        raise FmriError(f"subject IDs must be distinct non-empty strings, got {subjects!r}")
    series = [open_series(p) for p in niftis]
    first = series[0]
    for s in series[1:]:
        if s.shape != first.shape:
            raise FmriError(
                f"{s.path.name} has volumes of shape {s.shape} but {first.path.name} has {first.shape}; every "
                "subject must be in the same voxel grid (normalise them to one template first)"
            )
        if not np.allclose(s.affine, first.affine, atol=1e-4):
            raise FmriError(
                f"{s.path.name} and {first.path.name} have different affines (voxel -> mm):\n"
                f"{np.round(s.affine, 4)}\nvs\n{np.round(first.affine, 4)}\nevery subject must be in the same space"
            )
    counts = [s.n_volumes for s in series]
    if params.n_trs is not None:
        short = [(s.path.name, c) for s, c in zip(series, counts) if c < params.n_trs]
        if short:
            raise FmriError(f"n_trs={params.n_trs} but {short[0][0]} has only {short[0][1]} volumes")
        n_trs = params.n_trs
    else:
        if len(set(counts)) > 1:
            listing = ", ".join(f"{s.path.name}: {c}" for s, c in zip(series, counts))
            raise FmriError(
                f"the subjects have different numbers of volumes ({listing}); pass n_trs={min(counts)} "
                f"(CLI: --n-trs {min(counts)}) to keep the first {min(counts)} of each"
            )
        n_trs = counts[0]
    if params.zscore_trs is not None and params.zscore_trs[1] > n_trs:
        raise ParameterError(
            f"zscore_trs={params.zscore_trs} reaches past the {n_trs} TRs of the series; give stop <= {n_trs}"
        )
    return series, n_trs


def _mask_key(mask: np.ndarray, affine: np.ndarray) -> str:
    import hashlib

    h = hashlib.sha256()
    h.update(repr(tuple(mask.shape)).encode())
    h.update(np.packbits(mask.ravel(order="C")).tobytes())
    h.update(np.round(np.asarray(affine, dtype=np.float64), 6).tobytes())
    return h.hexdigest()


def _given_mask(mask, series: NiftiSeries) -> np.ndarray | None:
    if mask is None:
        return None
    if not isinstance(mask, np.ndarray):
        return load_mask(mask, series.shape, series.affine)
    if mask.shape != series.shape:
        raise FmriError(f"mask array has shape {mask.shape}; the fMRI volumes are {series.shape}")
    if not mask.any():
        raise FmriError("the mask array selects no voxel; give a mask with at least one True voxel")
    return mask.astype(bool)


def _check_stimulus(store: Store, stimulus, tr_s: float) -> Entry | None:
    if stimulus is None:
        return None
    stim = store.get(stimulus)
    stim_tr = stim.attrs.get("tr_s")
    if stim.kind in ("fmri", "predictions", "evaluation") or not isinstance(stim_tr, (int, float)):
        raise FmriError(f"entry {stim.key[:16]} ({stim.kind}) is not a per-TR stimulus entry; give codes, mel, "
                        "embeddings or features")
    if exact(stim_tr) != exact(tr_s):  # exact fractions of the decimals (header TRs are float32_decimal)
        raise FmriError(
            f"TR mismatch: the fMRI TR is {tr_s:g} s but stimulus entry {stim.key[:16]} ({stim.kind}) is on a "
            f"{stim_tr:g} s grid. Extract the stimulus on TrGrid(tr_s={tr_s:g}), or correct the fMRI TR (tr_s)"
        )
    return stim


def _final_mask(shape, subjects, given_flat, votes, nonfinite, mask_params, nan_policy) -> tuple[np.ndarray, int]:
    """(voxel_flat,) bool mask after the vote (computed) and the NaN policy; and the voxels dropped."""
    n_flat = int(np.prod(shape))
    if given_flat is not None:
        mask_flat = np.zeros(n_flat, bool)
        mask_flat[given_flat] = True
    else:
        need = max(1, math.ceil(mask_params.min_subject_fraction * len(subjects) - 1e-9))
        mask_flat = votes >= need
        if not mask_flat.any():
            raise FmriError(
                f"the computed mask is empty: no voxel has a temporal std above the {mask_params.std_percentile:g}th "
                f"percentile in {need} of {len(subjects)} subject(s). Are the series constant? Give a mask instead"
            )
    dropped_flat = np.zeros(n_flat, bool)
    for subj, (packed, partial) in zip(subjects, nonfinite):
        if given_flat is not None:
            bad = np.unpackbits(packed, count=n_flat).astype(bool) & mask_flat
        else:  # the vote skipped them; a voxel NaN at every TR is background, one NaN at some TRs is not
            bad = np.unpackbits(partial, count=n_flat).astype(bool)
        if bad.any():
            ijk = np.unravel_index(np.flatnonzero(bad)[:3], shape, order="F")
            where = [tuple(int(c[i]) for c in ijk) for i in range(len(ijk[0]))]
            if nan_policy == "error":
                raise FmriError(
                    f"subject {subj!r}: {int(bad.sum())} voxel(s) of the "
                    f"{'mask' if given_flat is not None else 'brain (finite at other TRs)'} are NaN/inf at some TR (e.g. voxel "
                    f"ijk {where}); pass nan_policy='mask' (CLI: --nan-policy mask) to drop them from the mask, "
                    "or give a mask without them"
                )
            dropped_flat |= bad  # a voxel bad in two subjects is one voxel dropped
            mask_flat &= ~bad
    dropped = int(dropped_flat.sum())
    if dropped and not mask_flat.any():
        raise FmriError("every voxel of the mask is NaN/inf at some TR; nothing is left to store")
    return mask_flat, dropped


def _lazy_fmri(series, n_trs, flat, mean, std, chunk_trs, block_bytes, parallel_reads):
    """(subject, tr, voxel) float32 Dask array, one task per (1, chunk_trs, voxel) chunk.

    The reads form ``parallel_reads`` chains (subject i on chain i % parallel_reads, its chunks in
    order), so at most that many blocks are being read at once whatever the number of subjects or
    threads, and a .nii.gz is decompressed once, front to back.
    """
    import dask
    import dask.array as da

    chains: list = [None] * max(1, int(parallel_reads))
    per_subject = []
    for i, s in enumerate(series):
        blocks = []
        mi = None if mean is None else mean[i]
        si = None if std is None else std[i]
        for a in range(0, n_trs, chunk_trs):
            b = min(n_trs, a + chunk_trs)
            d = dask.delayed(read_masked)(s, a, b, flat, mi, si, block_bytes, chains[i % len(chains)])
            chains[i % len(chains)] = dask.delayed(done)(d)
            blocks.append(da.from_delayed(d, shape=(1, b - a, len(flat)), dtype=np.float32))
        per_subject.append(da.concatenate(blocks, axis=1))
    return da.concatenate(per_subject, axis=0)


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
    params: FmriParams | None = None,
    mask: Any = None,
    mask_params: MaskParams | None = None,
    stimulus: Entry | str | None = None,
    chunk_trs: int | None = None,
    block_bytes: int = BLOCK_BYTES,
    parallel_reads: int = 2,
    scheduler: Any = "threads",
) -> IngestResult:
    """Ingest one 4D NIfTI per subject as an ``fmri`` entry (or return the cached one).

    Parameters
    ----------
    store : Store
    niftis : paths of 4D NIfTI series (x, y, z, tr), one per subject, all in one voxel grid
    subjects : subject IDs, one per file, in the same order
    params : FmriParams (TR, cropping, z-scoring on a training range, NaN policy)
    mask : path of a 3D NIfTI mask, (x, y, z) bool array, or None to compute one with ``mask_params``
    mask_params : MaskParams (default: the reference rule, std > 10th percentile in >= half the subjects)
    stimulus : a stimulus entry (codes, mel, embeddings, features) or its key; its TR must equal the
        fMRI's. Recorded by reference (``stimulus_key``, ``stimulus_sha256``), never copied.
    chunk_trs : TRs per stored chunk (default: ~4 MiB chunks)
    block_bytes : bound on one block of full volumes (float64) read at a time
    parallel_reads : files read at once while writing (memory: about this many blocks plus chunks)
    scheduler : Dask scheduler for the write ("threads", "sync", or a distributed Client)

    Returns
    -------
    IngestResult
        ``entry.open()`` holds ``fmri`` (subject, tr, voxel) float32, ``mask`` (x, y, z) bool,
        ``voxel_ijk`` (voxel, ijk) int32 and, when z-scored, ``zscore_mean``/``zscore_std``
        (subject, voxel) float32 in the original units.

    Raises
    ------
    FmriError
        3D input, different shapes/affines/TRs/lengths, all-NaN volumes, NaN voxels with
        ``nan_policy="error"``, a bad or empty mask, a TR that differs from the stimulus'.
    ParameterError
        Invalid parameters. In every case nothing was written.
    """
    import dask
    import xarray as xr

    params = params or FmriParams()
    mask_params = mask_params or MaskParams()
    series, n_trs = _open_all(niftis, subjects, params)
    subjects = [subjects] if isinstance(subjects, str) else [str(s) for s in subjects]
    tr_s = _resolve_tr(series, params)
    first = series[0]
    stim = _check_stimulus(store, stimulus, tr_s)
    given = _given_mask(mask, first)

    # pass 1, one read of each file: its sha256 (for the key) and the scan (errors leave the store untouched)
    given_ijk = np.argwhere(given) if given is not None else None
    given_flat = flat_index(given_ijk, first.shape) if given is not None else None
    z = params.zscore_trs
    digests, votes, nonfinite, moments, thresholds = scan_and_hash(
        series, subjects, n_trs, given_flat, mask_params.std_percentile, mask_params.sample_trs, z, block_bytes)
    sources = [{"subject": subj, "source_name": s.path.name, "source_sha256": d,
                "n_volumes": s.n_volumes} for subj, s, d in zip(subjects, series, digests)]
    mask_input = ({"given": _mask_key(given, first.affine)} if given is not None
                  else {"computed": mask_params.to_dict()})
    inputs = {
        "kind": "fmri",
        "algorithm_version": ALGORITHM_VERSION,
        "format_version": FORMAT_VERSION,
        "sources": [{"subject": x["subject"], "sha256": x["source_sha256"]} for x in sources],
        "fmri": {**params.to_dict(), "tr_s": tr_s},
        "mask": mask_input,
        "stimulus_sha256": stim.attrs.get("source_sha256") if stim is not None else None,
        "onset_s": float(stim.attrs.get("onset_s", 0.0)) if stim is not None else 0.0,
    }
    key = content_key(inputs)
    if (hit := store.lookup(key, "fmri")) is not None:
        return IngestResult(hit, False)

    mask_flat, dropped = _final_mask(first.shape, subjects, given_flat, votes, nonfinite, mask_params,
                                     params.nan_policy)
    if dropped:
        warnings.warn(f"nan_policy='mask': dropped {dropped} voxel(s) that are NaN/inf at some TR from the mask",
                      UserWarning, stacklevel=2)
    mask3 = mask_flat.reshape(first.shape, order="F")
    voxel_ijk = np.argwhere(mask3)
    flat = flat_index(voxel_ijk, first.shape)
    n_vox = len(flat)

    # pass 2: z-score statistics of the training TRs
    mean = std = None
    n_const = 0
    if z is not None:
        stats = []
        for s, m in zip(series, moments):
            if m is not None:  # accumulated by the scan over the given mask's voxels
                keep = mask_flat[given_flat]
                stats.append(tuple(v[keep] for v in m.mean_std()))
            else:
                stats.append(voxel_moments([s], flat, z, block_bytes)[0].mean_std())
        mean, std = np.stack([m for m, _ in stats]), np.stack([s for _, s in stats])
        n_const = int((std == 0).sum())
        std = np.where(std == 0, 1.0, std)

    # pass 3 (inside the staged write): the lazy (subject, tr, voxel) array
    c = int(chunk_trs) if chunk_trs else auto_chunk_trs(n_vox, n_trs)
    data = _lazy_fmri(series, n_trs, flat, mean, std, c, block_bytes, parallel_reads)
    ds = xr.Dataset(
        {
            "fmri": (("subject", "tr", "voxel"), data),
            "mask": (("x", "y", "z"), mask3),
        },
        coords={"subject": np.array(subjects, dtype=object), "tr": np.arange(n_trs, dtype=np.int64),
                "tr_start_s": (("tr",), tr_start_s(inputs["onset_s"], tr_s, np.arange(n_trs))),
                "voxel": np.arange(n_vox, dtype=np.int64),
                "voxel_ijk": (("voxel", "ijk"), voxel_ijk.astype(np.int32))},
    )
    ds["fmri"].attrs.update(description="BOLD signal per mask voxel" + (" (z-scored)" if z else ""),
                            units="z" if z else "scanner units")
    if z is not None:
        ds["zscore_mean"] = (("subject", "voxel"), mean.astype(np.float32))
        ds["zscore_std"] = (("subject", "voxel"), std.astype(np.float32))
    attrs = {
        "kind": "fmri",
        "key": key,
        "tr_s": tr_s,
        **_raw_header_tr(series, params),
        "onset_s": inputs["onset_s"],
        "n_trs": n_trs,
        "n_subjects": len(subjects),
        "n_voxels": n_vox,
        "subjects": subjects,
        "sources": sources,
        "volume_shape": list(first.shape),
        "voxel_size_mm": list(first.zooms_mm),
        "affine": np.asarray(first.affine).tolist(),
        "xform_code": first.xform_code,
        "mask_rule": "given" if given is not None else "std_percentile_vote",
        "mask_params": None if given is not None else mask_params.to_dict(),
        "mask_thresholds": [None if not math.isfinite(t) else t for t in thresholds],
        "normalize": "zscore" if z else "none",
        "zscore_trs": list(z) if z else None,
        "zscore_constant_voxels": n_const,
        "nan_policy": params.nan_policy,
        "n_voxels_dropped_nonfinite": dropped,
        "chunk_trs": c,
        "hrf": "none",
        "algorithm_version": ALGORITHM_VERSION,
        "inputs": inputs,
    }
    if stim is not None:
        attrs.update(stimulus_key=stim.key, stimulus_kind=stim.kind,
                     stimulus_sha256=stim.attrs.get("source_sha256"), stimulus_name=stim.attrs.get("source_name"))
        n_stim = int(stim.attrs.get("n_trs", n_trs))
        attrs["paired_trs"] = [0, min(n_stim, n_trs)]  # the TRs that have both stimulus and BOLD
        pairing_warning(n_stim, n_trs, tr_s)
    ctx = dask.config.set(scheduler=scheduler) if isinstance(scheduler, str) else dask.config.set(scheduler=scheduler.get)
    with ctx:
        entry, created = store.write(ds, attrs, fmri_encoding(ds, ["fmri"], c))
    return IngestResult(entry, created)
