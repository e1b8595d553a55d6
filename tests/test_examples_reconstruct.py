"""examples/reconstruct_from_fmri.py runs end to end (subprocess, temporary directory): entries, wav, PNG, scores."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from giblet_store import open_store
from helpers import load_example, readme_block

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


@pytest.mark.data
def test_the_readme_figures_are_what_the_readme_command_prints(tmp_path, model_dir, shared_data, capsys, monkeypatch):
    """Issue 20 item 11: the README quoted top-1 0.3 / rank 0.667, which no run gave. Its block now holds a command
    and the lines it prints; this runs that command in-process (the model it makes is the tests' ``model_dir``:
    the same call, seed 0) and compares line for line, and each quoted figure with the summary ``main`` returns."""
    lines = readme_block("reconstruct-figures").strip().splitlines()
    assert lines[0] == """$ python -c "from giblet_store.testing import save_test_model; save_test_model('m', seed=0)\""""
    cmd = shlex.split(lines[1])
    assert cmd[:3] == ["$", "python", "examples/reconstruct_from_fmri.py"]
    argv = [str(model_dir) if a == "m" else a for a in cmd[3:]]
    assert argv[argv.index("--model") + 1] == str(model_dir) and "--seed" in argv
    monkeypatch.chdir(tmp_path)
    example = load_example("reconstruct_from_fmri")
    summary = example.main(argv)
    printed = capsys.readouterr().out.strip().splitlines()
    assert json.loads(printed[-1]) == json.loads(json.dumps(summary))  # the JSON line is the returned summary
    assert lines[2] == "model: m"  # the first line names the model (issue 20 item 17)
    assert printed[:-1] == [f"model: {model_dir}", *lines[3:]]  # the README's lines, as printed now
    ident, shuffled = summary["identification"], summary["identification_shuffled"]
    quoted = [float(x) for x in re.findall(r"(?<![\w-])-?\d+(?:\.\d+)?", lines[3])]
    held = [ident["top1_accuracy"], ident["chance_top1"], ident["mean_rank_percentile"],
            ident["chance_rank_percentile"], shuffled["top1_accuracy"], shuffled["mean_rank_percentile"],
            ident["n_segments"]]
    assert quoted == pytest.approx(held, abs=5e-4)
    audio = [float(x) for x in re.findall(r"-?\d+\.\d+", lines[4])]
    a, b = summary["scores_vs_original"], summary["scores_shuffled_vs_original"]
    assert audio == pytest.approx([a["snr_db"], a["si_sdr_db"], b["snr_db"], b["si_sdr_db"]], abs=0.05)
