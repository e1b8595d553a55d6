"""Mel entries: fixed dB reference (chunked == whole file), exact TR grid, cache, Griffin-Lim decode, bad options."""

from __future__ import annotations

import numpy as np
import pytest

from giblet_store import TrGrid
from giblet_store.cli import main
from giblet_store.errors import ParameterError
from giblet_store.grid import from_tr
from giblet_store.features.mel import MelParams, decode_mel, extract_mel
from giblet_store.testing import synth_audio, write_wav

SR = 22050
SMALL = dict(sample_rate_hz=SR, n_fft=512, hop=128, n_mels=40)


@pytest.fixture(scope="module")
def wav22(tmp_path_factory):
    """3 s of synthetic stimulus at 22.05 kHz (no resampling on load)."""
    return write_wav(tmp_path_factory.mktemp("mel") / "stim.wav", synth_audio(3.0, SR, seed=5), SR, subtype="FLOAT")


def _keys(store):
    return sorted(e.key for e in store.entries())


def _whole_file_librosa(wav, params: MelParams) -> np.ndarray:
    import librosa
    import soundfile as sf

    y, sr = sf.read(str(wav), dtype="float32")
    assert sr == params.sample_rate_hz
    S = librosa.feature.melspectrogram(y=y.astype(np.float64), center=True, pad_mode="constant",
                                       **params.librosa_kwargs())
    return librosa.power_to_db(S, ref=params.ref, amin=params.amin, top_db=None)


# ------------------------------------------------------------------------------ parameters
@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(n_fft=256, hop=512), "n_fft=256 is smaller than hop=512"),
        (dict(n_fft=512, n_mels=300), "n_mels=300 exceeds the 257 frequency bins"),
        (dict(fmax_hz=20000.0), "fmax_hz <= sample_rate_hz / 2"),
        (dict(fmin_hz=5000.0, fmax_hz=4000.0), "fmin_hz < fmax_hz"),
        (dict(power=3.0), "power must be 1"),
        (dict(ref=0.0), "ref and amin must be > 0"),
        (dict(window="kaiser"), "window 'kaiser' is not offered"),
        (dict(hop=1.5), "hop must be an integer"),
        (dict(win_length=4096), "win_length must be an integer in"),
    ],
)
def test_bad_mel_parameters(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        MelParams(**kwargs)


def test_params_are_concrete_and_round_trip():
    p = MelParams()
    assert p.fmax_hz == 11025.0 and p.win_length == 2048
    assert MelParams.from_dict(p.to_dict()) == p
    assert p.frame_rate == pytest.approx(22050 / 512)


# ------------------------------------------------------------------------------ values and grid
def test_chunked_equals_whole_file_with_a_fixed_reference(store, wav22):
    params = MelParams(**SMALL, chunk_s=0.37)
    whole = MelParams(**SMALL, chunk_s=600.0)
    a = extract_mel(store, wav22, params, TrGrid(1.5)).entry
    b = extract_mel(store, wav22, whole, TrGrid(1.5)).entry
    assert a.key != b.key  # chunking is recorded
    ds_a, ds_b = a.open(), b.open()
    sa = from_tr(ds_a["mel"].values, ds_a["n_frames"].values)
    sb = from_tr(ds_b["mel"].values, ds_b["n_frames"].values)
    np.testing.assert_allclose(sa, sb, atol=1e-5, rtol=0)
    ref = _whole_file_librosa(wav22, params)
    assert sa.shape == ref.shape == (40, 1 + 3 * SR // 128)
    np.testing.assert_allclose(sa, ref, atol=1e-5, rtol=0)


def test_the_reference_projects_max_reference_would_depend_on_the_chunk(wav22):
    import librosa
    import soundfile as sf

    y, _ = sf.read(str(wav22), dtype="float32")
    kw = MelParams(**SMALL).librosa_kwargs()
    S = librosa.feature.melspectrogram(y=y, **kw)
    whole = librosa.power_to_db(S, ref=np.max)
    first_half = librosa.power_to_db(S[:, : S.shape[1] // 2], ref=np.max)
    assert np.abs(whole[:, : S.shape[1] // 2] - first_half).max() > 0.1  # why a fixed ref is used


def test_mel_entry_layout_on_the_tr_grid(store, wav22):
    params = MelParams(**SMALL)
    r = extract_mel(store, wav22, params, TrGrid(1.0))
    ds = r.entry.open()
    assert ds["mel"].dims == ("tr", "mel_band", "frame") and ds["mel"].dtype == np.float32
    fpt = SR / 128  # 172.27 frames per 1 s TR
    assert ds.sizes["frame"] == int(np.ceil(fpt)) and ds.sizes["tr"] == 3  # last frame is centred at 2.995 s
    n = ds["n_frames"].values
    assert n.sum() == 1 + 3 * SR // 128 and set(n) <= {172, 173}
    mel = ds["mel"].values
    slots = np.arange(ds.sizes["frame"])
    tail = slots[None, :] >= n[:, None]  # (tr, frame)
    assert np.isnan(mel.transpose(0, 2, 1)[tail]).all()
    assert np.isfinite(mel.transpose(0, 2, 1)[~tail]).all()
    np.testing.assert_allclose(ds["mel_mean"].values, np.nanmean(mel, axis=-1), atol=1e-4)
    a = r.entry.attrs
    assert a["mel_params"] == params.to_dict() and a["n_mels"] == 40 and a["frame_rate"] == "11025/64"
    assert a["tr_s"] == 1.0 and a["hrf"] == "none" and a["inputs"]["mel"]["ref"] == 1.0
    assert np.all(np.diff(ds["mel_hz"].values) > 0)


def test_second_request_is_a_cache_hit(store, wav22):
    first = extract_mel(store, wav22, MelParams(**SMALL))
    before = _keys(store)
    again = extract_mel(store, wav22, MelParams(**SMALL))
    assert first.created and not again.created and again.entry == first.entry and _keys(store) == before
    assert extract_mel(store, wav22, MelParams(**SMALL, db=False)).created


@pytest.mark.data
def test_real_recording_16k(store, shared_data):
    r = extract_mel(store, shared_data / "arctic_a0007.wav", MelParams(sample_rate_hz=16000, n_fft=400, hop=160,
                                                                      n_mels=40))
    ds = r.entry.open()
    assert ds.sizes["frame"] == 150 and ds.sizes["tr"] == 3  # 100 frames/s, 4.0 s
    assert int(ds["n_frames"].sum()) == 1 + 64000 // 160
    assert r.entry.attrs["source_sample_rate_hz"] == 16000


# ------------------------------------------------------------------------------ Griffin-Lim
def test_griffin_lim_decode_by_cli_resembles_the_source(store, wav22, tmp_path):
    import librosa
    import soundfile as sf

    params = MelParams(**SMALL)
    entry = extract_mel(store, wav22, params).entry
    out = tmp_path / "gl.wav"
    assert main(["decode", store.url, entry.key[:16], "-o", str(out)]) == 0
    y, sr = sf.read(str(out), dtype="float32")
    ds = entry.open()
    frames = int(ds["n_frames"].sum())
    assert sr == SR and y.size == frames * params.hop
    stored = from_tr(ds["mel"].values, ds["n_frames"].values)
    S = librosa.feature.melspectrogram(y=y, center=True, pad_mode="constant", **params.librosa_kwargs())[:, :frames]
    again = librosa.power_to_db(S, ref=params.ref, amin=params.amin, top_db=None)
    loud = stored > stored.max() - 40  # compare where there is energy
    err = np.abs(again - stored)[loud]
    assert np.median(err) < 2.0, np.median(err)  # white noise of the same power: ~11 dB
    assert np.corrcoef(again[loud], stored[loud])[0, 1] > 0.75  # noise: ~0
    part = decode_mel(store, entry, tmp_path / "tr1.wav", trs="1:2", n_iter=4)
    assert sf.info(str(part)).frames == int(ds["n_frames"][1]) * params.hop


def test_decode_mel_refuses_other_kinds_and_bad_ranges(store, wav22, tmp_path):
    entry = extract_mel(store, wav22, MelParams(**SMALL)).entry
    with pytest.raises(ParameterError, match="TR range"):
        decode_mel(store, entry, tmp_path / "x.wav", trs="5:9")
    with pytest.raises(ParameterError, match="n_iter"):
        decode_mel(store, entry, tmp_path / "x.wav", n_iter=0)


# ------------------------------------------------------------------------------ CLI
def test_cli_mel_and_bad_options_write_nothing(store, wav22, capsys):
    assert main(["mel", str(wav22), "--store", store.url, "--n-fft", "512", "--hop", "128", "--n-mels", "40",
                 "--tr", "1.5", "--json"]) == 0
    before = _keys(store)
    assert len(before) == 1
    capsys.readouterr()
    assert main(["mel", str(wav22), "--store", store.url, "--n-fft", "256", "--hop", "512"]) == 2
    assert "n_fft=256 is smaller than hop=512" in capsys.readouterr().err
    assert main(["mel", str(wav22), "--store", store.url, "--n-fft", "256", "--hop", "64", "--n-mels", "200"]) == 2
    assert "n_mels=200 exceeds" in capsys.readouterr().err
    assert _keys(store) == before


def test_an_stft_larger_than_the_working_memory_limit_is_refused_before_reading_audio(wav22, tmp_path, monkeypatch):
    """issue 21: ``--n-fft 65536 --hop 1`` would hold a 43 GiB STFT; the entry alone would be small."""
    import giblet_store.features.mel as mel

    from giblet_store import open_store

    monkeypatch.setattr(mel, "load_audio", lambda *a, **k: pytest.fail("the audio was read"))
    store = open_store(tmp_path / "st")
    with pytest.raises(ParameterError) as err:
        extract_mel(store, wav22, MelParams(n_fft=65536, hop=1))
    text = str(err.value)
    assert "one task would hold" in text and "x 32769 bins x 24 bytes: n_fft=65536, hop=1 at 22050 Hz" in text
    assert "GIBLET_STORE_MAX_WORKING_BYTES" in text and "give a larger hop" in text
    monkeypatch.setenv("GIBLET_STORE_MAX_WORKING_BYTES", str(10 * 1024**2))
    with pytest.raises(ParameterError, match=r"4135 frames x 2049 bins .* more than the 0.00977 GiB working-memory"):
        extract_mel(store, wav22, MelParams(n_fft=4096, hop=16))
    mel.check_stft_size(MelParams(), 3.0, "stim.wav")  # the defaults: 130 frames x 1025 bins, 3.2 MB
