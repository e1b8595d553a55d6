"""EnCodec through ``transformers.EncodecModel``: load, identify, encode, decode, dequantise.

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
import functools
import hashlib
import math
import os
import socket
import threading
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .errors import ModelError, ParameterError
from .params import Params

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

DEFAULT_MODEL = "facebook/encodec_24khz"
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "config.json")


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
        peak RSS with two threads, and faster than one whole-file call.
    revision : str or None
        Hub revision (branch, tag or commit); ignored for local directories.
    """

    name: ClassVar[str] = "codec"
    model: str = DEFAULT_MODEL
    bandwidth_kbps: float = 6.0
    chunk_s: float = 10.0
    context_s: float = 2.0
    revision: str | None = None

    def __post_init__(self):
        for field in ("bandwidth_kbps", "chunk_s", "context_s"):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ParameterError(f"{field} must be a finite number, got {v!r}")
            object.__setattr__(self, field, float(v))
        if self.bandwidth_kbps <= 0:
            raise ParameterError(f"bandwidth_kbps must be positive, got {self.bandwidth_kbps}")
        if self.chunk_s <= 0:
            raise ParameterError(f"chunk_s must be positive seconds, got {self.chunk_s}")
        if self.context_s < 0:
            raise ParameterError(f"context_s must be >= 0 seconds, got {self.context_s}")
        if not isinstance(self.model, str) or not self.model:
            raise ParameterError(f"model must be a hub name or a directory, got {self.model!r}")


# --------------------------------------------------------------------------------------- loading
def _is_local(name: str) -> bool:
    return os.path.isdir(name) or name.startswith((".", "/", "~")) or os.sep in name and os.path.exists(name)


def _local_weights_sha256(directory: str) -> str:
    """sha256 over the weight and config files of a saved model (names and bytes)."""
    d = Path(directory).expanduser()
    files = sorted(p for p in d.iterdir() if p.name in _WEIGHT_FILES or p.suffix == ".safetensors")
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode() + b"\0")
        with open(p, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


@functools.lru_cache(maxsize=64)
def _local_sha_cached(directory: str, stamp: tuple) -> str:
    return _local_weights_sha256(directory)


def _hub_reachable(timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def _no_weights_message(name: str, why: str) -> str:
    return (
        f"could not load EnCodec model {name!r}: {why}. Either give --model a directory saved with "
        f"EncodecModel.save_pretrained (on a machine with network: "
        f"`python -c \"from transformers import EncodecModel; "
        f"EncodecModel.from_pretrained('{DEFAULT_MODEL}').save_pretrained('encodec_24khz')\"`), "
        f"or run where https://huggingface.co is reachable so the weights can be downloaded"
    )


def _check_local_dir(name: str) -> Path:
    d = Path(name).expanduser()
    if not d.exists():
        raise ModelError(f"model directory {name!r} does not exist; give a directory saved with save_pretrained")
    if not d.is_dir():
        raise ModelError(f"model path {name!r} is a file; give the directory saved with save_pretrained")
    cfg = d / "config.json"
    if not cfg.exists():
        raise ModelError(f"{name!r} has no config.json, so it is not a saved transformers model; "
                         "give a directory saved with EncodecModel.save_pretrained")
    import json

    try:
        model_type = json.loads(cfg.read_text()).get("model_type")
    except (ValueError, OSError) as exc:
        raise ModelError(f"{str(cfg)!r} is not valid JSON ({exc})") from None
    if model_type != "encodec":
        raise ModelError(f"{name!r} holds a {model_type!r} model, not an EnCodec model (model_type 'encodec')")
    return d


def model_identity(name: str, revision: str | None = None) -> dict[str, Any]:
    """What identifies the weights, without running the model.

    Local directory: ``{"model_sha256": ...}`` over its weight and config files (the path is not
    part of it: moving the directory keeps the key). Hub name: ``{"model_id", "model_revision"}``
    with the revision resolved to a commit from the local hub cache when possible.
    """
    if _is_local(name):
        d = _check_local_dir(name)
        stamp = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(d.iterdir()))
        return {"model_sha256": _local_sha_cached(str(d.resolve()), stamp)}
    commit = _cached_hub_commit(name, revision)
    if commit is None:
        codec = load_codec(name, revision)
        commit = codec.identity.get("model_revision")
    return {"model_id": name, "model_revision": commit or revision or "main"}


def _cached_hub_commit(name: str, revision: str | None) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(name, "config.json", revision=revision)
    except Exception:
        return None
    if isinstance(path, str):
        parts = Path(path).parts
        if "snapshots" in parts:
            return parts[parts.index("snapshots") + 1]
    return None


@dataclass
class Codec:
    """A loaded, frozen EnCodec model and what the store needs to know of it."""

    model: Any
    name: str
    identity: dict
    device: str

    @property
    def config(self):
        return self.model.config

    @property
    def spec(self) -> tuple:
        """``(name, revision, device)``: what a task in another thread or process passes to
        :func:`load_codec` to get this model (loaded once per process)."""
        revision = None if "model_sha256" in self.identity else self.identity.get("model_revision")
        return (self.name, revision, self.device)

    @property
    def sample_rate_hz(self) -> int:
        return int(self.config.sampling_rate)

    @property
    def channels(self) -> int:
        return int(self.config.audio_channels)

    @property
    def hop(self) -> int:
        return int(np.prod(self.config.upsampling_ratios))

    @property
    def frame_rate(self) -> Fraction:
        """Exact frames per second (24000/320 = 75)."""
        return Fraction(self.sample_rate_hz, self.hop)

    @property
    def codebook_size(self) -> int:
        return int(self.config.codebook_size)

    @property
    def bandwidths(self) -> list[float]:
        return [float(b) for b in self.config.target_bandwidths]

    def n_codebooks(self, bandwidth_kbps: float) -> int:
        """Codebooks the model uses at ``bandwidth_kbps``; error if it does not offer it."""
        if not any(math.isclose(bandwidth_kbps, b) for b in self.bandwidths):
            offered = ", ".join(f"{b:g}" for b in self.bandwidths)
            raise ParameterError(
                f"bandwidth {bandwidth_kbps:g} kbps is not offered by {self.name}; choose one of {offered}"
            )
        return int(self.model.quantizer.get_num_quantizers_for_bandwidth(bandwidth_kbps))


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, revision: str | None, device: str, stamp: tuple) -> Codec:
    import torch  # noqa: F401
    from transformers import EncodecModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()

    local = _is_local(name)
    if local:
        _check_local_dir(name)
    try:
        if local:
            model = EncodecModel.from_pretrained(str(Path(name).expanduser()))
        else:
            try:
                model = EncodecModel.from_pretrained(name, revision=revision, local_files_only=True)
            except OSError:
                if not _hub_reachable():
                    raise ModelError(_no_weights_message(name, "it is not in the local hub cache and "
                                                         "huggingface.co cannot be reached")) from None
                model = EncodecModel.from_pretrained(name, revision=revision)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(_no_weights_message(name, f"{type(exc).__name__}: {exc}")) from None
    if getattr(model.config, "model_type", None) != "encodec":
        raise ModelError(f"{name!r} is not an EnCodec model")
    if model.config.chunk_length_s is not None or model.config.normalize:
        raise ModelError(
            f"{name!r} normalises audio in {model.config.chunk_length_s} s chunks with per-chunk scales "
            "(the 48 kHz model); the store reserves a `scales` variable for it, but only causal, "
            "unnormalised models (facebook/encodec_24khz) are wired up in this version"
        )
    try:
        model = model.to(device)
    except Exception as exc:
        raise ModelError(f"cannot move the model to device {device!r}: {exc}") from None
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if local:
        identity = {"model_sha256": _local_weights_sha256(name)}
    else:
        identity = {"model_id": name, "model_revision": getattr(model.config, "_commit_hash", None) or revision or "main"}
    return Codec(model=model, name=name, identity=identity, device=device)


def entry_model_name(attrs: dict, model: str | None = None) -> str:
    """The model to load for a codes entry: ``model`` if given, else the entry's hub name.

    Raises
    ------
    ParameterError
        The entry was made from a local directory and no ``model`` was given.
    """
    name = model or attrs.get("model_id")
    if name is None:
        raise ParameterError(
            f"entry {str(attrs.get('key', ''))[:16]} was made with a local model ({attrs.get('model')}, sha256 "
            f"{str(attrs.get('model_sha256', ''))[:12]}); give that directory (model=..., CLI --model)"
        )
    return name


def codec_for_entry(attrs: dict, model: str | None = None, device: str = "cpu", purpose: str = "decode") -> "Codec":
    """Load the model that made a codes entry, refusing other weights.

    Raises
    ------
    ParameterError
        No model can be named (see :func:`entry_model_name`), or the given one has other weights.
    """
    name = entry_model_name(attrs, model)
    codec = load_codec(name, attrs.get("model_revision") if model is None else None, device)
    mine = {k: attrs[k] for k in ("model_sha256", "model_id") if k in attrs}
    if mine and not all(codec.identity.get(k) == v for k, v in mine.items()):
        raise ParameterError(
            f"model {name!r} is not the one that made entry {str(attrs.get('key', ''))[:16]} "
            f"(entry: {mine}, given: {codec.identity}); {purpose} with the same weights"
        )
    return codec


def load_codec(name: str = DEFAULT_MODEL, revision: str | None = None, device: str = "cpu") -> Codec:
    """Load (once per process) a frozen EnCodec model from the hub or a local directory.

    Raises
    ------
    ModelError
        The weights cannot be found, or the directory is not an EnCodec model.
    """
    stamp: tuple = ()
    if _is_local(name):
        d = _check_local_dir(name)
        stamp = tuple((p.name, p.stat().st_mtime_ns) for p in sorted(d.iterdir()))
        name = str(d.resolve())
    return _load_cached(name, revision, device, stamp)


# -------------------------------------------------------------------------------------- encoding
_TORCH_LOCK = threading.Lock()
_torch_users = 0
_torch_saved: bool | None = None


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
        x = torch.from_numpy(np.array(audio, dtype=np.float32, order="C"))[None].to(codec.device)  # own copy
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
    """
    import torch

    codes = prepare_codes(codes, codec.codebook_size)
    n = codes.shape[-1]
    fr = codec.frame_rate
    chunk = max(1, round(chunk_s * fr))
    context = round(context_s * fr)
    hop = codec.hop
    out = np.zeros((codec.channels, n * hop), np.float32)
    with torch.inference_mode():
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
