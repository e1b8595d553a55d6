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
DECODABLE = ("codes", "mel", "reconstruction")
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
            f"entry {e.key[:16]} is a {e.kind!r} entry; quality decodes codes, mel or reconstruction entries to "
            f"audio (give one of those keys or an audio file)")


def analysis_rate(store, ref, deg) -> int:
    """The sample rate metrics run at: the (first) entry's, else the reference file's."""
    from ..audio.load import audio_info

    for x in (deg, ref):
        if (e := _as_entry(store, x)) is not None:
            _check_kind(e)
            return _rate(e)
    return audio_info(ref).sample_rate_hz


def _load_file(path, sr: int) -> np.ndarray:
    from ..audio.load import load_audio

    audio, _ = load_audio(path, sr, channels=1, purpose="score")
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


def _decode_audio(store, entry, part, model, device) -> tuple[np.ndarray, int, int]:
    """(audio (sample,) float32, sample rate, hop) of the real frames of ``part`` (TRs of an entry)."""
    from ..codec.encodec import codec_for_entry, decode_stream
    from ..grid import from_tr

    if entry.kind == "reconstruction":
        from ..features.decoding import reconstruction_audio

        trs = (int(part["tr"].values[0]), int(part["tr"].values[-1]) + 1)
        audio, sr = reconstruction_audio(store, entry, trs, model=model, device=device)
        return audio.mean(axis=0).astype(np.float32), sr, _hop(entry)
    if entry.kind == "mel":
        mel = from_tr(part["mel"].values, part["n_frames"].values)
        p = entry.attrs["mel_params"]
        return griffin_lim(entry.attrs, mel, GRIFFIN_LIM["n_iter"], GRIFFIN_LIM["seed"]), int(p["sample_rate_hz"]), int(p["hop"])
    stream = from_tr(part["codes"].values, part["n_frames"].values)
    codec = codec_for_entry(entry.attrs, model, device, purpose="score")
    audio = decode_stream(codec, stream).mean(axis=0).astype(np.float32)
    return audio, codec.sample_rate_hz, codec.hop


def _mel_like(entry) -> bool:
    return entry.kind == "mel" or (entry.kind == "reconstruction" and entry.attrs.get("feature") == "mel")


def _hop(entry) -> int:
    return int(entry.attrs["mel_params"]["hop"] if _mel_like(entry) else entry.attrs["hop_samples"])


def _rate(entry) -> int:
    return int(entry.attrs["mel_params"]["sample_rate_hz"] if _mel_like(entry) else entry.attrs["sample_rate_hz"])


def _first_frame(store, entry, first_tr: int) -> int | None:
    """The stimulus frame of TR ``first_tr``'s first real frame (a reconstruction: its target's; None without it)."""
    if entry.kind == "reconstruction":
        key = entry.attrs.get("target_key")
        entry = store.lookup(key) if key else None
        if entry is None:
            return None
    n_frames = store.open(entry)["n_frames"].values.astype(np.int64)
    return int(entry.attrs.get("frames_before_grid", 0)) + int(n_frames[:first_tr].sum())


def _plan(store, entry, trs) -> dict:
    """What decoding TRs ``trs`` of an entry gives, known before decoding: TR bounds, grid, stimulus offset."""
    from ..grid import parse_tr_range

    ds = store.open(entry)
    if "chunk_stride_samples" in entry.attrs:  # the 48 kHz model: its TR bounds are known once its chunks are decoded
        return {"chunked": True, "ds": ds, "sel": parse_tr_range(trs, ds.sizes["tr"])}
    if entry.kind == "reconstruction":
        from ..features.decoding import select_trs

        part = select_trs(ds, trs, entry)
        held = part["tr"].values.astype(np.int64)
        if held.size and np.any(np.diff(held) != 1):
            raise QualityError(f"reconstruction {entry.key[:16]} holds TRs that are not contiguous; give --trs A:B "
                               "over a contiguous run of them")
        first = int(held[0]) if held.size else 0
    else:
        sel = parse_tr_range(trs, ds.sizes["tr"])
        part, held, first = ds.isel(tr=sel), np.arange(sel.start, sel.stop, dtype=np.int64), sel.start
    n_sel = part["n_frames"].values.astype(np.int64)
    hop, frame = _hop(entry), _first_frame(store, entry, first)
    return {
        "part": part, "hop": hop, "sample_rate_hz": _rate(entry), "trs": held, "n_frames": n_sel,
        "bounds": np.concatenate([[0], np.cumsum(n_sel)]).astype(np.int64) * hop,
        "tr_start_s": part["tr_start_s"].values.astype(np.float64),
        "offset": None if frame is None else frame * hop,  # stimulus sample of the decoded audio's first sample
        "grid": {"tr_s": float(entry.attrs["tr_s"]), "onset_s": float(entry.attrs.get("onset_s", 0.0)),
                 "source": f"entry {entry.key}"},
    }


def _decoded(store, entry, info: dict, model, device) -> tuple[np.ndarray, dict]:
    """(audio, plan) of a :func:`_plan`: a 48 kHz entry's plan is completed by its decode."""
    if info.get("chunked"):
        return _decode_chunked(entry, info["ds"], info["sel"], model, device)
    return _decode_audio(store, entry, info["part"], model, device)[0], info


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


def _covering(path, start: int, sr: int, lo: int, n: int, tol: int, why: str, what: str) -> np.ndarray:
    """Stimulus samples ``lo`` to ``lo + n`` (at ``sr``) of the file ``path``, which starts at stimulus sample ``start``.

    Checked from the file's header before anything is decoded or loaded; up to ``tol`` samples missing at
    either end (less than a frame) are zeros at the start and trimmed (by :func:`_equalise`) at the end.
    """
    from ..audio.load import audio_info

    info = audio_info(path)
    length = int(info.n_samples) * sr // int(info.sample_rate_hz)
    if start - lo > tol or start + length < lo + n - tol:
        raise QualityError(
            f"{Path(path).name} covers stimulus time {start / sr:.4g} to {(start + length) / sr:.4g} s (it starts at "
            f"{start / sr:.4g} s: {why}), but scoring {what} needs {lo / sr:.4g} to {(lo + n) / sr:.4g} s. Give a TR range "
            "(--trs) the file covers, or --deg-start SECONDS for where a file from elsewhere starts")
    audio = _load_file(path, sr)
    if start > lo:
        audio = np.concatenate([np.zeros(start - lo, np.float32), audio])
        start = lo
    return audio[lo - start : lo - start + n]


def _file_start(path, given, sr: int) -> tuple[int, str]:
    """(stimulus sample at ``sr`` where the file starts, why): ``given`` seconds, else what decode recorded, else 0."""
    from fractions import Fraction

    from ..audio.start import recorded_start

    if given is not None:
        return round(Fraction(given) * sr), "--deg-start"
    if (rec := recorded_start(path)) is not None:
        return round(rec * sr), "recorded in the file by decode"
    return 0, "no start recorded in the file, so stimulus time 0"


def _placed_file_pair(ref, deg, starts: tuple, sr: int, grid: TrGrid, trs, align: bool) -> AudioPair:
    """Two files that start at different stimulus times: TRs of the grid over stimulus time, each file cut to them."""
    from ..audio.load import audio_info
    from ..grid import parse_tr_range

    (r0, r_why), (d0, d_why) = starts
    ends = [s + int(audio_info(p).n_samples) * sr // int(audio_info(p).sample_rate_hz) for p, s in ((ref, r0), (deg, d0))]
    layout = TrGrid(grid.tr_s, grid.onset_s, grid.n_trs).layout(max(ends), sr, warn=False)
    tol = max(1, round(sr * FILE_FRAME_S))
    if trs is None:  # every TR both files cover (within a frame)
        inside = np.flatnonzero((layout.starts[:-1] >= max(r0, d0) - tol) & (layout.starts[1:] <= min(ends) + tol))
        if inside.size == 0:
            raise QualityError(f"{Path(ref).name} and {Path(deg).name} share no whole TR of stimulus time; "
                               "check --deg-start")
        trs = (int(inside[0]), int(inside[-1]) + 1)
    sel = parse_tr_range(trs, layout.n_trs)
    b = layout.starts[sel.start : sel.stop + 1]
    what = f"TRs {sel.start}:{sel.stop}"
    r = _covering(ref, r0, sr, int(b[0]), int(b[-1] - b[0]), tol, r_why, what)
    d = _covering(deg, d0, sr, int(b[0]), int(b[-1] - b[0]), tol, d_why, what)
    r, d, trimmed = _equalise(r, d, tol, align, "lengths differ")
    return AudioPair(r, d, sr, np.minimum(b - b[0], r.size), np.arange(sel.start, sel.stop, dtype=np.int64),
                     grid.tr_start_s(layout.n_trs)[sel], {"tr_s": grid.tr_s, "onset_s": grid.onset_s,
                                                           "source": "files"}, trimmed)


def _entry_pair(store, e_ref, e_deg, ref, deg, trs, align, model, device, deg_start) -> AudioPair:
    """At least one side is an entry: its grid decides the TRs; a file side is cut to match.

    Everything is checked (grids, which stimulus time a file covers) before anything is decoded.
    """
    main = e_deg if e_deg is not None else e_ref
    info = _plan(store, main, trs)
    audio, o_audio = None, None
    if info.get("chunked"):
        audio, info = _decoded(store, main, info, model, device)
    sr, hop, n = info["sample_rate_hz"], info["hop"], int(info["bounds"][-1])
    other_entry, other = (e_ref, ref) if main is e_deg else (e_deg, deg)
    what = f"TRs {int(info['trs'][0]) if info['trs'].size else 0}:" \
           f"{int(info['trs'][-1]) + 1 if info['trs'].size else 0} of entry {main.key[:16]}"
    if other_entry is not None:
        o_info = _plan(store, other_entry, trs)
        if o_info.get("chunked"):
            o_audio, o_info = _decoded(store, other_entry, o_info, model, device)
        if o_info["sample_rate_hz"] != sr or not np.array_equal(o_info["n_frames"], info["n_frames"]) \
                or o_info["grid"]["tr_s"] != info["grid"]["tr_s"]:
            raise QualityError(
                f"entries {e_ref.key[:16]} and {e_deg.key[:16]} lie on different grids or rates; score an entry "
                "against the audio file instead")
        if o_audio is None:
            o_audio = _decoded(store, other_entry, o_info, model, device)[0]
    else:
        if info["offset"] is None:
            raise QualityError(f"reconstruction {main.key[:16]}'s target entry is not in this store, so where its "
                               "TRs lie in the file is unknown; score it against the target entry instead")
        start, why = _file_start(other, deg_start if other is deg else None, sr)
        o_audio = _covering(other, start, sr, info["offset"], n, hop, why, what)
    if audio is None:
        audio = _decoded(store, main, info, model, device)[0]
    pair = (o_audio, audio) if main is e_deg else (audio, o_audio)
    r, d, trimmed = _equalise(*pair, hop, align, what)
    bounds = np.minimum(info["bounds"], r.size)
    return AudioPair(r, d, sr, bounds, info["trs"], info["tr_start_s"], info["grid"], trimmed)


def resolve_pair(store, ref, deg, grid: TrGrid | None = None, trs=None, align: bool = False,
                 model: str | None = None, device: str = "cpu", deg_start=None) -> AudioPair:
    """Load or decode both sources onto one sample grid (see the module docstring).

    ``deg_start`` (seconds) is the stimulus time at which a degraded *file* starts; by default what
    ``decode`` recorded in it (:mod:`giblet_store.audio.start`), else 0. A reference file starts where
    its record says, else at 0.

    Raises
    ------
    QualityError
        Wrong entry kind, lengths differing by more than one frame (without ``align``), entries on
        different grids, an entry key without a store, a file that does not cover the TRs scored.
    AudioError
        A file is missing or unreadable.
    ParameterError
        A TR range outside the grid.
    """
    e_ref, e_deg = _as_entry(store, ref), _as_entry(store, deg)
    for e in (e_ref, e_deg):
        if e is not None:
            _check_kind(e)
    if deg_start is not None and e_deg is not None:
        raise QualityError("--deg-start places a degraded audio file in stimulus time; an entry knows its own place")
    if e_ref is None and e_deg is None:
        sr = analysis_rate(store, ref, deg)
        starts = (_file_start(ref, None, sr), _file_start(deg, deg_start, sr))
        if starts[0][0] == starts[1][0] == 0:
            return _file_pair(ref, deg, sr, grid or TrGrid(), trs, align)
        return _placed_file_pair(ref, deg, starts, sr, grid or TrGrid(), trs, align)
    recon = next((e for e in (e_deg, e_ref) if e is not None and e.kind == "reconstruction"), None)
    if trs is None and recon is not None:  # the TRs it holds (the other side, an entry, has them all)
        held = store.open(recon)["tr"].values.astype(np.int64)
        trs = (int(held.min()), int(held.max()) + 1) if held.size else None
    if grid is not None and grid.tr_s != float((e_deg or e_ref).attrs["tr_s"]):
        raise QualityError(f"a TR of {grid.tr_s} s was given, but a codes entry brings its own grid "
                           f"(TR {(e_deg or e_ref).attrs['tr_s']} s); leave the TR out")
    return _entry_pair(store, e_ref, e_deg, ref, deg, trs, align, model, device, deg_start)
