"""Everything on a real S3 API (a moto server on 127.0.0.1, through s3fs): every command, the Dataset with
two DataLoader workers, and the publish protocol without rename (crash, concurrent writers, readers)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel.testing
import numpy as np
import pytest

from giblet_store import CodecParams, FmriParams, TrGrid, evaluate, extract_codes, ingest_fmri, open_store
from giblet_store import write_predictions
from giblet_store.cli import main
from giblet_store.testing import synth_audio, write_wav

from s3_fixture import TEST_KEY_ID, TEST_SECRET
from helpers import WRITER, assert_no_secret, objects, writer

FUNCTIONAL = Path(nibabel.testing.data_path) / "functional.nii"


@pytest.fixture(scope="module")
def wav(tmp_path_factory) -> Path:
    return write_wav(tmp_path_factory.mktemp("s3audio") / "tone.wav", synth_audio(3.0, 24000, seed=5), 24000)


def test_cli_extract_ls_show_decode_mel_derive_on_s3(run, s3_url, wav, model_dir, tmp_path):
    code, out, err = run("extract", wav, "--store", s3_url, "--model", model_dir, "--bandwidth", 1.5, "--tr", 1.0,
                         "--json")
    assert code == 0, err
    key = json.loads(out)["entries"][0]["key"]
    code, out2, err2 = run("ls", s3_url, "--json")
    assert code == 0 and [e["key"] for e in json.loads(out2)["entries"]] == [key]
    code, out3, _ = run("show", s3_url, key[:12], "--json")
    assert json.loads(out3)["entries"][0]["variables"]["codes"]["shape"] == [3, 2, 75]
    code, out4, err4 = run("decode", s3_url, key[:12], "-o", tmp_path / "d.wav", "--model", model_dir)
    assert code == 0 and (tmp_path / "d.wav").stat().st_size > 0, err4
    code, out5, err5 = run("mel", wav, "--store", s3_url, "--tr", 1.0, "--n-mels", 16)
    assert code == 0, err5
    code, out6, err6 = run("derive", s3_url, key[:12], "--embeddings", "--model", model_dir)
    assert code == 0, err6
    emb = out6.split()[0]
    code, out7, err7 = run("derive", s3_url, emb[:16], "--hrf", "spm", "--hrf-length", 3)
    assert code == 0, err7
    # the same as on a local directory, byte for byte
    local = tmp_path / "local"
    assert main(["extract", str(wav), "--store", str(local), "--model", str(model_dir), "--bandwidth", "1.5",
                 "--tr", "1.0"]) == 0
    entry = open_store(s3_url).get(key)
    want = {str(p.relative_to(local / entry.path)): p.read_bytes()
            for p in (local / entry.path).rglob("*") if p.is_file()}
    assert objects(s3_url, entry.path) == {f"{entry.path}/{k}": v for k, v in want.items()}
    kinds = sorted({e.kind for e in open_store(s3_url, "r").entries()})
    assert kinds == ["codes", "embeddings", "features", "mel"]
    # credentials never reach attributes, logs, errors or --json
    assert_no_secret(out, err, out2, err2, out3, out4, err4, out5, err5, out6, err6, out7, err7)
    assert_no_secret(*objects(s3_url).values())


def test_fmri_predictions_evaluate_export_on_s3(s3_url, tmp_path, capsys):
    store = open_store(s3_url)
    fmri = ingest_fmri(store, [FUNCTIONAL], ["sub-01"], params=FmriParams(zscore_trs=(0, 12))).entry
    local = open_store(tmp_path / "local")
    fmri_local = ingest_fmri(local, [FUNCTIONAL], ["sub-01"], params=FmriParams(zscore_trs=(0, 12))).entry
    assert fmri.key == fmri_local.key
    y = store.open(fmri)["fmri"].values
    np.testing.assert_array_equal(y, local.open(fmri_local)["fmri"].values)
    y_hat = y[:, 2:] + np.random.default_rng(0).standard_normal(y[:, 2:].shape).astype(np.float32)
    pred, created = write_predictions(store, y_hat, fmri, model_name="ridge", checkpoint_sha256="0" * 64,
                                      training_params={"alpha": 1.0}, features=[], trs=(2, y.shape[1]))
    assert created
    ev, _ = evaluate(store, pred, trs=(2, y.shape[1]))
    r = store.open(ev)["r"].values
    ref = [np.corrcoef(y[0, 2:, v], y_hat[0, :, v])[0, 1] for v in range(3)]
    np.testing.assert_allclose(r[0, :3], ref, rtol=1e-4)
    assert main(["to-nifti", s3_url, ev.key[:12], "-o", str(tmp_path / "r.nii.gz")]) == 0
    assert (tmp_path / "r.nii.gz").stat().st_size > 0
    assert main(["evaluate", s3_url, pred.key[:12], "--trs", f"2:{y.shape[1]}"]) == 0
    capsys.readouterr()


def test_dataset_with_two_dataloader_workers_reads_from_s3(s3_url, model_dir, tone_wav, tmp_path):
    import torch  # noqa: F401  (the Dataset needs it)

    from giblet_store.training.dataset import StoreDataset

    store = open_store(s3_url)
    codes = extract_codes(store, tone_wav, CodecParams(str(model_dir), 1.5), TrGrid(1.0)).entry
    n = codes.attrs["n_trs"]
    rng = np.random.default_rng(1)
    import nibabel as nib

    d = tmp_path
    img = nib.Nifti1Image((100 + rng.standard_normal((3, 2, 2, n))).astype(np.float32), np.eye(4))
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_zooms((1.0, 1.0, 1.0, 1.0))
    nib.save(img, str(d / "s.nii"))
    fmri = ingest_fmri(store, [d / "s.nii"], ["s0"], mask=np.ones((3, 2, 2), bool), stimulus=codes,
                       params=FmriParams(zscore_trs=(0, 6)), chunk_trs=3).entry
    ds = StoreDataset(open_store(s3_url, "r"), fmri.key, (codes, ["codes", "n_frames"]), batch_size=2)
    seen = {}
    for b in ds.loader(num_workers=2):
        for i, t in enumerate(b["tr"]):
            seen[int(t)] = (b["codes"][i].numpy(), b["fmri"][i].numpy())
    assert sorted(seen) == list(range(n))
    c = store.open(codes)["codes"].values
    y = store.open(fmri)["fmri"].values
    for t, (got_c, got_y) in seen.items():
        np.testing.assert_array_equal(got_c.reshape(c[t].shape), c[t])
        np.testing.assert_array_equal(got_y, y[0, t])


# ------------------------------------------------------------------------------------ publish protocol
def finish(procs: list[subprocess.Popen], timeout: float = 300) -> list[tuple[str, str]]:
    """(stdout, stderr) of each writer; one still running after ``timeout`` (or on any error) is killed."""
    try:
        return [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()


@pytest.fixture(scope="module")
def reference_objects(s3_server) -> dict[str, bytes]:
    """The entry written once, uninterrupted, by this process."""
    import s3_writer

    url = f"s3://{s3_server.new_bucket()}/store"
    ds, attrs, enc = s3_writer.entry()
    e, created = open_store(url).write(ds, attrs, enc)
    assert created
    return objects(url, "features")


@pytest.mark.parametrize("point, nth", [("chunk", 1), ("chunk", 6), ("publish", 1)])
def test_sigkill_mid_write_then_rerun_gives_identical_objects(s3_url, reference_objects, point, nth):
    import s3_writer

    p = writer(s3_url, point, nth)
    [(_, err)] = finish([p])
    assert p.returncode == -signal.SIGKILL, err
    store = open_store(s3_url)
    assert store.entries() == [] and store.lookup(s3_writer.entry()[1]["key"]) is None  # nothing visible
    assert objects(s3_url, "features")  # but something was written
    ds, attrs, enc = s3_writer.entry()
    e, created = store.write(ds, attrs, enc)
    assert created and objects(s3_url, "features") == reference_objects
    assert [k for k in objects(s3_url, "_staging")] == []  # markers and template doc removed on publish


def test_two_writers_of_one_entry_and_a_reader_never_see_a_torn_entry(s3_url, reference_objects):
    import s3_writer

    ds, attrs, _ = s3_writer.entry()
    start = time.time() + 4.0
    procs = [writer(s3_url, "none", 0, start) for _ in range(2)]
    reader, polls, seen = open_store(s3_url), 0, 0
    try:
        while any(p.poll() is None for p in procs):
            polls += 1
            for e in reader.find(kind="features"):
                got = reader.open(e).load()  # a listed entry is always whole
                np.testing.assert_array_equal(got["emb"].values, ds["emb"].values)
                np.testing.assert_array_equal(got["count"].values, ds["count"].values)
                seen += 1
    finally:  # a failed read still stops both writers
        outs = finish(procs)
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    assert polls > 0
    assert sorted(o[0].split()[0] for o in outs) in (["cached", "created"], ["created", "created"])
    assert [e.key for e in open_store(s3_url, "r").entries()] == [attrs["key"]]
    assert objects(s3_url, "features") == reference_objects  # one complete entry, no torn chunk
