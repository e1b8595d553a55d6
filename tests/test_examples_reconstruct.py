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


def _example_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("reconstruct_from_fmri_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reconstruct_from_fmri_example_with_the_48khz_model(tmp_path, model48_dir, capsys):
    """The example with the 48 kHz stereo model (in-process): its held-out reconstruction is decoded chunk by
    chunk times the stimulus's stored scales (bit for bit EncodecModel.decode of each chunk with its scale,
    oneDNN off), starts at the held-out TRs' first frame, and its identification and scores are numbers."""
    import math

    import numpy as np
    import pytest
    import torch

    from giblet_store import DecodeIncompleteWarning
    from giblet_store.audio.start import recorded_start
    from giblet_store.codec.encodec import load_codec, reproducible_torch

    # chunk 26 starts at 25.74 s: its first frames lie in TR 25, which is not reconstructed
    with pytest.warns(DecodeIncompleteWarning, match=r"chunk\(s\) \[26\] have frames outside TRs 26:36"):
        summary = _example_module().main(["--store", str(tmp_path / "st"), "--model", str(model48_dir),
                                          "--out", str(tmp_path / "out")])
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s == json.loads(json.dumps(summary))  # the JSON line printed is the summary returned
    store = open_store(tmp_path / "st", mode="r")
    codes_entry, q = store.get(s["codes_key"]), store.get(s["quantised_key"])
    assert codes_entry.attrs["encoder"] == "model_chunks" and codes_entry.attrs["bandwidth_kbps"] == 3.0
    cds, qds = store.open(codes_entry), store.open(q)
    sr, hop, stride = 48000, int(codes_entry.attrs["hop_samples"]), int(codes_entry.attrs["chunk_stride_samples"])
    length = int(codes_entry.attrs["chunk_length_samples"])

    # the wav: stereo, from the first frame of TR 26 to the end of the last frame of TR 35, start recorded
    n = cds["n_frames"].values[26:36].astype(np.int64)
    real = np.arange(cds.sizes["frame"])[None, :] < n[:, None]
    pos = np.rint(cds["frame_time_s"].values[26:36][real] * sr).astype(np.int64)
    audio, wav_sr = sf.read(s["wav"], dtype="float32", always_2d=True)
    assert wav_sr == sr and audio.shape == (pos.max() + hop - pos.min(), 2)
    # chunks overlap: the frames before TR 26 span fewer samples than frames x hop
    assert recorded_start(s["wav"]) * sr == pos.min() != cds["n_frames"].values[:26].sum() * hop

    # a chunk wholly inside the held-out TRs: where no other chunk overlaps it, the wav is the model's own
    # decode of the reconstruction's codes for that chunk times the chunk's STORED scale
    chunk = cds["frame_chunk"].values[26:36][real]
    k = 30
    assert (chunk == k).sum() == cds["chunk_frames"].values[k]
    order = np.argsort(pos[chunk == k], kind="stable")
    qc = qds["codes"].sel(tr=np.arange(26, 36)).values  # (tr, codebook, frame): as many slots as the fullest TR
    qcodes = np.moveaxis(qc, 1, 0)[:, real[:, :qc.shape[2]]][:, chunk == k][:, order].astype(np.int64)
    scale = float(cds["scales"].values[k])
    model = load_codec(str(model48_dir)).model
    with reproducible_torch(), torch.inference_mode():  # oneDNN off, as the package decodes
        want = model.decode(torch.from_numpy(qcodes)[None, None], [torch.tensor(scale).view(1, 1)])[0]
    want = want[0].numpy().T  # (sample, channel)
    a, b = k * stride + (length - stride), (k + 1) * stride  # only chunk k covers [a, b)
    got = audio[a - pos.min():b - pos.min()]
    np.testing.assert_array_equal(got, want[a - k * stride:b - k * stride])
    assert abs(scale - 1.0) > 0.05 and not np.allclose(got, got / scale, rtol=1e-3)  # the scale matters here

    ident = s["identification"]
    assert ident["chance_top1"] == 0.1 and ident["n_segments"] == 10
    numbers = [ident["top1_accuracy"], ident["mean_rank_percentile"],
               *s["identification_shuffled"].values(), *s["scores_vs_original"].values(),
               *s["scores_shuffled_vs_original"].values()]
    assert all(math.isfinite(v) for v in numbers), numbers
    assert s["model"] == Path(model48_dir).name
