"""examples/features.py runs end to end (subprocess, temporary directory), writes its entries and its PNG."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from giblet_store import open_store

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "features.py"


@pytest.mark.slow
def test_features_example(tmp_path, model_dir):
    cmd = [sys.executable, "-W", "error", str(EXAMPLE), "--store", "st", "--model", str(model_dir), "--png", "f.png"]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    png = tmp_path / "f.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    store = open_store(tmp_path / "st", mode="r")
    chain = store.lineage(summary["resampled_key"])
    assert [e.key for e in chain] == [summary[k] for k in ("resampled_key", "hrf_key", "embeddings_key", "codes_key")]
    assert chain[0].attrs["tr_s"] == 2.0 and chain[1].attrs["hrf"] == "spm"
    assert store.get(summary["mel_key"]).kind == "mel"
    assert summary["n_trs"]["2.0"] == store.open(chain[0]).sizes["tr"]


@pytest.mark.slow
def test_features_example_with_the_48khz_stereo_model(tmp_path, model48_dir):
    """issue 22, item 4: the lowest bandwidth and the stimulus's rate and channels come from the model."""
    cmd = [sys.executable, "-W", "error", str(EXAMPLE), "--store", "st", "--model", str(model48_dir), "--png", "f.png"]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    assert summary["sample_rate_hz"] == 48000 and summary["bandwidth_kbps"] == 3.0
    store = open_store(tmp_path / "st", mode="r")
    codes = store.get(summary["codes_key"])
    assert codes.attrs["encoder"] == "model_chunks" and codes.attrs["n_codebooks"] == 2
    emb = store.get(summary["embeddings_key"])
    assert emb.attrs["chunk_scale"].startswith("not applied")
    assert summary["n_trs"] == {"1.5": 14, "2.0": store.open(summary["resampled_key"]).sizes["tr"]}
