"""The noise ceiling (giblet_store.training.ceiling) by simulation: a planted shared signal plus independent
noise at a known SNR. A perfect model of the signal reaches the ceiling (r / ceiling = 1), a model that
correlates 0.5 with the signal reaches half of it (issue 20, item 1)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import giblet_store as gs
from giblet_store.cli import main
from giblet_store.training.ceiling import loso_isc, min_reliable_ceiling, noise_ceiling, pairwise_isc
from giblet_store.training.scores import encoding_scores
from helpers import write_series


def _pearson(a, b):
    a, b = a - a.mean(-2, keepdims=True), b - b.mean(-2, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):  # a constant series: NaN
        return (a * b).sum(-2) / np.sqrt((a * a).sum(-2) * (b * b).sum(-2))


def _study(snr: float, n_sub: int, n_tr: int = 200, n_vox: int = 2000, seed: int = 0):
    """(signal (tr, voxel), fmri (subject, tr, voxel)): y_i = s + e_i, var(s) / var(e_i) = snr."""
    rng = np.random.default_rng(seed)
    s = rng.standard_normal((n_tr, n_vox))
    return s, s + rng.standard_normal((n_sub, n_tr, n_vox)) / np.sqrt(snr), rng


def _normalised(pred, y):
    subjects = [f"s{i}" for i in range(y.shape[0])]
    p = np.broadcast_to(pred, y.shape)
    return encoding_scores(p, y, _pearson(p, y), subjects, y, subjects)


@pytest.mark.parametrize("n_sub", [2, 4, 8])
@pytest.mark.parametrize("snr", [0.25, 1.0, 4.0])
def test_the_oracle_reaches_the_ceiling_and_a_half_signal_model_half_of_it(snr, n_sub):
    s, y, rng = _study(snr, n_sub)
    var, attrs = _normalised(s, y)  # the oracle: predictions = the planted signal
    oracle = var["r_normalised"][1]
    assert abs(np.nanmedian(oracle) - 1) < 0.05 and abs(attrs["scores"]["all"]["r_normalised_mean"] - 1) < 0.05
    assert abs(attrs["scores"]["all"]["r_over_ceiling"] - 1) < 0.05
    half = 0.5 * s + np.sqrt(0.75) * rng.standard_normal(s.shape)  # r(half, s) = 0.5 by construction
    var, attrs = _normalised(half, y)
    assert abs(np.nanmedian(var["r_normalised"][1]) - 0.5) < 0.05
    assert abs(attrs["scores"]["all"]["r_over_ceiling"] - 0.5) < 0.05
    assert attrs["scores"]["all"]["n_voxels_normalised"] > 0.85 * n_sub * s.shape[1]


def test_the_ceiling_is_the_r_of_the_planted_signal_and_the_loso_isc_is_below_it():
    snr = 0.5
    s, y, _ = _study(snr, 4, n_tr=4000, n_vox=50)
    ceiling, mean_r = noise_ceiling(y)
    want = np.sqrt(snr / (1 + snr))  # r(s + e, s)
    assert abs(np.median(ceiling) - want) < 0.01 and abs(np.median(mean_r) - want**2) < 0.01
    assert abs(np.median(_pearson(np.broadcast_to(s, y.shape), y)) - np.median(ceiling)) < 0.01
    sb = 3 * want**2 / (1 + 2 * want**2)  # Spearman-Brown for the mean of the 3 others
    assert abs(np.median(loso_isc(y, 0)) - want * np.sqrt(sb)) < 0.01 and np.median(loso_isc(y, 0)) < want - 0.05
    by_hand = np.mean([_pearson(y[i], y[j]) for i in range(4) for j in range(i + 1, 4)], axis=0)
    np.testing.assert_allclose(pairwise_isc(y), by_hand, rtol=1e-10)


def test_no_shared_response_has_no_ceiling_and_is_not_averaged():
    rng = np.random.default_rng(3)
    y = rng.standard_normal((2, 100, 400))
    y[1, :, 0] = -y[0, :, 0]  # anti-correlated: mean pairwise r = -1
    y[1, :, 1] = 5.0  # a constant series
    y[:, :, 2] = rng.standard_normal(100)  # a perfectly shared voxel
    var, attrs = _normalised(y[0], y)
    ceiling = var["noise_ceiling"][1]
    assert ceiling.shape == (400,) and np.isnan(ceiling[:2]).all() and ceiling[2] == pytest.approx(1.0)
    assert np.isnan(var["r_normalised"][1][:, :2]).all()
    c_min = attrs["noise_ceiling_min"]
    assert c_min == pytest.approx(min_reliable_ceiling(100, 2)) and c_min > 0.1
    reliable = np.nan_to_num(ceiling) >= c_min
    assert attrs["n_voxels_reliable_ceiling"] == reliable.sum() < 0.1 * 400  # pure noise: about 5 % pass
    assert np.isfinite(var["r_normalised"][1]).sum(1).tolist() == [reliable.sum(), reliable.sum()]
    assert "sqrt(mean over subject pairs" in attrs["noise_ceiling_method"] and "5%" in attrs["noise_ceiling_reliable_rule"]
    one, attrs1 = encoding_scores(y[:1], y[:1], np.zeros((1, 400)), ["a"], y[:1], ["a"])
    assert np.isnan(one["noise_ceiling"][1]).all() and "one subject" in attrs1["noise_ceiling_note"]
    assert attrs1["noise_ceiling_min"] is None and attrs1["scores"]["all"]["r_normalised_mean"] is None


def test_evaluate_on_25_trs_normalises_the_oracle_to_one(tmp_path, capsys):
    """The CLI on a TR range: the ceiling is computed on the same TRs; the oracle's mean r/ceiling is ~1."""
    rng = np.random.default_rng(7)
    shape, n_tr = (6, 6, 6), 60
    signal = rng.standard_normal(shape + (n_tr,))
    paths = [write_series(tmp_path / f"s{i}.nii", 100 + signal + rng.standard_normal(signal.shape)) for i in (1, 2)]
    store = gs.open_store(tmp_path / "st")
    fmri = gs.ingest_fmri(store, paths, ["s1", "s2"]).entry
    ijk = store.open(fmri)["voxel_ijk"].values
    planted = signal[ijk[:, 0], ijk[:, 1], ijk[:, 2]].T  # (tr, voxel) in the entry's voxel order
    pred, _ = gs.write_predictions(store, np.stack([planted, planted]), fmri, model_name="oracle",
                                   checkpoint_sha256="c" * 64)
    assert main(["evaluate", store.url, pred.key[:12], "--trs", "25:50", "--json"]) == 0
    attrs = json.loads(capsys.readouterr().out)["entries"][0]["attrs"]
    s = attrs["scores"]["all"]
    assert abs(s["r_normalised_mean"] - 1) < 0.15 and abs(s["r_over_ceiling"] - 1) < 0.15, s
    assert s["r_mean"] > 0.6 and s["n_voxels_normalised"] > 0.7 * 2 * planted.shape[1]
    assert attrs["noise_ceiling_min"] == pytest.approx(min_reliable_ceiling(25, 2))
    assert main(["evaluate", store.url, pred.key[:12], "--trs", "25:50"]) == 0
    assert "r/ceiling=" in capsys.readouterr().out
