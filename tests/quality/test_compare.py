"""The codec comparison report (compare.py, `giblet-store compare`) and examples/compare_codecs.py."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from giblet_store import open_store
from giblet_store.cli import main
from giblet_store.testing import synth_audio, write_wav

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "compare_codecs.py"


@pytest.mark.slow
def test_compare_codecs_example(tmp_path, model_dir):
    cmd = [sys.executable, "-W", "error", str(EXAMPLE), "--model", str(model_dir), "--bandwidths", "1.5,6",
           "--n-mels", "64,128", "--seconds", "3", "--out", "rep"]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    rep = tmp_path / "rep"
    md = (rep / "compare.md").read_text().splitlines()
    # a random-weight model: the first line says so, and the report claims nothing about quality
    assert summary["untrained"] is True and md[0].startswith("RANDOM-WEIGHT (UNTRAINED) MODEL")
    assert "say nothing about EnCodec's audio quality" in md[0]
    with open(rep / "compare.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["method"], r["setting"]) for r in rows] == [
        ("encodec", "1.5 kbps"), ("encodec", "6 kbps"), ("mel+griffin-lim", "64 mels"), ("mel+griffin-lim", "128 mels")]
    cols = {"bitrate_kbps", "bytes_per_audio_minute", "snr_db", "si_sdr_db", "lsd_db", "mel_distance_db", "stoi",
            "estoi", "pesq_wb", "pesq_nb"}
    assert cols <= set(rows[0])
    assert float(rows[2]["bitrate_kbps"]) == pytest.approx(64 * 22050 / 512 * 32 / 1000)
    # more codebooks take more bytes; every byte count is measured on disk
    assert 0 < int(rows[0]["bytes_per_audio_minute"]) < int(rows[1]["bytes_per_audio_minute"])
    assert all(md_line.count("|") == len(cols) + 4 for md_line in md if md_line.startswith("| "))
    png = rep / "compare.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    store = open_store(rep / "store", mode="r")
    q = store.get(rows[3]["quality_key"])
    mel128 = store.find(kind="mel", **{"mel_params.n_mels": 128})[0]
    assert q.kind == "quality" and q.attrs["degraded"]["entry_key"] == mel128.key
    assert q.attrs["degraded"]["decoder"] == "griffin-lim" and q.attrs["parent"] == [mel128.key]
    assert q.attrs["whole_values"]["stoi"] == pytest.approx(float(rows[3]["stoi"]), abs=1e-4)
    assert len(store.entries("codes")) == 2 and len(store.entries("mel")) == 2


def test_compare_cli_bad_bandwidth_writes_nothing(tmp_path, model_dir, capsys):
    wav = write_wav(tmp_path / "a.wav", synth_audio(2.0, 24000, seed=1), 24000)
    code = main(["compare", str(wav), "--model", str(model_dir), "--bandwidths", "1.5,5", "-o", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "5 kbps is not offered" in err and "1.5, 3, 6, 12, 24" in err
    assert not (tmp_path / "r").exists()  # no report folder, no store: nothing was written
    code = main(["compare", str(wav), "--model", str(tmp_path / "no_model"), "-o", str(tmp_path / "r3")])
    assert code == 2 and "no_model" in capsys.readouterr().err and not (tmp_path / "r3").exists()
    code = main(["compare", str(tmp_path / "missing.wav"), "-o", str(tmp_path / "r2")])
    assert code == 2 and "does not exist" in capsys.readouterr().err and not (tmp_path / "r2").exists()


def test_compare_cli_in_process(tmp_path, model_dir, capsys):
    wav = write_wav(tmp_path / "a.wav", synth_audio(2.0, 24000, seed=1), 24000)
    argv = ["compare", str(wav), "--model", str(model_dir), "--bandwidths", "1.5", "--n-mels", "64",
            "--metrics", "snr,si_sdr", "-o", str(tmp_path / "r")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("RANDOM-WEIGHT (UNTRAINED) MODEL") and "| encodec | 1.5 kbps | 1.5 |" in out
    assert (tmp_path / "r" / "compare.png").exists()
    assert main(argv) == 0  # a rerun: every entry is a cache hit
    assert len(open_store(tmp_path / "r" / "store").entries("quality")) == 2


def test_encodec_rows_differ_by_bandwidth_with_the_random_model(tmp_path, model_dir, capsys):
    """The random model's decoded audio hardly moves with the bandwidth (its decoder output is mostly its
    biases), so the audio metrics alone gave near-identical EnCodec rows; its codebooks are filled, the codes
    differ, and embedding_snr_db (encoder output vs its quantised value) shows what each bandwidth buys."""
    import numpy as np
    import torch

    from giblet_store.audio.load import load_audio
    from giblet_store.codec.encodec import load_codec

    wav = write_wav(tmp_path / "a.wav", synth_audio(2.0, 24000, seed=2), 24000)
    argv = ["compare", str(wav), "--model", str(model_dir), "--bandwidths", "1.5,6,24", "--n-mels", "64",
            "--metrics", "snr,si_sdr", "-o", str(tmp_path / "r")]
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith("RANDOM-WEIGHT (UNTRAINED) MODEL")
    with open(tmp_path / "r" / "compare.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    enc = [r for r in rows if r["method"] == "encodec"]
    measured = [{k: v for k, v in r.items() if k not in ("setting", "bitrate_kbps", "quality_key")} for r in enc]
    assert len({tuple(sorted(m.items())) for m in measured}) == 3  # no two EnCodec rows alike
    esnr = [float(r["embedding_snr_db"]) for r in enc]
    assert esnr[0] < esnr[1] < esnr[2] and esnr[2] - esnr[0] > 0.5
    assert rows[-1]["method"] == "mel+griffin-lim" and rows[-1]["embedding_snr_db"] == ""
    codec = load_codec(str(model_dir))  # independently: the model's own quantiser on its encoder's output
    y, _ = load_audio(wav, 24000)
    with torch.inference_mode():
        e = codec.model.encoder(torch.from_numpy(y)[None])
        for bw, got in zip((1.5, 6.0, 24.0), esnr):
            q = codec.model.quantizer.decode(codec.model.quantizer.encode(e, bw))
            want = 10 * np.log10(float((e.double() ** 2).sum()) / float(((e.double() - q.double()) ** 2).sum()))
            assert got == pytest.approx(want, abs=2e-3)
