"""The TR grid: exact assignment of codec/mel frames to fMRI TRs.

TR ``i`` covers stimulus time ``[onset + i*tr, onset + (i+1)*tr)``. Frame ``f`` starts at
``f / frame_rate`` and belongs to TR ``floor((f / frame_rate - onset) / tr)``. All arithmetic is
exact (:class:`fractions.Fraction`; floats are read as the decimals they print as, so 1.5 s is 3/2
and 0.1 s is 1/10). The frame axis is ``ceil(frame_rate * tr)`` long; the unused tail of a TR holds a
fill value (-1 for codes, NaN for floats) and ``n_frames[tr]`` says how many frames are real, so
concatenating the real frames of all TRs gives back the frame stream bit for bit.

Frames before TR 0 (a positive onset: the stimulus started before the scan) and frames after the last
TR (``n_trs`` smaller than the stimulus) are not silently lost: they are counted in the layout
(``frames_before_grid`` / ``frames_after_grid``), stored in attributes, and warned about.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from fractions import Fraction
from typing import ClassVar

import numpy as np

from .validate import MAX_TR_S, finite, int_in_range, tr_seconds  # noqa: F401 (MAX_TR_S re-exported)
from .errors import ParameterError
from .params import Params

__all__ = ["TrGrid", "FrameLayout", "exact", "grid_attrs", "to_tr", "from_tr", "MAX_TR_S"]



def exact(x: float | int | Fraction | str) -> Fraction:
    """``x`` as an exact fraction, reading floats as the decimal they print as (0.1 -> 1/10)."""
    if isinstance(x, Fraction):
        return x
    if isinstance(x, int):
        return Fraction(x)
    return Fraction(str(float(x)) if not isinstance(x, str) else x)


def _ceil(q: Fraction) -> int:
    return -((-q.numerator) // q.denominator)


def _floor(q: Fraction) -> int:
    return q.numerator // q.denominator


@dataclass(frozen=True)
class TrGrid(Params):
    """The fMRI TR grid a stimulus is laid on.

    Parameters
    ----------
    tr_s : float
        Repetition time in seconds, 0 < tr_s <= 60.
    onset_s : float
        Stimulus time at which TR 0 starts (negative: the scan started before the stimulus).
    n_trs : int or None
        Number of TRs (>= 1). None: as many as the stimulus fills. More pads with empty TRs
        (``n_frames == 0``); fewer crops, with a warning and a count in the attributes.

    Examples
    --------
    >>> TrGrid(1.5).frames_per_tr(75)
    Fraction(225, 2)
    """

    name: ClassVar[str] = "grid"
    tr_s: float = 1.5
    onset_s: float = 0.0
    n_trs: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "tr_s", tr_seconds(self.tr_s))
        object.__setattr__(self, "onset_s", finite("onset_s (seconds)", self.onset_s))
        if int_in_range("n_trs", self.n_trs, optional=True) == 0:
            raise ParameterError("n_trs=0 would make an empty entry; give a positive n_trs, or leave it unset "
                                 "(None: as many TRs as the stimulus fills)")
        object.__setattr__(self, "n_trs", int_in_range("n_trs", self.n_trs, 1, optional=True))

    def frames_per_tr(self, frame_rate_hz: float | Fraction) -> Fraction:
        """Exact frames per TR (75 Hz x 1.5 s = 225/2)."""
        return exact(frame_rate_hz) * exact(self.tr_s)

    def slots(self, frame_rate_hz: float | Fraction) -> int:
        """Length of the frame axis: ``ceil(frame_rate * tr)``."""
        return _ceil(self.frames_per_tr(frame_rate_hz))

    def tr_of_frame(self, f: int, frame_rate_hz: float | Fraction) -> int:
        """TR index of frame ``f`` (may be negative or past ``n_trs``)."""
        fr = exact(frame_rate_hz)
        return _floor((Fraction(f) - exact(self.onset_s) * fr) / self.frames_per_tr(fr))

    def layout(self, n_stream_frames: int, frame_rate_hz: float | Fraction, warn: bool = True) -> "FrameLayout":
        """Lay ``n_stream_frames`` frames at ``frame_rate_hz`` on this grid.

        Returns
        -------
        FrameLayout
            ``starts[i]`` is the first stream frame of TR ``i``; ``n_frames[i]`` the count.
        """
        fr = exact(frame_rate_hz)
        p = self.frames_per_tr(fr)
        o = exact(self.onset_s) * fr
        n = int(n_stream_frames)
        if n < 0:
            raise ParameterError(f"a frame stream cannot have {n} frames")
        # natural number of TRs: up to and including the TR of the last frame
        natural = max(0, _floor((Fraction(n - 1) - o) / p) + 1) if n > 0 else 0
        n_trs = natural if self.n_trs is None else self.n_trs
        starts = np.fromiter(
            (min(max(_ceil(o + i * p), 0), n) for i in range(n_trs + 1)), dtype=np.int64, count=n_trs + 1
        )
        before = int(min(max(_ceil(o), 0), n))
        after = int(n - starts[-1]) if n_trs > 0 else n - before
        if warn and before:
            warnings.warn(
                f"{before} frame(s) ({float(before / fr):.3f} s) precede TR 0 (onset_s={self.onset_s}); "
                "they are not stored (counted in attribute frames_before_grid)",
                UserWarning,
                stacklevel=3,
            )
        if warn and after > 0:
            warnings.warn(
                f"n_trs={n_trs} crops {after} frame(s) ({float(after / fr):.3f} s) after the last TR; "
                "counted in attribute frames_after_grid",
                UserWarning,
                stacklevel=3,
            )
        return FrameLayout(
            slots=self.slots(fr),
            starts=starts,
            n_stream_frames=n,
            frames_before_grid=before,
            frames_after_grid=max(after, 0),
        )

    def tr_start_s(self, n_trs: int) -> np.ndarray:
        """(tr,) float64 stimulus time at which each TR starts."""
        return self.onset_s + self.tr_s * np.arange(n_trs, dtype=np.float64)


@dataclass(frozen=True)
class FrameLayout:
    """Where each TR's frames lie in the frame stream.

    Attributes
    ----------
    slots : int
        Frame-axis length, ``ceil(frame_rate * tr)``.
    starts : (tr + 1,) int64
        ``starts[i]:starts[i+1]`` are the stream frames of TR ``i``.
    """

    slots: int
    starts: np.ndarray
    n_stream_frames: int
    frames_before_grid: int
    frames_after_grid: int

    @property
    def n_trs(self) -> int:
        return len(self.starts) - 1

    @property
    def n_frames(self) -> np.ndarray:
        """(tr,) int64 real frames per TR."""
        return np.diff(self.starts)


def grid_attrs(grid: TrGrid, layout: FrameLayout, frame_rate_hz: float | Fraction) -> dict:
    """The attributes every frame-gridded entry carries about its grid and frame stream."""
    fr = exact(frame_rate_hz)
    return {
        "frame_rate_hz": float(fr),
        "frame_rate": str(fr),
        "tr_s": grid.tr_s,
        "onset_s": grid.onset_s,
        "n_trs": layout.n_trs,
        "frames_per_tr": str(grid.frames_per_tr(fr)),
        "n_stream_frames": layout.n_stream_frames,
        "frames_before_grid": layout.frames_before_grid,
        "frames_after_grid": layout.frames_after_grid,
    }


def to_tr(stream: np.ndarray, layout: FrameLayout, fill=-1) -> np.ndarray:
    """Lay a frame stream on the TR grid.

    Parameters
    ----------
    stream : (..., frame) array
        E.g. codes (codebook, frame) int, or mel (mel, frame) float.
    layout : FrameLayout
    fill : scalar
        Value of unused slots (-1 for codes, NaN for floats).

    Returns
    -------
    (tr, ..., slot) array of ``stream.dtype``
    """
    stream = np.asarray(stream)
    n_frames = layout.n_frames
    slot = np.arange(layout.slots)
    idx = layout.starts[:-1, None] + slot[None, :]  # (tr, slot)
    valid = slot[None, :] < n_frames[:, None]
    if stream.shape[-1] == 0:
        gathered = np.zeros(stream.shape[:-1] + idx.shape, stream.dtype)
    else:
        gathered = np.take(stream, np.minimum(idx, stream.shape[-1] - 1), axis=-1)  # (..., tr, slot)
    gathered = np.where(valid, gathered, np.asarray(fill, dtype=stream.dtype))
    return np.moveaxis(gathered, -2, 0)


def from_tr(gridded: np.ndarray, n_frames: np.ndarray) -> np.ndarray:
    """Concatenate the real frames of every TR: the inverse of :func:`to_tr`.

    Parameters
    ----------
    gridded : (tr, ..., slot) array
    n_frames : (tr,) int

    Returns
    -------
    (..., frame) array with ``sum(n_frames)`` frames.
    """
    gridded = np.asarray(gridded)
    n_frames = np.asarray(n_frames, dtype=np.int64)
    slot = np.arange(gridded.shape[-1])
    mask = slot[None, :] < n_frames[:, None]  # (tr, slot)
    moved = np.moveaxis(gridded, 0, -2)  # (..., tr, slot)
    return moved[..., mask]


def parse_tr_range(trs, n_trs: int) -> slice:
    """A TR range of an entry with ``n_trs`` TRs as a slice, checked against the entry.

    Parameters
    ----------
    trs : None (all), ``"START:STOP"`` (either side may be empty), ``(start, stop)``, ``slice`` or ``range``
        (step 1). A list of several TR indices is refused, never read as (start, stop).

    Raises
    ------
    ParameterError
        Not a range, empty, or outside ``0:n_trs``.
    """
    if trs is None:
        return slice(0, n_trs)
    if isinstance(trs, (slice, range)):
        if trs.step not in (None, 1):
            raise ParameterError(f"TR range {trs!r} has a step; give a contiguous range START:STOP")
        trs = (0 if trs.start is None else trs.start, n_trs if trs.stop is None else trs.stop)
    if isinstance(trs, str):
        try:
            a, _, b = trs.partition(":")
            trs = (int(a) if a.strip() else 0, int(b) if b.strip() else n_trs)
        except ValueError:
            raise ParameterError(f"TR range {trs!r} is not START:STOP with integers (e.g. 10:20)") from None
    if (isinstance(trs, (list, tuple)) or getattr(trs, "ndim", 0) == 1) and len(trs) != 2:
        raise ParameterError(f"TR range {trs!r} has {len(trs)} values; give START:STOP, (start, stop), a slice "
                             "or a range (stop exclusive)")
    try:
        start, stop = (int_in_range("TR range start", trs[0]), int_in_range("TR range stop", trs[1]))
    except (TypeError, IndexError, KeyError):
        raise ParameterError(f"TR range {trs!r} is not START:STOP, (start, stop) or a slice") from None
    if start < 0 or stop > n_trs or start >= stop:
        raise ParameterError(
            f"TR range {start}:{stop} is outside the entry's TRs 0:{n_trs} (or empty); give 0 <= START < STOP <= {n_trs}"
        )
    return slice(start, stop)
