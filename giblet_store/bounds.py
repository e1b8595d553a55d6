"""Resource bounds checked before any work: a request whose grid or output is absurd is refused up front.

Three bounds, each stated with the size the request would have had:

* a TR must hold at least one frame (``frame_rate x tr >= 1``): ``--tr 1e-9`` would make a billion
  TRs a second;
* ``n_trs`` may pad past the stimulus by at most as many TRs as the stimulus fills, or one hour of
  TRs, whichever is more (an fMRI run rarely outlasts its stimulus by more);
* an entry's arrays may hold at most :data:`MAX_ENTRY_BYTES` (16 GiB, the environment variable
  ``GIBLET_STORE_MAX_ENTRY_BYTES`` overrides it);
* a derived entry (resampled, stretched) may have at most :data:`MAX_TRS` TRs
  (:func:`check_output_size`): ``derive --resample-tr 1e-7`` would make ten million TRs a second.
"""

from __future__ import annotations

import math
import os
from fractions import Fraction

from .errors import ParameterError
from .grid import TrGrid, exact

__all__ = ["MAX_ENTRY_BYTES", "MAX_PAD_S", "MAX_TRS", "max_entry_bytes", "check_grid_bounds", "check_output_size"]

#: Default ceiling on an entry's array bytes (uncompressed).
MAX_ENTRY_BYTES = 16 * 1024**3
#: Padding past the stimulus always allowed, in seconds of TRs.
MAX_PAD_S = 3600.0
#: Most TRs a derived (resampled, stretched) entry may have: 11.6 days of scanning at a 1 s TR.
MAX_TRS = 1_000_000


def max_entry_bytes() -> int:
    """:data:`MAX_ENTRY_BYTES`, or ``$GIBLET_STORE_MAX_ENTRY_BYTES`` when set to a positive integer."""
    text = os.environ.get("GIBLET_STORE_MAX_ENTRY_BYTES")
    if text is None:
        return MAX_ENTRY_BYTES
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise ParameterError(f"GIBLET_STORE_MAX_ENTRY_BYTES must be a positive integer (bytes), got {text!r}")
    return value


def _gib(n: float) -> str:
    return f"{n / 1024**3:.3g} GiB" if n >= 1024**2 else f"{int(n)} bytes"


def check_grid_bounds(grid: TrGrid, duration_s: float, frame_rate_hz: "float | Fraction", bytes_per_slot: int,
                      what: str) -> int:
    """Refuse ``grid`` for a stimulus of ``duration_s`` before any work; the TR count it gives.

    Parameters
    ----------
    grid : TrGrid
    duration_s : float
        Stimulus length in seconds.
    frame_rate_hz : float or Fraction
        Frames per second of the stream laid on the grid (EnCodec 24 kHz: 75).
    bytes_per_slot : int
        Bytes stored per frame slot of one TR (codes: 2 x codebooks; mel: 4 x mel bands).
    what : str
        The input, named in the message.

    Raises
    ------
    ParameterError
        Less than one frame per TR, padding far beyond the stimulus, or more than
        :func:`max_entry_bytes` of output; the message gives the computed size.
    """
    fr = exact(frame_rate_hz)
    per_tr = grid.frames_per_tr(fr)
    if per_tr < 1:
        raise ParameterError(
            f"{what}: tr_s={grid.tr_s:g} s holds {float(per_tr):.3g} frames at {float(fr):g} frames/s; a TR must "
            f"hold at least one frame. Give tr_s >= {float(1 / fr):.4g} s (fMRI TRs are 0.5-3 s)"
        )
    tr = exact(grid.tr_s)
    natural = max(0, math.ceil((Fraction(str(float(duration_s))) - exact(grid.onset_s)) / tr))
    n_trs = natural if grid.n_trs is None else grid.n_trs
    allowed = natural + max(natural, math.ceil(Fraction(str(MAX_PAD_S)) / tr))
    if n_trs > allowed:
        raise ParameterError(
            f"{what}: n_trs={n_trs} is far beyond the stimulus ({duration_s:.3f} s fills {natural} TRs of "
            f"{grid.tr_s:g} s); at most {allowed} TRs (the stimulus' TRs plus as many again or one hour of "
            "padding). Give the scan's real TR count"
        )
    size = n_trs * math.ceil(per_tr) * int(bytes_per_slot)
    limit = max_entry_bytes()
    if size > limit:
        raise ParameterError(
            f"{what}: the entry would hold {_gib(size)} ({n_trs} TRs x {math.ceil(per_tr)} frames x "
            f"{bytes_per_slot} bytes), more than the {_gib(limit)} limit; use fewer TRs or a lower bandwidth, or "
            "raise GIBLET_STORE_MAX_ENTRY_BYTES"
        )
    return n_trs


#: Default ceiling on the memory one task of a computation holds at once (an STFT chunk, say).
MAX_WORKING_BYTES = 4 * 1024**3


def max_working_bytes() -> int:
    """:data:`MAX_WORKING_BYTES`, or ``$GIBLET_STORE_MAX_WORKING_BYTES`` when set to a positive integer."""
    text = os.environ.get("GIBLET_STORE_MAX_WORKING_BYTES")
    if text is None:
        return MAX_WORKING_BYTES
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise ParameterError(f"GIBLET_STORE_MAX_WORKING_BYTES must be a positive integer (bytes), got {text!r}")
    return value


def check_working_set(size: int, what: str, detail: str, fix: str) -> None:
    """Refuse a computation whose one task would hold ``size`` bytes, above :func:`max_working_bytes`.

    The message says ``what``, the size and how it comes (``detail``), then ``fix``.
    """
    limit = max_working_bytes()
    if size > limit:
        raise ParameterError(f"{what}: one task would hold {_gib(size)} ({detail}), more than the {_gib(limit)} "
                             f"working-memory limit; {fix}, or raise GIBLET_STORE_MAX_WORKING_BYTES")


def check_output_size(n_trs: int, bytes_per_tr: int, what: str, fix: str) -> None:
    """Refuse an output of ``n_trs`` TRs of ``bytes_per_tr`` bytes each before anything is computed.

    Raises
    ------
    ParameterError
        More than :data:`MAX_TRS` TRs, or more than :func:`max_entry_bytes`; the message gives the size,
        then ``fix``.
    """
    if n_trs > MAX_TRS:
        raise ParameterError(f"{what}: the entry would have {n_trs} TRs, more than the {MAX_TRS} TRs limit; {fix}")
    size, limit = n_trs * int(bytes_per_tr), max_entry_bytes()
    if size > limit:
        raise ParameterError(f"{what}: the entry would hold {_gib(size)} ({n_trs} TRs x {int(bytes_per_tr)} bytes), "
                             f"more than the {_gib(limit)} limit; {fix}, or raise GIBLET_STORE_MAX_ENTRY_BYTES")
