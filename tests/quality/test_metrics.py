"""Audio quality metrics: values pinned against set SNRs and the reference packages, per-TR exactness."""

import math

import numpy as np
import pytest

from giblet_store.errors import MetricUndefinedError, QualityError
from giblet_store.quality.metrics import (
    QualityParams, lsd_db, mel_distance_db, pesq_scores, score_segment, si_sdr_db, snr_db, stoi_scores,
)
from giblet_store.quality.run import score_per_tr
from giblet_store.testing import synth_audio

SR = 16000


@pytest.fixture(scope="module")
def x():
    return synth_audio(3.0, SR, seed=5)[0].astype(np.float64)


def _noise_at(x, snr, seed=0):
    """White noise whose *expected* power puts it ``snr`` dB below ``x`` (not rescaled to the realised power)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal(x.size) * math.sqrt(np.mean(x ** 2) / 10 ** (snr / 10))


@pytest.mark.parametrize("snr", [0.0, 10.0, 25.0])
def test_snr_of_white_noise_at_a_set_snr(x, snr):
    assert abs(snr_db(x, x + _noise_at(x, snr, seed=int(snr))) - snr) < 0.1


def test_si_sdr_is_gain_invariant_and_snr_is_not(x):
    y = x + _noise_at(x, 12.0)
    base = si_sdr_db(x, y)
    for g in (0.05, 0.5, 3.0, -2.0):
        assert si_sdr_db(x, g * y) == pytest.approx(base, abs=1e-9)
    assert abs(snr_db(x, 0.5 * y) - snr_db(x, y)) > 1.0
    # the definition, by a least-squares projection written independently
    alpha = np.linalg.lstsq(x[:, None], y, rcond=None)[0][0]
    t = alpha * x
    assert base == pytest.approx(10 * np.log10(np.sum(t ** 2) / np.sum((y - t) ** 2)), abs=1e-9)
    assert abs(base - 12.0) < 0.2


def test_stoi_and_pesq_of_identical_signals(x):
    s, es = stoi_scores(x, x, SR)
    assert abs(s - 1.0) < 1e-6 and abs(es - 1.0) < 1e-6
    wb, nb = pesq_scores(x, x, SR)
    assert wb >= 4.5 and nb >= 4.0
    assert snr_db(x, x) == math.inf and lsd_db(x, x) == 0.0 and mel_distance_db(x, x, SR) == 0.0


def test_each_metric_equals_its_reference_package(x):
    import librosa
    import pesq
    import pystoi
    import soxr

    y = x + _noise_at(x, 8.0)
    s, es = stoi_scores(x, y, SR)
    # we resample to 10 kHz once for both calls; pystoi does the same inside: equal to the last bits
    assert s == pytest.approx(pystoi.stoi(x, y, SR, extended=False), rel=1e-12, abs=0)
    assert es == pytest.approx(pystoi.stoi(x, y, SR, extended=True), rel=1e-12, abs=0)
    wb, nb = pesq_scores(x, y, SR)
    assert wb == pesq.pesq(16000, x, y, "wb")  # already 16 kHz: no resampling
    assert nb == pesq.pesq(8000, soxr.resample(x, SR, 8000, quality="HQ"), soxr.resample(y, SR, 8000, quality="HQ"), "nb")
    # 24 kHz input: wb is pesq on soxr's 16 kHz resampling
    x24, y24 = soxr.resample(x, SR, 24000), soxr.resample(y, SR, 24000)
    assert pesq_scores(x24, y24, 24000)[0] == pesq.pesq(16000, soxr.resample(x24, 24000, 16000, quality="HQ"),
                                                       soxr.resample(y24, 24000, 16000, quality="HQ"), "wb")
    mx = librosa.power_to_db(librosa.feature.melspectrogram(y=x, sr=SR, n_fft=1024, hop_length=256, n_mels=80),
                             ref=1.0, amin=1e-20, top_db=None)
    my = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=SR, n_fft=1024, hop_length=256, n_mels=80),
                             ref=1.0, amin=1e-20, top_db=None)
    assert mel_distance_db(x, y, SR) == pytest.approx(np.mean(np.abs(np.maximum(mx, -100) - np.maximum(my, -100))), rel=1e-12)
    px = np.abs(librosa.stft(x, n_fft=2048, hop_length=512, pad_mode="constant")) ** 2
    py = np.abs(librosa.stft(y, n_fft=2048, hop_length=512, pad_mode="constant")) ** 2
    d = 10 * np.log10(np.maximum(px, 1e-10)) - 10 * np.log10(np.maximum(py, 1e-10))
    assert lsd_db(x, y) == pytest.approx(np.mean(np.sqrt(np.mean(d ** 2, axis=0))), rel=1e-12)
    assert lsd_db(x, y) > lsd_db(x, x + _noise_at(x, 30.0))  # more noise, larger distance


def test_silent_and_short_segments_are_nan_with_reason(x):
    v, why = score_segment(np.zeros(SR), x[:SR], SR, QualityParams())
    assert all(math.isnan(a) for a in v.values()) and set(why) == set(v)
    assert "silent" in why["snr_db"]
    v, why = score_segment(x[:2000], x[:2000], SR, QualityParams(metrics=("snr", "lsd", "stoi", "pesq")))
    assert v["snr_db"] == math.inf and math.isnan(v["lsd_db"]) and math.isnan(v["stoi"]) and math.isnan(v["pesq_wb"])
    assert "shorter than the LSD window" in why["lsd_db"] and "too short for STOI" in why["stoi"]
    assert "too short for PESQ" in why["pesq_wb"] and "2000 samples (125.0 ms)" in why["pesq_wb"]
    with pytest.raises(MetricUndefinedError, match="all zeros"):
        snr_db(np.zeros(10), np.ones(10))


@pytest.mark.parametrize("sr", [8000, 16000, 24000, 48000])
def test_every_metric_on_every_short_segment_is_a_value_or_nan_with_reason(sr):
    """Issue 20 item 2: a last TR shorter than pystoi's 25.6 ms frame crashed (AxisError) and a 1-sample
    segment crashed PESQ's resampling (ValueError). Every length up to past STOI's and PESQ's minimums is
    a value or NaN with a reason; around STOI's minimum (409.7 ms at 10 kHz) the value is pystoi's own."""
    import pystoi

    rng = np.random.default_rng(sr)
    stoi_min = int(np.ceil(0.4097 * sr))
    lengths = [*range(1, 40), *range(40, int(0.3 * sr), 331), stoi_min - 2, stoi_min + 2]
    for n in lengths:
        ref = 0.3 * rng.standard_normal(n)
        values, why = score_segment(ref, ref + 0.01 * rng.standard_normal(n), sr, QualityParams())
        assert set(values) == set(QualityParams().variables)
        for name, v in values.items():
            assert not math.isnan(v) or why[name], (n, name)
        if n < 0.4 * sr:
            assert math.isnan(values["stoi"]) and "too short for STOI" in why["stoi"], n
        if n < 0.25 * sr:
            assert math.isnan(values["pesq_wb"]) and "too short for PESQ" in why["pesq_nb"], n
        if n == 1:
            assert "1-sample segment" in why["si_sdr_db"] and math.isfinite(values["snr_db"])
    n = stoi_min + 2
    x = 0.3 * rng.standard_normal(n)
    y = x + 0.1 * rng.standard_normal(n)
    assert stoi_scores(x, y, sr)[0] == pytest.approx(pystoi.stoi(x, y, sr), rel=1e-9)


def test_pesq_refuses_signals_long_enough_to_crash_its_c_code(monkeypatch):
    """10 min at 16 kHz segfault pesq's C code (the whole process, no exception): never passed to it."""
    import pesq

    from giblet_store.quality.metrics import PESQ_MAX_S

    def boom(*args, **kwargs):
        raise AssertionError("pesq.pesq called on a signal over PESQ_MAX_S")

    monkeypatch.setattr(pesq, "pesq", boom)
    sr = 8000
    long = synth_audio(PESQ_MAX_S + 1.0, sr, seed=1)[0].astype(np.float64)
    with pytest.raises(MetricUndefinedError, match=r"PESQ not computed on 121.0 s.*crashes the process"):
        pesq_scores(long, long, sr)
    v, why = score_segment(long, long, sr, QualityParams(metrics=("snr", "pesq")))
    assert v["snr_db"] == math.inf and math.isnan(v["pesq_wb"]) and math.isnan(v["pesq_nb"])
    assert "use the per-TR values" in why["pesq_nb"]


def test_per_tr_uses_exactly_each_trs_samples(x):
    rng = np.random.default_rng(1)
    y = x + 0.05 * rng.standard_normal(x.size)
    bounds = np.array([0, 12000, 24000, 36000, 48000])  # 0.75 s TRs at 16 kHz
    p = QualityParams(metrics=("snr", "si_sdr", "lsd", "mel_distance", "stoi"), block_trs=3)
    values, reasons, whole, starts = score_per_tr(x, y, SR, bounds, p)
    assert values.numblocks == (1, 2) and starts == [0, 3]  # one task per block of 3 TRs
    got = values.compute(scheduler="sync")
    for k in range(4):
        direct, _ = score_segment(x[bounds[k]:bounds[k + 1]], y[bounds[k]:bounds[k + 1]], SR, p)
        # equal up to BLAS summation order (ESTOI's matmuls differ in the last bit with array alignment)
        np.testing.assert_allclose(got[:, k], [direct[n] for n in p.variables], rtol=1e-12, atol=0)
    # changing every sample outside TR 2 leaves TR 2's scores alone and changes the others
    y2 = y.copy()
    y2[: bounds[2]] += 0.3 * rng.standard_normal(bounds[2])
    y2[bounds[3]:] += 0.3 * rng.standard_normal(y.size - bounds[3])
    got2 = score_per_tr(x, y2, SR, bounds, p)[0].compute(scheduler="sync")
    np.testing.assert_allclose(got2[:, 2], got[:, 2], rtol=1e-12, atol=0)
    assert np.all(got2[0, [0, 1, 3]] < got[0, [0, 1, 3]] - 3)
    assert whole.compute(scheduler="sync")[0]["snr_db"] == snr_db(x, y)


def test_missing_metric_package_gives_install_hint(monkeypatch, x):
    import sys

    monkeypatch.setitem(sys.modules, "pesq", None)
    with pytest.raises(QualityError, match=r"pip install 'giblet_store\[quality\]'"):
        pesq_scores(x, x, SR)


def test_params_validate_and_round_trip():
    p = QualityParams(metrics=("pesq", "snr"))
    assert p.metrics == ("snr", "pesq") and p.variables == ("snr_db", "pesq_wb", "pesq_nb")
    assert QualityParams.from_dict(p.to_dict()) == p
    with pytest.raises(QualityError.__mro__[2], match="choose from"):  # ParameterError
        QualityParams(metrics=("snr", "psnr"))
