"""examples/train_encoding_model.py runs end to end (subprocess, temporary directory) and stores its results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib

from giblet_store import open_store

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "train_encoding_model.py"


def test_train_encoding_model(tmp_path, model_dir):
    store_dir = tmp_path / "st"
    # as after `pip install .[all]`: pytest is not importable (nibabel.testing would need it)
    run = ("import runpy, sys; sys.modules['pytest'] = None; sys.argv = sys.argv[1:]; "
           "runpy.run_path(sys.argv[0], run_name='__main__')")
    p = subprocess.run(
        [sys.executable, "-c", run, str(EXAMPLE), "--store", str(store_dir), "--model", str(model_dir),
         "--epochs", "20", "--device", "cpu"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    losses = summary["losses"]
    assert len(losses) == 20 and losses[-1] < 0.8 * losses[0]  # the model learns its training TRs
    store = open_store(store_dir, mode="r")
    pred = store.get(summary["predictions_key"])
    ev = store.get(summary["evaluation_key"])
    assert pred.kind == "predictions" and ev.kind == "evaluation"
    assert pred.attrs["parent"] == [summary["fmri_key"], summary["codes_key"]]
    assert len(pred.attrs["checkpoint_sha256"]) == 64 and pred.attrs["training_params"]["epochs"] == 20
    assert ev.attrs["trs"] == summary["test_trs"] and ev.attrs["parent"]["predictions"] == pred.key
    fmri = store.open(store.get(summary["fmri_key"]))
    assert fmri.attrs["stimulus_key"] == summary["codes_key"]
    assert fmri.attrs["zscore_trs"] == summary["train_trs"]
    assert store.open(pred)["predictions"].shape == (1, 20 - 2, fmri.sizes["voxel"])
    r_map = nib.load(summary["r_map"])
    assert r_map.shape == fmri["mask"].shape
