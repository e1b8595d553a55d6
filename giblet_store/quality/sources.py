"""What a quality run compares: audio files or codes entries, brought onto one sample grid.

A source is an audio file (loaded mono with soundfile, resampled with soxr), a codes entry (its
real frames for a TR range, decoded with the entry's own model) or a mel entry (inverted with
Griffin-Lim, 32 iterations from a seeded phase, so the same entry always gives the same audio). A pair is brought to one sample
rate (the entry's, else the reference file's), to equal lengths (a difference of at most one frame
is trimmed; more is an error naming both lengths, unless ``align`` trims to the shorter), and given
the TR boundaries of every scored TR as sample indices:

- with an entry, TR ``k`` is exactly the samples of its frames, ``n_frames[k] * hop`` of them;
- with two files, TR ``k`` is the samples ``n`` with ``floor((n / sr - onset) / tr) == k`` (exact
  fractions, :meth:`TrGrid.layout` at the sample rate).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import QualityError
from ..grid import TrGrid

__all__ = ["AudioPair", "resolve_pair", "source_descriptor", "analysis_rate"]

#: tolerated length difference between two files: one EnCodec 24 kHz frame (1/75 s)
FILE_FRAME_S = 1 / 75
#: entry kinds a quality run decodes to audio
DECODABLE = ("codes", "mel")
#: Griffin-Lim settings for mel entries (part of the source's identity)
GRIFFIN_LIM = {"decoder": "griffin-lim", "n_iter": 32, "seed": 0}


@dataclass(frozen=True)
class AudioPair:
    """Reference and degraded audio on one grid.

    Attributes
    ----------
    ref, deg : (sample,) float32 mono at ``sample_rate_hz``, equal lengths
    bounds : (tr + 1,) int64 sample index where each scored TR starts (last: where the last ends)
    trs : (tr,) int64 TR indices on the grid
    tr_start_s : (tr,) float64 stimulus time at which each TR starts
    grid : {"tr_s", "onset_s", "source"}: the grid and where it came from ("entry KEY" or "files")
    trimmed : {"reference": n, "degraded": n} samples dropped to make the lengths equal
    """

    ref: np.ndarray
    deg: np.ndarray
    sample_rate_hz: int
    bounds: np.ndarray
    trs: np.ndarray
    tr_start_s: np.ndarray
    grid: dict
    trimmed: dict


def _as_entry(store, x):
    """The Entry ``x`` names, or None when ``x`` is a file path."""
    from ..store.core import Entry

    if isinstance(x, Entry):
        return x
    s = os.fspath(x)
    if os.path.exists(s):
        return None
    if store is None:
        looks_like_key = len(s) >= 4 and all(c in "0123456789abcdef" for c in s.lower())
        if looks_like_key:
            raise QualityError(f"{s!r} is not a file; if it is an entry key, give the store (--store S)")
        return None  # a missing file: audio_info says so
    if any(c not in "0123456789abcdef" for c in s.strip().lower()):
        return None  # not hex, so not a key: a missing file path (audio_info says so)
    return store.get(s)  # hex: an entry key, or EntryNotFoundError naming the store


def source_descriptor(store, x) -> dict[str, Any]:
    """What identifies a source in a quality entry's key: a file's sha256 (and name) or an entry's key."""
    from ..audio.load import audio_info
    from ..store.hashing import sha256_file

    e = _as_entry(store, x)
    if e is not None:
        _check_kind(e)
        return {"entry_key": e.key, "kind": e.kind, **(GRIFFIN_LIM if e.kind == "mel" else {})}
    audio_info(x)  # missing / unreadable / empty: AudioError before hashing
    return {"file_sha256": sha256_file(x), "name": Path(x).name}


def _check_kind(e) -> None:
    if e.kind not in DECODABLE:
        raise QualityError(
            f"entry {e.key[:16]} is a {e.kind!r} entry; quality decodes codes or mel entries to audio (give one "
            f"of those keys or an audio file)")


def analysis_rate(store, ref, deg) -> int:
    """The sample rate metrics run at: the (first) entry's, else the reference file's."""
    from ..audio.load import audio_info

    for x in (deg, ref):
        if (e := _as_entry(store, x)) is not None:
            _check_kind(e)
            return int(e.attrs["mel_params"]["sample_rate_hz"] if e.kind == "mel" else e.attrs["sample_rate_hz"])
    return audio_info(ref).sample_rate_hz


def _load_file(path, sr: int) -> np.ndarray:
    from ..audio.load import load_audio

    audio, _ = load_audio(path, sr, channels=1)
    return np.asarray(audio[0], dtype=np.float32)


def griffin_lim(entry_attrs: dict, mel: np.ndarray, n_iter: int = 32, seed: int = 0) -> np.ndarray:
    """Invert a mel stream like :func:`giblet_store.features.mel.decode_mel`, from a seeded initial phase.

    Parameters
    ----------
    mel : (mel_band, frame) float, the entry's values (dB if the entry is in dB)

    Returns
    -------
    (sample,) float32 at the entry's ``sample_rate_hz``, exactly ``frame * hop`` samples
    """
    import librosa

    from ..features.mel import MelParams

    p = MelParams.from_dict(entry_attrs["mel_params"])
    M = np.asarray(mel, dtype=np.float64)
    if p.db:
        M = p.ref * np.power(10.0, M / (10.0 if p.power == 2.0 else 20.0))
    S = librosa.feature.inverse.mel_to_stft(M, sr=p.sample_rate_hz, n_fft=p.n_fft, power=p.power, fmin=p.fmin_hz,
                                            fmax=p.fmax_hz, htk=p.htk, norm=p.norm)
    y = librosa.griffinlim(S, n_iter=n_iter, hop_length=p.hop, win_length=p.win_length, n_fft=p.n_fft,
                           window=p.window, center=True, pad_mode="constant", random_state=seed)
    n_out = M.shape[-1] * p.hop
    return np.pad(y[:n_out], (0, max(0, n_out - y.shape[-1]))).astype(np.float32)


def _decode_audio(entry, part, model, device) -> tuple[np.ndarray, int, int]:
    """(audio (sample,) float32, sample rate, hop) of the real frames of ``part`` (TRs of an entry)."""
    from ..codec.encodec import codec_for_entry, decode_stream
    from ..grid import from_tr

    if entry.kind == "mel":
        mel = from_tr(part["mel"].values, part["n_frames"].values)
        p = entry.attrs["mel_params"]
        return griffin_lim(entry.attrs, mel, GRIFFIN_LIM["n_iter"], GRIFFIN_LIM["seed"]), int(p["sample_rate_hz"]), int(p["hop"])
    stream = from_tr(part["codes"].values, part["n_frames"].values)
    codec = codec_for_entry(entry.attrs, model, device, purpose="score")
    audio = decode_stream(codec, stream).mean(axis=0).astype(np.float32)
    return audio, codec.sample_rate_hz, codec.hop


def _decode(store, entry, trs, model, device) -> tuple[np.ndarray, dict]:
    """Decoded audio of TRs ``trs`` of a codes or mel entry, with its TR bounds (samples) and grid."""
    from ..grid import parse_tr_range

    ds = store.open(entry)
    sel = parse_tr_range(trs, ds.sizes["tr"])
    if "chunk_stride_samples" in entry.attrs:  # the 48 kHz model: overlapping chunks, each times its scale
        return _decode_chunked(entry, ds, sel, model, device)
    n_frames = ds["n_frames"].values.astype(np.int64)
    part = ds.isel(tr=sel)
    audio, sr, hop = _decode_audio(entry, part, model, device)
    first = int(entry.attrs.get("frames_before_grid", 0)) + int(n_frames[: sel.start].sum())
    info = {
        "bounds": np.concatenate([[0], np.cumsum(n_frames[sel])]).astype(np.int64) * hop,
        "trs": np.arange(sel.start, sel.stop, dtype=np.int64),
        "tr_start_s": part["tr_start_s"].values.astype(np.float64),
        "offset": first * hop,  # stimulus sample of the decoded audio's first sample
        "hop": hop,
        "grid": {"tr_s": float(entry.attrs["tr_s"]), "onset_s": float(entry.attrs.get("onset_s", 0.0)),
                 "source": f"entry {entry.key}"},
        "n_frames": n_frames, "sample_rate_hz": sr,
    }
    return audio, info


def _decode_chunked(entry, ds, sel: slice, model, device) -> tuple[np.ndarray, dict]:
    """:func:`_decode` for a normalised-chunk codes entry (the 48 kHz model), with its stored scales.

    The chunks overlapping the TRs' frames are decoded and overlap-added as the model's own decode
    (:func:`~giblet_store.features.codes_normalised.iter_decode_entry`), mixed to mono. Frames of such
    an entry start on two interleaved grids, so a TR is its samples by stimulus time: sample ``n``
    belongs to TR ``k`` when ``onset + k * tr <= n / sr < onset + (k + 1) * tr``.
    """
    import math

    from ..codec.encodec import codec_for_entry
    from ..features.codes_normalised import iter_decode_entry
    from ..grid import exact

    codec = codec_for_entry(entry.attrs, model, device, purpose="score")
    sr = codec.sample_rate_hz
    pieces, n = iter_decode_entry(codec, ds, sel)
    audio = np.concatenate([p.mean(axis=0) for p in pieces]).astype(np.float32) if n else np.zeros(0, np.float32)
    t = ds["frame_time_s"].values[sel]
    start = int(round(float(np.nanmin(t)) * sr))  # the first selected frame's stimulus sample
    tr, onset = exact(entry.attrs["tr_s"]), exact(entry.attrs.get("onset_s", 0.0))
    edges = [math.ceil((onset + k * tr) * sr) - start for k in range(sel.start, sel.stop + 1)]
    bounds = np.clip(np.array(edges, np.int64), 0, audio.size)
    bounds[-1] = audio.size
    info = {
        "bounds": bounds, "trs": np.arange(sel.start, sel.stop, dtype=np.int64),
        "tr_start_s": ds["tr_start_s"].values[sel].astype(np.float64), "offset": start, "hop": codec.hop,
        "grid": {"tr_s": float(entry.attrs["tr_s"]), "onset_s": float(entry.attrs.get("onset_s", 0.0)),
                 "source": f"entry {entry.key}"},
        "n_frames": ds["n_frames"].values.astype(np.int64), "sample_rate_hz": sr,
    }
    return audio, info


def _equalise(ref: np.ndarray, deg: np.ndarray, tol: int, align: bool, what: str) -> tuple[np.ndarray, np.ndarray, dict]:
    n_r, n_d = ref.size, deg.size
    if abs(n_r - n_d) > tol and not align:
        raise QualityError(
            f"{what}: the reference has {n_r} samples and the degraded {n_d} (a difference of {abs(n_r - n_d)}, "
            f"more than one frame = {tol} samples); give --align (align=True) to trim both to the shorter, "
            "or check that they are the same recording")
    n = min(n_r, n_d)
    return ref[:n], deg[:n], {"reference": int(n_r - n), "degraded": int(n_d - n)}


def _file_pair(ref_path, deg_path, sr: int, grid: TrGrid, trs, align: bool) -> AudioPair:
    from ..grid import parse_tr_range

    ref, deg = _load_file(ref_path, sr), _load_file(deg_path, sr)
    ref, deg, trimmed = _equalise(ref, deg, max(1, round(sr * FILE_FRAME_S)), align, "lengths differ")
    layout = TrGrid(grid.tr_s, grid.onset_s, grid.n_trs).layout(ref.size, sr, warn=False)
    sel = parse_tr_range(trs, layout.n_trs)
    starts = layout.starts[sel.start : sel.stop + 1]
    return AudioPair(ref[starts[0] : starts[-1]], deg[starts[0] : starts[-1]], sr, starts - starts[0],
                     np.arange(sel.start, sel.stop, dtype=np.int64), grid.tr_start_s(layout.n_trs)[sel],
                     {"tr_s": grid.tr_s, "onset_s": grid.onset_s, "source": "files"}, trimmed)


def _entry_pair(store, e_ref, e_deg, ref, deg, trs, align, model, device) -> AudioPair:
    """At least one side is a codes entry: its grid decides the TRs; a file side is cut to match."""
    main = e_deg if e_deg is not None else e_ref
    audio, info = _decode(store, main, trs, model, device)
    sr, hop = info["sample_rate_hz"], info["hop"]
    other_entry, other = (e_ref, ref) if main is e_deg else (e_deg, deg)
    if other_entry is not None:
        o_audio, o_info = _decode(store, other_entry, trs, model, device)
        if o_info["sample_rate_hz"] != sr or not np.array_equal(o_info["n_frames"], info["n_frames"]) \
                or o_info["grid"]["tr_s"] != info["grid"]["tr_s"]:
            raise QualityError(
                f"entries {e_ref.key[:16]} and {e_deg.key[:16]} lie on different grids or rates; score an entry "
                "against the audio file instead")
    else:
        o_audio = _load_file(other, sr)[info["offset"]:]
    pair = (o_audio, audio) if main is e_deg else (audio, o_audio)
    r, d, trimmed = _equalise(*pair, hop, align, f"TRs {int(info['trs'][0]) if info['trs'].size else 0}:"
                              f"{int(info['trs'][-1]) + 1 if info['trs'].size else 0} of entry {main.key[:16]}")
    bounds = np.minimum(info["bounds"], r.size)
    return AudioPair(r, d, sr, bounds, info["trs"], info["tr_start_s"], info["grid"], trimmed)


def resolve_pair(store, ref, deg, grid: TrGrid | None = None, trs=None, align: bool = False,
                 model: str | None = None, device: str = "cpu") -> AudioPair:
    """Load or decode both sources onto one sample grid (see the module docstring).

    Raises
    ------
    QualityError
        Wrong entry kind, lengths differing by more than one frame (without ``align``), entries on
        different grids, an entry key without a store.
    AudioError
        A file is missing or unreadable.
    ParameterError
        A TR range outside the grid.
    """
    e_ref, e_deg = _as_entry(store, ref), _as_entry(store, deg)
    for e in (e_ref, e_deg):
        if e is not None:
            _check_kind(e)
    if e_ref is None and e_deg is None:
        return _file_pair(ref, deg, analysis_rate(store, ref, deg), grid or TrGrid(), trs, align)
    if grid is not None and grid.tr_s != float((e_deg or e_ref).attrs["tr_s"]):
        raise QualityError(f"a TR of {grid.tr_s} s was given, but a codes entry brings its own grid "
                           f"(TR {(e_deg or e_ref).attrs['tr_s']} s); leave the TR out")
    return _entry_pair(store, e_ref, e_deg, ref, deg, trs, align, model, device)
