"""Predictions with provenance, lazy per-voxel Pearson r, and r maps back to NIfTI (giblet_store.training.predictions)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import nibabel.testing
import numpy as np
import pytest
import torch
import xarray as xr

from giblet_store import content_key
from giblet_store.cli import main
from giblet_store.errors import ParameterError
from giblet_store.fmri.ingest import FmriParams, ingest_fmri
from giblet_store.training.predictions import PredictionsError, entry_to_nifti, evaluate, write_predictions

FUNCTIONAL = Path(nibabel.testing.data_path) / "functional.nii"


def snapshot(store) -> tuple:
    root = Path(store.root)
    return tuple(e.key for e in store.entries()), tuple(sorted(str(p.relative_to(root)) for p in root.rglob("*")))


@pytest.fixture
def fmri(store):
    return ingest_fmri(store, [FUNCTIONAL], ["sub-01"], params=FmriParams(zscore_trs=(0, 12))).entry


@pytest.fixture
def feature(store):
    n = 20
    ds = xr.Dataset({"x": (("tr", "dim"), np.ones((n, 2), np.float32))},
                    coords={"tr": np.arange(n), "tr_start_s": (("tr",), 2.0 * np.arange(n))})
    inputs = {"test": "feature"}
    attrs = {"kind": "features", "key": content_key(inputs), "parent": "c" * 64, "parent_kind": "codes",
             "transform": "hrf", "transform_params": {}, "variables": ["x"], "axis": "tr", "tr_s": 2.0,
             "onset_s": 0.0, "n_trs": n, "hrf": "spm", "hrf_params": {}, "algorithm_version": 1, "inputs": inputs}
    return store.write(ds, attrs)[0]


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"w": torch.arange(6.0)}, path)
    return path


def noisy(y, seed=0, scale=1.0):
    return y + scale * np.random.default_rng(seed).standard_normal(y.shape).astype(np.float32)


def test_predictions_keep_their_provenance(store, fmri, feature, checkpoint):
    y = store.open(fmri)["fmri"].values
    pred = noisy(y[:, 2:])
    entry, created = write_predictions(store, pred, fmri, model_name="Linear(2->963)", checkpoint=checkpoint,
                                       training_params={"epochs": 3, "lr": 1e-3, "train_trs": [0, 12]},
                                       features=[feature.key], trs=(2, 20))
    assert created and entry.kind == "predictions"
    a = entry.attrs
    assert a["checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert a["parent"] == [fmri.key, feature.key] and a["fmri_key"] == fmri.key
    assert a["feature_keys"] == [feature.key] and a["model_name"] == "Linear(2->963)"
    assert a["training_params"] == {"epochs": 3, "lr": 1e-3, "train_trs": [0, 12]}
    ds = store.open(entry)
    assert ds["predictions"].dims == ("subject", "tr", "voxel") and ds["predictions"].dtype == np.float32
    np.testing.assert_array_equal(ds["predictions"].values, pred)
    np.testing.assert_array_equal(ds["tr"].values, np.arange(2, 20))
    again, created = write_predictions(store, pred, fmri, model_name="Linear(2->963)", checkpoint=checkpoint,
                                       training_params={"lr": 1e-3, "epochs": 3, "train_trs": [0, 12]},
                                       features=[feature.key], trs=(2, 20))
    assert not created and again == entry
    other, created = write_predictions(store, pred + 1, fmri, model_name="Linear(2->963)", checkpoint=checkpoint,
                                       features=[feature.key], trs=(2, 20))
    assert created and other != entry


def test_predictions_from_torch_and_xarray(store, fmri):
    y = store.open(fmri)["fmri"].values
    e1, _ = write_predictions(store, torch.from_numpy(y.copy()), fmri, model_name="m", checkpoint_sha256="1" * 64)
    arr = xr.DataArray(y[:, 5:9], dims=("subject", "tr", "voxel"),
                       coords={"subject": ["sub-01"], "tr": np.arange(5, 9)})
    e2, _ = write_predictions(store, arr, fmri, model_name="m", checkpoint_sha256="1" * 64)
    np.testing.assert_array_equal(store.open(e2)["tr"].values, [5, 6, 7, 8])
    assert e1 != e2


def test_bad_predictions_leave_the_store_unchanged(store, fmri, checkpoint, tmp_path):
    y = store.open(fmri)["fmri"].values
    ok = dict(model_name="m", checkpoint=checkpoint)
    not_fmri, _ = write_predictions(store, y, fmri, **ok)
    before = snapshot(store)
    with pytest.raises(PredictionsError, match="962 voxels.*963"):
        write_predictions(store, y[:, :, :-1], fmri, **ok)
    with pytest.raises(PredictionsError, match="2 dims"):
        write_predictions(store, y[0], fmri, **ok)
    with pytest.raises(PredictionsError, match=r"dims \('tr', 'subject', 'voxel'\)"):
        write_predictions(store, xr.DataArray(y.transpose(1, 0, 2), dims=("tr", "subject", "voxel")), fmri, **ok)
    with pytest.raises(PredictionsError, match="18 TRs but the target has 20"):
        write_predictions(store, y[:, 2:], fmri, **ok)
    with pytest.raises(PredictionsError, match="within the target.s 0:20"):
        write_predictions(store, y[:, :4], fmri, trs=[17, 18, 19, 20], **ok)
    with pytest.raises(PredictionsError, match="not in the target"):
        write_predictions(store, y, fmri, subjects=["sub-02"], **ok)
    bad = y.copy()
    bad[0, 3, 5] = np.nan
    with pytest.raises(PredictionsError, match="1 NaN"):
        write_predictions(store, bad, fmri, **ok)
    with pytest.raises(PredictionsError, match="checkpoint"):
        write_predictions(store, y, fmri, model_name="m")
    with pytest.raises(PredictionsError, match="does not exist"):
        write_predictions(store, y, fmri, model_name="m", checkpoint=tmp_path / "nope.pt")
    with pytest.raises(PredictionsError, match="target an fmri entry"):
        write_predictions(store, y, not_fmri, **ok)
    with pytest.raises(ParameterError):
        write_predictions(store, y, fmri, training_params={"f": object()}, **ok)
    assert snapshot(store) == before


def test_evaluate_matches_numpy_pearson_and_exports_a_map(store, fmri, tmp_path):
    y = store.open(fmri)["fmri"].values
    pred = noisy(y, scale=0.7)
    pred[0, :, 10] = 3.0  # a constant prediction: r undefined, NaN without a warning
    entry, _ = write_predictions(store, pred, fmri, model_name="m", checkpoint_sha256="2" * 64)
    ev, created = evaluate(store, entry, trs=(12, 20))
    assert created and ev.kind == "evaluation"
    r = store.open(ev)["r"].values[0]
    ref = np.array([np.corrcoef(pred[0, 12:, v], y[0, 12:, v])[0, 1] if v != 10 else np.nan
                    for v in range(y.shape[2])])
    np.testing.assert_allclose(r, ref, atol=1e-5)
    assert np.isnan(r[10]) and ev.attrs["n_undefined"] == 1 and ev.attrs["trs"] == [12, 20]
    assert ev.attrs["parent"] == {"predictions": entry.key, "fmri": fmri.key}
    np.testing.assert_allclose(store.open(ev)["r_mean"].values, r, equal_nan=True)
    assert evaluate(store, entry, trs=(12, 20)) == (ev, False)
    assert evaluate(store, entry, trs=(0, 12))[0] != ev
    out = entry_to_nifti(store, ev, tmp_path / "r.nii.gz")
    img = nib.load(out)
    mask = store.open(fmri)["mask"].values
    assert img.shape == mask.shape
    np.testing.assert_allclose(img.get_fdata()[mask], r, atol=1e-7, equal_nan=True)
    np.testing.assert_allclose(img.affine, nib.load(FUNCTIONAL).affine)


def test_evaluate_bad_ranges(store, fmri):
    y = store.open(fmri)["fmri"].values
    entry, _ = write_predictions(store, y[:, 10:], fmri, model_name="m", checkpoint_sha256="3" * 64, trs=(10, 20))
    before = snapshot(store)
    with pytest.raises(PredictionsError, match="holds 2 predicted TR"):
        evaluate(store, entry, trs=(0, 12))
    with pytest.raises(PredictionsError, match="takes a predictions entry"):
        evaluate(store, fmri)
    assert snapshot(store) == before


def test_cli_evaluate_and_export(store, fmri, tmp_path, capsys):
    y = store.open(fmri)["fmri"].values
    entry, _ = write_predictions(store, noisy(y), fmri, model_name="m", checkpoint_sha256="4" * 64)
    assert main(["evaluate", store.url, entry.key[:16], "--trs", "12:20", "--json"]) == 0
    (doc,) = json.loads(capsys.readouterr().out)["entries"]
    assert doc["kind"] == "evaluation" and doc["attrs"]["trs"] == [12, 20]
    out = tmp_path / "pred.nii"
    assert main(["to-nifti", store.url, entry.key[:16], "-o", str(out), "--subject", "sub-01"]) == 0
    assert nib.load(out).shape == (17, 21, 3, 20)
    assert main(["to-nifti", store.url, doc["key"][:16], "-o", str(tmp_path / "r.nii"), "--subject", "s9"]) == 2
    assert "s9" in capsys.readouterr().err
