"""Batch with the 48 kHz stereo model (issue 22, item 1): planned by the model's own chunks on a real
LocalCluster, in one manifest with the 24 kHz model; entries byte-identical to a single-process extract."""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path

import numpy as np
import pytest

from giblet_store import CodecParams, TrGrid, extract_codes, open_store
from giblet_store.audio.channels import ChannelsMixedWarning
from giblet_store.batch.manifest import load_manifest
from giblet_store.batch.run import run_batch
from giblet_store.testing import synth_audio, write_wav


@pytest.fixture(scope="module")
def stim48(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("stimuli48")
    x = synth_audio(2.3, 48000, seed=5, channels=2)
    x[1] *= 0.5
    write_wav(d / "s48.wav", x, 48000, subtype="FLOAT")  # at the model's rate: read by range, 3 model chunks
    write_wav(d / "m44.wav", synth_audio(1.5, 44100, seed=6), 44100)  # resampled whole, mono put on both channels
    write_wav(d / "a24.wav", synth_audio(2.0, 24000, seed=7), 24000)  # the 24 kHz model, same manifest
    return d


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


def test_batch_plans_model_chunks_and_equals_extract_byte_for_byte(client, model_dir, model48_dir, stim48, tmp_path):
    from distributed import get_task_stream

    m = {"model": str(model48_dir), "bandwidths": [6], "trs": [0.5, 0.7], "tr_chunk": 2,
         "stimuli": ["s48.wav", "m44.wav", {"path": "a24.wav", "model": str(model_dir), "bandwidths": [1.5]}]}
    with get_task_stream(client) as ts:
        report = run_batch(load_manifest(m, base_dir=stim48), tmp_path / "b", scheduler=client, progress=False)
    assert report.counts == {"created": 6, "cached": 0, "failed": 0}, report.table()
    notes = {Path(it.source).name: it.note for it in report.items}
    assert notes["m44.wav"] == "1 channel(s) mixed to the model's 2 (duplicated)" and notes["s48.wav"] == ""
    encodes = [t for t in ts.data if str(t["key"]).startswith("gs-encode")]
    # one task per model chunk (2.3 s: 3, 1.5 s: 2), shared by both TR grids; the 24 kHz file streams in one
    assert len(encodes) == 3 + 2 + 1
    assert len([t for t in ts.data if "scales" in str(t["key"])]) == 4
    # one reference store per TR grid: in one store the second grid would be re-grouped from the first
    # entry's frames (features/regrid.py, attribute regridded_from), which a batch never does
    refs = {tr: open_store(tmp_path / f"ref-{tr}-{uuid.uuid4().hex[:6]}") for tr in (0.5, 0.7)}
    where = {}
    for name, model, bw in (("s48.wav", model48_dir, 6), ("m44.wav", model48_dir, 6), ("a24.wav", model_dir, 1.5)):
        for tr in (0.5, 0.7):
            warn = pytest.warns(ChannelsMixedWarning) if name == "m44.wav" else contextlib.nullcontext()
            with warn:
                r = extract_codes(refs[tr], stim48 / name, CodecParams(str(model), bandwidth_kbps=bw), TrGrid(tr))
            assert r.entry.key in {it.key for it in report.items}
            where[r.entry.key] = refs[tr]
    got = open_store(tmp_path / "b")
    for it in report.items:  # tr_chunk=2 makes other Zarr chunks than extract's: compare values and attributes
        a, b = got.open(it.key), where[it.key].open(it.key)
        assert a.attrs == b.attrs
        for name in a.variables:
            np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    s48 = [it for it in report.items if it.source.endswith("s48.wav")]
    assert got.open(s48[0].key).sizes["chunk"] == 3 and got.open(s48[0].key).attrs["encoder"] == "model_chunks"
    # the store's own chunking: the very bytes of extract_codes
    again = run_batch(load_manifest({k: v for k, v in m.items() if k != "tr_chunk"}, base_dir=stim48), tmp_path / "c", scheduler=client,
                      progress=False)
    assert again.ok and tree(tmp_path / "c" / "codes") == {**tree(Path(refs[0.5].root) / "codes"),
                                                           **tree(Path(refs[0.7].root) / "codes")}
    assert [p.name for p in (tmp_path / "c" / "_staging").iterdir()] == ["zarr.json"]


def test_six_channels_into_the_stereo_model_fail_their_item_only(client, model48_dir, stim48, tmp_path):
    write_wav(tmp_path / "six.wav", np.tile(synth_audio(0.5, 48000, seed=2), (6, 1)), 48000)
    (tmp_path / "s48.wav").write_bytes((stim48 / "s48.wav").read_bytes())
    m = {"model": str(model48_dir), "bandwidths": [3], "trs": [1.0], "stimuli": ["six.wav", "s48.wav"]}
    report = run_batch(load_manifest(m, base_dir=tmp_path), tmp_path / "s", scheduler=client, progress=False)
    assert [it.status for it in report.items] == ["failed", "created"]
    assert "has 6 channels; a stereo model takes 1 or 2. Mix it down to stereo first" in report.items[0].reason
