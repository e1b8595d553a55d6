"""derive on 48 kHz stereo entries (issue 22, item 3): embeddings per frame with each frame's chunk scale
kept as a variable, per-TR means, HRF / FIR / resampling, and Quantise + decode of 48 kHz reconstructions
with the stimulus's stored scales."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import giblet_store as gs
from giblet_store.testing import synth_audio, write_wav

from recon_helpers import FUNCTIONAL, N_TRS

SR = 48000


@pytest.fixture(scope="module")
def env48(tmp_path_factory, model48_dir):
    from giblet_store.fmri.ingest import FmriParams, ingest_fmri

    root = tmp_path_factory.mktemp("derive48")
    wav = write_wav(root / "s48.wav", synth_audio(10.0, SR, seed=8, channels=2), SR, subtype="FLOAT")
    store = gs.open_store(root / "store")
    codes = gs.extract_codes(store, wav, gs.CodecParams(str(model48_dir), 3), gs.TrGrid(2.0)).entry
    emb = store.derive(codes, gs.Embeddings(), model=str(model48_dir))
    fmri = ingest_fmri(store, [FUNCTIONAL], ["sub-01"], params=FmriParams(n_trs=N_TRS)).entry
    torch.save({"w": torch.arange(3.0)}, root / "recon.pt")
    return {"store": store, "codes": codes, "emb": emb, "fmri": fmri, "ckpt": root / "recon.pt"}


def test_embeddings_per_frame_with_their_chunk_scale(env48, model48_dir):
    store, codes, emb = env48["store"], env48["codes"], env48["emb"]
    c, e = store.open(codes), store.open(emb)
    assert emb.attrs["chunk_scale"].startswith("not applied: embeddings are of each model chunk divided by its scale")
    n = c["n_frames"].values
    real = np.arange(c.sizes["frame"])[None, :] < n[:, None]
    want = gs.dequantise(c["codes"].values.astype(np.int64), model=str(model48_dir))  # (tr, frame, dim), NaN tails
    np.testing.assert_array_equal(e["embeddings"].values, want)
    scale = e["frame_scale"].values
    np.testing.assert_array_equal(scale[real], c["scales"].values[c["frame_chunk"].values[real]])
    assert np.isnan(scale[~real]).all() and len(np.unique(scale[real])) == c.sizes["chunk"]
    np.testing.assert_array_equal(e["frame_time_s"].values, c["frame_time_s"].values)
    np.testing.assert_array_equal(e["frame_chunk"].values, c["frame_chunk"].values)
    np.testing.assert_allclose(e["embedding_mean"].values, np.nanmean(want, axis=1), rtol=1e-5, atol=1e-6)


def test_hrf_fir_and_resampling_of_48khz_embeddings(env48):
    store, emb = env48["store"], env48["emb"]
    assert "frame_scale" in store.open(emb) and "chunk_scale" in emb.attrs  # the chain starts at scaled-apart embeddings
    mean = store.open(emb)["embedding_mean"].values
    bold = store.derive(emb, gs.Hrf("spm", length_s=6.0))
    assert list(store.open(bold).data_vars) == ["embedding_mean"]  # the per-TR mean; frame arrays stay out
    fir = store.open(store.derive(emb, gs.Fir((1, 2))))
    got = fir["embedding_mean"].transpose("tr", "delay", "dim").values
    np.testing.assert_array_equal(got[2:, 0], mean[1:-1])  # delay 1: the previous TR
    np.testing.assert_array_equal(got[2:, 1], mean[:-2])
    at4 = store.open(store.derive(bold, gs.Resample(tr_s=4.0)))
    assert at4.sizes["tr"] == 3 and store.lineage(store.derive(bold, gs.Resample(tr_s=4.0)))[-1] == env48["codes"]


def test_quantise_and_decode_a_48khz_reconstruction_with_the_stored_scales(env48, model48_dir, tmp_path):
    store, codes, emb = env48["store"], env48["codes"], env48["emb"]
    prov = dict(fmri=env48["fmri"], model_name="m", checkpoint=env48["ckpt"])
    true = store.open(emb)["embeddings"].values
    rec, _ = gs.write_reconstruction(store, true[1:4], emb, trs=(1, 4), **prov)
    q = store.derive(rec, gs.Quantise(bandwidth_kbps=3), model=str(model48_dir))
    assert q.attrs["feature"] == "codes" and q.attrs["chunk_stride_samples"] == 47520
    qc = store.open(q)["codes"].values
    np.testing.assert_array_equal(qc, gs.quantise(true[1:4], model=str(model48_dir), bandwidth_kbps=3))
    # the true codes as a codes reconstruction: decoded like the stimulus entry where every chunk is complete
    crec, _ = gs.write_reconstruction(store, store.open(codes)["codes"].values[1:4], codes, trs=(1, 4), **prov)
    from giblet_store.features.codes_normalised import DecodeIncompleteWarning

    with pytest.warns(DecodeIncompleteWarning):  # chunks 2 and 8 reach TRs 0 and 4, not reconstructed
        audio, sr = gs.reconstruction_audio(store, crec, model=str(model48_dir))
    with pytest.warns(DecodeIncompleteWarning):
        qaudio, _ = gs.reconstruction_audio(store, q, model=str(model48_dir))
    ref, _ = __import__("soundfile").read(gs.decode_entry(store, codes, tmp_path / "r.wav", trs="1:4"),
                                          dtype="float32", always_2d=True)
    assert sr == SR and audio.shape == qaudio.shape == (2, ref.shape[0])
    lo, hi = SR, int(5.9 * SR)  # 3.0..7.9 s of the stimulus: only chunks 3..7, all of whose frames are in TRs 1:4
    np.testing.assert_allclose(audio[:, lo:hi], ref.T[:, lo:hi], atol=1e-5)
    unscaled = store.open(codes)["scales"].values
    assert not np.allclose(unscaled, 1.0)  # the scales matter: decoding without them would differ
