"""Audio file -> mel spectrogram entry on the exact TR grid, and mel entry -> audio (Griffin-Lim).

The legacy feature path, kept so models on codes can be compared with models on mel features. Every
librosa parameter goes into the attributes and the key. The dB conversion uses a *fixed* reference
(``ref``, default 1.0, with floor ``amin``), never the file's maximum: the reference project's
``ref=np.max`` made a chunk's features depend on the rest of the file, so chunked and whole-file
computation disagreed. Here they agree (to float rounding): the signal is zero-padded by ``n_fft // 2``
once, as ``librosa.stft(center=True, pad_mode="constant")`` does, and each chunk of frames is computed
from its own samples of that padded signal (one Dask task per chunk).

Frames are laid on the TR grid exactly like codes (:mod:`giblet_store.grid`): frame ``f`` is centred
at ``f * hop / sr`` s, ``frame_rate = Fraction(sr, hop)``, the frame axis is ``ceil(frame_rate * tr)``
long, unused slots are NaN, and ``n_frames[tr]`` counts the real ones.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..audio.load import audio_info, load_audio, write_wav
from ..store.conventions import source_attrs
from ..store.hashing import HashedFile
from ..validate import file_name_text, finite, flag, int_in_range, positive_seconds
from ..errors import AudioError, ParameterError
from ..store.entry import ExtractResult
from ..scheduling import use_scheduler
from ..grid import TrGrid, from_tr, grid_attrs, parse_tr_range, to_tr
from ..params import ALGORITHM_VERSION, Params, content_key
from ..store.schema import FORMAT_VERSION
from ..store.core import Entry, Store, default_encoding
from ..store.verify import cache_hit
from .regrid import regrid_mel

__all__ = ["MelParams", "mel_key_inputs", "extract_mel", "mel_stream", "decode_mel"]

_WINDOWS = ("hann", "hamming", "blackman", "blackmanharris", "bartlett", "boxcar")


@dataclass(frozen=True)
class MelParams(Params):
    """How a mel spectrogram is computed (librosa), all of it recorded in the entry.

    Parameters
    ----------
    sample_rate_hz : int
        The audio is resampled (soxr) to this rate first.
    n_fft, hop, win_length : int
        STFT size, hop and window length in samples (``hop <= n_fft``; ``win_length <= n_fft``,
        None -> ``n_fft``). Frames are centred (``center=True``, zero padding).
    window : str
        One of hann, hamming, blackman, blackmanharris, bartlett, boxcar.
    n_mels : int
        Mel bands, ``<= n_fft // 2 + 1``.
    fmin_hz, fmax_hz : float
        Band edges; fmax None -> ``sample_rate_hz / 2``.
    htk, norm : librosa's mel scale (False: Slaney) and filter normalisation ("slaney" or None).
    power : {1.0, 2.0}
        Magnitude (1) or power (2) spectrogram.
    db : bool
        Convert to dB with the fixed reference ``ref`` and floor ``amin``.
    ref, amin : float
        dB reference (0 dB) and floor, both > 0; ``top_db`` clipping is not offered (it is relative
        to the maximum and would make chunks depend on each other).
    chunk_s : float
        Audio per Dask task (whole frames); bounds memory, does not change values beyond rounding.

    Raises
    ------
    ParameterError
        E.g. ``n_fft < hop``, ``n_mels > n_fft // 2 + 1``, ``fmax_hz > sample_rate_hz / 2``.

    Examples
    --------
    >>> MelParams().frame_rate
    Fraction(11025, 256)
    """

    name: ClassVar[str] = "mel"
    sample_rate_hz: int = 22050
    n_fft: int = 2048
    hop: int = 512
    win_length: int | None = None
    window: str = "hann"
    n_mels: int = 128
    fmin_hz: float = 0.0
    fmax_hz: float | None = None
    htk: bool = False
    norm: str | None = "slaney"
    power: float = 2.0
    db: bool = True
    ref: float = 1.0
    amin: float = 1e-10
    chunk_s: float = 60.0

    def __post_init__(self):
        sr = int_in_range("sample_rate_hz", self.sample_rate_hz, 1000, 384_000)
        n_fft = int_in_range("n_fft", self.n_fft, 16, 1 << 16)
        hop = int_in_range("hop", self.hop, 1)
        if n_fft < hop:
            raise ParameterError(
                f"n_fft={n_fft} is smaller than hop={hop}: samples between frames would never be "
                f"analysed; give n_fft >= hop (e.g. n_fft={max(2048, hop)}, hop={hop})"
            )
        win = n_fft if self.win_length is None else int_in_range("win_length", self.win_length, 1, n_fft)
        if self.window not in _WINDOWS:
            raise ParameterError(f"window {self.window!r} is not offered; choose one of {', '.join(_WINDOWS)}")
        max_mels = n_fft // 2 + 1
        n_mels = int_in_range("n_mels", self.n_mels, 1)
        if n_mels > max_mels:
            raise ParameterError(
                f"n_mels={n_mels} exceeds the {max_mels} frequency bins of n_fft={n_fft} "
                f"(n_fft // 2 + 1); use n_mels <= {max_mels} or a larger n_fft"
            )
        fmin = finite("fmin_hz", self.fmin_hz)
        fmax = sr / 2 if self.fmax_hz is None else finite("fmax_hz", self.fmax_hz)
        if fmin < 0 or fmax > sr / 2 or fmin >= fmax:
            raise ParameterError(
                f"need 0 <= fmin_hz < fmax_hz <= sample_rate_hz / 2 = {sr / 2:g}; got fmin_hz={fmin:g}, fmax_hz={fmax:g}"
            )
        if self.norm not in ("slaney", None):
            raise ParameterError(f"norm must be 'slaney' or None, got {self.norm!r}")
        power = finite("power", self.power)
        if power not in (1.0, 2.0):
            raise ParameterError(f"power must be 1 (magnitude) or 2 (power), got {power:g}")
        ref, amin = finite("ref", self.ref), finite("amin", self.amin)
        if ref <= 0 or amin <= 0:
            raise ParameterError(f"ref and amin must be > 0 (fixed dB reference and floor), got ref={ref:g}, amin={amin:g}")
        chunk = positive_seconds("chunk_s", self.chunk_s)
        for k, v in dict(sample_rate_hz=sr, n_fft=n_fft, hop=hop, win_length=win, n_mels=n_mels,
                         fmin_hz=fmin, fmax_hz=float(fmax), power=power, ref=ref, amin=amin, chunk_s=chunk,
                         htk=flag("htk", self.htk), db=flag("db", self.db)).items():
            object.__setattr__(self, k, v)

    @property
    def frame_rate(self) -> Fraction:
        """Exact frames per second, ``Fraction(sample_rate_hz, hop)``."""
        return Fraction(self.sample_rate_hz, self.hop)

    def librosa_kwargs(self) -> dict[str, Any]:
        return dict(sr=self.sample_rate_hz, n_fft=self.n_fft, hop_length=self.hop, win_length=self.win_length,
                    window=self.window, n_mels=self.n_mels, fmin=self.fmin_hz, fmax=self.fmax_hz,
                    htk=self.htk, norm=self.norm, power=self.power)


def mel_key_inputs(source_sha256: str, params: MelParams, grid: TrGrid,
                   audio_stream: int | None = None) -> dict[str, Any]:
    """Everything that determines a mel entry's bytes: hashed into its key, stored as ``inputs``
    (``audio_stream``: the stream of a container read with PyAV; absent for files soundfile reads)."""
    return {
        "kind": "mel",
        "algorithm_version": ALGORITHM_VERSION,
        "format_version": FORMAT_VERSION,
        "source_sha256": source_sha256,
        "mel": params.to_dict(),
        "grid": grid.to_dict(),
    } | ({} if audio_stream is None else {"audio_stream": int(audio_stream)})


def _mel_chunk(segment: np.ndarray, params: MelParams) -> np.ndarray:
    """(mel, frame) float32 of a padded segment of ``(frames - 1) * hop + n_fft`` samples."""
    import librosa

    S = librosa.feature.melspectrogram(y=segment.astype(np.float64), center=False, **params.librosa_kwargs())
    if params.db:
        to_db = librosa.power_to_db if params.power == 2.0 else librosa.amplitude_to_db
        S = to_db(S, ref=params.ref, amin=params.amin, top_db=None)
    return S.astype(np.float32)


#: Bytes per STFT bin and frame in one task: the complex128 STFT (16) and its float64 power (8).
STFT_BYTES_PER_BIN = 24


def check_stft_size(params: MelParams, duration_s: float, what: str) -> None:
    """Refuse before reading audio when one chunk's STFT (frames x ``n_fft // 2 + 1`` bins) would exceed
    the working-memory limit (:func:`giblet_store.bounds.check_working_set`)."""
    from ..bounds import check_working_set

    n_frames = 1 + int(duration_s * params.sample_rate_hz) // params.hop
    per_chunk = min(n_frames, max(1, round(params.chunk_s * params.sample_rate_hz / params.hop)))
    bins = params.n_fft // 2 + 1
    check_working_set(
        per_chunk * bins * STFT_BYTES_PER_BIN, what,
        f"an STFT of {per_chunk} frames x {bins} bins x {STFT_BYTES_PER_BIN} bytes: n_fft={params.n_fft}, "
        f"hop={params.hop} at {params.sample_rate_hz} Hz, chunk_s={params.chunk_s:g}",
        "give a larger hop, a smaller n_fft or shorter chunks (--chunk-seconds)")


def _check_sizes(params: MelParams, grid: TrGrid, duration_s: float, what: str) -> None:
    """The entry (grid bounds) and one chunk's STFT (working memory) fit, before any audio is read."""
    from ..bounds import check_grid_bounds

    check_grid_bounds(grid, duration_s, params.frame_rate, 4 * params.n_mels, what=what)
    check_stft_size(params, duration_s, what=what)


def mel_stream(audio: np.ndarray, params: MelParams):
    """Lazy mel spectrogram of a mono signal, one Dask task per ``chunk_s`` of frames.

    Parameters
    ----------
    audio : (sample,) or (1, sample) float32 at ``params.sample_rate_hz``

    Returns
    -------
    dask.array.Array, (mel, frame) float32 (dB if ``params.db``); the same frames as
    ``librosa.feature.melspectrogram(y=audio, center=True, pad_mode="constant")``:
    ``1 + n_samples // hop`` of them (even ``n_fft``).
    """
    import dask
    import dask.array as da

    y = np.asarray(audio, dtype=np.float32).reshape(-1)
    pad = params.n_fft // 2
    padded = np.pad(y, pad, mode="constant")
    n_frames = 1 + (padded.size - params.n_fft) // params.hop
    per_chunk = max(1, round(params.chunk_s * params.sample_rate_hz / params.hop))
    parts = []
    for a in range(0, n_frames, per_chunk):
        b = min(a + per_chunk, n_frames)
        seg = padded[a * params.hop : (b - 1) * params.hop + params.n_fft]
        task = dask.delayed(_mel_chunk, pure=True)(seg, params, dask_key_name=f"mel-{id(padded):x}-{a}")
        parts.append(da.from_delayed(task, shape=(params.n_mels, b - a), dtype=np.float32))
    return da.concatenate(parts, axis=1)


def extract_mel(
    store: Store,
    audio_path: "str | os.PathLike | list[str | os.PathLike]",
    params: MelParams | None = None,
    grid: TrGrid | None = None,
    scheduler: Any = "threads",
    audio_stream: int | None = None,
) -> "ExtractResult | list[ExtractResult]":
    """Compute the mel spectrogram of ``audio_path`` on ``grid`` into ``store`` (or return the cached entry).

    Parameters
    ----------
    store : Store
    audio_path : path to wav/flac/ogg (mixed to mono, resampled to ``params.sample_rate_hz``), or a list
        (all checked before the first is analysed; a list of results in the same order)
    params : MelParams (default: 22.05 kHz, n_fft 2048, hop 512, 128 mels, dB re 1.0)
    grid : TrGrid (default: 1.5 s TR, onset 0, as many TRs as the audio fills)
    scheduler : Dask scheduler for the chunk tasks ("threads", "sync", or a distributed Client)
    audio_stream : container stream index (default: its default audio stream), as for extract_codes

    Returns
    -------
    ExtractResult
        ``entry.open()`` gives ``mel`` (tr, mel_band, frame) float32 with NaN tails, ``mel_mean``
        (tr, mel_band) float32 (mean over the TR's real frames), ``n_frames`` (tr) int16, and
        coordinates ``tr``, ``tr_start_s``, ``mel_band``, ``mel_hz``, ``frame``.

    Raises
    ------
    AudioError, ParameterError, StoreError
        Before anything is written.
    """
    params = params or MelParams()
    grid = grid or TrGrid()
    if not isinstance(params, MelParams):
        raise ParameterError(f"params must be a MelParams, got {type(params).__name__}")
    if isinstance(audio_path, (list, tuple)):
        return _extract_each(store, audio_path, params, grid, scheduler, audio_stream)
    info = audio_info(audio_path, audio_stream)
    _check_sizes(params, grid, info.duration_s, repr(str(audio_path)))
    with HashedFile(audio_path) as source:  # the key's hash, and the only bytes the decoder reads
        return _extract_one(store, audio_path, source, info, params, grid, scheduler)


def _extract_one(store, audio_path, source: HashedFile, info, params: MelParams, grid: TrGrid, scheduler):
    inputs = mel_key_inputs(source.sha256, params, grid, info.stream)
    key = content_key(inputs)
    if (hit := cache_hit(store, key, "mel")) is not None:
        return ExtractResult(hit, False, str(audio_path))
    if done := regrid_mel(store, inputs, info, audio_path, params, grid, key):
        return done  # the frames exist: re-grouped, the audio not read
    audio, info = load_audio(audio_path, params.sample_rate_hz, 1, audio_stream=info.stream, source=source,
                             purpose="mel")
    if audio.shape[-1] < params.hop:
        raise AudioError(
            f"{str(audio_path)!r} is {info.duration_s * 1000:.2f} ms long, shorter than one hop "
            f"({params.hop} samples at {params.sample_rate_hz} Hz); nothing to analyse"
        )
    stream = mel_stream(audio, params)
    with use_scheduler(scheduler):
        stream = np.asarray(stream.compute())
    ds, attrs = _mel_dataset(stream, params, grid, info, inputs)
    attrs["source_name"] = file_name_text(audio_path)
    entry, created = store.write(ds, {**attrs, "kind": "mel", "key": key}, default_encoding(ds))
    return ExtractResult(entry, created, str(audio_path))


def _extract_each(store, paths, params, grid, scheduler, audio_stream) -> list:
    """:func:`extract_mel` of each of ``paths``, after checking that every one is readable audio."""
    for p in paths:
        audio_info(p, audio_stream)
    return [extract_mel(store, p, params, grid, scheduler, audio_stream) for p in paths]


def _mel_dataset(stream: np.ndarray, params: MelParams, grid: TrGrid, info, inputs: dict):
    import librosa
    import xarray as xr

    layout = grid.layout(stream.shape[-1], params.frame_rate)
    mel = to_tr(stream, layout, fill=np.nan).astype(np.float32)  # (tr, mel_band, slot)
    n = layout.n_frames
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n[:, None] > 0, np.nansum(mel, axis=-1) / np.maximum(n, 1)[:, None], np.nan)
    hz = librosa.mel_frequencies(params.n_mels + 2, fmin=params.fmin_hz, fmax=params.fmax_hz, htk=params.htk)[1:-1]
    n_trs = layout.n_trs
    ds = xr.Dataset(
        {
            "mel": (("tr", "mel_band", "frame"), mel),
            "mel_mean": (("tr", "mel_band"), mean.astype(np.float32)),
            "n_frames": (("tr",), n.astype(np.int16)),
        },
        coords={
            "tr": np.arange(n_trs, dtype=np.int64),
            "tr_start_s": (("tr",), grid.tr_start_s(n_trs)),
            "mel_band": np.arange(params.n_mels, dtype=np.int64),
            "mel_hz": (("mel_band",), hz.astype(np.float64)),
            "frame": np.arange(layout.slots, dtype=np.int64),
        },
    )
    unit = "dB re ref" if params.db else ("power" if params.power == 2.0 else "magnitude")
    ds["mel"].attrs.update(description="mel spectrogram; NaN where frame >= n_frames[tr]", units=unit)
    ds["mel_mean"].attrs.update(description="mean of mel over the TR's real frames (NaN for empty TRs)", units=unit)
    ds["n_frames"].attrs.update(description="real frames in each TR")
    ds["mel_hz"].attrs.update(units="Hz", description="centre frequency of each mel band")
    ds["tr_start_s"].attrs.update(units="s", description="stimulus time at which the TR starts")
    attrs = {
        **source_attrs(info, inputs["source_sha256"]),
        "feature": "mel",
        "mel_params": params.to_dict(),
        "sample_rate_hz": params.sample_rate_hz,
        "n_fft": params.n_fft,
        "hop_samples": params.hop,
        "n_mels": params.n_mels,
        "db": params.db,
        "units": unit,
        **grid_attrs(grid, layout, params.frame_rate),
        "hrf": "none",
        "algorithm_version": ALGORITHM_VERSION,
        "inputs": inputs,
    }
    return ds, attrs


def decode_mel(
    store: Store, entry: Entry | str, out_path: str | os.PathLike, trs=None, n_iter: int = 32
) -> Path:
    """Invert a mel entry (or TRs ``START:STOP``) to a wav file with Griffin-Lim (librosa).

    The dB values are turned back into power/magnitude with the entry's fixed reference, the mel
    filterbank is inverted by non-negative least squares, and ``n_iter`` Griffin-Lim iterations
    estimate the phase. The wav has ``frames * hop`` samples at the entry's ``sample_rate_hz``, so a
    TR range lines up with the same TRs of a codes entry.

    Raises
    ------
    ParameterError
        Not a mel entry; bad TR range; ``n_iter < 1``.
    """
    import librosa

    from ..validate import parse_output_path

    parse_output_path(out_path, "output wav")
    entry = store.get(entry, kind="mel", purpose="Griffin-Lim decoding")
    int_in_range("n_iter", n_iter, 1)
    params = MelParams.from_dict(entry.attrs["mel_params"])
    ds = store.open(entry)
    part = ds.isel(tr=parse_tr_range(trs, ds.sizes["tr"]))
    M = from_tr(part["mel"].values, part["n_frames"].values).astype(np.float64)  # (mel_band, frame)
    if params.db:
        M = params.ref * np.power(10.0, M / (10.0 if params.power == 2.0 else 20.0))
    kw = params.librosa_kwargs()
    kw.pop("n_mels")  # taken from M
    audio = librosa.feature.inverse.mel_to_audio(M, n_iter=n_iter, center=True, pad_mode="constant", **kw)
    n_out = M.shape[-1] * params.hop  # frames * hop: TR ranges line up in time
    audio = np.pad(audio[:n_out], (0, max(0, n_out - audio.shape[-1])))
    from .codes import start_comment_of

    comment = start_comment_of(store, entry, trs, params.hop, params.sample_rate_hz)
    return write_wav(out_path, audio, params.sample_rate_hz, comment)
