"""quality and compare of 48 kHz stereo codes entries (issue 22, item 2): decoded with their stored
per-chunk scales, as the model's own whole-file decode."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import soundfile as sf

from giblet_store import CodecParams, TrGrid, decode_entry, extract_codes, open_store
from giblet_store.cli import main
from giblet_store.testing import synth_audio, write_wav


@pytest.fixture(scope="module")
def wav48(tmp_path_factory):
    x = synth_audio(2.3, 48000, seed=5, channels=2)
    x[1] *= 0.5
    return write_wav(tmp_path_factory.mktemp("q48") / "s48.wav", x, 48000, subtype="FLOAT")


def _snr_db(ref, deg):
    return 10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / np.sum((ref.astype(np.float64) - deg) ** 2))


def test_quality_of_a_48khz_entry_decodes_it_with_its_scales(tmp_path, model48_dir, wav48, capsys):
    store = open_store(tmp_path / "s")
    r = extract_codes(store, wav48, CodecParams(model=str(model48_dir), bandwidth_kbps=6), TrGrid(0.5))
    assert main(["quality", str(wav48), r.entry.key, "--store", str(tmp_path / "s"), "--metrics", "snr,si_sdr",
                 "--json", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    (q,) = out["entries"]
    assert q["kind"] == "quality"
    # the same audio as `giblet-store decode` (the model's whole-file decode, tested in test_stereo48), mono
    dec, _ = sf.read(decode_entry(store, r.entry, tmp_path / "d.wav"), dtype="float32", always_2d=True)
    ref, _ = sf.read(str(wav48), dtype="float32", always_2d=True)
    n = min(len(ref), len(dec))
    want = _snr_db(ref[:n].mean(axis=1), dec[:n].mean(axis=1))
    assert out["metrics"]["snr_db"] == pytest.approx(want, abs=1e-3)
    assert out["n_trs"] == r.entry.attrs["n_trs"] == 5  # every TR scored, TRs by stimulus time


def test_compare_with_the_48khz_model_reports_its_own_bandwidths(tmp_path, model48_dir, wav48, capsys):
    argv = ["compare", str(wav48), "--model", str(model48_dir), "--n-mels", "32", "--metrics", "snr,si_sdr",
            "--tr", "0.5", "-o", str(tmp_path / "r")]
    assert main(argv) == 0, capsys.readouterr().err
    with open(tmp_path / "r" / "compare.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["method"], r["setting"]) for r in rows] == [
        ("encodec", "3 kbps"), ("encodec", "6 kbps"), ("encodec", "12 kbps"), ("encodec", "24 kbps"),
        ("mel+griffin-lim", "32 mels")]  # the model's target_bandwidths, beside mel + Griffin-Lim
    snr = [float(r["embedding_snr_db"]) for r in rows[:4]]
    assert snr == sorted(snr) and snr[0] < snr[-1]  # more codebooks quantise the chunk-normalised encoder output closer
    assert all(r["snr_db"] != "" for r in rows)
    assert len(open_store(tmp_path / "r" / "store").entries("quality")) == 5


def test_a_decoded_48khz_tr_range_records_its_first_frames_start(tmp_path, model48_dir, wav48):
    """`decode --trs` of a 48 kHz entry starts at the earliest frame of its first TR; the WAV comment says so
    (chunks overlap, so it is not the frames before it times the hop)."""
    from giblet_store.audio.start import recorded_start

    store = open_store(tmp_path / "s")
    r = extract_codes(store, wav48, CodecParams(model=str(model48_dir), bandwidth_kbps=6), TrGrid(0.5))
    ds = store.open(r.entry)
    real = np.arange(ds.sizes["frame"])[None, :] < ds["n_frames"].values[3:5, None]
    first = int(np.rint(ds["frame_time_s"].values[3:5][real] * 48000).min())
    part = decode_entry(store, r.entry, tmp_path / "p.wav", trs="3:5")
    assert recorded_start(part) * 48000 == first != int(ds["n_frames"].values[:3].sum()) * 320
    whole, _ = sf.read(decode_entry(store, r.entry, tmp_path / "w.wav"), dtype="float32", always_2d=True)
    got, _ = sf.read(part, dtype="float32", always_2d=True)
    np.testing.assert_array_equal(got, whole[first:first + len(got)])  # the same samples, in the same place
