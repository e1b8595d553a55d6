"""Decoding identification and encoding scores (R², pairwise-ISC noise ceiling) (giblet_store.training.scores)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import giblet_store as gs
from giblet_store.errors import ParameterError
from giblet_store.fmri.ingest import FmriParams, ingest_fmri
from giblet_store.training.scores import encoding_scores, identify, identify_reconstruction
from recon_helpers import FUNCTIONAL, build_store


def test_identify_ranks_by_hand():
    true = np.array([[0, 1, 2, 3], [3, 2, 1, 0], [0, 3, 0, 3], [1, 0, 1, 0.5]], float)
    out = identify(true, true, center=False)
    assert out["ranks"] == [1, 1, 1, 1] and out["top1_accuracy"] == 1.0 and out["mean_rank_percentile"] == 1.0
    assert out["chance_top1"] == 0.25 and out["chance_rank_percentile"] == 0.5
    rec = true[[1, 0, 2, 3]]  # rows 0 and 1 swapped: each is anti-correlated with its own truth
    out = identify(rec, true, center=False)
    assert out["ranks"][2:] == [1, 1] and out["ranks"][:2] == [4, 4]
    assert out["top1_accuracy"] == 0.5 and out["mean_rank_percentile"] == pytest.approx(0.5)
    tie = identify(np.array([[1.0, 2, 3], [1, 2, 3]]), np.array([[1.0, 2, 3], [1, 2, 3.0]]), center=False)
    assert tie["ranks"] == [2, 2] and tie["top1_accuracy"] == 0.0  # a tie does not count as identified


def test_centering_removes_what_every_segment_shares():
    rng = np.random.default_rng(4)
    common = 100 * rng.standard_normal(32)
    true = common + rng.standard_normal((12, 32))
    rec = true + 0.5 * rng.standard_normal(true.shape)
    centered = identify(rec, true)
    assert centered == identify(rec - rec.mean(0), true - true.mean(0), center=False)
    assert centered["top1_accuracy"] == 1.0


def test_identify_is_near_chance_for_unrelated_features():
    rng = np.random.default_rng(0)
    accs = [identify(rng.standard_normal((20, 16)), rng.standard_normal((20, 16)))["mean_rank_percentile"]
            for _ in range(50)]
    assert abs(np.mean(accs) - 0.5) < 0.05
    with pytest.raises(ParameterError, match="same shape"):
        identify(np.zeros((3, 2)), np.zeros((4, 2)))
    with pytest.raises(ParameterError, match="finite"):
        identify(np.full((3, 2), np.nan), np.zeros((3, 2)))


def test_identify_reconstruction_against_the_target(tmp_path, model_dir, tone_wav):
    env = build_store(tmp_path / "store", model_dir, tone_wav)
    store, emb, mel = env["store"], env["emb"], env["mel"]
    prov = dict(fmri=env["fmri"], model_name="m", checkpoint=env["ckpt"])
    true = store.open(emb)["embeddings"].values
    noise = 0.05 * np.nanstd(true) * np.random.default_rng(1).standard_normal(true.shape)
    good, _ = gs.write_reconstruction(store, true + noise, emb, **prov)
    out = identify_reconstruction(store, good)
    assert out["top1_accuracy"] == 1.0 and out["trs"] == [0, 1, 2, 3, 4] and out["chance_top1"] == 0.2
    shuffled, _ = gs.write_reconstruction(store, true[[1, 2, 3, 4, 0]], emb, **prov)
    assert identify_reconstruction(store, shuffled, trs=(0, 5))["top1_accuracy"] < 1.0
    m = store.open(mel)["mel"].values
    assert identify_reconstruction(store, gs.write_reconstruction(store, m, mel, **prov)[0])["top1_accuracy"] == 1.0
    codes = store.open(env["codes"])["codes"].values
    rc, _ = gs.write_reconstruction(store, codes, env["codes"], **prov)
    out = identify_reconstruction(store, rc, trs=(1, 5), model=str(model_dir))
    assert out["top1_accuracy"] == 1.0 and out["n_segments"] == 4
    with pytest.raises(ParameterError, match="takes a reconstruction"):
        identify_reconstruction(store, emb)


def test_r2_is_exact_and_the_ceiling_matches_theory():
    rng = np.random.default_rng(0)
    n_sub, n_tr, n_vox, sigma = 3, 4000, 20, 1.0
    signal = rng.standard_normal((1, n_tr, n_vox))
    fmri = signal + sigma * rng.standard_normal((n_sub, n_tr, n_vox))
    subjects = ["a", "b", "c"]
    pred = np.broadcast_to(signal, fmri.shape)
    r = np.stack([[np.corrcoef(pred[s, :, v], fmri[s, :, v])[0, 1] for v in range(n_vox)] for s in range(n_sub)])
    var, attrs = encoding_scores(pred, fmri, r, subjects, fmri, subjects)
    assert abs(np.mean(var["noise_ceiling"][1]) - 1 / np.sqrt(1 + sigma**2)) < 0.02  # r(signal + noise, signal)
    loso = 1 / np.sqrt((1 + sigma**2) * (1 + sigma**2 / 2))  # r(signal + noise, signal + noise / 2): lower
    assert abs(np.mean(var["isc_loso"][1]) - loso) < 0.02
    res = ((fmri - pred) ** 2).sum(1)
    tot = ((fmri - fmri.mean(1, keepdims=True)) ** 2).sum(1)
    np.testing.assert_allclose(var["r2"][1], 1 - res / tot, rtol=1e-5)
    np.testing.assert_allclose(var["r_normalised"][1], r / var["noise_ceiling"][1], rtol=1e-5)
    assert set(attrs["scores"]) == {"a", "b", "c", "all"}
    assert abs(attrs["scores"]["all"]["r_over_ceiling"] - 1) < 0.02  # the planted signal is a perfect model


def test_evaluate_stores_r2_the_ceiling_and_the_loso_isc(store, tmp_path):
    img = nib.load(FUNCTIONAL)
    data = np.asarray(img.dataobj, dtype=np.float32)
    noisy = data + 0.3 * data.std() * np.random.default_rng(2).standard_normal(data.shape).astype(np.float32)
    other = tmp_path / "sub-02.nii"
    nib.save(nib.Nifti1Image(noisy, img.affine, img.header), other)
    fmri = ingest_fmri(store, [FUNCTIONAL, other], ["sub-01", "sub-02"], params=FmriParams(zscore_trs=(0, 12))).entry
    y = store.open(fmri)["fmri"].values.astype(np.float64)
    pred = y + np.random.default_rng(3).standard_normal(y.shape)
    pe, _ = gs.write_predictions(store, pred, fmri, model_name="m", checkpoint_sha256="b" * 64)
    ev, _ = gs.evaluate(store, pe, trs=(8, 20))
    ds = store.open(ev)
    yt, pt = y[:, 8:20], pred.astype(np.float32).astype(np.float64)[:, 8:20]
    c = yt - yt.mean(1, keepdims=True)
    isc = (c[0] * c[1]).sum(0) / np.sqrt((c[0] ** 2).sum(0) * (c[1] ** 2).sum(0))
    np.testing.assert_allclose(ds["isc_loso"].values, [isc, isc], rtol=1e-4, atol=1e-6)  # two subjects: the pair
    ceil = ds["noise_ceiling"].values
    assert ds["noise_ceiling"].dims == ("voxel",)
    np.testing.assert_allclose(ceil, np.where(isc > 0, np.sqrt(np.maximum(isc, 0)), np.nan), rtol=1e-4, atol=1e-6)
    r2 = 1 - ((yt - pt) ** 2).sum(1) / (c ** 2).sum(1)
    np.testing.assert_allclose(ds["r2"].values, r2, rtol=1e-4, atol=1e-5)
    c_min = ev.attrs["noise_ceiling_min"]
    assert c_min == pytest.approx(np.sqrt(np.tanh(1.645 / np.sqrt(9))))  # 12 TRs, 1 pair
    ok = np.nan_to_num(ceil) >= c_min
    want = np.where(ok, ds["r"].values / np.where(ok, ceil, 1), np.nan)  # no reliable ceiling: undefined
    np.testing.assert_allclose(ds["r_normalised"].values, want, rtol=1e-5)
    assert (~ok).any() and ok.any() and ev.attrs["n_voxels_reliable_ceiling"] == ok.sum()
    s = ev.attrs["scores"]
    assert set(s) == {"sub-01", "sub-02", "all"} and s["sub-01"]["r2_mean"] == pytest.approx(float(np.mean(r2[0])), rel=1e-3)
    assert s["all"]["n_voxels_normalised"] == 2 * ok.sum()
    assert "pairwise inter-subject correlation" in ev.attrs["noise_ceiling_method"]
