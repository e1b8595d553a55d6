"""Codes entries of normalised, chunked models (facebook/encodec_48khz): frames on the TR grid, and back.

What such an entry holds, beside ``codes`` and ``n_frames`` (see :mod:`giblet_store.codec.normalised` for
the chunking):

- ``frame_time_s`` (tr, frame) float64, NaN fill: the stimulus time at which each stored frame starts,
  ``(k * stride + j * hop) / sample_rate`` for frame ``j`` of chunk ``k`` (the nearest float64;
  ``round(frame_time_s * sample_rate_hz)`` is the exact sample).
- ``frame_chunk`` (tr, frame) int32, -1 fill: the model chunk ``k`` the frame belongs to.
- ``scales`` (chunk) float32: the scale each chunk was divided by; ``chunk_frames`` (chunk) int16;
  coordinate ``chunk_start_s`` (chunk) float64, ``k * stride / sample_rate``.

A frame belongs to the TR its own start time falls in; within a TR frames are in time order (a chunk's
last frame starts 1/300 s after the next chunk's first, so they interleave at seams). Every frame of
every chunk is stored (no frame lost: ``n_frames`` sums to the chunks' frames), and the frame axis is
long enough for any TR (:meth:`ModelChunking.slots`, 235 slots for a 1.5 s TR at 48 kHz).
Decoding a TR range decodes every chunk that overlaps the range's samples, whole, and overlap-adds
them as ``EncodecModel.decode`` does, so the samples equal those of the model's whole-file decode.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..errors import ParameterError
from ..grid import FrameLayout, TrGrid, exact, to_tr
from ..codec.normalised import ModelChunking, chunk_weight, encode_chunks, iter_decode_chunks, layout_positions

__all__ = ["normalised_codes", "lay_chunks", "FramePlan", "entry_chunks", "normalised_attrs", "iter_decode_entry",
           "DecodeIncompleteWarning", "first_frame_sample"]


class DecodeIncompleteWarning(UserWarning):
    """A chunk needed for the decode has frames outside the TR grid (not stored); it decodes from the rest."""


def normalised_codes(codec, chunking: ModelChunking, audio: np.ndarray, bandwidth_kbps: float, grid: TrGrid):
    """Encode ``audio`` chunk by chunk and lay every frame on ``grid`` by its start time.

    Parameters
    ----------
    audio : (channel, sample) float32 at the model's rate

    Returns
    -------
    codes : (tr, codebook, frame) int16, -1 fill
    layout : FrameLayout (of the time-ordered frames)
    variables : dict name -> (dims, array): frame_time_s, frame_chunk, scales, chunk_frames
    coords : dict: chunk, chunk_start_s
    """
    parts, scales = [], []
    for codes, scale in encode_chunks(codec, audio, bandwidth_kbps):
        parts.append(codes)
        scales.append(scale)
    return lay_chunks(parts, scales, chunking, grid)


def lay_chunks(parts: list, scales: list, chunking: ModelChunking, grid: TrGrid):
    """:func:`normalised_codes` from chunks already encoded (``parts``: (codebook, frame) each; ``scales``)."""
    n_k = np.array([p.shape[-1] for p in parts], np.int64)
    plan = FramePlan.of(n_k, chunking, grid)
    stream = np.concatenate(parts, axis=1)[:, plan.order]
    variables = {**plan.variables(), "scales": (("chunk",), np.array(scales, np.float32))}
    return to_tr(stream, plan.layout, fill=-1), plan.layout, variables, plan.coords()


@dataclass(frozen=True)
class FramePlan:
    """Where every frame of every model chunk goes on a TR grid: known from the chunks' lengths alone.

    A batch plans an entry with it before anything is encoded (:mod:`giblet_store.batch.chunks`), a
    single-process extract lays its encoded chunks with it; both give the same layout.

    Attributes
    ----------
    chunk_frames : (chunk,) int64 frames of each chunk
    order : (frame,) int64 index into the chunks' concatenated frames, in stimulus-time order
    chunk, index : (frame,) int64 chunk and frame-within-chunk of each time-ordered frame
    pos : (frame,) int64 stimulus sample at which each time-ordered frame starts
    layout : FrameLayout of the time-ordered frames
    """

    chunking: ModelChunking
    chunk_frames: np.ndarray
    order: np.ndarray
    chunk: np.ndarray
    index: np.ndarray
    pos: np.ndarray
    layout: FrameLayout

    @classmethod
    def of(cls, chunk_frames: np.ndarray, chunking: ModelChunking, grid: TrGrid, warn: bool = True) -> "FramePlan":
        n_k = np.asarray(chunk_frames, np.int64)
        starts = np.arange(len(n_k), dtype=np.int64) * chunking.stride
        index = np.concatenate([np.arange(n, dtype=np.int64) for n in n_k]) if len(n_k) else np.zeros(0, np.int64)
        chunk = np.repeat(np.arange(len(n_k), dtype=np.int64), n_k)
        pos = starts[chunk] + chunking.hop * index
        order = np.lexsort((chunk, pos))  # by start time, then chunk
        layout = layout_positions(pos[order], chunking.sample_rate_hz, grid, chunking.slots(grid.tr_s), warn=warn)
        return cls(chunking, n_k, order, chunk[order], index[order], pos[order], layout)

    def variables(self) -> dict:
        """The entry's variables that do not depend on the codes (all but ``codes`` and ``scales``)."""
        sr = self.chunking.sample_rate_hz
        return {
            "frame_time_s": (("tr", "frame"), to_tr(self.pos / sr, self.layout, fill=np.nan)),
            "frame_chunk": (("tr", "frame"), to_tr(self.chunk.astype(np.int32), self.layout, fill=-1)),
            "chunk_frames": (("chunk",), self.chunk_frames.astype(np.int16)),
        }

    def coords(self) -> dict:
        n = len(self.chunk_frames)
        return {"chunk": np.arange(n, dtype=np.int64),
                "chunk_start_s": (("chunk",), np.arange(n, dtype=np.int64) * self.chunking.stride
                                  / self.chunking.sample_rate_hz)}

    def frames_of(self, tr_start: int, tr_stop: int) -> tuple[int, int]:
        """Time-ordered frame range ``[lo, hi)`` stored in TRs ``tr_start:tr_stop``."""
        starts = self.layout.starts
        return int(starts[tr_start]), int(starts[tr_stop])


def normalised_attrs(chunking: ModelChunking, codec, grid: TrGrid) -> dict:
    """Attributes of a normalised-chunk entry.

    ``frames_per_tr`` is the exact mean over whole chunks (their frames per stride x TR: 2500/11 for a
    1.5 s TR at 48 kHz, where the 24 kHz-style ``frame_rate x tr`` would say 225).
    """
    per_chunk = -(-chunking.length // chunking.hop)
    mean = exact(grid.tr_s) * Fraction(per_chunk * chunking.sample_rate_hz, chunking.stride)
    return {**chunking.to_dict(), "chunk_length_s": float(codec.config.chunk_length_s),
            "chunk_overlap": float(codec.config.overlap), "frames_per_tr": str(mean)}


def _needed_chunks(attrs: dict, chunk_frames: np.ndarray, out_start: int, out_stop: int) -> np.ndarray:
    stride, hop = int(attrs["chunk_stride_samples"]), int(attrs["hop_samples"])
    lo = np.arange(len(chunk_frames), dtype=np.int64) * stride
    hi = lo + chunk_frames.astype(np.int64) * hop
    return np.flatnonzero((lo < out_stop) & (hi > out_start))


def _frames(part, sample_rate_hz: int):
    """Real frames of a TR range: codes (codebook, frame), start sample (frame,), chunk (frame,)."""
    n = part["n_frames"].values.astype(np.int64)
    mask = np.arange(part.sizes["frame"])[None, :] < n[:, None]
    codes = np.moveaxis(part["codes"].values, 1, 0)[:, mask]
    pos = np.rint(part["frame_time_s"].values[mask] * sample_rate_hz).astype(np.int64)
    return codes, pos, part["frame_chunk"].values[mask].astype(np.int64)


def first_frame_sample(ds, sel: slice, sample_rate_hz: int) -> int:
    """Stimulus sample at which the earliest real frame of TRs ``sel`` starts (from ``frame_time_s``).

    A decode of those TRs starts there (:func:`iter_decode_entry`); chunks overlap, so it is not
    ``sum(n_frames[:start]) * hop`` as with a model that encodes a file in one call.
    """
    part = ds.isel(tr=sel)
    n = part["n_frames"].values.astype(np.int64)
    t = part["frame_time_s"].values[np.arange(part.sizes["frame"])[None, :] < n[:, None]]
    if t.size == 0:
        raise ParameterError(f"TRs {sel.start}:{sel.stop} hold no frames (n_frames is 0); choose TRs with audio")
    return int(np.rint(t * sample_rate_hz).astype(np.int64).min())


def _read_range(ds, sel: slice, margin_s: float) -> slice:
    tr_s = float(ds.attrs["tr_s"])
    m = int(np.ceil(margin_s / tr_s)) + 1
    return slice(max(0, sel.start - m), min(ds.sizes["tr"], sel.stop + m))


def iter_decode_entry(codec, ds, sel: slice, outside: str = "the TR grid (onset_s / n_trs cut them; not stored)"):
    """Decode TRs ``sel`` of a normalised-chunk codes dataset, piece by piece.

    ``outside`` says, in the :class:`DecodeIncompleteWarning`, where a needed chunk's missing frames are.

    Returns
    -------
    pieces : iterator of (channel, sample) float32
        Stimulus samples from the first selected frame's start to the last one's end; equal to the
        same samples of the model's whole-file decode when every chunk they need is on the grid.
    n_samples : int
    """
    attrs = ds.attrs
    sr, hop, stride = codec.sample_rate_hz, int(attrs["hop_samples"]), int(attrs["chunk_stride_samples"])
    _, pos, _ = _frames(ds.isel(tr=sel), sr)
    if pos.size == 0:
        raise ParameterError(f"TRs {sel.start}:{sel.stop} hold no frames (n_frames is 0); choose TRs with audio")
    out_start, out_stop = int(pos.min()), int(pos.max()) + hop
    chunk_frames = ds["chunk_frames"].values.astype(np.int64)
    need = _needed_chunks(attrs, chunk_frames, out_start, out_stop)
    wide = ds.isel(tr=_read_range(ds, sel, float(attrs["chunk_length_samples"]) / sr))
    codes, pos, chunk = _frames(wide, sr)
    scales = ds["scales"].values
    weight = chunk_weight(int(chunk_frames[0]) * hop)
    pieces, short = [], []
    for k in need:
        idx = np.flatnonzero(chunk == k)
        idx = idx[np.argsort(pos[idx], kind="stable")]
        if idx.size < chunk_frames[k]:
            short.append(int(k))
        if idx.size == 0:
            continue
        w0 = int(pos[idx[0]]) - int(k) * stride
        pieces.append((int(pos[idx[0]]), codes[:, idx], float(scales[k]), w0))
    if short:
        warnings.warn(
            f"chunk(s) {short} have frames outside {outside}: they decode from the frames there are, so those "
            "samples differ from the model's whole-file decode",
            DecodeIncompleteWarning, stacklevel=3)
    pieces.sort(key=lambda p: p[0])
    return iter_decode_chunks(codec, pieces, weight, out_start, out_stop), out_stop - out_start


def entry_chunks(ds) -> list[tuple[np.ndarray, float]]:
    """Every chunk of a normalised-chunk codes dataset: [(codes (codebook, frame) int16, scale float32)].

    Raises
    ------
    ParameterError
        Frames of some chunk are not stored (the grid's onset_s / n_trs cut them).
    """
    sr = int(ds.attrs["sample_rate_hz"])
    codes, pos, chunk = _frames(ds, sr)
    counts = np.bincount(chunk, minlength=ds.sizes["chunk"])
    want = ds["chunk_frames"].values.astype(np.int64)
    if (counts != want).any():
        bad = np.flatnonzero(counts != want).tolist()
        raise ParameterError(f"entry {str(ds.attrs.get('key', ''))[:16]} does not store every frame of chunk(s) "
                             f"{bad[:5]} (its TR grid cut them: frames_before_grid / frames_after_grid); extract the "
                             "stimulus again on a grid that holds it all (onset_s <= 0, n_trs unset)")
    order = np.lexsort((pos, chunk))
    starts = np.concatenate([[0], np.cumsum(want)])
    scales = ds["scales"].values
    return [(codes[:, order[a:b]], np.float32(scales[k])) for k, (a, b) in enumerate(zip(starts[:-1], starts[1:]))]
