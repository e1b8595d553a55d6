"""Decode anything: code arrays, and reconstruction entries of codes / embeddings / mel (giblet_store.features.decoding)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import giblet_store as gs
from giblet_store.codec.encodec import decode_stream
from giblet_store.features.decoding import CodesAdjustedWarning
from giblet_store.errors import ParameterError
from giblet_store.grid import from_tr
from recon_helpers import build_store


@pytest.fixture(scope="module")
def env(tmp_path_factory, model_dir, tone_wav):
    e = build_store(tmp_path_factory.mktemp("dec") / "store", model_dir, tone_wav)
    store, prov = e["store"], dict(fmri=e["fmri"], model_name="m", checkpoint=e["ckpt"])
    codes = store.open(e["codes"])
    e["rec_codes"] = gs.write_reconstruction(store, codes["codes"].values[1:4], e["codes"], trs=(1, 4), **prov)[0]
    e["rec_emb"] = gs.write_reconstruction(store, store.open(e["emb"])["embeddings"].values, e["emb"], **prov)[0]
    e["rec_mel"] = gs.write_reconstruction(store, store.open(e["mel"])["mel"].values, e["mel"], **prov)[0]
    return e


def snapshot(store) -> tuple:
    root = Path(store.root)
    return tuple(sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*")))


def test_decode_codes_rounds_and_clips_with_a_counted_warning(codec, env):
    ds = env["store"].open(env["codes"])
    stream = from_tr(ds["codes"].values, ds["n_frames"].values)[:, :150]
    ref = decode_stream(codec, stream)
    np.testing.assert_array_equal(gs.decode_codes(stream, model=codec), ref)
    noisy = stream.astype(np.float32) + 0.3
    noisy[0, :5] = 1500.0  # 5 above the codebook
    noisy[1, :2] = -7.0  # 2 below
    with pytest.warns(CodesAdjustedWarning, match=r"rounded 293 non-integer and clipped 7 out-of-range code value"):
        got = gs.decode_codes(noisy, model=codec)
    fixed = stream.copy()
    fixed[0, :5], fixed[1, :2] = 1023, 0
    np.testing.assert_array_equal(got, decode_stream(codec, fixed))
    gridded = gs.decode_codes(ds["codes"].values, model=codec, n_frames=ds["n_frames"].values)
    assert gridded.shape == (1, int(ds["n_frames"].sum()) * codec.hop)


@pytest.mark.parametrize("bad, match", [
    ("no n_frames", "need n_frames"), ("codebooks", "codes have 33 codebooks"), ("nan", "NaN/inf"),
])
def test_decode_codes_bad_input(codec, bad, match):
    c = np.zeros((2, 10), np.float32)
    kw = {}
    if bad == "no n_frames":
        c = np.zeros((3, 2, 10), np.int16)
    elif bad == "codebooks":
        c = np.zeros((33, 10), np.int16)
    else:
        c[0, 0] = np.nan
    with pytest.raises(ParameterError, match=match):
        gs.decode_codes(c, model=codec, **kw)


def test_codes_reconstruction_decodes_like_the_target(env, model_dir, tmp_path):
    store = env["store"]
    audio, sr = gs.reconstruction_audio(store, env["rec_codes"], "2:4", model=str(model_dir))
    ref = tmp_path / "ref.wav"
    gs.decode_entry(store, env["codes"], ref, trs="2:4", model=str(model_dir))
    want, sr2 = sf.read(str(ref), dtype="float32", always_2d=True)
    assert sr == sr2 == 24000
    np.testing.assert_array_equal(audio.T, want)


def test_embeddings_reconstruction_is_quantised_then_decoded(env, model_dir, codec):
    store = env["store"]
    audio, _ = gs.reconstruction_audio(store, env["rec_emb"], (0, 2), model=str(model_dir))
    emb = store.open(env["emb"]).isel(tr=slice(0, 2))
    q = gs.quantise(emb["embeddings"].values, model=codec, bandwidth_kbps=1.5)
    np.testing.assert_array_equal(audio, decode_stream(codec, from_tr(q, emb["n_frames"].values)))
    six, _ = gs.reconstruction_audio(store, env["rec_emb"], (0, 2), model=str(model_dir), bandwidth_kbps=6)
    assert six.shape == audio.shape and not np.array_equal(six, audio)


def test_mel_reconstruction_uses_seeded_griffin_lim(env):
    import librosa

    store = env["store"]
    audio, sr = gs.reconstruction_audio(store, env["rec_mel"], "1:3", n_iter=16)
    again, _ = gs.reconstruction_audio(store, env["rec_mel"], "1:3", n_iter=16)
    np.testing.assert_array_equal(audio, again)  # seeded phase: deterministic
    mel = store.open(env["rec_mel"]).sel(tr=[1, 2])
    n = mel["n_frames"].values
    assert sr == 16000 and audio.shape == (1, int(n.sum()) * 256)
    p = env["mel"].attrs["mel_params"]
    got = librosa.power_to_db(librosa.feature.melspectrogram(
        y=audio[0], sr=sr, n_fft=p["n_fft"], hop_length=p["hop"], n_mels=p["n_mels"], center=True,
        pad_mode="constant"), ref=1.0)[:, :int(n.sum())]
    want = from_tr(mel["mel"].values, n)
    r = np.corrcoef(got.ravel(), want.ravel())[0, 1]
    r_flipped = np.corrcoef(got.ravel(), want[:, ::-1].ravel())[0, 1]
    assert r > 0.7 and r > r_flipped + 0.05, (r, r_flipped)  # the audio has the reconstructed spectrum


def test_cli_decodes_reconstructions_and_refuses_bad_requests(env, model_dir, tmp_path, run):
    store = env["store"]
    out = tmp_path / "r.wav"
    rc, stdout, err = run("decode", store.root, env["rec_emb"].key[:12], "-o", out, "--trs", "1:3",
                          "--model", model_dir, "--bandwidth", "3")
    assert rc == 0, err
    n = int(store.open(env["emb"])["n_frames"].values[1:3].sum())
    assert sf.info(str(out)).frames == n * 320
    before = snapshot(store)
    bad = tmp_path / "bad.wav"
    rc, _, err = run("decode", store.root, env["rec_codes"].key, "-o", bad, "--trs", "0:3", "--model", model_dir)
    assert rc == 2 and "TR range 0:3 is outside" in err and "Traceback" not in err
    rc, _, err = run("decode", store.root, env["rec_codes"].key, "-o", bad, "--bandwidth", "3", "--model", model_dir)
    assert rc == 2 and "bandwidth_kbps applies to embeddings" in err
    from giblet_store.testing import save_test_model

    other = save_test_model(tmp_path / "other", seed=1, fill_seconds=2.0, num_filters=4)
    rc, _, err = run("decode", store.root, env["rec_codes"].key, "-o", bad, "--model", other)
    assert rc == 2 and "is not the one that made entry" in err
    assert not bad.exists() and snapshot(store) == before


def test_decode_codes_on_grid_of_a_one_call_model_and_its_bad_input(env, codec):
    """decode_codes_on_grid (issue 22: the example's shuffled reconstruction) with the 24 kHz model is
    decode_codes of the real frames; shapes that do not match, or rows out of order, are refused by name."""
    from giblet_store.features.decoding import decode_codes_on_grid

    store = env["store"]
    ds = store.open(env["codes"])
    c, n = ds["codes"].values[1:4], ds["n_frames"].values[1:4]
    got = decode_codes_on_grid(store, env["codes"], c, n, [1, 2, 3], model=codec)
    np.testing.assert_array_equal(got, gs.decode_codes(c, model=codec, n_frames=n))
    for rows, nf in (([1, 2], n), ([3, 2, 1], n), ([1, 2, 3], n[:2]), ([-1, 0, 1], n)):
        with pytest.raises(ParameterError, match="increasing rows"):
            decode_codes_on_grid(store, env["codes"], c, nf, rows, model=codec)
