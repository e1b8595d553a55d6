"""Where a written audio file starts in stimulus time, recorded in the WAV itself.

A file written by ``decode`` (:func:`giblet_store.features.codes.decode_entry`, ``decode_mel``,
``decode_reconstruction``) of TRs ``A:B`` starts at the first frame of TR ``A``, not at the start of
the stimulus. That start is recorded in the WAV's ``comment`` string (RIFF ``LIST/INFO/ICMT``, which
soundfile writes and reads back) as::

    giblet_store start_sample=72000 sample_rate_hz=24000 start_s=3 entry=3fa2c1... trs=2:5

``start_sample`` (at the file's ``sample_rate_hz``) is exact; ``start_s`` is for people. ``quality``
reads it (:func:`recorded_start`) and places the file there; a file from elsewhere has no record and
starts at 0 unless ``--deg-start`` says otherwise.
"""

from __future__ import annotations

import os
import re
from fractions import Fraction

__all__ = ["start_comment", "recorded_start"]

_PREFIX = "giblet_store "
_FIELDS = re.compile(r"(?:^|\s)start_sample=(-?\d+)\s+sample_rate_hz=(\d+)(?:\s|$)")


def start_comment(start_sample: int, sample_rate_hz: int, entry_key: str | None = None, trs=None) -> str:
    """The ``comment`` string recording that a file starts at stimulus sample ``start_sample``.

    Parameters
    ----------
    start_sample : int, the stimulus sample (at ``sample_rate_hz``) of the file's first sample
    entry_key, trs : what the file was decoded from (``(A, B)``, stop exclusive), for people reading it
    """
    text = (f"{_PREFIX}start_sample={int(start_sample)} sample_rate_hz={int(sample_rate_hz)} "
            f"start_s={float(Fraction(int(start_sample), int(sample_rate_hz))):g}")
    if entry_key:
        text += f" entry={entry_key}"
    if trs is not None:
        text += f" trs={int(trs[0])}:{int(trs[1])}"
    return text


def recorded_start(path: str | os.PathLike) -> Fraction | None:
    """The stimulus time (s, exact) at which the file ``path`` starts, as recorded by ``decode``; None if not recorded."""
    import soundfile as sf

    try:
        with sf.SoundFile(os.fspath(path)) as f:
            comment = f.comment
    except (sf.LibsndfileError, RuntimeError, OSError):  # not readable by libsndfile (a container): no record
        return None
    if not comment or not comment.startswith(_PREFIX) or not (m := _FIELDS.search(comment)):
        return None
    sr = int(m.group(2))
    return Fraction(int(m.group(1)), sr) if sr > 0 else None

