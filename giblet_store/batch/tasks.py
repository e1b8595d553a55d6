"""What batch workers run: read a stimulus range, encode a chunk, write a chunk, publish an entry.

Kept apart from the planning and scheduling in :mod:`giblet_store.batch.run` so that the code a
worker process executes is small and plain: every function takes picklable values and reopens the
store by URL (once per process).
"""

from __future__ import annotations

import functools
import importlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio.load import load_audio
from ..errors import AudioError
from ..store.core import Staging, Store, open_store

__all__: list[str] = []


@dataclass(frozen=True)
class _Source:
    """A stimulus as a worker reads it: checked against the stamp it had while the client hashed it."""

    path: str
    stamp: tuple  # (size, mtime_ns, inode, ctime_ns) before hashing, unchanged after (batch.run._stamp)
    sample_rate_hz: int  # the model's
    channels: int  # the model's
    exact: bool  # already at the model's rate: any range can be read on its own

    @classmethod
    def of(cls, path: Path, info, model, stamp: tuple) -> "_Source":
        """The source of ``path`` (:class:`~giblet_store.audio.load.AudioInfo` ``info``) for ``model``, with the
        ``stamp`` it had while the client hashed it."""
        return cls(str(path), stamp, model.sample_rate_hz, model.channels,
                   exact=info.sample_rate_hz == model.sample_rate_hz and _seeks_exactly(path))

    def check(self) -> None:
        st = os.stat(self.path)
        if (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns) != tuple(self.stamp):
            raise AudioError(f"{self.path!r} changed while the batch ran (size, mtime, inode or ctime differ from "
                             "when it was hashed); nothing was stored for it. Rerun the batch once it is no longer "
                             "being written")


def _seeks_exactly(path: Path) -> bool:
    """True when a seek lands on the very samples a linear decode gives (PCM containers, FLAC).

    Lossy formats (Ogg, MP3) are decoded whole by one task instead of being read by range.
    """
    import soundfile as sf

    info = sf.info(os.fsencode(path))
    pcm = info.subtype.startswith("PCM_") or info.subtype in ("FLOAT", "DOUBLE", "ULAW", "ALAW")
    return info.format == "FLAC" or (pcm and info.format in ("WAV", "WAVEX", "W64", "RF64", "AIFF", "AU", "CAF"))


# ------------------------------------------------------------------------------------ worker tasks
@functools.lru_cache(maxsize=16)
def _worker_store(url: str) -> Store:
    return open_store(url)


def _read_range(source: _Source, lo: int, stop: int) -> np.ndarray:
    """Samples ``lo:stop`` of a file at the model's rate: (channel, sample) float32, as load_audio gives them."""
    import soundfile as sf

    source.check()
    with sf.SoundFile(os.fsencode(source.path)) as f:
        f.seek(lo)
        block = f.read(stop - lo, dtype="float32", always_2d=True)
    source.check()  # before and after the read: a write in between changes the stamp
    if block.shape[0] != stop - lo:
        raise AudioError(f"{source.path!r} ended after {lo + block.shape[0]} samples; its header promises more. "
                         "The file is truncated; re-export it")
    if not np.isfinite(block).all():
        bad = lo + int(np.argwhere(~np.isfinite(block))[0, 0])
        raise AudioError(f"{source.path!r} has NaN or infinite samples (first at sample {bad}, "
                         f"{bad / source.sample_rate_hz:.3f} s); repair or re-export the audio")
    if source.channels == 1:
        block = block.mean(axis=1, keepdims=True)
    elif block.shape[1] == 1:
        block = np.repeat(block, 2, axis=1)
    elif block.shape[1] > 2:
        raise AudioError(f"{source.path!r} has {block.shape[1]} channels; a stereo model takes 1 or 2")
    return np.ascontiguousarray(block.T)


def _load_task(source: _Source) -> np.ndarray:
    import warnings

    from ..audio.channels import ChannelsMixedWarning

    source.check()
    with warnings.catch_warnings():  # the planner put the channel rule in the item's note
        warnings.simplefilter("ignore", ChannelsMixedWarning)
        audio, _ = load_audio(source.path, source.sample_rate_hz, source.channels)
    source.check()
    return audio


def _slice_task(audio: np.ndarray, lo: int, stop: int) -> np.ndarray:
    return np.ascontiguousarray(audio[:, lo:stop])


class _RangeReader:
    """A stimulus file as a (channel, sample) array that reads only the ranges sliced from it."""

    def __init__(self, source: _Source, n_samples: int):
        self.source = source
        self.shape = (source.channels, n_samples)

    def __getitem__(self, index) -> np.ndarray:
        sl = index[-1]
        return _read_range(self.source, sl.start, sl.stop)


def _encode_task(spec: tuple, audio, lo: int, start: int, stop: int, hop: int, bandwidth_kbps: float,
                 stream_chunk_s: float | None = None) -> np.ndarray:
    """(codebook, frame) int16 codes of samples ``start:stop``, encoded with context from ``lo``.

    With ``stream_chunk_s`` the range is the whole file (``lo == start == 0``), encoded in one pass
    with carried state (:func:`giblet_store.codec.stream.stream_encode`), read ``stream_chunk_s`` at a time.
    """
    from ..codec.encodec import _encode_chunk

    if stream_chunk_s is not None:
        from ..codec.encodec import load_codec
        from ..codec.stream import stream_encode

        src = _RangeReader(audio, stop) if isinstance(audio, _Source) else audio
        return stream_encode(load_codec(*spec), src, bandwidth_kbps, stream_chunk_s)
    if isinstance(audio, _Source):
        audio = _read_range(audio, lo, stop)
    return _encode_chunk(spec, audio, (start - lo) // hop, bandwidth_kbps)  # thread-count independent


def _write_task(url: str, staging: Staging, i: int, starts: np.ndarray, slots: int, n_q: int, offset: int,
                *pieces: np.ndarray) -> bool:
    """Lay the frames ``starts[0]:starts[-1]`` on their TRs and write chunk ``i`` of ``codes``.

    ``pieces`` are consecutive encode chunks, the first starting at stream frame ``offset``.
    """
    from ..grid import FrameLayout, to_tr

    stream = np.concatenate(pieces, axis=1) if pieces else np.zeros((n_q, 0), np.int16)
    lo = int(starts[0]) - offset
    seg = stream[:, lo: lo + int(starts[-1] - starts[0])]
    layout = FrameLayout(slots=slots, starts=np.asarray(starts) - starts[0], n_stream_frames=seg.shape[-1],
                         frames_before_grid=0, frames_after_grid=0)
    codes = to_tr(seg, layout, fill=-1).astype(np.int16)
    return _worker_store(url).write_chunk(staging, "codes", i, codes)


def _encode_model_chunk_task(spec: tuple, audio, lo: int, stop: int, bandwidth_kbps: float) -> tuple:
    """Model chunk ``lo:stop`` of a normalised model (48 kHz): ``(codes (codebook, frame) int16, scale float32)``.

    The same function a single-process extract runs per chunk
    (:func:`giblet_store.codec.normalised.encode_one_chunk`), so the bits are the same.
    """
    from ..codec.encodec import load_codec, reproducible_torch
    from ..codec.normalised import encode_one_chunk, model_chunking

    codec = load_codec(*spec)
    if isinstance(audio, _Source):
        audio = _read_range(audio, lo, stop)
    with reproducible_torch():
        return encode_one_chunk(codec, model_chunking(codec), audio, bandwidth_kbps)


def _write_chunk_codes_task(url: str, staging: Staging, i: int, starts: np.ndarray, frame_chunk: np.ndarray,
                            frame_index: np.ndarray, slots: int, n_q: int, chunks: list, *encoded: tuple) -> bool:
    """Write Zarr chunk ``i`` of a normalised-chunk entry's ``codes``.

    ``frame_chunk`` / ``frame_index``: model chunk and frame-within-chunk of each time-ordered frame
    of the TRs ``starts`` bound; ``encoded``: the ``(codes, scale)`` of each model chunk in ``chunks``.
    """
    from ..grid import FrameLayout, to_tr

    stream = np.full((n_q, len(frame_chunk)), -1, np.int16)
    for k, (codes, _) in zip(chunks, encoded):
        here = frame_chunk == k
        stream[:, here] = codes[:, frame_index[here]]
    starts = np.asarray(starts, np.int64)
    layout = FrameLayout(slots=slots, starts=starts - starts[0], n_stream_frames=stream.shape[-1],
                         frames_before_grid=0, frames_after_grid=0)
    return _worker_store(url).write_chunk(staging, "codes", i, to_tr(stream, layout, fill=-1).astype(np.int16))


def _write_scales_task(url: str, staging: Staging, *encoded: tuple) -> bool:
    """Write the ``scales`` (chunk,) of a normalised-chunk entry: the scale of every model chunk, in order."""
    scales = np.array([scale for _, scale in encoded], np.float32)
    return _worker_store(url).write_chunk(staging, "scales", 0, scales)


def _commit_task(url: str, staging: Staging, *writes: bool) -> tuple[str, str, bool]:
    entry, created = _worker_store(url).commit(staging)
    return entry.key, entry.path, created


def _mel_task(url: str, path: str, mel_params: dict, grid: dict) -> tuple[str, str, bool, str]:
    """(key, path, created, note): the warnings of the extraction (channel mix, frames outside the grid) become the
    item's note, as the channel rule does for codes items; a worker never prints them with source lines."""
    import warnings

    from ..grid import TrGrid

    mel = importlib.import_module("giblet_store.features.mel")
    params = mel.MelParams.from_dict(mel_params) if mel_params else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = mel.extract_mel(_worker_store(url), path, params=params, grid=TrGrid.from_dict(grid), scheduler="sync")
    return r.entry.key, r.entry.path, r.created, "; ".join(dict.fromkeys(str(w.message) for w in caught))


# ------------------------------------------------------------------------------------ cluster
