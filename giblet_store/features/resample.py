"""Resampling per-TR arrays between TR grids, by stimulus time.

TR ``i`` of a grid covers stimulus time ``[onset + i*tr, onset + (i+1)*tr)``. Three methods:

``linear`` (continuous features)
    A TR's value stands for its interval, so values sit at TR *centres*; the target's centres are
    linearly interpolated from the source's (held flat beyond the first/last centre; NaN for target
    TRs that do not overlap the source's span). Going coarser (target TR > source TR) first
    low-passes along ``tr`` with a zero-phase windowed-sinc FIR (``scipy.signal.firwin``, Hamming,
    cutoff at the target's Nyquist frequency, ``2 * ceil(4 * tr_out / tr_in) + 1`` taps, edges
    extended with the edge value) so energy above the new Nyquist does not alias.
``previous`` (codes, and any categorical array)
    Target TR ``j`` takes the source TR that contains its start (the nearest earlier TR start),
    in exact rational arithmetic; -1 (integers) or NaN (floats) outside the source.
``stretch`` (the reference project's behaviour, kept for comparison)
    Ignores stimulus time: ``n_trs`` positions ``np.linspace(0, n - 1, n_trs)`` over the source,
    linearly interpolated (floats) or rounded to the nearest TR (integers). The output's ``tr_s``
    is the nominal ``tr * n / n_trs``.

All methods work on (tr, ...) arrays of any trailing shape in one vectorised operation (no loop
over feature columns) and stay lazy on Dask arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, ClassVar

import numpy as np

from ..errors import ParameterError
from ..grid import TrGrid, exact
from ..params import Params
from ..validate import ResampleMethod, flag, int_in_range, is_choice

__all__ = ["Resample", "RESAMPLE_METHODS", "resample_plan", "resample_array", "antialias_taps", "target_trs"]

#: The methods' names, from :class:`~giblet_store.validate.ResampleMethod` (the one list).
RESAMPLE_METHODS = tuple(m.value for m in ResampleMethod)


@dataclass(frozen=True)
class Resample(Params):
    """Resample a per-TR entry to another TR grid.

    Parameters
    ----------
    tr_s : float or None
        Target TR (s), 0 < tr_s <= 60. None only with ``method="stretch"``.
    onset_s : float
        Stimulus time at which the target's TR 0 starts.
    n_trs : int or None
        Target TR count; None: as many as cover the source's span. Required by ``stretch``.
    method : {"auto", "linear", "previous", "stretch"}
        "auto": linear for float arrays, previous for integer codes.
    antialias : bool
        Low-pass before ``linear`` when going coarser.

    Examples
    --------
    >>> Resample(2.0).to_dict()
    {'tr_s': 2.0, 'onset_s': 0.0, 'n_trs': None, 'method': 'auto', 'antialias': True}
    """

    name: ClassVar[str] = "resample"
    tr_s: float | None = None
    onset_s: float = 0.0
    n_trs: int | None = None
    method: str = "auto"
    antialias: bool = True

    def __post_init__(self):
        if not is_choice(self.method, ResampleMethod):
            raise ParameterError(f"unknown resampling method {self.method!r}; choose one of {', '.join(RESAMPLE_METHODS)}")
        object.__setattr__(self, "antialias", flag("antialias", self.antialias))
        if self.method == "stretch":
            if self.tr_s is not None:
                raise ParameterError(
                    "method='stretch' sets the TR from n_trs (tr * n / n_trs); give n_trs and leave tr_s unset"
                )
            n = int_in_range("n_trs", self.n_trs, 1, hint="; method='stretch' needs n_trs, the TR count to stretch to")
            object.__setattr__(self, "n_trs", n)
            on = self.onset_s
            TrGrid(1.0, on)  # validates onset
            object.__setattr__(self, "onset_s", float(on))
            return
        if self.tr_s is None:
            raise ParameterError("give the target TR in seconds (tr_s, CLI --resample-tr), e.g. Resample(2.0)")
        try:
            grid = TrGrid(self.tr_s, self.onset_s, self.n_trs)
        except ParameterError as exc:
            raise ParameterError(f"cannot resample to that grid: {exc}") from None
        if grid.n_trs == 0:
            raise ParameterError("n_trs=0 would make an empty entry; give a positive n_trs or None")
        object.__setattr__(self, "tr_s", grid.tr_s)
        object.__setattr__(self, "onset_s", grid.onset_s)
        object.__setattr__(self, "n_trs", grid.n_trs)

    def resolve(self, integer: bool) -> str:
        """The method used for an array of integer (True) or float (False) dtype."""
        if self.method == "auto":
            return "previous" if integer else "linear"
        if self.method == "linear" and integer:
            raise ParameterError(
                "linear interpolation of integer codes is meaningless (codes are category indices); "
                "resample codes with method='previous' (or 'auto'), or derive embeddings first"
            )
        return self.method


@dataclass(frozen=True)
class ResamplePlan:
    """Where each target TR reads the source: indices, weights, and the target grid.

    Attributes
    ----------
    method : str (resolved)
    i0, i1 : (tr_out,) int64 source indices; w : (tr_out,) float64 weight of ``i1``
    valid : (tr_out,) bool, False outside the source (NaN / -1 there)
    tr_s, onset_s, n_trs : the target grid
    taps : (tap,) float64 anti-aliasing filter (empty when none); cutoff : its cutoff as a
        fraction of the source's Nyquist frequency (NaN when none)
    """

    method: str
    i0: np.ndarray
    i1: np.ndarray
    w: np.ndarray
    valid: np.ndarray
    tr_s: float
    onset_s: float
    n_trs: int
    taps: np.ndarray
    cutoff: float = float("nan")

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"method": self.method, "tr_s": self.tr_s, "onset_s": self.onset_s, "n_trs": self.n_trs}
        if self.taps.size:
            d["antialias_filter"] = {
                "design": "scipy.signal.firwin", "window": "hamming", "numtaps": int(self.taps.size),
                "cutoff_of_source_nyquist": self.cutoff, "phase": "zero", "edges": "edge value",
            }
        return d


def antialias_taps(tr_in: float, tr_out: float) -> np.ndarray:
    """(tap,) float64 zero-phase low-pass with cutoff at the target Nyquist; empty when not coarser."""
    from scipy.signal import firwin

    if tr_out <= tr_in * (1 + 1e-12):
        return np.zeros(0)
    m = math.ceil(4 * tr_out / tr_in)
    return firwin(2 * m + 1, tr_in / tr_out, window="hamming")


def _span_trs(n_in: int, tr_in: Fraction, on_in: Fraction, tr_out: Fraction, on_out: Fraction) -> int:
    end = on_in + n_in * tr_in
    q = (end - on_out) / tr_out
    return max(0, -((-q.numerator) // q.denominator))


def target_trs(n_in: int, tr_in: float, onset_in: float, params: Resample) -> int:
    """How many TRs the resampled series will have (cheap: nothing is allocated), as :func:`resample_plan` makes it."""
    if params.method == "stretch" or params.tr_s is None:
        return int(params.n_trs)
    if params.n_trs is not None:
        return int(params.n_trs)
    return _span_trs(n_in, exact(tr_in), exact(onset_in), exact(params.tr_s), exact(params.onset_s))


def resample_plan(n_in: int, tr_in: float, onset_in: float, params: Resample, integer: bool) -> ResamplePlan:
    """Build the source indices and weights for every target TR.

    Parameters
    ----------
    n_in : source TR count; tr_in, onset_in : source grid (s)
    params : Resample
    integer : whether the array is integer (codes)

    Raises
    ------
    ParameterError
        The target grid does not overlap the source; linear on integers.
    """
    method = params.resolve(integer)
    if n_in < 1:
        raise ParameterError("the source has no TRs; nothing to resample")
    if method == "stretch":
        n_out = params.n_trs
        pos = np.linspace(0.0, n_in - 1, n_out)
        if integer:
            i0 = np.rint(pos).astype(np.int64)
            w = np.zeros(n_out)
        else:
            i0 = np.minimum(np.floor(pos).astype(np.int64), n_in - 1)
            w = pos - i0
        i1 = np.minimum(i0 + 1, n_in - 1)
        return ResamplePlan("stretch", i0, i1, w, np.ones(n_out, bool), float(tr_in) * n_in / n_out,
                            float(onset_in), n_out, np.zeros(0))
    tr_i, on_i, tr_o, on_o = exact(tr_in), exact(onset_in), exact(params.tr_s), exact(params.onset_s)
    n_out = params.n_trs if params.n_trs is not None else _span_trs(n_in, tr_i, on_i, tr_o, on_o)
    if n_out < 1:
        raise ParameterError(
            f"the target grid (onset {params.onset_s:g} s) starts after the source ends "
            f"({float(on_i + n_in * tr_i):g} s); nothing to resample"
        )
    j = np.arange(n_out, dtype=np.int64)
    if method == "previous":
        # exact: floor((on_o + j tr_o - on_i) / tr_i) with every time as an integer over a common denominator
        den = math.lcm(tr_i.denominator, on_i.denominator, tr_o.denominator, on_o.denominator)
        a = int((on_o - on_i) * den)
        num = a + j * int(tr_o * den)
        i0 = num // int(tr_i * den)
        valid = (i0 >= 0) & (i0 < n_in)
        i0 = np.clip(i0, 0, n_in - 1)
        return ResamplePlan("previous", i0, i0, np.zeros(n_out), valid, float(tr_o), float(on_o), n_out, np.zeros(0))
    # linear, at TR centres
    start_out = float(on_o) + j * float(tr_o)
    centre_out = start_out + 0.5 * float(tr_o)
    valid = (start_out < float(on_i + n_in * tr_i)) & (start_out + float(tr_o) > float(on_i))  # overlaps the source
    pos = np.clip((centre_out - float(on_i)) / float(tr_i) - 0.5, 0.0, n_in - 1)
    i0 = np.minimum(np.floor(pos).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    taps = antialias_taps(float(tr_i), float(tr_o)) if params.antialias else np.zeros(0)
    cutoff = float(tr_i / tr_o) if taps.size else float("nan")
    return ResamplePlan("linear", i0, i1, pos - i0, valid, float(tr_o), float(on_o), n_out, taps, cutoff)


def _lowpass(x, taps: np.ndarray, axis: int):
    """Zero-phase FIR along ``axis`` with edge-value extension, lazily (causal convolution, shifted)."""
    import dask.array as da

    from .hrf import _convolve_dask

    m = (len(taps) - 1) // 2
    pad = [(0, 0)] * x.ndim
    pad[axis] = (m, m)
    xp = da.pad(x.astype(np.float64), pad, mode="edge")
    y = _convolve_dask(xp, taps, axis, np.float64)
    n = x.shape[axis]
    return y[(slice(None),) * axis + (slice(2 * m, 2 * m + n),)]


def resample_array(x, plan: ResamplePlan, axis: int = 0, fill=None):
    """Apply a :class:`ResamplePlan` along ``axis`` of a numpy or Dask array, vectorised.

    Parameters
    ----------
    x : (tr, ...) array (``axis`` is the tr axis)
    plan : ResamplePlan
    fill : value outside the source (default NaN for floats, -1 for integers)

    Returns
    -------
    (tr_out, ...) array, same dtype (floats computed in float64 and cast back); Dask stays lazy.
    """
    import dask.array as da

    lazy = isinstance(x, da.Array)
    xd = x if lazy else da.from_array(np.asarray(x), chunks=-1)
    integer = np.dtype(xd.dtype).kind in "iub"
    fill = (-1 if integer else np.nan) if fill is None else fill
    shape = [1] * xd.ndim
    shape[axis] = plan.n_trs
    valid = plan.valid.reshape(shape)
    if plan.method == "linear" or (plan.method == "stretch" and not integer):
        src = _lowpass(xd, plan.taps, axis) if plan.taps.size else xd.astype(np.float64)
        a = da.take(src, plan.i0, axis=axis)
        b = da.take(src, plan.i1, axis=axis)
        w = plan.w.reshape(shape)
        out = a * (1.0 - w) + b * w
        out = da.where(valid, out, fill).astype(xd.dtype)
    else:
        out = da.where(valid, da.take(xd, plan.i0, axis=axis), np.asarray(fill, dtype=xd.dtype))
    return out if lazy else out.compute()
