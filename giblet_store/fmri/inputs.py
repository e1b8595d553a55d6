"""The inputs of an fMRI ingest, opened and checked before anything is read or written.

:func:`open_layout` opens one 4D NIfTI per subject (or per (subject, run)) and checks that they
form one grid: the same voxel grid and affine, and per run the same number of volumes in every
subject. :func:`resolve_tr` takes the TR from the parameters or the headers; :func:`check_stimuli`
checks each run's stimulus entry against that TR; :func:`given_mask` loads a given mask.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import FmriError, ParameterError
from ..grid import exact
from .nifti import NiftiSeries, load_mask, open_series
from ..store.core import Entry, Store

__all__ = ["Layout", "open_layout", "order_inputs", "layout_of", "resolve_tr", "raw_header_tr", "check_stimuli", "given_mask", "mask_key"]


@dataclass(frozen=True)
class Layout:
    """The series of an ingest, subject-major then run: ``series[i * n_runs + j]`` is subject i, run j.

    ``runs`` is None for an ingest without runs (the layout before runs: one run, no run coordinates).
    """

    subjects: list[str]
    runs: list[str] | None
    series: list[NiftiSeries]
    run_trs: list[int]

    @property
    def n_runs(self) -> int:
        return len(self.run_trs)

    @property
    def n_trs(self) -> int:
        return int(sum(self.run_trs))

    @property
    def offsets(self) -> list[int]:
        return [int(x) for x in np.cumsum([0] + self.run_trs[:-1])]

    @property
    def series_trs(self) -> list[int]:
        """TRs used from each series."""
        return self.run_trs * len(self.subjects)

    @property
    def labels(self) -> list[str]:
        """Each series' subject (and run) for messages."""
        if self.runs is None:
            return list(self.subjects)
        return [f"{s} run {r}" for s in self.subjects for r in self.runs]


def _as_list(x) -> list:
    return [x] if isinstance(x, (str, bytes)) or hasattr(x, "__fspath__") else list(x)


def _order(niftis: list, subjects: list[str], runs: list | None) -> tuple[list, list[str], list[str] | None]:
    """The files ordered subject-major then run; every subject must have every run once."""
    if runs is None:
        bad = [s for s in subjects if not isinstance(s, str) or not s.strip()]
        if bad:
            raise FmriError(f"subject IDs must be distinct non-empty strings, got {subjects!r}")
        if len(set(subjects)) != len(subjects):
            twice = sorted({s for s in subjects if subjects.count(s) > 1})
            raise FmriError(
                f"subject IDs must be distinct, got {subjects!r} ({twice[0]!r} more than once); for several runs of "
                f"one subject add --run (runs=[...]: a run ID per file), e.g. --subject {twice[0]} {twice[0]} "
                "--run 1 2")
        return niftis, subjects, None
    runs = _as_list(runs)
    if len(runs) != len(niftis):
        raise FmriError(f"{len(niftis)} NIfTI file(s) but {len(runs)} run ID(s); give one run ID per file, in order "
                        "(e.g. two subjects of two runs: --subject s1 s1 s2 s2 --run 1 2 1 2)")
    runs = [str(r) for r in runs]
    if any(not isinstance(s, str) or not s.strip() for s in subjects) or any(not r.strip() for r in runs):
        raise FmriError(f"subject and run IDs must be non-empty strings, got subjects {subjects!r}, runs {runs!r}")
    pairs = list(zip(subjects, runs))
    if len(set(pairs)) != len(pairs):
        twice = sorted({p for p in pairs if pairs.count(p) > 1})
        raise FmriError(f"(subject, run) {twice[0]} is given more than once; give one NIfTI per (subject, run)")
    subj_ids, run_ids = list(dict.fromkeys(subjects)), list(dict.fromkeys(runs))
    missing = [(s, r) for s in subj_ids for r in run_ids if (s, r) not in pairs]
    if missing:
        raise FmriError(f"subject {missing[0][0]!r} has no NIfTI for run {missing[0][1]!r}; every subject needs "
                        f"every run ({run_ids}) once: {len(missing)} (subject, run) pair(s) are missing")
    at = {p: i for i, p in enumerate(pairs)}
    return [niftis[at[(s, r)]] for s in subj_ids for r in run_ids], subj_ids, run_ids


def _same_grid(series: list[NiftiSeries]) -> None:
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


def _single_run_trs(series: list[NiftiSeries], n_trs: int | None) -> int:
    counts = [s.n_volumes for s in series]
    if n_trs is not None:
        short = [(s.path.name, c) for s, c in zip(series, counts) if c < n_trs]
        if short:
            raise FmriError(f"n_trs={n_trs} but {short[0][0]} has only {short[0][1]} volumes")
        return n_trs
    if len(set(counts)) > 1:
        listing = ", ".join(f"{s.path.name}: {c}" for s, c in zip(series, counts))
        raise FmriError(
            f"the subjects have different numbers of volumes ({listing}); pass n_trs={min(counts)} "
            f"(CLI: --n-trs {min(counts)}) to keep the first {min(counts)} of each"
        )
    return counts[0]


def _run_trs(series: list[NiftiSeries], runs: list[str], n_trs: int | None) -> list[int]:
    if n_trs is not None:
        raise FmriError(f"n_trs={n_trs} crops an ingest without runs; with runs each run keeps its own length "
                        "(crop the files themselves, or leave n_trs out)")
    out = []
    for j, run in enumerate(runs):
        mine = series[j :: len(runs)]
        counts = [s.n_volumes for s in mine]
        if len(set(counts)) > 1:
            listing = ", ".join(f"{s.path.name}: {c}" for s, c in zip(mine, counts))
            raise FmriError(f"run {run!r}: the subjects' NIfTIs have different numbers of volumes ({listing}); "
                            "every subject's scan of one run must have the same length (crop the longer files)")
        out.append(counts[0])
    return out


def order_inputs(files: Sequence, subjects: Sequence[str], runs: Sequence[str] | None, what: str = "NIfTI"):
    """``(files, subject IDs, run IDs)`` ordered subject-major then run, checked (one file per (subject, run))."""
    files = _as_list(files)
    subjects = [subjects] if isinstance(subjects, str) else list(subjects)
    if not files:
        raise FmriError(f"no fMRI file given; give one 4D {what} per subject")
    if len(subjects) != len(files):
        raise FmriError(f"{len(files)} {what} file(s) but {len(subjects)} subject ID(s); give one ID per file, in order")
    return _order(files, subjects, runs)


def layout_of(series: list, subjects: list[str], runs: list[str] | None, params) -> Layout:
    """The :class:`Layout` of opened ``series`` (ordered by :func:`order_inputs`): run lengths, z-score range."""
    run_trs = [_single_run_trs(series, params.n_trs)] if runs is None else _run_trs(series, runs, params.n_trs)
    z = params.zscore_trs
    if z is not None and z[1] > min(run_trs):
        where = "the series" if runs is None else f"the shortest run ({min(run_trs)} TRs; z-scoring is per run)"
        raise ParameterError(f"zscore_trs={z} reaches past the {min(run_trs)} TRs of {where}; "
                             f"give stop <= {min(run_trs)}")
    return Layout([str(s) for s in subjects], runs, series, run_trs)


def open_layout(niftis: Sequence, subjects: Sequence[str], runs: Sequence[str] | None, params) -> Layout:
    """Open and check the series; ``params`` is the ingest's FmriParams (``n_trs``, ``zscore_trs``).

    Raises
    ------
    FmriError
        No file, a subject (or run) list that does not match the files, a missing or repeated
        (subject, run), different shapes/affines, different lengths within a run.
    """
    niftis, subjects, runs = order_inputs(niftis, subjects, runs)
    series = [open_series(p) for p in niftis]
    _same_grid(series)
    return layout_of(series, subjects, runs, params)


def resolve_tr(series: list[NiftiSeries], tr_s: float | None) -> float:
    """The given TR (warning where a header disagrees), else the headers' one TR."""
    if tr_s is not None:
        for s in series:
            if s.header_tr_s is not None and s.header_tr_note is None and not math.isclose(
                s.header_tr_s, tr_s, rel_tol=1e-3
            ):
                warnings.warn(
                    f"{s.path.name}: the header says TR {s.header_tr_s:g} s; using the given tr_s={tr_s:g} s",
                    UserWarning,
                    stacklevel=4,
                )
        return tr_s
    trs = []
    for s in series:
        if s.header_tr_s is None:
            raise FmriError(f"{s.header_tr_note}; e.g. tr_s=1.5 (CLI: --tr 1.5)")
        if s.header_tr_note:
            warnings.warn(s.header_tr_note, UserWarning, stacklevel=4)
        trs.append(s.header_tr_s)
    if any(not math.isclose(t, trs[0], rel_tol=1e-4) for t in trs):
        listing = ", ".join(f"{s.path.name}: {t:g} s" for s, t in zip(series, trs))
        raise FmriError(f"the subjects' headers give different TRs ({listing}); one entry holds one TR grid")
    return float(trs[0])


def raw_header_tr(series: list[NiftiSeries], tr_s: float | None) -> dict:
    """``{"tr_s_header_float32": pixdim[4] as stored}`` when the TR came from the first header, else ``{}``."""
    if tr_s is not None or series[0].header_tr_s is None:
        return {}
    try:
        return {"tr_s_header_float32": float(series[0].img.header.get_zooms()[3])}
    except (AttributeError, IndexError, TypeError, ValueError):
        return {}


def _check_stimulus(store: Store, stimulus, tr_s: float, where: str = "") -> Entry | None:
    if stimulus is None:
        return None
    stim = store.get(stimulus)
    stim_tr = stim.attrs.get("tr_s")
    if stim.kind in ("fmri", "predictions", "evaluation") or not isinstance(stim_tr, (int, float)):
        raise FmriError(f"{where}entry {stim.key[:16]} ({stim.kind}) is not a per-TR stimulus entry; give codes, "
                        "mel, embeddings or features")
    if exact(stim_tr) != exact(tr_s):  # exact fractions of the decimals (header TRs are float32_decimal)
        raise FmriError(
            f"{where}TR mismatch: the fMRI TR is {tr_s:g} s but stimulus entry {stim.key[:16]} ({stim.kind}) is on a "
            f"{stim_tr:g} s grid. Extract the stimulus on TrGrid(tr_s={tr_s:g}), or correct the fMRI TR (tr_s)"
        )
    return stim


def check_stimuli(store: Store, stimulus: Any, tr_s: float, runs: list[str] | None) -> list[Entry | None]:
    """One stimulus entry (or None) per run: a key/entry, or per run a list in run order or a {run: key} dict."""
    if isinstance(stimulus, (list, tuple)) and runs is None:
        if len(stimulus) != 1:
            raise FmriError(f"{len(stimulus)} stimulus entries but no runs; one stimulus per run needs run IDs "
                            "(runs=[...], CLI: --run 1 2 ...)")
        stimulus = stimulus[0]
    if runs is None:
        return [_check_stimulus(store, stimulus, tr_s)]
    if stimulus is None:
        return [None] * len(runs)
    if isinstance(stimulus, dict):
        given = {str(k): v for k, v in stimulus.items()}
        unknown = sorted(set(given) - set(runs))
        if unknown:
            raise FmriError(f"stimulus names run(s) {unknown} that are not among the runs {runs}")
        stimulus = [given.get(r) for r in runs]
    stimulus = [stimulus] if isinstance(stimulus, (str, Entry)) else list(stimulus)
    if len(stimulus) != len(runs):
        raise FmriError(f"{len(stimulus)} stimulus entr(ies) for {len(runs)} runs {runs}; give one stimulus per run, "
                        "in run order (CLI: --stimulus KEY1 KEY2 ...)")
    return [_check_stimulus(store, s, tr_s, f"run {r!r}: ") for s, r in zip(stimulus, runs)]


def mask_key(mask: np.ndarray, affine: np.ndarray) -> str:
    """sha256 of a given mask and its affine (what the key records of it)."""
    import hashlib

    h = hashlib.sha256()
    h.update(repr(tuple(mask.shape)).encode())
    h.update(np.packbits(mask.ravel(order="C")).tobytes())
    h.update(np.round(np.asarray(affine, dtype=np.float64), 6).tobytes())
    return h.hexdigest()


def given_mask(mask, series: NiftiSeries) -> np.ndarray | None:
    """(x, y, z) bool from a mask file or array, checked against the series' grid; None: compute one."""
    if mask is None:
        return None
    if not isinstance(mask, np.ndarray):
        return load_mask(mask, series.shape, series.affine)
    if mask.shape != series.shape:
        raise FmriError(f"mask array has shape {mask.shape}; the fMRI volumes are {series.shape}")
    if not mask.any():
        raise FmriError("the mask array selects no voxel; give a mask with at least one True voxel")
    return mask.astype(bool)
