"""Denoising at ingest: fMRIPrep confounds, detrending and filters, with nilearn's own functions.

:class:`CleanParams` says what to remove; :func:`run_confounds` turns it into one run's confound
matrix and sample mask with ``nilearn.interfaces.fmriprep.load_confounds`` (strategies) and the
confounds TSV (column names); :func:`clean_run` applies ``nilearn.signal.clean`` to the run.

The run is cleaned **in voxel blocks**: its volumes are first copied (volume block by volume block)
into an uncompressed float32 NIfTI beside nothing else (a temporary file the ingest reads like any
input), then each block of voxels is read across all TRs, cleaned and written back. Every step of
``signal.clean`` (detrending, the butterworth filters, the projection on the confounds, the
interpolation of censored volumes before filtering) acts on each voxel's time series alone, so the
blocks give what one call on the whole (tr, voxel) matrix gives, while memory holds one block.

Censored (scrubbed) volumes stay in the run, so the TR grid does not move: they take no part in the
cleaning (nilearn's ``sample_mask``) and hold 0 afterwards; the ingest marks them in the ``censored``
(subject, tr) variable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..errors import FmriError, ParameterError
from ..params import Params
from ..validate import choice, finite, flag, int_in_range
from .nifti import BLOCK_BYTES, NiftiSeries, iter_blocks

__all__ = ["STRATEGIES", "CleanParams", "RunConfounds", "run_confounds", "clean_run", "clean_block", "clean_values"]

#: nilearn's load_confounds strategies
STRATEGIES = ("motion", "high_pass", "wm_csf", "global_signal", "compcor", "ica_aroma", "tedana", "scrub",
              "non_steady_state")
_DETAIL = ("basic", "power2", "derivatives", "full")


@dataclass(frozen=True)
class CleanParams(Params):
    """What is removed from each run before it is stored (all of it in the entry's key).

    Parameters
    ----------
    confounds : strategies of nilearn's ``load_confounds`` (motion, high_pass, wm_csf, global_signal,
        compcor, scrub, non_steady_state, ...) and/or column names of the confounds TSV
    motion, wm_csf, global_signal, compcor, n_compcor, scrub, fd_threshold, std_dvars_threshold :
        ``load_confounds``' options of the same names (its defaults)
    detrend : remove a linear trend (``signal.clean``'s ``detrend``)
    high_pass_hz, low_pass_hz : butterworth filter cut-offs in Hz (None: no filter)
    """

    name: ClassVar[str] = "clean"
    confounds: tuple[str, ...] = ()
    motion: str = "full"
    wm_csf: str = "basic"
    global_signal: str = "basic"
    compcor: str = "anat_combined"
    n_compcor: str = "all"
    scrub: int = 5
    fd_threshold: float = 0.5
    std_dvars_threshold: float = 1.5
    detrend: bool = False
    high_pass_hz: float | None = None
    low_pass_hz: float | None = None

    def __post_init__(self):
        c = (self.confounds,) if isinstance(self.confounds, str) else tuple(self.confounds)
        if any(not isinstance(x, str) or not x.strip() for x in c) or len(set(c)) != len(c):
            raise ParameterError(f"confounds must be distinct strategy or column names, got {list(c)!r}")
        object.__setattr__(self, "confounds", c)
        for name in ("motion", "wm_csf", "global_signal"):
            object.__setattr__(self, name, choice(name, getattr(self, name), _DETAIL))
        n = str(self.n_compcor)
        if n != "all" and not n.isdigit():
            raise ParameterError(f"n_compcor must be 'all' or a count, got {self.n_compcor!r}")
        object.__setattr__(self, "n_compcor", n)
        object.__setattr__(self, "scrub", int_in_range("scrub", self.scrub, 0))
        object.__setattr__(self, "fd_threshold", finite("fd_threshold", self.fd_threshold, positive=True))
        object.__setattr__(self, "std_dvars_threshold",
                           finite("std_dvars_threshold", self.std_dvars_threshold, positive=True))
        object.__setattr__(self, "detrend", flag("detrend", self.detrend))
        for name in ("high_pass_hz", "low_pass_hz"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, finite(name, getattr(self, name), positive=True))
        if self.high_pass_hz and self.low_pass_hz and self.high_pass_hz >= self.low_pass_hz:
            raise ParameterError(f"high_pass_hz={self.high_pass_hz:g} must be below low_pass_hz={self.low_pass_hz:g}")

    @property
    def active(self) -> bool:
        """Whether anything is removed (False: the runs are stored as read)."""
        return bool(self.confounds or self.detrend or self.high_pass_hz or self.low_pass_hz)

    @property
    def strategies(self) -> tuple[str, ...]:
        return tuple(c for c in self.confounds if c in STRATEGIES)

    def check_filters(self, tr_s: float) -> None:
        """The cut-offs must lie below the Nyquist frequency of the TR."""
        nyquist = 0.5 / tr_s
        for name in ("high_pass_hz", "low_pass_hz"):
            v = getattr(self, name)
            if v is not None and v >= nyquist:
                raise ParameterError(f"{name}={v:g} Hz is not below the Nyquist frequency {nyquist:g} Hz of "
                                     f"TR {tr_s:g} s; give a lower cut-off")


@dataclass(frozen=True)
class RunConfounds:
    """One run's confounds as used: ``matrix`` (tr, k) float64 or None, column ``names``, and
    ``censored`` (tr,) bool (True: scrubbed, no part of the cleaning)."""

    matrix: np.ndarray | None
    names: list[str]
    censored: np.ndarray

    @property
    def sample_mask(self) -> np.ndarray | None:
        return None if not self.censored.any() else np.flatnonzero(~self.censored)


def _read_tsv(path: Path):
    import pandas as pd

    try:
        return pd.read_csv(path, sep="\t", na_values=["n/a"])
    except (OSError, ValueError) as e:
        raise FmriError(f"{path}: cannot read the confounds TSV ({e}); give fMRIPrep's desc-confounds_timeseries.tsv")


def run_confounds(params: CleanParams, bold: Path, tsv: Path | None, n_volumes: int, images=None) -> RunConfounds:
    """The confounds of one run (``bold``: fMRIPrep's preprocessed BOLD, ``tsv``: its confounds file;
    ``images``: what load_confounds is given instead of ``bold``, e.g. a surface run's [left, right] func.gii)."""
    none = np.zeros(n_volumes, bool)
    if not params.confounds:
        return RunConfounds(None, [], none)
    if tsv is None:
        raise FmriError(f"{bold.name}: no desc-confounds_timeseries.tsv beside it; confounds need fMRIPrep's "
                        "derivatives (--derivatives fmriprep), or leave --confounds out")
    df = _read_tsv(tsv)
    if len(df) != n_volumes:
        raise FmriError(f"{tsv.name} has {len(df)} rows but {bold.name} has {n_volumes} volumes; the confounds "
                        "file must have one row per volume (is it the same run's?)")
    columns = [c for c in params.confounds if c not in STRATEGIES]
    unknown = [c for c in columns if c not in df.columns]
    if unknown:
        has = ", ".join(map(str, df.columns[:12])) + (", ..." if len(df.columns) > 12 else "")
        raise FmriError(f"{tsv.name}: unknown confound {unknown[0]!r}: neither a load_confounds strategy "
                        f"({', '.join(STRATEGIES)}) nor a column of the file (it has {has}); fix --confounds")
    parts, censored = [], none
    if params.strategies:
        frame, mask = _load_confounds(params, images or str(bold), tsv)
        if frame is not None and frame.shape[1]:
            parts.append(frame)
        if mask is not None:
            censored = np.ones(n_volumes, bool)
            censored[np.asarray(mask, dtype=np.int64)] = False
    if columns:
        sub = df[columns].astype(np.float64)
        parts.append(sub.fillna(sub.mean()))  # fMRIPrep leaves derivatives' first row n/a
    if not parts:
        return RunConfounds(None, [], censored)
    import pandas as pd

    frame = pd.concat(parts, axis=1)
    frame = frame.loc[:, ~frame.columns.duplicated()]
    return RunConfounds(frame.to_numpy(np.float64), [str(c) for c in frame.columns], censored)


def _load_confounds(params: CleanParams, bold, tsv: Path):
    from nilearn.interfaces.fmriprep import load_confounds

    n = params.n_compcor if params.n_compcor == "all" else int(params.n_compcor)
    try:
        return load_confounds([str(b) for b in bold] if isinstance(bold, list) else str(bold), strategy=params.strategies, motion=params.motion, wm_csf=params.wm_csf,
                              global_signal=params.global_signal, compcor=params.compcor, n_compcor=n,
                              scrub=params.scrub, fd_threshold=params.fd_threshold,
                              std_dvars_threshold=params.std_dvars_threshold)
    except (ValueError, KeyError, FileNotFoundError) as e:
        raise FmriError(f"{tsv.name}: nilearn's load_confounds refused strategy {list(params.strategies)}: {e}; "
                        "fix --confounds (or the derivatives)") from None


def clean_block(x: np.ndarray, conf: RunConfounds, params: CleanParams, tr_s: float) -> np.ndarray:
    """``nilearn.signal.clean`` of (tr, voxel) ``x``: (kept tr, voxel) float64 (every TR when none is censored)."""
    from nilearn import signal

    return signal.clean(x, detrend=params.detrend, standardize=None, confounds=conf.matrix,
                        sample_mask=conf.sample_mask, filter="butterworth", low_pass=params.low_pass_hz,
                        high_pass=params.high_pass_hz, t_r=tr_s)


def clean_values(x: np.ndarray, conf: RunConfounds, params: CleanParams, tr_s: float, name: str) -> np.ndarray:
    """(tr, column) float64 ``x`` cleaned as :func:`clean_run` cleans a run held in memory; censored TRs 0."""
    y = np.zeros_like(x, dtype=np.float64)
    try:
        y[~conf.censored] = clean_block(x, conf, params, tr_s)
    except ValueError as e:  # e.g. a filter longer than the run
        raise FmriError(f"{name}: nilearn.signal.clean refused the run ({len(x)} volumes, "
                        f"{int((~conf.censored).sum())} uncensored): {e}; use fewer filters or a longer run") from None
    return y


def _empty_nifti(path: Path, series: NiftiSeries, n: int, tr_s: float) -> int:
    """An uncompressed float32 NIfTI of the series' grid and ``n`` volumes, zero-filled; its data offset."""
    import nibabel as nib

    hdr = nib.Nifti1Header()
    hdr.set_data_shape((*series.shape, n))
    hdr.set_data_dtype(np.float32)
    hdr.set_qform(series.affine, code=max(series.xform_code, 1))
    hdr.set_sform(series.affine, code=max(series.xform_code, 1))
    hdr.set_zooms((*series.zooms_mm, float(tr_s)))
    hdr.set_xyzt_units("mm", "sec")
    hdr["vox_offset"] = 352
    with open(path, "wb") as f:
        hdr.write_to(f)
        f.write(b"\0" * (352 - f.tell()))
        f.truncate(352 + 4 * n * int(np.prod(series.shape)))
    return 352


def _mapped(out: Path, offset: int, shape: tuple[int, int]) -> np.memmap:
    """The (voxel, tr) float32 data of the scratch file, mapped for one block (unmapped by the caller)."""
    return np.memmap(out, dtype=np.float32, mode="r+", offset=offset, shape=shape, order="F")


def clean_run(series: NiftiSeries, conf: RunConfounds, params: CleanParams, tr_s: float, out: Path,
              block_bytes: int = BLOCK_BYTES) -> Path:
    """Write the cleaned run to ``out`` (uncompressed NIfTI) in voxel blocks; censored volumes hold 0.

    The file is mapped anew for each block and unmapped after it, so the resident memory is one
    block (a mapping kept open would count every page it has touched).
    """
    n_t, n_v = series.n_volumes, int(np.prod(series.shape))
    offset = _empty_nifti(out, series, n_t, tr_s)
    for t0, block in iter_blocks(series, 0, n_t, block_bytes):  # (k, voxel) rows -> columns t0:t0+k
        mm = _mapped(out, offset, (n_v, n_t))
        mm[:, t0 : t0 + block.shape[0]] = block.T
        mm.flush()
        del mm
    kept = np.flatnonzero(~conf.censored)
    step = max(1, int(block_bytes // (8 * 4 * max(n_t, 1))))  # a few float64 copies of (tr, step)
    for a in range(0, n_v, step):
        b = min(n_v, a + step)
        mm = _mapped(out, offset, (n_v, n_t))
        x = np.asarray(mm[a:b, :], dtype=np.float64).T
        if x.any():  # background: every step of clean is linear, zeros stay zeros
            y = np.zeros_like(x)
            try:
                y[kept] = clean_block(x, conf, params, tr_s)
            except ValueError as e:  # e.g. a filter longer than the run
                raise FmriError(f"{series.path.name}: nilearn.signal.clean refused the run ({n_t} volumes, "
                                f"{len(kept)} uncensored): {e}; use fewer filters or a longer run") from None
            mm[a:b, :] = y.T.astype(np.float32)
            mm.flush()
        del mm
    return out


def scratch_dir(base: str | os.PathLike | None = None):
    """A temporary folder for cleaned runs (removed when the ingest ends, whatever happens)."""
    import tempfile

    return tempfile.TemporaryDirectory(prefix="giblet-clean-", dir=base)
