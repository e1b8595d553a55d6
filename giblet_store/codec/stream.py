"""Exact streaming EnCodec: encode and decode chunk by chunk with carried state, one chunk in memory.

The 24 kHz model is causal: every convolution pads on the left only and the two LSTMs run forwards, so a
frame depends on the audio to its left and nothing else. :class:`StreamEncoder` walks the encoder's layers
itself, chunk by chunk, and carries from one chunk to the next exactly what the whole-file call would see:

``EncodecConv1d`` (kernel ``k``, stride ``s``, dilation ``d``)
    the last ``(k - 1) * d + 1 - s`` samples of its (padded) input (``padding_total``). The first chunk is
    reflect-padded on the left as the whole-file call pads the file; the last chunk gets the whole-file
    call's extra right padding (reflect, ``(-n) % s`` samples, so the last frame is complete), computed
    on the carried samples plus the chunk exactly as on the whole file.
``EncodecLSTM``: the LSTM's ``(h, c)`` of both layers.
``EncodecConvTranspose1d`` (decoder; kernel ``2 s``, stride ``s``)
    the last ``ceil((k - s) / s)`` input frames, whose overlap-add reaches into this chunk. (ELU, residual
    sums and 1x1 shortcuts are pointwise and carry nothing.)

Chunk edges lie on the hop (320 samples = 1 frame), so every strided layer sees whole strides in every
chunk but the last. A file no longer than one chunk is a single whole-file call. Numerics: convolutions and
matmuls run on shorter inputs than in the whole-file call (oneDNN off, ``reproducible_torch``); codes are
usually bit-identical; a code flips only where two codewords are equidistant within float32 rounding
of the quantiser's distance terms (:func:`giblet_store.codec.ties.tie_report`).
Speed: one torch intra-op thread (:mod:`giblet_store.codec.torch_threads`: the LSTM steps frame by frame), and
:func:`stream_encode` runs one piece's LSTM in a second thread while the next piece's convolutions run.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from ..errors import ParameterError
from .torch_threads import one_intra_op_thread

__all__ = ["StreamEncoder", "StreamDecoder", "stream_encode", "stream_piece_s", "stream_decode", "iter_decode", "is_streamable",
           "tie_report", "STREAM_MIN_CHUNK_FRAMES"]

from .ties import tie_report  # noqa: E402  (re-exported: how two code streams differ)

#: smallest chunk (frames): the first chunk must be longer than any layer's left padding (7-tap convs: 6)
STREAM_MIN_CHUNK_FRAMES = 8
#: most audio (s) per stream piece in extraction: 5 s keeps 600 s under 1 GiB peak at 10 s pieces' speed
STREAM_PIECE_MAX_S = 5.0


def stream_piece_s(chunk_s: float) -> float:
    """Seconds per stream piece for ``chunk_s``, at most 5 s; codes keys record it (a piece can flip a tie)."""
    return min(float(chunk_s), STREAM_PIECE_MAX_S)


def is_streamable(config) -> str | None:
    """None if the model can be streamed exactly, else why not (a sentence).

    Parameters
    ----------
    config : transformers.EncodecConfig
    """
    if not config.use_causal_conv:
        return "its convolutions are not causal (use_causal_conv=False)"
    if config.norm_type != "weight_norm":
        return f"its norm_type {config.norm_type!r} normalises over the whole signal (time_group_norm)"
    if config.normalize or config.chunk_length_s is not None:
        return "it normalises audio per chunk (the 48 kHz model)"
    if float(config.trim_right_ratio) != 1.0:
        return f"its transposed convolutions trim {config.trim_right_ratio} of their padding on the right, not all"
    return None


def _check_streamable(codec, what: str) -> None:
    why = is_streamable(codec.config)
    if why is not None:
        raise ParameterError(
            f"the stream {what} needs a causal EnCodec model, but {codec.name!r} cannot be streamed exactly: "
            f"{why}; use encoder='chunked' (CLI --encoder chunked) for this model"
        )


def _chunk_frames(codec, chunk_s: float) -> int:
    from ..validate import positive_seconds

    chunk_s = positive_seconds("chunk_s", chunk_s)
    return max(STREAM_MIN_CHUNK_FRAMES, round(chunk_s * codec.sample_rate_hz / codec.hop))


class _Carry:
    """Per-layer state of one stream: conv tails, LSTM (h, c), transposed-conv input tails."""

    def __init__(self):
        self.state: dict[int, object] = {}
        self.first = True
        self.last = False

    # ------------------------------------------------------------------ layers
    def conv(self, layer, x):
        """``EncodecConv1d`` on the next piece ``x`` (batch, channel, time) of its input."""
        import torch
        import torch.nn.functional as F

        if self.first and self.last:
            return layer(x)  # the whole signal in one piece: the model's own call
        pt = int(layer.padding_total)
        stride = int(layer.stride)
        if self.first:
            xx = F.pad(x, (pt, 0), mode=layer.pad_mode) if pt else x
        else:
            xx = torch.cat([self.state[id(layer)], x], dim=-1) if pt else x
        if self.last:
            extra = (-x.shape[-1]) % stride  # earlier pieces hold whole strides: the whole call's extra pad
            if extra:
                xx = F.pad(xx, (0, extra), mode=layer.pad_mode)
        elif pt:
            self.state[id(layer)] = xx[..., xx.shape[-1] - pt:].clone()
        return layer.conv(xx)

    def conv_transpose(self, layer, x):
        """``EncodecConvTranspose1d`` (causal, everything trimmed on the right) on the next piece ``x``."""
        import torch

        conv = layer.conv
        k, s = conv.kernel_size[0], conv.stride[0]
        ctx = -(-(k - s) // s)  # input frames whose outputs overlap this piece's
        n = x.shape[-1]
        if self.first:
            y = conv(x)[..., : n * s]
        else:
            y = conv(torch.cat([self.state[id(layer)], x], dim=-1))[..., ctx * s: (ctx + n) * s]
        if not self.last and ctx:
            prev = self.state.get(id(layer))
            tail = x if prev is None else torch.cat([prev, x], dim=-1)
            self.state[id(layer)] = tail[..., tail.shape[-1] - ctx:].clone()
        return y

    def lstm(self, layer, x):
        """``EncodecLSTM`` (with its residual) continuing from the carried (h, c)."""
        seq = x.permute(2, 0, 1)
        y, hc = layer.lstm(seq, self.state.get(id(layer)))
        if not self.last:
            self.state[id(layer)] = hc
        return (y + seq).permute(1, 2, 0)

    def run(self, layers, x):
        """Apply a SEANet stack (encoder or decoder ``layers``) to the next piece.

        ELUs and residual sums work in place on tensors this call made (never on ``x`` itself, which
        a residual block's shortcut still needs): the same arithmetic, fewer full-size copies.
        """
        import torch.nn.functional as F
        from torch import nn
        from transformers.models.encodec import modeling_encodec as me

        owned = False  # x is the caller's tensor until a layer here makes a new one
        for layer in layers:
            if isinstance(layer, me.EncodecConv1d):
                x = self.conv(layer, x)
            elif isinstance(layer, me.EncodecConvTranspose1d):
                x = self.conv_transpose(layer, x)
            elif isinstance(layer, me.EncodecLSTM):
                x = self.lstm(layer, x)
            elif isinstance(layer, me.EncodecResnetBlock):
                h = self.run(layer.block, x)
                sc = layer.shortcut
                s = self.conv(sc, x) if isinstance(sc, me.EncodecConv1d) else sc(x)
                x = h.add_(s) if h is not x else s + h  # shortcut + block, as the model sums (a + b == b + a)
            elif type(layer) is nn.ELU:
                x = F.elu(x, layer.alpha, inplace=owned)
            else:
                x = layer(x)  # another layer may hand back its input: x stays as owned as it was
                continue
            owned = True
        return x


class StreamEncoder:
    """Encode one signal piece by piece with carried state; codes equal the whole-file call's.

    Parameters
    ----------
    codec : Codec
        A causal model (:func:`is_streamable`), e.g. facebook/encodec_24khz.
    bandwidth_kbps : float
        One of the model's bandwidths.

    Examples
    --------
    >>> enc = StreamEncoder(codec, 6.0)                           # doctest: +SKIP
    >>> parts = [enc.feed(a, last=False) for a in pieces[:-1]]    # doctest: +SKIP
    >>> parts.append(enc.feed(pieces[-1], last=True))             # doctest: +SKIP
    """

    def __init__(self, codec, bandwidth_kbps: float):
        from transformers.models.encodec import modeling_encodec as me

        _check_streamable(codec, "encoder")
        self.codec = codec
        self.bandwidth_kbps = float(bandwidth_kbps)
        self.n_codebooks = codec.n_codebooks(self.bandwidth_kbps)
        layers = list(codec.model.encoder.layers)
        cut = next((i for i, layer in enumerate(layers) if isinstance(layer, me.EncodecLSTM)), len(layers))
        self._stages = (layers[:cut], layers[cut:])  # convolutions | LSTM, ELU, last conv (+ quantiser)
        self.reset()

    def reset(self) -> None:
        """Forget the carried state: the next piece starts a new signal."""
        self._front, self._back = _Carry(), _Carry()
        self._done = False

    def feed(self, audio: np.ndarray, last: bool) -> np.ndarray:
        """Encode the next piece of the signal.

        Parameters
        ----------
        audio : (channel, sample) float32 at ``codec.sample_rate_hz``
            A whole number of hops unless ``last``; the first piece (unless it is also the last)
            holds at least ``STREAM_MIN_CHUNK_FRAMES`` hops.
        last : bool
            The signal ends with this piece (the whole-file call's right padding is applied).

        Returns
        -------
        (codebook, frame) int16, ``ceil(sample / hop)`` frames.
        """
        from .encodec import reproducible_torch

        with one_intra_op_thread(), reproducible_torch():
            return self._back_piece(self._front_piece(audio, last), last, audio.shape[-1])

    def _front_piece(self, audio: np.ndarray, last: bool):
        """The convolutions before the LSTM on the next piece -> (1, channel, frame) float32 tensor."""
        import torch

        from .encodec import aligned_tensor

        self._check_piece(audio.shape[-1], last)
        x = aligned_tensor(audio)[None].to(self.codec.device)
        c = self._front
        c.last = bool(last)
        with torch.inference_mode():
            h = c.run(self._stages[0], x)
        c.first = False
        self._done = bool(last)
        return h

    def _back_piece(self, h, last: bool, n: int) -> np.ndarray:
        """The LSTM onwards and the quantiser on the front's output ``h`` for ``n`` samples -> (codebook, frame) int16."""
        import torch

        c = self._back
        c.last = bool(last)
        with torch.inference_mode():
            emb = c.run(self._stages[1], h)
            codes = self.codec.model.quantizer.encode(emb, self.bandwidth_kbps)  # (codebook, batch, frame)
        c.first = False
        out = codes[:, 0].cpu().numpy().astype(np.int16)
        if out.shape[-1] != -(-n // self.codec.hop):
            raise AssertionError(f"stream encoder gave {out.shape[-1]} frames for {n} samples")  # invariant
        return out

    def _check_piece(self, n: int, last: bool) -> None:
        hop = self.codec.hop
        if self._done:
            raise ParameterError("this stream already ended (last=True); call reset() before the next signal")
        if n == 0:
            raise ParameterError("an empty piece of audio cannot be encoded; give at least one sample")
        if not last and n % hop:
            raise ParameterError(f"a piece that is not the last must hold whole hops ({hop} samples); got {n} "
                                 f"samples ({n % hop} past the last hop)")
        if self._front.first and not last and n < STREAM_MIN_CHUNK_FRAMES * hop:
            raise ParameterError(f"the first piece must hold at least {STREAM_MIN_CHUNK_FRAMES} hops "
                                 f"({STREAM_MIN_CHUNK_FRAMES * hop} samples) unless it is the whole signal; got {n}")


def _pieces(n: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of consecutive pieces of ``size`` covering ``0:n``; a short tail joins the first piece."""
    start = 0
    while start < n:
        stop = min(start + size, n)
        yield start, stop
        start = stop


def stream_encode(codec, audio: np.ndarray, bandwidth_kbps: float, chunk_s: float = 10.0,
                  on_piece: Callable[[int], object] | None = None) -> np.ndarray:
    """Encode a whole signal with :class:`StreamEncoder`, ``chunk_s`` of audio in memory at a time.

    Parameters
    ----------
    codec : Codec (causal)
    audio : (channel, sample) float32 at ``codec.sample_rate_hz``; may be a memory map (read piece by piece)
    bandwidth_kbps : float
    chunk_s : float
        Audio per piece, rounded to whole hops (at least ``STREAM_MIN_CHUNK_FRAMES``). Sets peak memory
        (about 15 MiB per second of chunk) and speed; the codes change at most by argmin ties.
    on_piece : callable, optional
        Called (from a worker thread) with each piece's sample count once its codes are done: progress.

    Returns
    -------
    (codebook, frame) int16, ``ceil(sample / hop)`` frames: those of one whole-file encode call
    (up to argmin ties, see :func:`tie_report`).
    """
    from concurrent.futures import ThreadPoolExecutor

    from .encodec import reproducible_torch

    size, hop, n = _chunk_frames(codec, chunk_s) * codec.hop, codec.hop, audio.shape[-1]
    enc = StreamEncoder(codec, bandwidth_kbps)
    out = np.empty((enc.n_codebooks, -(-n // hop)), np.int16)

    def back(h, start: int, stop: int) -> None:
        with one_intra_op_thread():  # this thread's own OpenMP thread count
            codes = enc._back_piece(h, stop == n, stop - start)
        out[:, start // hop: start // hop + codes.shape[-1]] = codes
        if on_piece is not None:
            on_piece(stop - start)

    # a two-stage pipeline: the LSTM of piece k runs in the worker while the convolutions of piece k + 1
    # run here (the LSTM is half the work and cannot be split: each frame needs the previous one)
    with one_intra_op_thread(), reproducible_torch(), ThreadPoolExecutor(1, "giblet-stream-lstm") as pool:
        pending = None
        for start, stop in _pieces(n, size):
            h = enc._front_piece(audio[..., start:stop], last=stop == n)
            if pending is not None:
                pending.result()  # at most one piece waits for the LSTM: memory stays one piece
            pending = pool.submit(back, h, start, stop)
        pending.result()
    return out


class StreamDecoder:
    """Decode a code stream piece by piece with carried decoder state (flat memory in its length).

    Parameters
    ----------
    codec : Codec
        A causal model (:func:`is_streamable`).
    """

    def __init__(self, codec):
        _check_streamable(codec, "decoder")
        self.codec = codec
        self.reset()

    def reset(self) -> None:
        """Forget the carried state: the next piece starts a new stream."""
        self._carry = _Carry()
        self._done = False

    def feed(self, codes: np.ndarray, last: bool) -> np.ndarray:
        """Decode the next piece of the stream.

        Parameters
        ----------
        codes : (codebook, frame) int in ``[0, codebook_size)``; the first piece (unless it is also the
            last) holds at least ``STREAM_MIN_CHUNK_FRAMES`` frames.
        last : bool

        Returns
        -------
        (channel, sample) float32, ``frame * hop`` samples.
        """
        import torch

        n = codes.shape[-1]
        if self._done:
            raise ParameterError("this stream already ended (last=True); call reset() before the next stream")
        if n == 0:
            raise ParameterError("an empty piece of codes cannot be decoded; give at least one frame")
        if self._carry.first and not last and n < STREAM_MIN_CHUNK_FRAMES:
            raise ParameterError(f"the first piece must hold at least {STREAM_MIN_CHUNK_FRAMES} frames unless it is "
                                 f"the whole stream; got {n}")
        c = self._carry
        c.last = bool(last)
        with one_intra_op_thread(), torch.inference_mode():  # its LSTM too steps frame by frame
            q = torch.from_numpy(np.ascontiguousarray(codes, dtype=np.int64))[:, None].to(self.codec.device)
            audio = c.run(self.codec.model.decoder.layers, self.codec.model.quantizer.decode(q))
        c.first = False
        self._done = bool(last)
        return audio[0].cpu().numpy().astype(np.float32, copy=False)


def iter_decode(codec, codes: np.ndarray, chunk_s: float = 10.0) -> Iterator[np.ndarray]:
    """Decode a whole code stream piece by piece: yields consecutive (channel, sample) float32 pieces.

    Parameters
    ----------
    codec : Codec (causal)
    codes : (codebook, frame) int in ``[0, codebook_size)`` (see :func:`~giblet_store.codec.encodec.prepare_codes`)
    chunk_s : float
        Stream time per piece (rounded to whole frames, at least ``STREAM_MIN_CHUNK_FRAMES``).
    """
    size = _chunk_frames(codec, chunk_s)
    n = codes.shape[-1]
    if n == 0:
        return
    dec = StreamDecoder(codec)
    for start, stop in _pieces(n, size):
        yield dec.feed(codes[:, start:stop], last=stop == n)


def stream_decode(codec, codes: np.ndarray, chunk_s: float = 10.0) -> np.ndarray:
    """Decode a whole code stream with :class:`StreamDecoder` (see :func:`iter_decode`).

    Returns
    -------
    (channel, sample) float32, ``frame * hop`` samples: the whole-stream decode within float rounding
    (measured: 1.2e-7 on a signal peaking at 0.17).
    """
    out = np.empty((codec.channels, codes.shape[-1] * codec.hop), np.float32)
    pos = 0
    for piece in iter_decode(codec, codes, chunk_s):
        out[:, pos: pos + piece.shape[-1]] = piece
        pos += piece.shape[-1]
    return out
