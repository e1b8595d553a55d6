"""Haemodynamic response: SPM and Glover double-gamma kernels, FIR delays, causal lazy convolution.

The BOLD signal at time t depends on the stimulus *before* t. Convolution here is causal:
``y[t] = sum_k h[k] x[t - k]`` with ``h[0]`` at lag 0, so an impulse at TR t peaks 4-6 s later, never
earlier (the reference project used ``mode="same"`` and put the peak 9 s before the stimulus).

Kernel sampling (a choice the literature leaves open; this is what :func:`hrf_kernel` does)
------------------------------------------------------------------------------------------
``g(t)`` is the double-gamma curve (:func:`hrf_curve`). The kernel on a TR grid is sampled at
*exact multiples of the TR*: ``h[k] = g(k * tr - onset)`` for ``k = 0 .. ceil(length / tr) - 1``.
With ``oversampling = N > 1`` each tap is instead the mean of ``N`` sub-samples
``g(k * tr + j * tr / N - onset)``, ``j = 0..N-1`` (a left Riemann integral of ``g`` over
``[k tr, (k+1) tr)``). The taps are then normalised to sum to 1 (as nilearn does), so a constant
feature stays constant after the kernel has filled. nilearn's ``spm_hrf(t_r, oversampling)`` is
*not* sampled at multiples of the TR: its grid is ``linspace(0, length, rint(length / dt))`` (for
``t_r=1.5, oversampling=1``: 21 points 1.6 s apart) shifted one sample (``loc=dt``); the tests
evaluate :func:`hrf_curve` on nilearn's own grid and agree with it to 1e-6.

FIR (:class:`Fir`) is the alternative many encoding-model users prefer: copies of the features
delayed by whole TRs (like voxelwise_tutorials' ``Delayer``), stored along a ``delay`` dimension
placed right after ``tr``; ``stack(feature=("delay", ...))`` gives Delayer's delay-major layout.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..validate import HrfModel, finite, int_in_range, is_choice, positive_seconds
from ..errors import ParameterError
from ..params import Params

__all__ = [
    "Hrf",
    "Fir",
    "HRF_MODELS",
    "hrf_curve",
    "hrf_kernel",
    "convolve_causal",
    "delay",
]

#: Double-gamma parameters of each model (nilearn's / SPM's values), one per :class:`~giblet_store.validate.HrfModel`.
HRF_MODELS: dict[str, dict[str, float]] = {
    HrfModel.SPM.value: dict(peak_delay_s=6.0, undershoot_delay_s=16.0, peak_dispersion=1.0,
                undershoot_dispersion=1.0, ratio=0.167),
    HrfModel.GLOVER.value: dict(peak_delay_s=6.0, undershoot_delay_s=12.0, peak_dispersion=0.9,
                   undershoot_dispersion=0.9, ratio=0.48),
}
_MAX_OVERSAMPLING = 1000
#: Why HRF on integer codes is refused, and what to do instead.
INTEGER_CODES_MESSAGE = (
    "refusing to HRF-convolve integer codes: codes are category indices, so convolving or averaging "
    "them as numbers is meaningless. Derive embeddings first (store.derive(entry, Embeddings()), CLI "
    "`giblet-store derive STORE KEY --embeddings`) and convolve those; ask for the reference project's "
    "convolve-round-clip explicitly (reference_codes=True, CLI --reference-codes) only to compare with it"
)
_MAX_DELAY = 10_000


@dataclass(frozen=True)
class Hrf(Params):
    """A double-gamma haemodynamic response model and how it is sampled on a TR grid.

    Parameters
    ----------
    model : {"spm", "glover"}
        Fills the shape parameters left as None with that model's values (:data:`HRF_MODELS`).
    peak_delay_s, undershoot_delay_s : float
        Delay of the response and of the undershoot (s); shape = delay / dispersion.
    peak_dispersion, undershoot_dispersion : float
        Scale (s) of the two gamma densities.
    ratio : float
        Undershoot amplitude relative to the peak's, >= 0.
    length_s : float
        Kernel support (s): ``ceil(length_s / tr)`` taps. Must not exceed the series.
    oversampling : int
        1 samples the curve at exact multiples of the TR; N averages N sub-samples per TR.
    onset_s : float
        Shift of the response (s), >= 0 (a negative shift would make it start before the stimulus).

    Examples
    --------
    >>> Hrf("glover").to_dict()["ratio"]
    0.48
    """

    name: ClassVar[str] = "hrf"
    model: str = "spm"
    peak_delay_s: float | None = None
    undershoot_delay_s: float | None = None
    peak_dispersion: float | None = None
    undershoot_dispersion: float | None = None
    ratio: float | None = None
    length_s: float = 32.0
    oversampling: int = 1
    onset_s: float = 0.0

    def __post_init__(self):
        if not isinstance(self.model, str) or not is_choice(self.model.lower(), HrfModel):
            raise ParameterError(
                f"unknown HRF model {self.model!r}; choose one of {', '.join(sorted(HRF_MODELS))} "
                "(or Fir(delays=...) for FIR delays)"
            )
        model = self.model.lower()
        object.__setattr__(self, "model", model)
        for field, default in HRF_MODELS[model].items():
            v = getattr(self, field)
            v = default if v is None else finite(field, v, positive=field != "ratio", minimum=0.0)
            object.__setattr__(self, field, float(v))
        object.__setattr__(self, "length_s", finite("length_s", self.length_s, positive=True))
        object.__setattr__(self, "onset_s", finite("onset_s", self.onset_s, minimum=0.0))
        os_ = int_in_range("oversampling", self.oversampling, 1, _MAX_OVERSAMPLING, hint=" (sub-samples per TR)")
        object.__setattr__(self, "oversampling", os_)
        if self.onset_s >= self.length_s:
            raise ParameterError(f"onset_s={self.onset_s:g} s must be shorter than length_s={self.length_s:g} s")

    def n_taps(self, tr_s: float) -> int:
        """Kernel length in TRs: ``ceil(length_s / tr_s)``."""
        return max(1, math.ceil(round(self.length_s / float(tr_s), 9)))

    def kernel(self, tr_s: float) -> np.ndarray:
        """(tap,) float64 kernel on a TR grid; see :func:`hrf_kernel`."""
        return hrf_kernel(self, tr_s)


@dataclass(frozen=True)
class Fir(Params):
    """FIR model: the features delayed by whole TRs, one copy per delay.

    Parameters
    ----------
    delays : tuple of int
        Non-negative, distinct TR delays, e.g. ``(1, 2, 3, 4)``; 0 is the undelayed copy.

    Examples
    --------
    >>> Fir((1, 2, 3, 4)).max_delay
    4
    """

    name: ClassVar[str] = "fir"
    delays: tuple = (1, 2, 3, 4)

    def __post_init__(self):
        d = self.delays
        if isinstance(d, (str, bytes)) or not hasattr(d, "__iter__"):
            raise ParameterError(f"delays must be a list of whole TRs such as [1, 2, 3, 4], got {d!r}")
        d = tuple(d)
        if not d:
            raise ParameterError("delays is empty; give at least one whole-TR delay, e.g. [1, 2, 3, 4]")
        for v in d:
            int_in_range(f"each FIR delay in {list(d)}", v, hint=": FIR delays are whole TRs. For sub-TR shifts "
                         "resample first or use an Hrf with onset_s")
            if v < 0:
                raise ParameterError(
                    f"FIR delay {v} is negative: it would use the future stimulus; give delays >= 0"
                )
            if v > _MAX_DELAY:
                raise ParameterError(f"FIR delay {v} TRs is implausibly long (> {_MAX_DELAY}); check the units")
        if len(set(d)) != len(d):
            raise ParameterError(f"FIR delays must be distinct, got {list(d)}")
        object.__setattr__(self, "delays", tuple(int(v) for v in d))

    @property
    def max_delay(self) -> int:
        return max(self.delays)


# ------------------------------------------------------------------------------------- kernels
def hrf_curve(t_s: np.ndarray, hrf: Hrf | None = None) -> np.ndarray:
    """The continuous double-gamma curve ``g(t - onset)`` (not normalised).

    Parameters
    ----------
    t_s : (n,) float, seconds after the stimulus
    hrf : Hrf (default SPM)

    Returns
    -------
    (n,) float64, 0 for ``t <= onset``.
    """
    from scipy.stats import gamma

    hrf = hrf or Hrf()
    t = np.asarray(t_s, dtype=np.float64) - hrf.onset_s
    peak = gamma.pdf(t, hrf.peak_delay_s / hrf.peak_dispersion, scale=hrf.peak_dispersion)
    under = gamma.pdf(t, hrf.undershoot_delay_s / hrf.undershoot_dispersion, scale=hrf.undershoot_dispersion)
    return peak - hrf.ratio * under


def hrf_kernel(hrf: Hrf, tr_s: float) -> np.ndarray:
    """The kernel on a TR grid: taps at exact multiples of ``tr_s`` (or their N-sample means).

    Parameters
    ----------
    hrf : Hrf
    tr_s : float, seconds

    Returns
    -------
    (tap,) float64, ``ceil(length_s / tr_s)`` taps summing to 1; ``h[0]`` is lag 0.
    """
    tr = positive_seconds("tr_s", tr_s)
    n, os_ = hrf.n_taps(tr), hrf.oversampling
    t = (np.arange(n)[:, None] + np.arange(os_)[None, :] / os_) * tr
    h = hrf_curve(t.ravel(), hrf).reshape(n, os_).mean(axis=1)
    total = h.sum()
    if not np.isfinite(total) or abs(total) < 1e-12:
        raise ParameterError(
            f"the HRF kernel sums to {total:g} at tr_s={tr:g} s with length_s={hrf.length_s:g} s; "
            "lengthen length_s so it covers the response peak (about 5 s)"
        )
    return h / total


# --------------------------------------------------------------------------------- convolution
def _axis_of(x, axis) -> tuple[int, str | None]:
    import xarray as xr

    if isinstance(x, xr.DataArray):
        if isinstance(axis, str):
            if axis not in x.dims:
                raise ParameterError(f"dimension {axis!r} is not one of {list(x.dims)}")
            return x.dims.index(axis), axis
        return int(axis) % x.ndim, x.dims[int(axis) % x.ndim]
    if isinstance(axis, str):
        raise ParameterError(f"axis {axis!r} is a dimension name; give an integer axis for a plain array")
    if x.ndim == 0:
        raise ParameterError("cannot convolve a scalar; give a (tr, ...) array")
    return int(axis) % x.ndim, None


def _causal_block(block: np.ndarray, kernel: np.ndarray, axis: int, first: bool, out_dtype) -> np.ndarray:
    """Causal convolution of one block whose first ``len(kernel)-1`` rows are left context.

    The first block has no left context: its past is zero, exactly the causal convolution's, so
    nothing is trimmed there. Computed as blocked Toeplitz products in float64
    (:func:`giblet_store.features.causal_fir.causal_fir`).
    """
    from .causal_fir import causal_fir

    k = 0 if first else len(kernel) - 1
    b = np.moveaxis(block, axis, 0)
    y = causal_fir(b.reshape(b.shape[0], -1), kernel, k, out_dtype).reshape((b.shape[0] - k,) + b.shape[1:])
    return np.moveaxis(y, 0, axis)


def _check_integer(x_dtype, integer: str, codebook_size: int | None):
    if np.dtype(x_dtype).kind not in "iub":
        return
    if integer == "error":
        raise ParameterError(INTEGER_CODES_MESSAGE)
    if integer != "reference":
        raise ParameterError(f"integer must be 'error' or 'reference', got {integer!r}")
    if codebook_size is None or codebook_size < 2:
        raise ParameterError("integer='reference' needs codebook_size (the codebook range to clip to)")
    warnings.warn(
        "convolving integer codes the reference project's way (convolve, round, clip to "
        f"[0, {codebook_size - 1}]): the result is not a code sequence any model produced; "
        "use it only to compare with the reference. Embeddings are the meaningful input",
        UserWarning,
        stacklevel=3,
    )


def convolve_causal(x, kernel, axis=0, *, integer: str = "error", codebook_size: int | None = None):
    """Causal convolution along one axis, lazily with Dask: ``np.convolve(x, h)[:n]`` per column.

    Parameters
    ----------
    x : (tr, ...) numpy, dask or xarray array (any trailing shape; ``axis`` picks the time axis)
        float features (per-TR embeddings, mel means, ...). Integer codes raise unless
        ``integer="reference"``.
    kernel : (tap,) float
        ``h[0]`` is lag 0, e.g. ``hrf_kernel(Hrf("spm"), tr_s=1.5)``; at most as long as the series.
    axis : int or str
        The time axis; a dimension name for an xarray.DataArray.
    integer : {"error", "reference"}
        "reference" reproduces the reference project on codes: convolve, round, clip to
        ``[0, codebook_size - 1]`` (warns).
    codebook_size : int, for ``integer="reference"``

    Returns
    -------
    Same kind as ``x`` (numpy -> numpy, dask -> dask, DataArray -> DataArray with the same dims,
    coords and attrs, Dask-backed). float32 stays float32 (computed in float64).

    Raises
    ------
    ParameterError
        Integer input without ``integer="reference"``; kernel longer than the series; bad kernel.
    """
    import dask.array as da
    import xarray as xr

    h = np.asarray(kernel, dtype=np.float64)
    if h.ndim != 1 or h.size == 0 or not np.isfinite(h).all():
        raise ParameterError(f"kernel must be a non-empty 1-D array of finite numbers, got shape {h.shape}")
    ax, dim = _axis_of(x, axis)
    n = x.shape[ax]
    if h.size > n:
        raise ParameterError(
            f"the kernel has {h.size} taps but the series has {n} along {dim or f'axis {ax}'}; "
            "shorten the kernel (Hrf(length_s=...)) or give a longer series"
        )
    _check_integer(x.dtype, integer, codebook_size)
    is_int = np.dtype(x.dtype).kind in "iub"
    out_dtype = np.float64 if is_int else (x.dtype if np.dtype(x.dtype).kind == "f" else np.float64)
    if isinstance(x, xr.DataArray):
        data = _convolve_dask(_as_dask(x.data), h, ax, out_dtype)
        if is_int:
            data = da.clip(da.rint(data), 0, codebook_size - 1).astype(x.dtype)
        return x.copy(data=data)
    was_numpy = not isinstance(x, da.Array)
    data = _convolve_dask(_as_dask(x), h, ax, out_dtype)
    if is_int:
        data = da.clip(da.rint(data), 0, codebook_size - 1).astype(x.dtype)
    return data.compute() if was_numpy else data


def _as_dask(x):
    import dask.array as da

    # name=False: no sha1 of the whole array to name the graph (0.2 CPU s for 20,000 x 896 float32)
    return x if isinstance(x, da.Array) else da.from_array(np.asarray(x), chunks=-1, name=False)


def _convolve_dask(x, h: np.ndarray, axis: int, out_dtype):
    """Causal convolution of a dask array via ``map_overlap`` with left-only depth ``len(h) - 1``."""
    from dask.array.overlap import ensure_minimum_chunksize

    k = len(h) - 1
    if k:
        chunks = list(x.chunks)
        chunks[axis] = ensure_minimum_chunksize(k, chunks[axis])
        x = x.rechunk(tuple(chunks))

    def block(b, block_info=None):
        first = block_info is None or block_info[0]["chunk-location"][axis] == 0
        return _causal_block(b, h, axis, first, out_dtype)

    depth = {i: ((k, 0) if i == axis else 0) for i in range(x.ndim)}
    return x.map_overlap(block, depth=depth, boundary="none", trim=False, dtype=out_dtype,
                         chunks=x.chunks, meta=np.empty((0,) * x.ndim, out_dtype))


def delay(x, delays, axis=0, *, dim: str = "delay"):
    """FIR delays: copies of ``x`` shifted later by each delay (zeros before the series starts).

    Parameters
    ----------
    x : (tr, ...) numpy, dask or xarray array (float)
    delays : Fir or sequence of non-negative int (TRs)
    axis : int or str (a dimension name for DataArray)
    dim : name of the new dimension (DataArray only)

    Returns
    -------
    ``x``'s kind with a new axis right after ``axis``: ``out[t, i, ...] = x[t - delays[i], ...]``.
    A DataArray gets coordinate ``delay`` (TRs).

    Raises
    ------
    ParameterError
        Negative, non-integer or repeated delays; a delay as long as the series; integer input.
    """
    import dask.array as da
    import xarray as xr

    fir = delays if isinstance(delays, Fir) else Fir(tuple(delays) if not isinstance(delays, int) else (delays,))
    ax, dname = _axis_of(x, axis)
    n = x.shape[ax]
    if fir.max_delay >= n:
        raise ParameterError(
            f"FIR delay {fir.max_delay} TRs is not shorter than the series ({n} TRs along "
            f"{dname or f'axis {ax}'}); use shorter delays or a longer series"
        )
    if np.dtype(x.dtype).kind in "iub":
        _check_integer(x.dtype, "error", None)
    arr = _as_dask(x.data if isinstance(x, xr.DataArray) else x)
    copies = []
    for d in fir.delays:
        if d == 0:
            copies.append(arr)
            continue
        zeros_shape = list(arr.shape)
        zeros_shape[ax] = d
        head = da.zeros(tuple(zeros_shape), dtype=arr.dtype, chunks=tuple(zeros_shape))
        body = arr[(slice(None),) * ax + (slice(0, n - d),)]
        copies.append(da.concatenate([head, body], axis=ax).rechunk(arr.chunks))
    out = da.stack(copies, axis=ax + 1)
    if isinstance(x, xr.DataArray):
        dims = list(x.dims)
        dims.insert(ax + 1, dim)
        coords = {k: v for k, v in x.coords.items()}
        coords[dim] = (dim, np.asarray(fir.delays, dtype=np.int64))
        res = xr.DataArray(out, dims=dims, coords=coords, attrs=dict(x.attrs), name=x.name)
        res[dim].attrs.update(units="TR", description="delay of the copy, in TRs (FIR)")
        return res
    return out.compute() if not isinstance(x, da.Array) else out
