"""examples/bids_study.py runs end to end (subprocess, temporary directory): BIDS in, denoised, ridge, r map."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib

from giblet_store import open_store

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "bids_study.py"


def test_bids_study_example(tmp_path):
    p = subprocess.run([sys.executable, "-W", "error", str(EXAMPLE), "--store", "st"], capture_output=True, text=True,
                       cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["r_signal_clean"] > out["r_signal_raw"] + 0.1  # denoising raises the planted signal's r
    store = open_store(tmp_path / "st", mode="r")
    raw, clean = store.get(out["fmri_raw_key"]), store.get(out["fmri_clean_key"])
    assert raw.attrs["clean"]["confounds"] == [] and clean.attrs["clean"]["confounds"] == ["motion", "wm_csf",
                                                                                          "high_pass"]
    assert [r["stimulus_key"] for r in clean.attrs["runs"]] == out["mel_keys"]
    assert [r["onset_s"] for r in clean.attrs["runs"]] == [-4.0, -6.0] and out["tr_s"] == 2.0
    assert {"trans_x", "rot_z", "csf", "white_matter", "cosine00"} <= set(out["confounds"])
    ev = store.get(out["evaluation_clean_key"])
    assert ev.kind == "evaluation" and ev.attrs["trs"] == [40, 80]
    assert nib.load(str(tmp_path / "st.r_map.nii.gz")).shape == (6, 5, 4)
