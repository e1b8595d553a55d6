"""Decode anything to audio: code arrays, and reconstruction entries of codes, embeddings or mel.

- :func:`decode_codes`: a (codebook, frame) array (int, or float predictions) -> audio with the
  EnCodec decoder. Float values are rounded and values outside the codebook clipped, and one
  warning counts both (:class:`CodesAdjustedWarning`).
- :func:`reconstruction_audio` / :func:`decode_reconstruction`: a reconstruction entry (or a TR
  range of it) -> audio / wav. Codes are decoded directly; embeddings (and per-TR embedding means,
  repeated over each TR's real frames) go through :func:`giblet_store.features.quantise` at the target's
  bandwidth (or ``bandwidth_kbps``) first; mel goes through Griffin-Lim with the target's mel
  parameters. The audio has exactly ``frames * hop`` samples of the selected TRs, so it lines up
  with the same TRs of the original.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from ..audio.load import write_wav
from ..errors import ParameterError

__all__ = ["CodesAdjustedWarning", "decode_codes", "decode_codes_on_grid", "reconstruction_audio",
           "decode_reconstruction", "select_trs", "reconstruction_start_comment"]


class CodesAdjustedWarning(UserWarning):
    """Codes were rounded (float predictions) or clipped to the codebook before decoding; the message counts them."""


def _codec(model, device: str):
    if hasattr(model, "model") and hasattr(model, "hop"):  # a loaded Codec
        return model
    if not isinstance(model, str) or not model:
        raise ParameterError(f"model must be a hub name, a save_pretrained directory or a loaded Codec; got {model!r}")
    from ..codec.encodec import load_codec

    return load_codec(model, None, device)


def _integer_codes(codes: np.ndarray, codebook_size: int) -> np.ndarray:
    """(codebook, frame) -> int64 in [0, codebook_size); warns once with the counts of what changed."""
    codes = np.asarray(codes)
    if codes.dtype.kind not in "fiu":
        raise ParameterError(f"codes must be numbers, got dtype {codes.dtype}")
    n_round = 0
    if codes.dtype.kind == "f":
        if not np.isfinite(codes).all():
            raise ParameterError(f"codes hold {int((~np.isfinite(codes)).sum())} NaN/inf value(s); predicted codes "
                                 "must be finite (select real frames only: n_frames=)")
        rounded = np.rint(codes)
        n_round = int((rounded != codes).sum())
        codes = rounded
    n_clip = int(((codes < 0) | (codes > codebook_size - 1)).sum())
    if n_round or n_clip:
        warnings.warn(
            f"rounded {n_round} non-integer and clipped {n_clip} out-of-range code value(s) of {codes.size} to "
            f"integers in [0, {codebook_size - 1}] before decoding",
            CodesAdjustedWarning, stacklevel=3)
    return np.clip(codes, 0, codebook_size - 1).astype(np.int64)


def decode_codes(codes, *, model, n_frames=None, device: str = "cpu") -> np.ndarray:
    """Decode EnCodec codes to audio.

    Parameters
    ----------
    codes : (codebook, frame) int or float stream, or (tr, codebook, frame) on a TR grid with
        ``n_frames``; float values are rounded and out-of-range values clipped, with one
        :class:`CodesAdjustedWarning` that counts them
    model : hub name, save_pretrained directory or loaded Codec; its codebook count must cover
        the codes'
    n_frames : (tr,) int, real frames per TR (needed for the (tr, codebook, frame) layout)
    device : torch device

    Returns
    -------
    (channel, sample) float32 at the model's sample rate, exactly ``frames * hop`` samples

    Raises
    ------
    ParameterError
        Wrong dims, too many codebooks for the model, NaN/inf, (tr, ...) codes without n_frames.
    """
    from ..codec.encodec import decode_stream
    from ..grid import from_tr

    c = np.asarray(codes.detach().cpu().numpy() if hasattr(codes, "detach") else codes)
    if c.ndim == 3:
        if n_frames is None:
            raise ParameterError("(tr, codebook, frame) codes need n_frames= (real frames per TR) to drop the tails")
        nf = np.asarray(n_frames, dtype=np.int64)
        if nf.shape != (c.shape[0],) or nf.min(initial=0) < 0 or nf.max(initial=0) > c.shape[2]:
            raise ParameterError(f"n_frames must be ({c.shape[0]},) ints in [0, {c.shape[2]}]; got {nf.shape}")
        c = from_tr(c, nf)
    elif c.ndim != 2:
        raise ParameterError(f"codes must be (codebook, frame) or (tr, codebook, frame); got shape {c.shape}")
    codec = _codec(model, device)
    n_max = len(codec.model.quantizer.layers)
    if not 1 <= c.shape[0] <= n_max:
        raise ParameterError(f"codes have {c.shape[0]} codebooks; model {codec.name} has 1..{n_max}")
    return decode_stream(codec, _integer_codes(c, codec.codebook_size))


def select_trs(ds, trs, entry):
    """The reconstruction's rows for target TRs ``trs`` (``"A:B"`` or (A, B), stop exclusive; default all)."""
    have = ds["tr"].values.astype(np.int64)
    if trs is None:
        return ds
    if isinstance(trs, str):
        a, sep, b = trs.partition(":")
        try:
            a, b = (int(a) if a.strip() else int(have.min())), (int(b) if b.strip() else int(have.max()) + 1)
        except ValueError:
            raise ParameterError(f"TR range {trs!r} is not START:STOP with integers (e.g. 10:20)") from None
    else:
        a, b = (int(t) for t in trs)
    want = np.arange(a, b)
    missing = np.setdiff1d(want, have)
    if want.size == 0 or missing.size:
        raise ParameterError(
            f"TR range {a}:{b} is outside (or not all in) reconstruction {entry.key[:16]}'s TRs "
            f"{int(have.min())}..{int(have.max())} ({have.size} TRs); give a range of reconstructed TRs")
    return ds.sel(tr=want)


def _griffin_lim(mel_db: np.ndarray, mel_params: dict, n_iter: int) -> tuple[np.ndarray, int]:
    import librosa

    from .mel import MelParams

    params = MelParams.from_dict(mel_params)
    M = mel_db.astype(np.float64)
    if params.db:
        M = params.ref * np.power(10.0, M / (10.0 if params.power == 2.0 else 20.0))
    kw = params.librosa_kwargs()
    stft = librosa.feature.inverse.mel_to_stft(M, sr=kw["sr"], n_fft=kw["n_fft"], power=kw["power"], fmin=kw["fmin"],
                                               fmax=kw["fmax"], htk=kw["htk"], norm=kw["norm"])
    audio = librosa.griffinlim(stft, n_iter=n_iter, hop_length=kw["hop_length"], win_length=kw["win_length"],
                               n_fft=kw["n_fft"], window=kw["window"], center=True, pad_mode="constant",
                               random_state=0)  # seeded phase: the same entry always gives the same audio
    n_out = M.shape[-1] * params.hop
    audio = np.pad(audio[:n_out], (0, max(0, n_out - audio.shape[-1])))
    return np.asarray(audio, np.float32)[None], params.sample_rate_hz


def reconstruction_audio(store, entry, trs=None, *, model: str | None = None, bandwidth_kbps: float | None = None,
                         device: str = "cpu", n_iter: int = 32) -> tuple[np.ndarray, int]:
    """Audio of a reconstruction entry (or target TRs ``START:STOP`` of it).

    Parameters
    ----------
    store : Store
    entry : the reconstruction entry (or key)
    trs : ``"A:B"`` or (A, B), target TR indices (stop exclusive) that the entry holds; default all
    model : the EnCodec model (default: the target's hub model; a local-model target needs its directory)
    bandwidth_kbps : embeddings only: quantise at this bandwidth (default: the target's)
    n_iter : mel only: Griffin-Lim iterations

    Returns
    -------
    audio : (channel, sample) float32, ``frames * hop`` samples of the selected TRs
    sample_rate_hz : int

    Raises
    ------
    ParameterError
        Not a reconstruction entry; TRs it does not hold; other model weights than the target's.
    """
    from ..codec.encodec import codec_for_entry
    from ..grid import from_tr
    from .quantise import quantise

    entry = store.get(entry)
    if entry.kind != "reconstruction":
        raise ParameterError(f"entry {entry.key[:16]} is a {entry.kind!r} entry; this decodes reconstruction entries")
    feature = entry.attrs["feature"]
    ds = select_trs(store.open(entry), trs, entry)
    n = ds["n_frames"].values.astype(np.int64)
    x = ds[feature].values
    if feature == "mel":
        return _griffin_lim(from_tr(x, n), entry.attrs["mel_params"], n_iter)
    codec = codec_for_entry(entry.attrs, model, device, purpose="decode")
    if feature == "embedding_mean":  # one vector per TR, repeated over its real frames
        slots = int(n.max(initial=0))
        x = np.where((np.arange(slots)[None, :] < n[:, None])[..., None], x[:, None, :], np.nan).astype(np.float32)
    if feature in ("embeddings", "embedding_mean"):
        bw = bandwidth_kbps if bandwidth_kbps is not None else entry.attrs.get("bandwidth_kbps")
        if bw is None:
            raise ParameterError(f"reconstruction {entry.key[:16]} names no bandwidth; give bandwidth_kbps (--bandwidth)")
        x = quantise(x, model=codec, bandwidth_kbps=float(bw))
    elif bandwidth_kbps is not None:
        raise ParameterError("bandwidth_kbps applies to embeddings reconstructions; codes keep their codebooks")
    if "chunk_stride_samples" in entry.attrs:  # the 48 kHz model: the stimulus's chunks and their scales
        rows = ds["tr"].values.astype(np.int64)
        return decode_codes_on_grid(store, entry.attrs["target_key"], x, n, rows, model=codec), codec.sample_rate_hz
    return decode_codes(from_tr(x, n), model=codec), codec.sample_rate_hz


def decode_codes_on_grid(store, grid_entry, codes, n_frames, rows, *, model=None, device: str = "cpu") -> np.ndarray:
    """Decode (tr, codebook, frame) codes that stand in for TRs ``rows`` of a stimulus entry's grid.

    With a model that encodes a file in one call (24 kHz) this is :func:`decode_codes` of the real
    frames. With a normalised-chunk model (48 kHz) the codes take the place of the stimulus's codes
    on those TRs, and every chunk is decoded times the stimulus's **stored** scale for that chunk
    (the codes carry the loudness-normalised chunks only) and overlap-added as the model's decode;
    a chunk with frames outside ``rows`` decodes from the frames there are (a
    :class:`~giblet_store.features.codes_normalised.DecodeIncompleteWarning`).

    Parameters
    ----------
    grid_entry : the stimulus's codes entry, or an entry derived from it (embeddings, HRF ...), or key
    codes : (tr, codebook, frame) int or float (see :func:`decode_codes`), on the entry's frame slots
    n_frames : (tr,) int, real frames per TR (the entry's own on those TRs)
    rows : (tr,) int, increasing TR indices of the entry's grid the codes stand for
    model : hub name, directory or loaded Codec (default: the entry's model)

    Returns
    -------
    (channel, sample) float32, from the first real frame's start to the last one's end
    """
    from ..codec.encodec import codec_for_entry
    from ..grid import from_tr

    entry = store.get(grid_entry)
    codec = _codec(model, device) if model is not None else codec_for_entry(entry.attrs, None, device,
                                                                             purpose="decode")
    c, n, rows = np.asarray(codes), np.asarray(n_frames, np.int64), np.asarray(rows, np.int64)
    if (c.ndim != 3 or n.shape != (c.shape[0],) or rows.shape != n.shape or not rows.size or rows.min() < 0
            or np.any(np.diff(rows) <= 0) or n.min() < 0 or n.max() > c.shape[2]):
        raise ParameterError(f"codes must be (tr, codebook, frame) with n_frames (in 0..frame) and increasing rows "
                             f"for each TR; got codes {c.shape}, n_frames {n.shape}, rows {rows.shape}")
    if "chunk_stride_samples" not in entry.attrs:
        return decode_codes(from_tr(c, n), model=codec)
    real = np.arange(c.shape[2])[None, :] < n[:, None]
    ints = np.full(c.shape, -1, np.int64)
    ints.transpose(1, 0, 2)[:, real] = _integer_codes(c.transpose(1, 0, 2)[:, real], codec.codebook_size)
    return _chunked_audio(store, entry, rows, ints, n, codec)


def _stimulus_codes(store, entry):
    """The codes entry at or above ``entry`` (its scales decode the 48 kHz model's chunks)."""
    e = entry
    while e.kind != "codes":
        parent = e.attrs.get("parent")
        if not isinstance(parent, str):
            raise ParameterError(f"entry {entry.key[:16]}: no codes entry at or above it ({e.key[:16]} has one "
                                 "parent or more); its chunks' scales are needed to decode it")
        e = store.get(parent)
    return e


def _chunked_audio(store, entry, rows: np.ndarray, codes: np.ndarray, n: np.ndarray, codec) -> np.ndarray:
    """:func:`decode_codes_on_grid` of a normalised-chunk (48 kHz) stimulus: its scales, its frames' places."""
    import xarray as xr

    from .codes_normalised import iter_decode_entry

    tds = store.open(_stimulus_codes(store, entry))
    n_trs, slots = tds.sizes["tr"], tds.sizes["frame"]
    if rows.size == 0 or rows.max() >= n_trs:
        raise ParameterError(f"rows {rows.min(initial=0)}..{rows.max(initial=-1)} are not TRs of the stimulus's "
                             f"{n_trs}; give TRs of its grid")
    full = np.full((n_trs, codes.shape[1], slots), -1, np.int16)
    width = min(slots, codes.shape[2])
    full[rows, :, :width] = codes[:, :, :width]
    n_frames = np.zeros(n_trs, np.int16)
    n_frames[rows] = n
    work = xr.Dataset({"codes": (("tr", "codebook", "frame"), full), "n_frames": (("tr",), n_frames),
                       **{k: tds[k].variable for k in ("frame_time_s", "frame_chunk", "scales", "chunk_frames")}},
                      attrs=tds.attrs)
    a, b = int(rows.min()), int(rows.max()) + 1
    pieces, _ = iter_decode_entry(codec, work, slice(a, b), outside=f"TRs {a}:{b}, the ones decoded")
    return np.concatenate(list(pieces), axis=1).astype(np.float32)


def decode_reconstruction(store, entry, out_path: str | os.PathLike, trs=None, **kwargs) -> Path:
    """Write :func:`reconstruction_audio` to a wav file (float32, atomically); returns the path."""
    audio, sr = reconstruction_audio(store, entry, trs, **kwargs)
    return write_wav(out_path, audio, sr, reconstruction_start_comment(store, entry, trs, sr))


def reconstruction_start_comment(store, entry, trs, sample_rate_hz: int) -> str | None:
    """Where TRs ``trs`` of a reconstruction start in stimulus time, from its target entry's frames (None when the
    target is not in ``store``, or the TRs are not contiguous)."""
    from .codes import start_comment_of

    entry = store.get(entry)
    target = store.lookup(entry.attrs.get("target_key", ""), None) if entry.attrs.get("target_key") else None
    held = np.asarray(select_trs(store.open(entry), trs, entry)["tr"].values, dtype=np.int64)
    if target is None or held.size == 0 or np.any(np.diff(held) != 1):
        return None
    hop = int(entry.attrs.get("hop_samples") or entry.attrs.get("mel_params", {}).get("hop", 0))
    return start_comment_of(store, target, (int(held[0]), int(held[-1]) + 1), hop, sample_rate_hz) if hop else None


def cli_decode_reconstruction(store, entry, args) -> Path:
    """``giblet-store decode`` of a reconstruction entry; counted warnings go to stderr."""
    import sys

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CodesAdjustedWarning)
        out = decode_reconstruction(store, entry, args.output, trs=args.trs, model=args.model,
                                    bandwidth_kbps=getattr(args, "bandwidth", None), device=args.device)
    for w in caught:
        print(f"giblet-store: warning: {w.message}", file=sys.stderr)
    return out
