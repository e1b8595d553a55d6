"""Normalised, non-causal EnCodec models (facebook/encodec_48khz): the model's own chunking, exactly.

Such a model (``config.chunk_length_s`` set, ``config.normalize``) encodes a file as the
``transformers.EncodecModel.encode`` call does: chunks of ``config.chunk_length`` samples starting
every ``config.chunk_stride`` samples (48 kHz: 1 s chunks with 1 % overlap, so 48000 samples every
47520), the last one(s) shorter; each chunk is divided by its scale (RMS of its mono mix + 1e-8)
before the encoder, and the scale is kept to multiply the decoded chunk. Decoding overlap-adds the
decoded chunks with the model's linear (triangular) fade weights. Both are done here one chunk at a
time, so memory does not grow with the length of the file, and give the model's own whole-file
codes and audio (same float32 operations on the same chunk tensors).

Frame ``j`` of chunk ``k`` starts at sample ``k * stride + j * hop`` of the stimulus: with the 48 kHz
model a stride is 148.5 hops, so successive chunks' frames sit on two interleaved 150 Hz grids, and the
last frame of a chunk starts 1/300 s after the first of the next. Every frame is kept (decoding
needs all of them); frames are laid on the TR grid by their own start time (:func:`layout_positions`).
"""

from __future__ import annotations

import math
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from .encodec import aligned_tensor, reproducible_torch
from ..errors import ParameterError
from ..grid import FrameLayout, TrGrid, exact

__all__ = ["ModelChunking", "model_chunking", "encode_chunks", "encode_one_chunk", "iter_decode_chunks",
           "layout_positions", "chunk_weight"]


@dataclass(frozen=True)
class ModelChunking:
    """How a normalising model cuts a signal (all in samples at ``sample_rate_hz``).

    Attributes
    ----------
    length : int
        Samples per chunk (``config.chunk_length``; 48000 for the 48 kHz model).
    stride : int
        Samples between chunk starts (``config.chunk_stride``; 47520).
    hop : int
        Samples per frame (320).
    normalize : bool
        Chunks are divided by their scale before encoding (``config.normalize``).
    """

    sample_rate_hz: int
    length: int
    stride: int
    hop: int
    normalize: bool

    def starts(self, n_samples: int) -> range:
        """First sample of every chunk of an ``n_samples`` signal (as ``EncodecModel.encode``)."""
        return range(0, int(n_samples), self.stride)

    def chunk_frames(self, n_samples: int) -> np.ndarray:
        """(chunk,) int64 frames of every chunk: ``ceil(len / hop)``."""
        lens = [min(self.length, n_samples - s) for s in self.starts(n_samples)]
        return np.array([-(-n // self.hop) for n in lens], dtype=np.int64)

    def to_dict(self) -> dict:
        """What of the chunking goes into attributes and the key."""
        return {"chunk_length_samples": self.length, "chunk_stride_samples": self.stride,
                "normalize": bool(self.normalize)}

    def slots(self, tr_s: float) -> int:
        """Frame-axis length that holds the frames of any TR of ``tr_s`` seconds.

        A window of T samples meets at most ``m = ceil((T + length) / stride) + 1`` chunks, each adding
        at most one frame and ``length - stride`` samples of overlap to the ``T / hop`` frames.
        """
        t = exact(tr_s) * self.sample_rate_hz
        m = math.ceil((t + self.length) / self.stride) + 1
        return math.ceil((t + m * (self.length - self.stride)) / self.hop) + m


def model_chunking(codec) -> ModelChunking | None:
    """The model's chunking, or None for a model that encodes a file in one call (24 kHz)."""
    cfg = codec.config
    if cfg.chunk_length_s is None:
        return None
    if cfg.chunk_stride is None:
        raise ParameterError(f"{codec.name!r} sets chunk_length_s={cfg.chunk_length_s} but no overlap; "
                             "EncodecModel cannot decode it either. Set overlap in its config.json")
    return ModelChunking(codec.sample_rate_hz, int(cfg.chunk_length), int(cfg.chunk_stride), codec.hop,
                         bool(cfg.normalize))


def encode_chunks(codec, audio: np.ndarray, bandwidth_kbps: float) -> Iterator[tuple[np.ndarray, float]]:
    """Encode ``audio`` one model chunk at a time.

    Parameters
    ----------
    codec : Codec
        A normalising model (:func:`model_chunking` is not None).
    audio : (channel, sample) float32 at ``codec.sample_rate_hz`` (a memory map is read a chunk at a time)
    bandwidth_kbps : float

    Yields
    ------
    codes : (codebook, frame) int16, ``ceil(len / hop)`` frames of the chunk
    scale : float32 the chunk was divided by (1.0 when the model does not normalise)
    """
    import torch

    ch = model_chunking(codec)
    n = audio.shape[-1]
    # chunks are independent: k of them run side by side in k Python threads (torch releases the GIL), each
    # on one intra-op thread, so no LSTM step opens a parallel region that spins on a loaded machine
    # (giblet_store.codec.torch_threads); measured 60 s, 2 cores, load 10: 13.9 CPU s, EncodecModel.encode 55.1
    workers = max(1, min(MAX_CHUNK_THREADS, torch.get_num_threads()))
    with reproducible_torch(), ThreadPoolExecutor(workers, "giblet-chunks") as pool:  # same bits, any threads
        pending: deque = deque()
        for s in ch.starts(n):
            if len(pending) >= 2 * workers:  # a few chunks in flight: memory stays flat in the file's length
                yield pending.popleft().result()
            samples = np.array(audio[:, s : s + ch.length], dtype=np.float32)  # read from a memory map here
            pending.append(pool.submit(encode_one_chunk, codec, ch, samples, bandwidth_kbps))
        while pending:
            yield pending.popleft().result()


#: chunks encoded at once, each on one torch intra-op thread (see :func:`encode_chunks`)
MAX_CHUNK_THREADS = 4


def encode_one_chunk(codec, chunking: ModelChunking, samples: np.ndarray,
                     bandwidth_kbps: float) -> tuple[np.ndarray, np.float32]:
    """Encode one model chunk, as ``EncodecModel._encode_frame`` does (callers hold :func:`reproducible_torch`).

    ``samples``: (channel, sample) float32, the chunk's samples (``chunking.length``, fewer for the last).
    Returns its (codebook, frame) int16 codes and the float32 scale it was divided by. Each chunk is
    independent of the others, so a batch worker encoding chunk ``k`` alone gives the same bits.

    Runs on one torch intra-op thread, whatever the caller's count: the scale is a mean over the chunk's
    samples, and torch's reduction rounds its last bit by the thread count (measured: 16 of 61 scales of
    a 60 s file differ between 1 and 2 threads; the codes did not). One thread makes the bits the same
    in any process -- an extract, a batch worker -- and equal to the model's own ``encode`` on one
    thread. (Convolutions and the quantizer give the same bits for any count with oneDNN off.)
    """
    import torch

    from .torch_threads import one_intra_op_thread

    model = codec.model
    with one_intra_op_thread(), torch.inference_mode():
        x = aligned_tensor(samples)[None].to(codec.device)  # (1, channel, sample)
        scale = torch.ones((1, 1, 1), dtype=x.dtype, device=x.device)
        if chunking.normalize:  # as EncodecModel._encode_frame
            mono = torch.sum(x, 1, keepdim=True) / x.shape[1]
            scale = mono.pow(2).mean(dim=-1, keepdim=True).sqrt() + 1e-8
            x = x / scale
        codes = model.quantizer.encode(model.encoder(x), bandwidth_kbps)  # (codebook, 1, frame)
    return codes[:, 0].cpu().numpy().astype(np.int16), np.float32(scale.reshape(()).item())


def chunk_weight(first_chunk_samples: int) -> np.ndarray:
    """(sample,) float32 fade weight of ``EncodecModel._linear_overlap_add`` for chunks this long.

    The model builds it from the decoded length of the *first* chunk (frames x hop) and applies its
    first ``len`` samples to every chunk.
    """
    import torch

    t = torch.linspace(0, 1, first_chunk_samples + 2, dtype=torch.float32)[1:-1]
    return (0.5 - (t - 0.5).abs()).numpy()


def _decode_one(codec, codes: np.ndarray, scale: float) -> np.ndarray:
    """One chunk's audio times its scale, as ``EncodecModel._decode_frame``, on one torch intra-op thread."""
    import torch

    from .torch_threads import one_intra_op_thread

    with one_intra_op_thread(), torch.inference_mode():
        c = torch.from_numpy(np.ascontiguousarray(codes, dtype=np.int64))[:, None].to(codec.device)
        out = codec.model.decoder(codec.model.quantizer.decode(c))  # (1, channel, sample)
        return (out * torch.tensor(scale, dtype=out.dtype).view(1, 1, 1))[0].cpu().numpy()


def _decoded(codec, chunks: Iterable[tuple[int, np.ndarray, float, int]]) -> Iterator[tuple[int, int, np.ndarray]]:
    """(position, weight_offset, audio) of every chunk, in the given order, decoded side by side.

    As :func:`encode_chunks`: up to ``min(MAX_CHUNK_THREADS, torch threads)`` chunks at once in Python
    threads, each on one intra-op thread (the decoder's LSTM steps are too small to split), at most
    twice that many in flight, so memory does not grow with the file.
    """
    import torch

    workers = max(1, min(MAX_CHUNK_THREADS, torch.get_num_threads()))
    with reproducible_torch(), ThreadPoolExecutor(workers, "giblet-decode") as pool:  # same bits, any threads
        pending: deque = deque()
        for pos, codes, scale, w0 in chunks:
            if len(pending) >= 2 * workers:
                p, w, fut = pending.popleft()
                yield p, w, fut.result()
            pending.append((pos, w0, pool.submit(_decode_one, codec, codes, scale)))
        while pending:
            p, w, fut = pending.popleft()
            yield p, w, fut.result()


def iter_decode_chunks(codec, chunks: Iterable[tuple[int, np.ndarray, float, int]], weight: np.ndarray,
                       out_start: int, out_stop: int) -> Iterator[np.ndarray]:
    """Decode chunks and overlap-add them as ``EncodecModel.decode``, yielding finished samples in order.

    Parameters
    ----------
    chunks : iterable of (position, codes, scale, weight_offset), in increasing position
        ``position``: stimulus sample of the chunk's first given frame (``k * stride + j0 * hop``);
        ``codes`` (codebook, frame) int of frames ``j0...`` of the chunk (all of them for an exact
        decode; a chunk cut by the TR grid is decoded from the frames there are); its scale;
        ``weight_offset`` = ``j0 * hop``, where in ``weight`` the given frames start.
    weight : (sample,) float32, :func:`chunk_weight`
    out_start, out_stop : int
        Stimulus samples to yield, ``[out_start, out_stop)``.

    Yields
    ------
    (channel, sample) float32 pieces, together exactly ``out_stop - out_start`` samples.
    """
    import torch

    base, acc, wsum = out_start, None, None  # acc/wsum cover samples [base, base + len)
    with torch.inference_mode():
        for pos, w0, audio in _decoded(codec, chunks):
            if acc is not None and pos > base:  # every sample before pos is final: no later chunk reaches it
                cut = min(pos, out_stop) - base
                if cut > 0:
                    yield acc[:, :cut] / wsum[:cut]
                    acc, wsum, base = acc[:, cut:], wsum[cut:], base + cut
            wgt = weight[w0 : w0 + audio.shape[-1]]
            audio = audio[:, : len(wgt)]
            lo, hi = max(pos, base), min(pos + audio.shape[-1], out_stop)
            if hi <= lo:
                continue
            if acc is None:
                acc = np.zeros((audio.shape[0], 0), np.float32)
                wsum = np.zeros(0, np.float32)
            if hi - base > acc.shape[-1]:
                grow = hi - base - acc.shape[-1]
                acc = np.concatenate([acc, np.zeros((acc.shape[0], grow), np.float32)], axis=1)
                wsum = np.concatenate([wsum, np.zeros(grow, np.float32)])
            acc[:, lo - base : hi - base] += wgt[lo - pos : hi - pos] * audio[:, lo - pos : hi - pos]
            wsum[lo - base : hi - base] += wgt[lo - pos : hi - pos]
    if acc is not None and acc.shape[-1]:
        yield acc / wsum


def layout_positions(positions: np.ndarray, sample_rate_hz: int, grid: TrGrid, slots: int,
                     warn: bool = True) -> FrameLayout:
    """Lay frames that start at the given stimulus samples on ``grid`` (exact integer arithmetic).

    Parameters
    ----------
    positions : (frame,) int64, non-decreasing
        Stimulus sample at which each frame starts.
    slots : int
        Frame-axis length (:meth:`ModelChunking.slots`).

    Returns
    -------
    FrameLayout
        As :meth:`TrGrid.layout`: TR ``i`` holds frames ``starts[i]:starts[i+1]``, those with
        ``onset + i*tr <= position / sample_rate < onset + (i+1)*tr``.
    """
    on = exact(grid.onset_s) * sample_rate_hz  # TR i starts at sample on + i * p
    p = exact(grid.tr_s) * sample_rate_hz
    d = math.lcm(on.denominator, p.denominator)
    a, b = int(on * d), int(p * d)
    tr_of = np.floor_divide(np.asarray(positions, np.int64) * d - a, b)
    n = len(tr_of)
    natural = int(tr_of[-1]) + 1 if n else 0
    n_trs = max(natural, 0) if grid.n_trs is None else grid.n_trs
    starts = np.searchsorted(tr_of, np.arange(n_trs + 1), side="left").astype(np.int64)
    n_frames = np.diff(starts)
    if n_frames.size and n_frames.max() > slots:
        raise ParameterError(f"{int(n_frames.max())} frames fall in one TR, more than the {slots} slots "
                             "the frame axis holds; report this with the model's config.json")
    before, after = int(starts[0]), int(n - starts[-1])
    if warn and (before or after):
        import warnings

        warnings.warn(f"{before} frame(s) precede TR 0 and {after} follow the last TR (n_trs={n_trs}, "
                      f"onset_s={grid.onset_s}); they are not stored (attributes frames_before_grid, "
                      "frames_after_grid); the chunks they belong to decode from their stored frames only",
                      UserWarning, stacklevel=3)
    return FrameLayout(slots=slots, starts=starts, n_stream_frames=n, frames_before_grid=before,
                       frames_after_grid=after)


def config_chunking(name: str, revision: str | None = None) -> dict | None:
    """What of a model's chunking changes its codes, read from its ``config.json`` (no model run).

    Returns None for a model that encodes a file in one call (``chunk_length_s`` unset), else
    ``{"chunk_length_s", "overlap", "normalize"}``. Reads a local directory's file or the hub cache's;
    loads the model only when neither has it.
    """
    import json
    from pathlib import Path

    from .models import _is_local, load_codec

    path = None
    if _is_local(name):
        path = Path(name).expanduser() / "config.json"
    else:
        try:
            from huggingface_hub import try_to_load_from_cache

            found = try_to_load_from_cache(name, "config.json", revision=revision)
            path = Path(found) if isinstance(found, str) else None
        except (OSError, ValueError):  # no readable cache, or not a repo id: load the model instead
            path = None
    try:
        cfg = json.loads(path.read_text()) if path is not None else None
    except (OSError, ValueError):
        cfg = None
    if cfg is None:
        cfg = load_codec(name, revision).config.to_dict()
    if cfg.get("chunk_length_s") is None:
        return None
    return {"chunk_length_s": float(cfg["chunk_length_s"]), "overlap": cfg.get("overlap"),
            "normalize": bool(cfg.get("normalize", False))}
