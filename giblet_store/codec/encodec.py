"""EnCodec through ``transformers.EncodecModel``: encode, decode, dequantise (loading: :mod:`giblet_store.codec.models`).

The model is frozen (``eval()``, ``torch.inference_mode()``). Long audio is encoded in chunks whose
edges and left context are multiples of the model's hop (320 samples at 24 kHz): the 24 kHz model
is causal (causal convolutions and a 2-layer LSTM), so the frames of a chunk depend only on audio to
their left, and ``context_s`` of left context makes them agree with a whole-file encode to within
the LSTM's fading memory. Peak memory is set by ``chunk_s + context_s``, not by the file's length.

The number of codebooks is the model's for the requested bandwidth (``get_num_quantizers_for_
bandwidth``), never a table: 24 kHz gives 1.5/3/6/12/24 kbps -> 2/4/8/16/32.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..errors import ParameterError
from ..params import Params
from ..validate import finite
from .models import (  # noqa: F401 (re-exported: loading and identity live in models.py)
    DEFAULT_MODEL, Codec, codec_for_entry, entry_model_name, load_codec, model_identity,
)

__all__ = [
    "DEFAULT_MODEL",
    "CodecParams",
    "Codec",
    "load_codec",
    "codec_for_entry",
    "entry_model_name",
    "model_identity",
    "encode_stream",
    "decode_stream",
    "prepare_codes",
    "dequantise",
    "reproducible_torch",
]


#: how a file is encoded: one pass with carried state, or chunks with recomputed left context
ENCODERS = ("stream", "chunked")
#: what a normalised, chunked model (48 kHz) is encoded with, whatever ``encoder`` asked (:mod:`giblet_store.codec.normalised`)
MODEL_CHUNKS = "model_chunks"


@dataclass(frozen=True)
class CodecParams(Params):
    """How codes are made.

    Parameters
    ----------
    model : str
        Hub name (``facebook/encodec_24khz``) or a local directory saved with ``save_pretrained``.
    bandwidth_kbps : float
        One of the model's ``target_bandwidths`` (24 kHz: 1.5, 3, 6, 12, 24).
    chunk_s : float
        Audio per encode call, rounded to whole hops. Bounds peak memory (about 15 MiB per second
        of chunk + context on CPU, per concurrent chunk).
    context_s : float
        Left context given to each chunk (rounded to whole hops); its frames are discarded.
        Defaults (10 s, 2 s) measured on 180 s: 99.95% of codes equal a whole-file encode, 1.17 GiB
        peak RSS with two threads, and faster than one whole-file call. Unused by the stream encoder.
    revision : str or None
        Hub revision (branch, tag or commit); ignored for local directories.
    encoder : {"stream", "chunked", "model_chunks"}
        ``stream`` (default; causal models only): one pass over the file with carried state
        (:mod:`giblet_store.codec.stream`), codes equal to one whole-file call up to rare argmin ties, one
        piece of at most ``min(chunk_s, 5 s)`` in memory; ``context_s`` is unused and left out of the
        key, which records that piece size (a different piece size can flip a tie).
        ``chunked``: independent chunks with recomputed left context, one Dask task each (spreads one
        file over many workers; ~0.1% of codes differ from the whole-file call).
        ``model_chunks``: a normalised, chunked model's own chunks (the 48 kHz model; chosen for such a
        model whatever is asked, recorded in its entries: :mod:`giblet_store.codec.normalised`).
    """

    name: ClassVar[str] = "codec"
    model: str = DEFAULT_MODEL
    bandwidth_kbps: float = 6.0
    chunk_s: float = 10.0
    context_s: float = 2.0
    revision: str | None = None
    encoder: str = "stream"

    def __post_init__(self):
        for field in ("bandwidth_kbps", "chunk_s", "context_s"):
            object.__setattr__(self, field, finite(field, getattr(self, field)))
        if self.bandwidth_kbps <= 0:
            raise ParameterError(f"bandwidth_kbps must be positive, got {self.bandwidth_kbps}")
        if self.chunk_s <= 0:
            raise ParameterError(f"chunk_s must be positive seconds, got {self.chunk_s}")
        if self.context_s < 0:
            raise ParameterError(f"context_s must be >= 0 seconds, got {self.context_s}")
        if not isinstance(self.model, str) or not self.model:
            raise ParameterError(f"model must be a hub name or a directory, got {self.model!r}")
        if self.encoder not in ENCODERS and self.encoder != MODEL_CHUNKS:
            raise ParameterError(f"encoder must be one of {', '.join(ENCODERS)}, got {self.encoder!r}")


# -------------------------------------------------------------------------------------- encoding
_TORCH_LOCK = threading.Lock()
_torch_users = 0
_torch_saved: bool | None = None


def aligned_tensor(array):
    """``array`` as a float32 torch tensor in torch's own (64-byte aligned) memory.

    BLAS kernels (MKL/OpenBLAS sgemm behind the convolutions and the codebook distances) may sum in
    another order when their input starts at another address modulo the vector width; a numpy
    buffer's alignment depends on the process's allocation history (glibc's heap and its moving
    mmap threshold), so codes of the same audio could differ by an argmin tie between a fresh
    process and one that has done other work. A copy into torch's allocator (always 64-byte
    aligned) gives the same bits whatever ran before.
    """
    import torch

    return torch.tensor(np.ascontiguousarray(array, dtype=np.float32))


@contextlib.contextmanager
def reproducible_torch():
    """CPU numerics that do not depend on the thread count, while inside (process-wide, re-entrant).

    oneDNN (mkldnn) convolutions round differently with one thread than with several (measured on the
    24 kHz encoder: 315 of 24k codes flip between 1 and 2 threads), so a single-process extract and a
    batch worker (one thread) would store different codes under one key. ATen's own kernels give
    the same bits for 1..8 threads at the same speed, so oneDNN is switched off while encoding.
    Reference-counted: concurrent encodes in threads of one process keep it off until the last ends.
    """
    global _torch_users, _torch_saved
    import torch

    with _TORCH_LOCK:
        if _torch_users == 0:
            _torch_saved = torch.backends.mkldnn.enabled
            torch.backends.mkldnn.enabled = False
        _torch_users += 1
    try:
        yield
    finally:
        with _TORCH_LOCK:
            _torch_users -= 1
            if _torch_users == 0:
                torch.backends.mkldnn.enabled = _torch_saved


def _encode_chunk(spec: tuple, audio: np.ndarray, context_frames: int, bandwidth_kbps: float) -> np.ndarray:
    """Encode one chunk; drop the frames of its left context.

    audio : (channel, sample) float32, starting ``context_frames`` hops before the chunk.
    Returns (codebook, frame) int16.
    """
    import torch

    codec = load_codec(*spec)
    model = codec.model
    with reproducible_torch(), torch.inference_mode():  # same bits whatever the thread count
        x = aligned_tensor(audio)[None].to(codec.device)
        emb = model.encoder(x)
        codes = model.quantizer.encode(emb, bandwidth_kbps)  # (codebook, batch, frame)
    return codes[:, 0, context_frames:].cpu().numpy().astype(np.int16)


def chunk_bounds(n_samples: int, hop: int, chunk_s: float, context_s: float, sample_rate_hz: int):
    """(start_with_context, start, stop) sample bounds of each chunk; all hop multiples but the last stop."""
    chunk = max(1, round(chunk_s * sample_rate_hz / hop)) * hop
    context = round(context_s * sample_rate_hz / hop) * hop
    return [(max(0, s - context), s, min(s + chunk, n_samples)) for s in range(0, n_samples, chunk)]


def encode_stream(codec: Codec, audio: np.ndarray, params: CodecParams):
    """Lazy chunked encode of a whole signal.

    Parameters
    ----------
    codec : Codec
    audio : (channel, sample) float32 at ``codec.sample_rate_hz``
    params : CodecParams

    Returns
    -------
    dask.array.Array, (codebook, frame) int16
        ``ceil(n_samples / hop)`` frames; one task per chunk.
    """
    import dask
    import dask.array as da

    n_q = codec.n_codebooks(params.bandwidth_kbps)
    hop = codec.hop
    spec = codec.spec
    parts = []
    for lo, start, stop in chunk_bounds(audio.shape[-1], hop, params.chunk_s, params.context_s, codec.sample_rate_hz):
        n_frames = -(-(stop - start) // hop)
        task = dask.delayed(_encode_chunk, pure=True)(
            spec, audio[..., lo:stop], (start - lo) // hop, params.bandwidth_kbps,
            dask_key_name=f"encode-{id(audio):x}-{start}",
        )
        parts.append(da.from_delayed(task, shape=(n_q, n_frames), dtype=np.int16))
    return da.concatenate(parts, axis=1)


# -------------------------------------------------------------------------------------- decoding
def prepare_codes(codes: np.ndarray, codebook_size: int) -> np.ndarray:
    """Integer codes for the decoder: float predictions are rounded and clipped, with a warning.

    Parameters
    ----------
    codes : (codebook, frame) int or float
    codebook_size : int

    Returns
    -------
    (codebook, frame) int64 in ``[0, codebook_size - 1]``
    """
    codes = np.asarray(codes)
    if codes.dtype.kind == "f":
        if not np.isfinite(codes).all():
            raise ParameterError("codes hold NaN or inf; predicted codes must be finite numbers")
        codes = np.rint(codes)
    lo, hi = 0, codebook_size - 1
    n_clipped = int(((codes < lo) | (codes > hi)).sum())
    if n_clipped:
        warnings.warn(
            f"clipped {n_clipped} of {codes.size} code values to [{lo}, {hi}] before decoding",
            UserWarning,
            stacklevel=2,
        )
    return np.clip(codes, lo, hi).astype(np.int64)


def decode_stream(codec: Codec, codes: np.ndarray, chunk_s: float = 20.0, context_s: float = 5.0) -> np.ndarray:
    """Decode a code stream to audio, in chunks with left context (the decoder is causal too).

    Parameters
    ----------
    codes : (codebook, frame) int or float (float is rounded and clipped, see :func:`prepare_codes`)

    Returns
    -------
    (channel, sample) float32 with exactly ``frame * hop`` samples.

    Raises
    ------
    ParameterError
        A normalised, chunked model (48 kHz): its codes need their chunks' scales (:func:`decode_entry`).
    """
    import torch

    if codec.config.chunk_length_s is not None:
        raise ParameterError(
            f"{codec.name!r} decodes in normalised overlapping chunks, each times its own scale (the 48 kHz "
            "model): one code stream without its chunks' scales cannot be decoded. Decode its codes entry with "
            "decode_entry (giblet-store decode), which has them")
    codes = prepare_codes(codes, codec.codebook_size)
    n = codes.shape[-1]
    fr = codec.frame_rate
    chunk = max(1, round(chunk_s * fr))
    context = round(context_s * fr)
    hop = codec.hop
    out = np.zeros((codec.channels, n * hop), np.float32)
    from .torch_threads import one_intra_op_thread

    # one intra-op thread, as the stream decoder runs: the same codes give the same samples on every path
    with one_intra_op_thread(), torch.inference_mode():
        for s in range(0, n, chunk):
            lo, stop = max(0, s - context), min(s + chunk, n)
            c = torch.from_numpy(codes[:, lo:stop])[:, None].to(codec.device)  # (codebook, batch, frame)
            audio = codec.model.decoder(codec.model.quantizer.decode(c))[0].cpu().numpy()
            seg = audio[:, (s - lo) * hop : (stop - lo) * hop]
            out[:, s * hop : s * hop + seg.shape[-1]] = seg
    return out


def dequantise(codec: Codec, codes: np.ndarray) -> np.ndarray:
    """RVQ decode: the sum of each codebook's vector for the codes.

    Parameters
    ----------
    codes : (codebook, frame) int, no -1 (take real frames first)

    Returns
    -------
    (frame, dim) float32, the quantizer output the decoder would consume.
    """
    import torch

    codes = np.asarray(codes)
    if codes.size and (codes.min() < 0 or codes.max() >= codec.codebook_size):
        raise ParameterError(
            f"codes must lie in [0, {codec.codebook_size - 1}] to dequantise; got values "
            f"{int(codes.min())}..{int(codes.max())} (drop -1 fill with n_frames first)"
        )
    with torch.inference_mode():
        c = torch.from_numpy(codes.astype(np.int64))[:, None].to(codec.device)
        emb = codec.model.quantizer.decode(c)  # (batch, dim, frame)
    return emb[0].T.cpu().numpy().astype(np.float32)
