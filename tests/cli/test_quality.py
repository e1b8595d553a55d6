"""`giblet-store quality` and quality entries: files and codes entries, cache hits, every bad input."""

import json
from pathlib import Path

import numpy as np
import pytest

from giblet_store import open_store
from giblet_store.testing import synth_audio, write_wav

from helpers import snapshot

SR = 16000
METRIC_KEYS = {"snr_db", "si_sdr_db", "lsd_db", "mel_distance_db", "stoi", "estoi", "pesq_wb", "pesq_nb"}


@pytest.fixture(scope="module")
def wavs(tmp_path_factory):
    d = tmp_path_factory.mktemp("qwav")
    x = synth_audio(3.0, SR, seed=2)
    noise = 0.03 * np.random.default_rng(0).standard_normal(x.shape).astype(np.float32)
    silent_mid = x.copy()
    silent_mid[:, SR : 2 * SR] = 0.0
    out = {
        "ref": write_wav(d / "ref.wav", x, SR, subtype="FLOAT"),
        "deg": write_wav(d / "deg.wav", x + noise, SR, subtype="FLOAT"),
        "deg8k": write_wav(d / "deg8k.wav", (x + noise)[:, ::2].copy(), SR // 2, subtype="FLOAT"),
        "short": write_wav(d / "short.wav", x[:, : SR * 2], SR, subtype="FLOAT"),
        "silent": write_wav(d / "silent.wav", np.zeros_like(x), SR, subtype="FLOAT"),
        "silent_mid": write_wav(d / "silent_mid.wav", silent_mid, SR, subtype="FLOAT"),
    }
    (d / "notaudio.wav").write_text("this is not audio")
    out["notaudio"] = d / "notaudio.wav"
    return out


def test_files_to_a_quality_entry_and_cache_hit(run, tmp_path, wavs):
    st = tmp_path / "st"
    code, out, err = run("quality", wavs["ref"], wavs["deg"], "--store", st, "--tr", 1.0, "--json")
    assert code == 0, err
    got = json.loads(out)
    assert set(got["metrics"]) == METRIC_KEYS and got["created"] is True and got["n_trs"] == 3
    assert 10 < got["metrics"]["snr_db"] < 30 and 0 < got["metrics"]["stoi"] < 1
    store = open_store(st)
    e = store.get(got["key"])
    ds = e.open()  # validated against quality.schema.json
    assert e.kind == "quality" and set(ds.data_vars) == METRIC_KEYS and ds.sizes["tr"] == 3
    assert ds["n_samples"].values.tolist() == [SR, SR, SR] and e.attrs["grid_source"] == "files"
    assert e.attrs["reference"]["name"] == "ref.wav" and len(e.attrs["degraded"]["file_sha256"]) == 64
    assert {"pystoi", "pesq", "soxr", "librosa"} <= set(e.attrs["metric_versions"])
    assert e.attrs["whole_values"]["snr_db"] == pytest.approx(got["metrics"]["snr_db"])
    before = snapshot(st)
    code, out, err = run("quality", wavs["ref"], wavs["deg"], "--store", st, "--tr", 1.0, "--json")
    again = json.loads(out)
    assert code == 0 and again["created"] is False and again["key"] == got["key"] and snapshot(st) == before
    assert again["metrics"] == got["metrics"]
    # another TR range or metric set is another entry
    code, out, _ = run("quality", wavs["ref"], wavs["deg"], "--store", st, "--tr", 1.0, "--trs", "1:3",
                       "--metrics", "snr,stoi", "--json")
    third = json.loads(out)
    assert third["key"] != got["key"] and set(third["metrics"]) == {"snr_db", "stoi", "estoi"}
    assert store.get(third["key"]).open()["tr"].values.tolist() == [1, 2]


def test_sample_rate_mismatch_is_resampled_and_text_output(run, wavs):
    code, out, err = run("quality", wavs["ref"], wavs["deg8k"], "--metrics", "snr,si_sdr,stoi", "--json")
    assert code == 0, err
    m = json.loads(out)["metrics"]
    assert "key" not in json.loads(out) and m["si_sdr_db"] > 5  # 8 kHz copy resampled to the reference's 16 kHz
    code, out, _ = run("quality", wavs["ref"], wavs["ref"], "--metrics", "snr,stoi")
    assert code == 0 and "snr_db" in out and "inf" in out


def test_silent_tr_is_nan_with_reason_not_a_crash(run, tmp_path, wavs):
    st = tmp_path / "st"
    code, out, err = run("quality", wavs["silent_mid"], wavs["deg"], "--store", st, "--tr", 1.0,
                         "--metrics", "snr,stoi,pesq", "--json")
    assert code == 0, err
    e = open_store(st).get(json.loads(out)["key"])
    ds = e.open()
    assert np.isnan(ds["snr_db"].values[1]) and np.isfinite(ds["snr_db"].values[[0, 2]]).all()
    reason, trs = next(iter(e.attrs["nan_reasons"]["snr_db"].items()))
    assert "silent" in reason and trs == [1]


def test_a_last_tr_shorter_than_a_stoi_frame_is_nan_with_its_reason(run, tmp_path):
    """Issue 20 item 2: 3.01 s at TR 1.5 leaves a 10 ms last TR; STOI crashed there with an AxisError."""
    sr = 24000
    x = synth_audio(3.01, sr, seed=3)
    ref = write_wav(tmp_path / "ref.wav", x, sr, subtype="FLOAT")
    deg = write_wav(tmp_path / "deg.wav", x + 0.01 * np.random.default_rng(1).standard_normal(x.shape).astype(np.float32),
                    sr, subtype="FLOAT")
    code, out, err = run("quality", ref, deg, "--tr", 1.5, "--metrics", "stoi")
    assert code == 0, err
    assert "NaN stoi, estoi in TR 2: too short for STOI: a segment of 240 samples (10.0 ms)" in out
    code, out, err = run("quality", ref, deg, "--tr", 1.5, "--metrics", "stoi,pesq,snr", "--json")
    got = json.loads(out)
    assert code == 0 and 0 < got["metrics"]["stoi"] <= 1 and got["n_trs"] == 3
    short = {r: trs for r, trs in got["nan_reasons"]["pesq_wb"].items() if "too short for PESQ" in r}
    assert list(short.values()) == [[2]] and "snr_db" not in got["nan_reasons"]


def _bad(run, st, *argv):
    before = snapshot(st)
    code, out, err = run(*argv)
    assert code == 2 and "Traceback" not in err and err.startswith("giblet-store: error:")
    assert snapshot(st) == before
    return err


def test_bad_inputs_exit_2_and_leave_the_store_unchanged(run, tmp_path, wavs):
    st = tmp_path / "st"
    code, out, _ = run("quality", wavs["ref"], wavs["deg"], "--store", st, "--metrics", "snr", "--json")
    qkey = json.loads(out)["key"]
    err = _bad(run, st, "quality", qkey, wavs["deg"], "--store", st)
    assert "'quality' entry" in err and "codes" in err  # wrong kind
    err = _bad(run, st, "quality", wavs["ref"], wavs["deg"], "--store", st, "--trs", "2:9", "--tr", 1.0)
    assert "outside" in err and "0:3" in err
    err = _bad(run, st, "quality", wavs["silent"], wavs["deg"], "--store", st)
    assert "reference is silent" in err
    err = _bad(run, st, "quality", wavs["notaudio"], wavs["deg"], "--store", st)
    assert "not an audio file" in err
    err = _bad(run, st, "quality", wavs["ref"], wavs["short"], "--store", st)
    assert "48000" in err and "32000" in err and "--align" in err
    err = _bad(run, st, "quality", wavs["ref"], "0123abcd", "--store", st)
    assert "0123abcd" in err
    err = _bad(run, st, "quality", wavs["ref"], wavs["deg"], "--store", st, "--metrics", "snr,psnr")
    assert "psnr" in err and "choose from" in err
    code, out, err = run("quality", wavs["ref"], wavs["short"], "--store", st, "--align", "--metrics", "snr", "--json")
    assert code == 0, err
    e = open_store(st).get(json.loads(out)["key"])
    assert e.attrs["trimmed_samples"] == {"reference": SR, "degraded": 0} and e.attrs["inputs"]["align"] is True


def test_codes_entry_is_decoded_on_its_own_grid(run, tmp_path, model_dir):
    from giblet_store import CodecParams, TrGrid, extract_codes

    wav = write_wav(tmp_path / "stim.wav", synth_audio(4.0, 24000, seed=4), 24000, subtype="FLOAT")
    store = open_store(tmp_path / "st")
    codes = extract_codes(store, wav, CodecParams(model=str(model_dir), bandwidth_kbps=1.5), TrGrid(1.5)).entry
    code, out, err = run("quality", wav, codes.key, "--store", store.url, "--model", model_dir, "--trs", "1:3",
                         "--metrics", "snr,si_sdr,mel_distance", "--json")
    assert code == 0, err
    e = store.get(json.loads(out)["key"])
    ds = e.open()
    n_frames = codes.open()["n_frames"].values[1:3].astype(np.int64)
    assert ds["n_samples"].values.tolist() == (n_frames * 320).tolist()  # exactly the TRs' frames
    assert ds["tr"].values.tolist() == [1, 2] and e.attrs["parent"] == [codes.key]
    assert e.attrs["degraded"] == {"entry_key": codes.key, "kind": "codes"} and e.attrs["grid_source"].endswith(codes.key)
    # the per-TR score is the metric on the decoded TR against the reference's samples of that TR
    from giblet_store.codec.encodec import decode_stream, load_codec
    from giblet_store.audio.load import load_audio
    from giblet_store.grid import from_tr
    from giblet_store.quality.metrics import mel_distance_db

    cds = codes.open()
    first = int(cds["n_frames"].values[:1].sum()) * 320
    dec = decode_stream(load_codec(str(model_dir)), from_tr(cds["codes"].values[1:3], n_frames))[0]
    ref = load_audio(wav, 24000)[0][0]
    n1 = int(n_frames[0]) * 320
    assert ds["mel_distance_db"].values[0] == pytest.approx(
        mel_distance_db(ref[first : first + n1], dec[:n1], 24000), rel=1e-9)
    code, _, err = run("quality", wav, codes.key, "--store", store.url, "--model", model_dir, "--trs", "0:99")
    assert code == 2 and "outside" in err
    from giblet_store.testing import save_test_model

    other = save_test_model(tmp_path / "other", seed=1, fill_seconds=2.0, num_filters=4)
    before = sorted((str(p), p.stat().st_size) for p in Path(store.root).rglob("*"))
    code, _, err = run("quality", wav, codes.key, "--store", store.url, "--model", other, "--metrics", "snr")
    assert code == 2 and "is not the one that made entry" in err and "Traceback" not in err
    assert sorted((str(p), p.stat().st_size) for p in Path(store.root).rglob("*")) == before


def test_entry_key_without_store_says_give_the_store(run, wavs):
    code, _, err = run("quality", wavs["ref"], "0123abcdef")
    assert code == 2 and "--store" in err and "0123abcdef" in err


def test_a_missing_path_is_a_file_but_a_missing_hex_key_is_named(tmp_path):
    from giblet_store.errors import EntryNotFoundError
    from giblet_store.quality.sources import _as_entry

    store = open_store(tmp_path / "s")
    assert _as_entry(store, tmp_path / "missing.wav") is None  # audio_info then says the file is missing
    with pytest.raises(EntryNotFoundError, match="no complete entry .* starting with 'abcd1234'"):
        _as_entry(store, "abcd1234")
