"""Audio quality metrics: SNR, SI-SDR, log-spectral and mel distance, STOI/ESTOI, PESQ.

Every metric compares a reference and a degraded signal, both mono float arrays at one sample
rate. A metric that is undefined for a segment (a silent reference, a segment too short for its
analysis: STOI 409.7 ms, PESQ 250 ms, LSD and mel one window, SI-SDR 2 samples) raises
:class:`~giblet_store.errors.MetricUndefinedError` with the reason;
:func:`score_segment` turns that into NaN and keeps the reason, so per-TR scoring never crashes.

- ``snr_db``: 10 log10(sum ref^2 / sum (deg - ref)^2).
- ``si_sdr_db``: scale-invariant SDR (Le Roux et al. 2019): deg projected on ref.
- ``lsd_db``: log-spectral distance, mean over STFT frames of the RMS (over frequency) difference of
  10 log10 power spectra (floored at ``amin``).
- ``mel_distance_db``: mean absolute difference of librosa mel spectrograms in dB (fixed reference
  1.0, floor ``mel_floor_db``).
- ``stoi`` / ``estoi``: pystoi (which resamples to 10 kHz itself).
- ``pesq_wb`` / ``pesq_nb``: ITU-T P.862.2 / P.862 via ``pesq`` at 16 / 8 kHz, the rates the
  standard requires; signals are resampled with soxr first.

The optional packages (pystoi, pesq) are imported when first needed; a missing one is a
:class:`~giblet_store.errors.QualityError` with the install hint ``pip install giblet_store[quality]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..errors import MetricUndefinedError, ParameterError, QualityError
from ..params import Params
from ..validate import finite, int_in_range

__all__ = [
    "METRICS", "METRIC_VARIABLES", "QualityParams", "snr_db", "si_sdr_db", "lsd_db", "mel_distance_db",
    "stoi_scores", "pesq_scores", "score_segment", "metric_versions", "PESQ_MAX_S", "PESQ_MIN_S",
]

#: metric name (CLI ``--metrics``) -> the variables it produces
METRICS: dict[str, tuple[str, ...]] = {
    "snr": ("snr_db",),
    "si_sdr": ("si_sdr_db",),
    "lsd": ("lsd_db",),
    "mel_distance": ("mel_distance_db",),
    "stoi": ("stoi", "estoi"),
    "pesq": ("pesq_wb", "pesq_nb"),
}
#: every variable, in table order
METRIC_VARIABLES: tuple[str, ...] = tuple(v for vs in METRICS.values() for v in vs)
#: the longest signal (s) given to pesq: 10 min at 16 kHz crash its C code (5 min did not); 2.5x margin
PESQ_MAX_S = 120.0
#: the shortest signal (s) pesq scores (its BufferTooShortError; below 1 sample at 8 kHz soxr returns nothing)
PESQ_MIN_S = 0.25
_INSTALL_HINT = "install the quality extra: pip install 'giblet_store[quality]' (pystoi, pesq)"


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise QualityError(f"metric package {module!r} is not installed; {_INSTALL_HINT}") from None


@dataclass(frozen=True)
class QualityParams(Params):
    """Which metrics, and how they analyse the signals.

    Parameters
    ----------
    metrics : tuple of str
        Names from :data:`METRICS` (snr, si_sdr, lsd, mel_distance, stoi, pesq).
    lsd_n_fft, lsd_hop : int
        STFT size and hop (samples at the analysis rate) of the log-spectral distance.
    mel_n_fft, mel_hop, mel_n_mels : int
        Mel spectrogram of the mel distance (librosa, Slaney mel scale, power 2).
    mel_floor_db : float
        Mel dB values are floored here (10 log10 of power re 1.0) so silence does not dominate.
    amin : float
        Power floor of the log-spectral distance (1e-10 = -100 dB).
    silence_dbfs : float
        A segment whose peak is below this level (dB re full scale 1.0) is silent: NaN for every metric.
    block_trs : int
        TRs per Dask task in per-TR scoring.
    """

    name: ClassVar[str] = "quality"
    metrics: tuple = tuple(METRICS)
    lsd_n_fft: int = 2048
    lsd_hop: int = 512
    mel_n_fft: int = 1024
    mel_hop: int = 256
    mel_n_mels: int = 80
    mel_floor_db: float = -100.0
    amin: float = 1e-10
    silence_dbfs: float = -100.0
    block_trs: int = 16

    def __post_init__(self):
        names = (self.metrics.split(",") if isinstance(self.metrics, str) else list(self.metrics))
        names = [str(n).strip() for n in names if str(n).strip()]
        unknown = [n for n in names if n not in METRICS]
        if unknown or not names:
            raise ParameterError(f"unknown or no metric(s) {unknown or names}; choose from {', '.join(METRICS)}")
        object.__setattr__(self, "metrics", tuple(n for n in METRICS if n in names))  # canonical order
        for f in ("lsd_n_fft", "lsd_hop", "mel_n_fft", "mel_hop", "mel_n_mels", "block_trs"):
            object.__setattr__(self, f, int_in_range(f, getattr(self, f), 1))
        for f in ("mel_floor_db", "amin", "silence_dbfs"):
            object.__setattr__(self, f, finite(f, getattr(self, f)))
        if self.amin <= 0:
            raise ParameterError(f"amin must be > 0 (a power floor), got {self.amin}")
        if self.lsd_hop > self.lsd_n_fft or self.mel_hop > self.mel_n_fft:
            raise ParameterError("STFT hops must not exceed their n_fft (lsd_hop <= lsd_n_fft, mel_hop <= mel_n_fft)")

    @property
    def variables(self) -> tuple[str, ...]:
        """The variables these metrics produce, in table order."""
        return tuple(v for m in self.metrics for v in METRICS[m])


def _span(n: int, sample_rate_hz: int) -> str:
    """'a segment of N samples (X ms)': how a too-short segment is named in a NaN reason."""
    return f"a segment of {n} samples ({1000 * n / sample_rate_hz:.1f} ms)"


def _pair(ref, deg) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(ref, dtype=np.float64).reshape(-1)
    d = np.asarray(deg, dtype=np.float64).reshape(-1)
    if r.shape != d.shape:
        raise QualityError(f"reference has {r.size} samples and degraded {d.size}; metrics need equal lengths")
    if r.size == 0:
        raise MetricUndefinedError("empty segment (0 samples)")
    return r, d


def snr_db(ref, deg) -> float:
    """Signal-to-noise ratio in dB: ``10 log10(sum ref^2 / sum (deg - ref)^2)``; +inf when equal.

    Parameters
    ----------
    ref, deg : (sample,) float, same length and rate
    """
    r, d = _pair(ref, deg)
    signal = float(np.dot(r, r))
    if signal == 0.0:
        raise MetricUndefinedError("reference is all zeros (SNR undefined)")
    noise = float(np.dot(d - r, d - r))
    return math.inf if noise == 0.0 else 10.0 * math.log10(signal / noise)


def si_sdr_db(ref, deg) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (no mean removal); gain-invariant in ``deg``.

    ``target = (<deg, ref> / <ref, ref>) ref``; ``SI-SDR = 10 log10(|target|^2 / |deg - target|^2)``.
    """
    r, d = _pair(ref, deg)
    if r.size < 2:
        raise MetricUndefinedError("a 1-sample segment: SI-SDR is +inf for any degraded signal (one sample is "
                                   "always a scaled copy)")
    rr = float(np.dot(r, r))
    if rr == 0.0:
        raise MetricUndefinedError("reference is all zeros (SI-SDR undefined)")
    if not np.any(d):
        raise MetricUndefinedError("degraded signal is all zeros (SI-SDR undefined: no projection)")
    target = (float(np.dot(d, r)) / rr) * r
    noise = d - target
    tt, nn = float(np.dot(target, target)), float(np.dot(noise, noise))
    if nn == 0.0:
        return math.inf
    if tt == 0.0:
        return -math.inf
    return 10.0 * math.log10(tt / nn)


def _power_spec(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """(freq, frame) power of a centred (zero-padded) Hann STFT, like ``librosa.stft`` with pad_mode constant."""
    import librosa

    return np.abs(librosa.stft(x, n_fft=n_fft, hop_length=hop, window="hann", center=True,
                               pad_mode="constant")) ** 2


def lsd_db(ref, deg, n_fft: int = 2048, hop: int = 512, amin: float = 1e-10) -> float:
    """Log-spectral distance in dB: mean over frames of sqrt(mean over bins of (10 log10 P_ref - 10 log10 P_deg)^2).

    Parameters
    ----------
    ref, deg : (sample,) float, same length and rate; at least ``n_fft`` samples
    n_fft, hop : STFT size and hop in samples (Hann window, centred frames)
    amin : power floor (1e-10 = -100 dB) applied before the log
    """
    r, d = _pair(ref, deg)
    if r.size < n_fft:
        raise MetricUndefinedError(f"segment of {r.size} samples is shorter than the LSD window ({n_fft})")
    lr = 10.0 * np.log10(np.maximum(_power_spec(r, n_fft, hop), amin))
    ld = 10.0 * np.log10(np.maximum(_power_spec(d, n_fft, hop), amin))
    return float(np.mean(np.sqrt(np.mean((lr - ld) ** 2, axis=0))))


def _mel_db(x: np.ndarray, sr: int, n_fft: int, hop: int, n_mels: int, floor_db: float) -> np.ndarray:
    import librosa

    S = librosa.feature.melspectrogram(y=x, sr=sr, n_fft=n_fft, hop_length=hop, n_mels=n_mels, power=2.0,
                                       center=True, pad_mode="constant")
    return np.maximum(librosa.power_to_db(S, ref=1.0, amin=1e-20, top_db=None), floor_db)


def mel_distance_db(ref, deg, sample_rate_hz: int, n_fft: int = 1024, hop: int = 256, n_mels: int = 80,
                    floor_db: float = -100.0) -> float:
    """Mean absolute difference (dB) of the mel spectrograms (librosa, power, dB re 1.0, floored at ``floor_db``).

    Parameters
    ----------
    ref, deg : (sample,) float at ``sample_rate_hz``, same length, at least ``n_fft`` samples
    """
    r, d = _pair(ref, deg)
    if r.size < n_fft:
        raise MetricUndefinedError(f"segment of {r.size} samples is shorter than the mel window ({n_fft})")
    a = _mel_db(r, sample_rate_hz, n_fft, hop, n_mels, floor_db)
    b = _mel_db(d, sample_rate_hz, n_fft, hop, n_mels, floor_db)
    return float(np.mean(np.abs(a - b)))


def stoi_scores(ref, deg, sample_rate_hz: int) -> tuple[float, float]:
    """(STOI, ESTOI) from pystoi; exactly ``pystoi.stoi(ref, deg, sample_rate_hz, extended=...)``.

    pystoi resamples to 10 kHz and drops frames 40 dB below the loudest; fewer than 30 frames left
    (about 0.4 s of non-silent reference) makes it undefined (pystoi would warn and return 1e-5).
    """
    pystoi = _require("pystoi")
    import importlib

    _stoi_mod = importlib.import_module("pystoi.stoi")  # the module (pystoi.stoi the attribute is the function)
    utils = importlib.import_module("pystoi.utils")

    r, d = _pair(ref, deg)
    fs, n_frame, n_need = _stoi_mod.FS, _stoi_mod.N_FRAME, _stoi_mod.N
    r10 = utils.resample_oct(r, fs, sample_rate_hz) if sample_rate_hz != fs else r
    d10 = utils.resample_oct(d, fs, sample_rate_hz) if sample_rate_hz != fs else d
    # k frames of n_frame at hop n_frame/2 fit in more than n_frame + (k-1) hops; after silence removal
    # and overlap-add pystoi's STFT sees one frame fewer, so N frames need more than n_frame + N hops.
    # Below one frame pystoi's silence removal itself fails (an AxisError), so this check comes first.
    shortest = n_frame + n_need * (n_frame // 2) + 1
    if r10.size < shortest:
        raise MetricUndefinedError(
            f"too short for STOI: {_span(r.size, sample_rate_hz)}; pystoi needs {n_need} frames of "
            f"{1000 * n_frame / fs:.1f} ms, at least {1000 * shortest / fs:.1f} ms of sound")
    xs, _ = utils.remove_silent_frames(r10, d10, _stoi_mod.DYN_RANGE, _stoi_mod.N_FRAME, _stoi_mod.N_FRAME // 2)
    n_frames = utils.stft(xs, _stoi_mod.N_FRAME, _stoi_mod.NFFT, overlap=2).shape[0] if xs.size else 0
    if n_frames < _stoi_mod.N:
        raise MetricUndefinedError(
            f"too short for STOI: {n_frames} non-silent 25.6 ms frames after silence removal, pystoi needs "
            f"{_stoi_mod.N} (about 0.4 s of sound)")
    return (float(pystoi.stoi(r10, d10, fs, extended=False)), float(pystoi.stoi(r10, d10, fs, extended=True)))


def _resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    import soxr

    return x if sr_in == sr_out else soxr.resample(x, sr_in, sr_out, quality="HQ")


def pesq_scores(ref, deg, sample_rate_hz: int) -> tuple[float, float]:
    """(PESQ wide-band at 16 kHz, PESQ narrow-band at 8 kHz): ``pesq.pesq`` on soxr-resampled signals.

    Signals longer than :data:`PESQ_MAX_S` are not passed to pesq: its C code crashes the whole
    process (segmentation fault) on long inputs (measured with pesq 0.0.4: 5 min at 16 kHz scored,
    10 min crashed), and P.862 is meant for speech samples of seconds, not minutes.

    Raises
    ------
    MetricUndefinedError
        pesq finds no utterance, the buffer is too short, or the signal is longer than
        :data:`PESQ_MAX_S` (NaN in per-TR and whole-signal scoring).
    """
    pesq = _require("pesq")
    r, d = _pair(ref, deg)
    if r.size < PESQ_MIN_S * sample_rate_hz:
        raise MetricUndefinedError(f"too short for PESQ: {_span(r.size, sample_rate_hz)}; the pesq library needs "
                                   f"at least {1000 * PESQ_MIN_S:g} ms")
    if r.size > PESQ_MAX_S * sample_rate_hz:
        raise MetricUndefinedError(
            f"PESQ not computed on {r.size / sample_rate_hz:.1f} s: the pesq library crashes the process on "
            f"long inputs, so signals over {PESQ_MAX_S:g} s are refused (P.862 scores speech samples of "
            "seconds); use the per-TR values")
    out = []
    for fs, mode in ((16000, "wb"), (8000, "nb")):
        rr, dd = _resample(r, sample_rate_hz, fs), _resample(d, sample_rate_hz, fs)
        try:
            out.append(float(pesq.pesq(fs, rr, dd, mode)))
        except pesq.PesqError as exc:
            why = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
            raise MetricUndefinedError(f"PESQ undefined: {type(exc).__name__} ({why})") from None
    return out[0], out[1]


def _peak_dbfs(x: np.ndarray) -> float:
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    return -math.inf if peak == 0.0 else 20.0 * math.log10(peak)


def score_segment(ref, deg, sample_rate_hz: int, params: QualityParams) -> tuple[dict[str, float], dict[str, str]]:
    """Every metric of ``params`` on one segment: ``(values, reasons)``; undefined ones are NaN with a reason.

    Parameters
    ----------
    ref, deg : (sample,) float at ``sample_rate_hz``, same length

    Returns
    -------
    values : {variable: float}, one per variable of ``params.variables``
    reasons : {variable: str} for each NaN value
    """
    r, d = np.asarray(ref, np.float64).reshape(-1), np.asarray(deg, np.float64).reshape(-1)
    values: dict[str, float] = {}
    reasons: dict[str, str] = {}
    silent = None
    if r.size == 0:
        silent = "empty segment (0 samples)"
    elif _peak_dbfs(r) < params.silence_dbfs:
        silent = f"reference segment is silent (peak below {params.silence_dbfs:g} dBFS)"
    calls: dict[str, Any] = {
        "snr": lambda: (snr_db(r, d),),
        "si_sdr": lambda: (si_sdr_db(r, d),),
        "lsd": lambda: (lsd_db(r, d, params.lsd_n_fft, params.lsd_hop, params.amin),),
        "mel_distance": lambda: (mel_distance_db(r, d, sample_rate_hz, params.mel_n_fft, params.mel_hop,
                                                 params.mel_n_mels, params.mel_floor_db),),
        "stoi": lambda: stoi_scores(r, d, sample_rate_hz),
        "pesq": lambda: pesq_scores(r, d, sample_rate_hz),
    }
    for m in params.metrics:
        names = METRICS[m]
        try:
            if silent:
                raise MetricUndefinedError(silent)
            got = calls[m]()
        except MetricUndefinedError as exc:
            got = (math.nan,) * len(names)
            for n in names:
                reasons[n] = str(exc)
        values.update(zip(names, got))
    return values, reasons


def metric_versions(params: QualityParams) -> dict[str, str]:
    """Versions of the packages the chosen metrics run on (recorded in quality entries)."""
    from importlib.metadata import PackageNotFoundError, version

    pkgs = {"numpy", "soxr"}
    if {"lsd", "mel_distance"} & set(params.metrics):
        pkgs.add("librosa")
    if "stoi" in params.metrics:
        pkgs.add("pystoi")
    if "pesq" in params.metrics:
        pkgs.add("pesq")
    out = {}
    for p in sorted(pkgs):
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            if p in ("pystoi", "pesq"):
                raise QualityError(f"metric package {p!r} is not installed; {_INSTALL_HINT}") from None
            out[p] = "unknown"
    return out
