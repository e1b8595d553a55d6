"""Where scored audio lies in stimulus time (giblet_store.quality.sources, giblet_store.audio.start): issue 20 item 4.

A file written by ``decode --trs A:B`` starts at TR A; quality read it as if it started at stimulus
time 0 (cutting it to nothing, or refusing the lengths), could not take reconstruction entries, and
decoded before finding out.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import soundfile as sf

import giblet_store as gs
from giblet_store.audio.start import recorded_start
from giblet_store.errors import QualityError
from giblet_store.quality.metrics import QualityParams
from giblet_store.quality.run import score_audio
from recon_helpers import build_store

SNR = QualityParams(metrics=("snr",))


@pytest.fixture(scope="module")
def env(tmp_path_factory, model_dir, tone_wav):
    e = build_store(tmp_path_factory.mktemp("qsrc") / "store", model_dir, tone_wav)
    store = e["store"]
    prov = dict(fmri=e["fmri"], model_name="copy", checkpoint=e["ckpt"], training_params={})
    codes = store.open(e["codes"])["codes"].values
    e["rec_codes"] = gs.write_reconstruction(store, codes[1:4], e["codes"], trs=(1, 4), **prov)[0]
    e["wav"] = tone_wav
    return e


def _first_sample(store, entry, tr: int) -> int:
    n = store.open(entry)["n_frames"].values.astype(np.int64)
    return (int(entry.attrs.get("frames_before_grid", 0)) + int(n[:tr].sum())) * int(entry.attrs["hop_samples"])


def test_decode_records_where_its_file_starts(env, model_dir, tmp_path):
    store, codes, mel = env["store"], env["codes"], env["mel"]
    out = gs.decode_entry(store, codes, tmp_path / "c.wav", trs="2:4", model=str(model_dir))
    sr = codes.attrs["sample_rate_hz"]
    assert recorded_start(out) == Fraction(_first_sample(store, codes, 2), sr)
    assert f"entry={codes.key} trs=2:4" in sf.SoundFile(str(out)).comment
    m = gs.decode_mel(store, mel, tmp_path / "m.wav", trs="1:3", n_iter=2)
    n = store.open(mel)["n_frames"].values.astype(np.int64)
    p = mel.attrs["mel_params"]
    assert recorded_start(m) == Fraction((mel.attrs.get("frames_before_grid", 0) + int(n[:1].sum())) * p["hop"],
                                         p["sample_rate_hz"])
    r = gs.decode_reconstruction(store, env["rec_codes"], tmp_path / "r.wav", trs="2:4", model=str(model_dir))
    assert recorded_start(r) == recorded_start(out)
    assert recorded_start(env["wav"]) is None  # a file from elsewhere: no record


def test_an_entry_against_a_file_decoded_from_a_tr_range(env, model_dir, tmp_path):
    store, codes = env["store"], env["codes"]
    out = gs.decode_entry(store, codes, tmp_path / "c.wav", trs="2:4", model=str(model_dir))
    r = score_audio(codes, out, store=store, params=SNR, trs="2:4", model=str(model_dir))
    assert r.metrics["snr_db"] == math.inf and r.per_tr["tr"].values.tolist() == [2, 3]
    # the original file against the decoded one: the TRs both cover, each file cut to them
    r = score_audio(env["wav"], out, params=SNR, grid=gs.TrGrid(2.0))
    assert r.per_tr["tr"].values.tolist() == [2, 3] and math.isfinite(r.metrics["snr_db"])
    with pytest.raises(QualityError, match=r"c.wav covers stimulus time 4 to 8 s \(it starts at 4 s: recorded in "
                                           r"the file by decode\), but scoring TRs 0:2 of entry"):
        score_audio(codes, out, store=store, params=SNR, trs="0:2", model=str(model_dir))


def test_deg_start_places_a_file_without_a_record_and_lengths_are_checked_before_decoding(
        env, model_dir, tmp_path, monkeypatch):
    store, codes = env["store"], env["codes"]
    out = gs.decode_entry(store, codes, tmp_path / "c.wav", trs="2:4", model=str(model_dir))
    data, sr = sf.read(str(out), dtype="float32")
    bare = tmp_path / "bare.wav"
    sf.write(str(bare), data, sr, subtype="FLOAT")  # the same samples, no record
    assert recorded_start(bare) is None
    r = score_audio(codes, bare, store=store, params=SNR, trs="2:4", model=str(model_dir),
                    deg_start=float(recorded_start(out)))
    assert r.metrics["snr_db"] == math.inf

    import giblet_store.codec.encodec as encodec

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded before the lengths were checked")

    monkeypatch.setattr(encodec, "decode_stream", no_decoding)
    with pytest.raises(QualityError, match=r"bare.wav covers stimulus time 0 to 4 s \(it starts at 0 s: no start "
                                           r"recorded in the file, so stimulus time 0\).*--deg-start"):
        score_audio(codes, bare, store=store, params=SNR, trs="2:4", model=str(model_dir))


def test_reconstruction_entries_are_scored_directly(env, model_dir, tmp_path):
    store, rec = env["store"], env["rec_codes"]
    r = score_audio(env["codes"], rec, store=store, params=SNR, model=str(model_dir))
    assert r.metrics["snr_db"] == math.inf and r.per_tr["tr"].values.tolist() == [1, 2, 3]
    assert r.entry.attrs["degraded"] == {"entry_key": rec.key, "kind": "reconstruction"}
    wav = gs.decode_reconstruction(store, rec, tmp_path / "r.wav", trs="2:4", model=str(model_dir))
    r = score_audio(rec, wav, store=store, params=SNR, trs="2:4", model=str(model_dir))
    assert r.metrics["snr_db"] == math.inf


def test_cli_quality_honours_the_record_and_deg_start(env, model_dir, tmp_path, run):
    store, codes = env["store"], env["codes"]
    out = tmp_path / "c.wav"
    code, _, err = run("decode", store.root, codes.key[:12], "-o", out, "--trs", "2:4", "--model", model_dir)
    assert code == 0, err
    code, outp, err = run("quality", codes.key[:12], out, "--store", store.root, "--trs", "2:4", "--metrics", "snr",
                          "--model", model_dir)
    assert code == 0 and "inf" in outp, err
    code, _, err = run("quality", codes.key[:12], out, "--store", store.root, "--trs", "2:4", "--metrics", "snr",
                       "--model", model_dir, "--deg-start", "0")
    assert code == 2 and "it starts at 0 s: --deg-start" in err
