"""examples/reconstruct_from_fmri.py runs end to end (subprocess, temporary directory): entries, wav, PNG, scores."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import soundfile as sf

from giblet_store import open_store

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "reconstruct_from_fmri.py"


def test_reconstruct_from_fmri_example(tmp_path, model_dir):
    cmd = [sys.executable, "-W", "error", str(EXAMPLE), "--store", "st", "--model", str(model_dir), "--out", "out"]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    s = json.loads(p.stdout.strip().splitlines()[-1])
    store = open_store(tmp_path / "st", mode="r")
    rec, q = store.get(s["reconstruction_key"]), store.get(s["quantised_key"])
    assert rec.kind == q.kind == "reconstruction" and rec.attrs["feature"] == "embedding_mean"
    assert rec.attrs["parent"] == [s["fmri_key"], s["embeddings_key"]] and rec.attrs["tr_range"] == [26, 36]
    assert q.attrs["feature"] == "codes" and q.attrs["parent"] == rec.key
    assert [e.key for e in store.lineage(q)][:2] == [q.key, rec.key] and s["codes_key"] in {
        e.key for e in store.lineage(q)}
    n = int(store.open(store.get(s["codes_key"]))["n_frames"].values[26:36].sum())
    assert sf.info(s["wav"]).frames == n * 320  # exactly the held-out TRs
    png = Path(s["png"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    ident = s["identification"]
    assert ident["chance_top1"] == 0.1 and ident["n_segments"] == 10
    assert ident["mean_rank_percentile"] > s["identification_shuffled"]["mean_rank_percentile"]
    assert s["model"] == Path(model_dir).name
    assert set(s["scores_vs_original"]) == {"snr_db", "si_sdr_db", "lsd_db"}
