"""Batch extraction on a real LocalCluster(processes=True): equality with a single-process extract,
chunk tasks spread over workers, idempotence, failures that stay local, object-store URLs, bad input."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import shutil
import socket
import uuid
from pathlib import Path

import dask
import numpy as np
import pytest

from giblet_store import CodecParams, TrGrid, extract_codes, open_store
from giblet_store.cli import main
from giblet_store.batch.run import ClusterError, run_batch
from giblet_store.errors import ParameterError, StoreError
from giblet_store.batch.manifest import ManifestError, load_manifest
from giblet_store.audio.channels import ChannelsMixedWarning
from giblet_store.testing import synth_audio, write_wav

from helpers import Terminal as _Terminal

HAS_MEL = importlib.util.find_spec("giblet_store.features.mel") is not None
CHUNK = {"chunk_s": 2.0, "context_s": 1.0}  # several encode tasks per few-second stimulus


@pytest.fixture(scope="module")
def stim(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("stimuli")
    write_wav(d / "a.wav", synth_audio(5.0, 24000, seed=1), 24000)  # at the model's rate: ranged reads
    write_wav(d / "b.wav", synth_audio(3.2, 16000, seed=2), 16000)  # resampled: one load task, sliced
    write_wav(d / "c.wav", synth_audio(4.0, 24000, seed=3, channels=2), 24000)  # stereo, mixed to mono
    write_wav(d / "e.flac", synth_audio(3.0, 24000, seed=6, channels=2), 24000)  # FLAC seeks exactly too
    write_wav(d / "d.wav", synth_audio(1.2271, 24000, seed=4), 24000)  # one partial chunk, not whole hops
    return d


def manifest(model_dir, stimuli, **kw) -> dict:
    return {"model": str(model_dir), "bandwidths": [1.5], "trs": [1.5], **CHUNK, "stimuli": stimuli, **kw}


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` and its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


def reference(tmp_path, model_dir, stim, jobs) -> Path:
    """Entries made one by one with the single-process extract_codes."""
    ref = open_store(tmp_path / f"ref-{uuid.uuid4().hex[:6]}")
    for name, bw, tr in jobs:
        stereo = name in ("c.wav", "e.flac")  # the channel rule warns (batch says it in the item's note)
        with pytest.warns(ChannelsMixedWarning, match="mean is encoded") if stereo else contextlib.nullcontext():
            extract_codes(ref, stim / name, CodecParams(str(model_dir), bandwidth_kbps=bw, **CHUNK), TrGrid(tr))
    return Path(ref.root)


def dead_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def test_batch_equals_single_process_extract_byte_for_byte(client, model_dir, stim, tmp_path):
    names = ["a.wav", "b.wav", "c.wav", "d.wav", "e.flac"]
    m = load_manifest(manifest(model_dir, names, bandwidths=[1.5, 3]), base_dir=stim)
    cache_info = lambda: __import__("giblet_store.codec.models").codec.models._load_cached.cache_info()  # noqa: E731
    before = client.run(cache_info)  # the session's cluster: earlier tests may have loaded other models
    report = run_batch(m, tmp_path / "batch", scheduler=client, progress=False)
    assert report.counts == {"created": 10, "cached": 0, "failed": 0} and report.ok
    assert all(it.key and it.path.startswith("codes/") for it in report.items)
    notes = {Path(it.source).name: it.note for it in report.items}
    assert notes["c.wav"] == notes["e.flac"] == "2 channel(s) mixed to the model's 1 (mean)" and notes["a.wav"] == ""
    ref = reference(tmp_path, model_dir, stim, [(n, bw, 1.5) for n in names for bw in (1.5, 3)])
    assert tree(tmp_path / "batch" / "codes") == tree(ref / "codes")
    assert [p.name for p in (tmp_path / "batch" / "_staging").iterdir()] == ["zarr.json"]  # nothing left behind
    # every worker loads the model at most once and reuses it for all its chunk tasks
    loads = client.run(cache_info)
    assert len(loads) == 2 and all(info.misses - before[w].misses <= 1 for w, info in loads.items())
    assert sum(info.hits - before[w].hits for w, info in loads.items()) >= 6
    # idempotent: a second run finds everything and never contacts a cluster
    again = run_batch(m, tmp_path / "batch", scheduler=dead_address(), progress=False)
    assert again.counts == {"created": 0, "cached": 10, "failed": 0}
    assert [it.key for it in again.items] == [it.key for it in report.items]


def test_long_stimulus_is_split_into_chunk_tasks_across_workers(client, model_dir, tmp_path):
    from distributed import get_task_stream

    write_wav(tmp_path / "long.wav", synth_audio(9.0, 24000, seed=5), 24000)
    m = manifest(model_dir, ["long.wav"], trs=[1.5, 2.0], chunk_s=1.0, context_s=0.5, encoder="chunked")
    with get_task_stream(client) as ts:
        report = run_batch(load_manifest(m, base_dir=tmp_path), tmp_path / "s", scheduler=client, tr_chunk=2,
                           progress=False)
    assert report.counts["created"] == 2
    encodes = [t for t in ts.data if str(t["key"]).startswith("gs-encode")]
    writes = [t for t in ts.data if str(t["key"]).startswith("gs-write")]
    assert len(encodes) == 9  # one per second of audio, shared by both TR grids
    assert len({t["worker"] for t in encodes}) == 2  # the chunks ran on both workers
    assert len(writes) == 3 + 3  # 6 TRs (1.5 s) and 5 TRs (2 s), two TRs per chunk
    store = open_store(tmp_path / "s")
    for it in report.items:
        entry = store.get(it.key)
        tr = entry.attrs["tr_s"]
        ref = open_store(tmp_path / f"ref-{tr}")  # one store per grid: in one, a second grid is re-grouped
        chunks = sorted(p.name for p in (Path(store.root) / entry.path / "codes" / "c").iterdir())
        assert chunks == ["0", "1", "2"]  # whole Zarr chunks of two TRs, one per write task
        r = extract_codes(ref, tmp_path / "long.wav", CodecParams(str(model_dir), bandwidth_kbps=1.5, chunk_s=1.0,
                                                                  context_s=0.5, encoder="chunked"), TrGrid(tr))
        assert r.entry.key == entry.key  # the same key: the same chunk_s / context_s semantics
        got, want = store.open(entry), ref.open(r.entry)
        np.testing.assert_array_equal(got.codes.values, want.codes.values)
        np.testing.assert_array_equal(got.n_frames.values, want.n_frames.values)
        assert got.attrs == want.attrs


def test_corrupt_files_among_good_ones(client, model_dir, stim, tmp_path, capsys):
    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(stim / "a.wav", d / "a.wav")
    shutil.copy(stim / "c.wav", d / "c.wav")
    (d / "corrupt.wav").write_bytes(b"RIFF....WAVEfmt " + bytes(range(256)) * 4)
    x = synth_audio(3.0, 24000, seed=9)
    x[0, 30000] = np.nan  # readable header, bad samples: fails on the worker that reads them
    write_wav(d / "nan.wav", x, 24000, subtype="FLOAT")
    (d / "m.csv").write_text(f"path,model,chunk_s,context_s,bandwidths\na.wav,{model_dir},2,1,1.5\n"
                             f"corrupt.wav,{model_dir},2,1,1.5\nnan.wav,{model_dir},2,1,1.5\n"
                             f"c.wav,{model_dir},2,1,1.5\n")
    store = tmp_path / "s"
    argv = ["batch", str(d / "m.csv"), "--store", str(store), "--scheduler", client.scheduler.address,
            "--no-progress"]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split() == ["STATUS", "KIND", "SOURCE", "PARAMETERS", "KEY", "REASON", "/", "NOTE"]
    status = {ln.split()[2]: ln.split()[0] for ln in lines[1:5]}
    assert status == {"a.wav": "created", "corrupt.wav": "failed", "nan.wav": "failed", "c.wav": "created"}
    assert "not an audio file soundfile can read" in out and "NaN or infinite samples" in out
    assert lines[-1].startswith("2 created, 0 cached, 2 failed")
    assert "error: " in err and "nan.wav" in err
    s = open_store(store)
    assert sorted(e.attrs["source_name"] for e in s.entries()) == ["a.wav", "c.wav"]  # nothing half-visible
    # the rerun retries only the failures; --json reports the same
    assert main([*argv, "--json"]) == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["counts"] == {"created": 0, "cached": 2, "failed": 2}
    assert [it["status"] for it in doc["entries"]] == ["cached", "failed", "failed", "cached"]


def test_local_url_store_publishes_by_status_last(client, model_dir, stim, tmp_path, capsys):
    url = f"local://{tmp_path / 'obj'}"
    m = load_manifest(manifest(model_dir, ["a.wav", "b.wav"]), base_dir=stim)
    report = run_batch(m, url, scheduler=client, progress="distributed")
    assert report.counts["created"] == 2
    assert "100% Completed" in capsys.readouterr().out  # distributed.progress on a cluster
    store = open_store(url)
    assert not store.local and len(store.entries()) == 2
    for it in report.items:
        meta = json.loads((tmp_path / "obj" / it.path / "zarr.json").read_text())
        assert meta["attributes"]["status"] == "complete"
    assert [p.name for p in (tmp_path / "obj" / "_staging").iterdir()] == []  # markers removed
    ref = reference(tmp_path, model_dir, stim, [("a.wav", 1.5, 1.5), ("b.wav", 1.5, 1.5)])
    assert tree(tmp_path / "obj" / "codes") == tree(ref / "codes")  # the same bytes as on local disk
    assert run_batch(m, url, scheduler=client, progress=False).counts["cached"] == 2
    # file:// is a plain local store (atomic rename)
    f = run_batch(m, f"file://{tmp_path / 'f'}", scheduler=client, progress="tqdm")
    assert f.counts["created"] == 2 and open_store(tmp_path / "f").local
    assert "batch" in capsys.readouterr().err  # the tqdm bar


def test_memory_store_runs_on_an_in_process_cluster(client, model_dir, stim, tmp_path):
    url = f"memory://giblet-{uuid.uuid4().hex}"
    m = load_manifest(manifest(model_dir, ["a.wav"]), base_dir=stim)
    with pytest.raises(ClusterError, match="memory://.*cannot reach"):
        run_batch(m, url, scheduler=client.scheduler.address, progress=False)
    report = run_batch(m, url, scheduler="local", workers=1, progress=False)
    assert report.counts["created"] == 1
    ref = reference(tmp_path, model_dir, stim, [("a.wav", 1.5, 1.5)])
    with dask.config.set(scheduler="sync"):  # not the module's client: its workers cannot see memory://
        got = open_store(url).open(report.items[0].key).codes.values
    np.testing.assert_array_equal(got, open_store(ref).open(report.items[0].key).codes.values)


def test_unreachable_scheduler_is_a_clear_error(model_dir, stim, tmp_path, capsys):
    address = dead_address()
    m = load_manifest(manifest(model_dir, ["a.wav"]), base_dir=stim)
    with pytest.raises(ClusterError, match=f"cannot reach the Dask scheduler at '{address}' within 1 s"):
        run_batch(m, tmp_path / "s", scheduler=address, connect_timeout=1.0, progress=False)
    assert open_store(tmp_path / "s").entries() == []
    (stim / "m.yaml").write_text(json.dumps(manifest(model_dir, ["a.wav"])))
    rc = main(["batch", str(stim / "m.yaml"), "--store", str(tmp_path / "s"), "--scheduler", address,
               "--connect-timeout", "1"])
    assert rc == 2 and "cannot reach the Dask scheduler" in capsys.readouterr().err
    with pytest.raises(ParameterError, match="--workers sets the size of a local cluster"):
        run_batch(m, tmp_path / "s", scheduler=address, workers=2, progress=False)
    with pytest.raises(ParameterError, match="workers must be a positive integer, got 0"):
        run_batch(m, tmp_path / "s", workers=0, progress=False)


def test_scheduler_without_workers_is_a_clear_error(model_dir, stim, tmp_path):
    from distributed import LocalCluster

    m = load_manifest(manifest(model_dir, ["a.wav"]), base_dir=stim)
    with LocalCluster(n_workers=0, processes=False, dashboard_address=":0", silence_logs=logging.CRITICAL) as bare:
        with pytest.raises(ClusterError, match="has no workers after 1 s"):
            run_batch(m, tmp_path / "s", scheduler=bare.scheduler_address, connect_timeout=1.0, progress=False)


def test_store_url_whose_filesystem_is_not_installed(model_dir, stim):
    m = load_manifest(manifest(model_dir, ["a.wav"]), base_dir=stim)
    with pytest.raises(StoreError, match="no filesystem for protocol 'nosuchfs'"):
        run_batch(m, "nosuchfs://bucket/store", progress=False)
    if importlib.util.find_spec("s3fs") is None:
        with pytest.raises(StoreError, match="install its fsspec package"):
            run_batch(m, "s3://bucket/store", progress=False)


def test_bad_input_is_reported_before_any_work(model_dir, stim, tmp_path):
    shutil.copy(stim / "a.wav", tmp_path / "a.wav")
    shutil.copy(stim / "a.wav", tmp_path / "a_copy.wav")
    m = load_manifest(manifest(model_dir, ["a.wav", "a_copy.wav"], bandwidths=[5.0, 6.0]), base_dir=tmp_path)
    with pytest.raises(ManifestError) as info:  # not a ClusterError: no connection was tried
        run_batch(m, tmp_path / "s", scheduler=dead_address(), progress=False)
    text = "\n".join(info.value.problems)
    assert "bandwidth 5 kbps is not offered" in text and "choose one of 1.5, 3, 6, 12, 24" in text
    assert "a_copy.wav has the same content" in text
    assert open_store(tmp_path / "s").entries() == []


@pytest.mark.skipif(not HAS_MEL, reason="giblet_store.features.mel is not importable (mel extraction not installed)")
def test_codes_and_mel_kinds(client, model_dir, stim, tmp_path):
    from giblet_store.features.mel import MelParams, extract_mel

    m = load_manifest(manifest(model_dir, ["a.wav"], kinds=["codes", "mel"], mel={"n_mels": 32}), base_dir=stim)
    report = run_batch(m, tmp_path / "s", scheduler=client, progress=False)
    assert [(it.kind, it.status) for it in report.items] == [("codes", "created"), ("mel", "created")]
    ref = open_store(tmp_path / "ref")
    r = extract_mel(ref, stim / "a.wav", MelParams(n_mels=32), TrGrid(1.5))
    assert r.entry.key == report.items[1].key
    np.testing.assert_array_equal(open_store(tmp_path / "s").open(r.entry.key).mel.values, ref.open(r.entry).mel.values)
    again = run_batch(m, tmp_path / "s", scheduler=dead_address(), progress=False)  # keys known on the client
    assert [it.status for it in again.items] == ["cached", "cached"]


@pytest.mark.data
def test_real_recordings(client, model_dir, shared_data, tmp_path):
    """Music at 24 kHz (ranged reads) and speech at 16 kHz (resampled) give extract_codes's bytes."""
    import soundfile as sf

    music, sr = sf.read(str(shared_data / "encodec_test_24k.wav"), frames=6 * 24000, dtype="int16")
    sf.write(str(tmp_path / "music6s.wav"), music, sr, subtype="PCM_16")  # the first 6 s, bit for bit
    stimuli = [tmp_path / "music6s.wav", shared_data / "arctic_a0007.wav"]
    m = {"model": str(model_dir), "bandwidths": [6], "chunk_s": 2.5, "context_s": 1,
         "stimuli": [str(p) for p in stimuli]}
    report = run_batch(load_manifest(m), tmp_path / "s", scheduler=client, progress=False)
    assert report.counts["created"] == 2
    ref = open_store(tmp_path / "ref")
    for p in stimuli:
        extract_codes(ref, p, CodecParams(str(model_dir), bandwidth_kbps=6, chunk_s=2.5, context_s=1))
    assert tree(tmp_path / "s" / "codes") == tree(tmp_path / "ref" / "codes")


def test_cli_batch_bar_only_on_a_terminal_and_never_in_json(client, model_dir, stim, tmp_path, capsys, monkeypatch):
    (tmp_path / "m.json").write_text(json.dumps(manifest(model_dir, [str(stim / "a.wav")])))
    argv = ["batch", str(tmp_path / "m.json"), "--store", str(tmp_path / "s"), "--scheduler", client.scheduler.address]
    assert main(argv) == 0  # stderr is no terminal here (captured): no bar, as for every other command
    out, err = capsys.readouterr()
    assert "task" not in err and "Completed" not in out and out.splitlines()[-1].startswith("1 created")
    (tmp_path / "m.json").write_text(json.dumps(manifest(model_dir, [str(stim / "a.wav"), str(stim / "d.wav")])))
    term = _Terminal()
    monkeypatch.setattr("sys.stderr", term)
    assert main([*argv, "--json"]) == 0  # on a terminal: a bar on stderr, and stdout stays one JSON document
    assert json.loads(capsys.readouterr().out)["counts"] == {"created": 1, "cached": 1, "failed": 0}
    assert "batch" in term.text


# ------------------------------------------------------------------------ issue 21 #3: what is hashed is what is read
def test_a_stimulus_rewritten_while_hashed_is_refused_before_any_work(client, model_dir, tmp_path, monkeypatch):
    import giblet_store.batch.checks as checks_mod

    write_wav(tmp_path / "a.wav", synth_audio(2.0, 24000, seed=1), 24000)
    other = write_wav(tmp_path / "o.wav", synth_audio(2.0, 24000, seed=9), 24000).read_bytes()
    real = checks_mod.sha256_file

    def hash_then_rewrite(path):
        sha = real(path)
        with open(path, "r+b") as f:  # same inode and size; written after its bytes were hashed
            f.write(other)
        return sha

    monkeypatch.setattr(checks_mod, "sha256_file", hash_then_rewrite)
    m = load_manifest(manifest(model_dir, ["a.wav"]), base_dir=tmp_path)
    with pytest.raises(ManifestError, match="a.wav changed while it was being hashed; nothing was stored"):
        run_batch(m, tmp_path / "st", scheduler=client, progress=False)
    assert not (tmp_path / "st").exists()


def test_a_stimulus_rewritten_before_a_worker_reads_it_fails_its_item(client, model_dir, tmp_path, monkeypatch):
    import giblet_store.batch.run as run_mod

    a = write_wav(tmp_path / "a.wav", synth_audio(2.0, 24000, seed=1), 24000)
    other = write_wav(tmp_path / "o.wav", synth_audio(2.0, 24000, seed=9), 24000).read_bytes()
    real = run_mod._check_manifest

    def check_then_rewrite(manifest):
        out = real(manifest)
        with open(a, "r+b") as f:  # after the hash and its stamp: a worker must notice
            f.write(other)
        return out

    monkeypatch.setattr(run_mod, "_check_manifest", check_then_rewrite)
    m = load_manifest(manifest(model_dir, ["a.wav"]), base_dir=tmp_path)
    report = run_batch(m, tmp_path / "st", scheduler=client, progress=False)
    assert report.counts["created"] == 0 and report.counts["failed"] == 1, report.items
    assert "changed while the batch ran" in report.items[0].reason
    assert open_store(tmp_path / "st").entries() == []


def test_a_container_is_refused_before_any_work_on_the_other_items(model_dir, stim, tmp_path, monkeypatch):
    """Issue 20 item 9: an mp4 item failed only after the other items had been encoded."""
    from giblet_store.batch import run as batch_run
    from giblet_store.testing.video import write_movie

    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(stim / "a.wav", d / "a.wav")
    write_movie(d / "film.mp4", synth_audio(2.0, 16000, seed=9), 16000)

    def no_work(*args, **kwargs):
        raise AssertionError("work started before every item was checked")

    monkeypatch.setattr(batch_run, "_connect", no_work)
    m = load_manifest(manifest(model_dir, ["a.wav", "film.mp4"], kinds=["codes", "mel"]), base_dir=d)
    with pytest.raises(ManifestError, match=r"film.mp4 is a mov,mp4,m4a,3gp,3g2,mj2 container; batch reads "
                                            r"wav/flac/ogg by range. Run `giblet-store extract` on it"):
        run_batch(m, tmp_path / "st", progress=False)
    assert not (tmp_path / "st").exists()


@pytest.mark.skipif(not HAS_MEL, reason="giblet_store.features.mel is not importable (mel extraction not installed)")
def test_mel_warnings_become_the_items_note(client, model_dir, stim, tmp_path, capfd):
    """Issue 20 item 9: a mel item's warnings were printed by the worker with source lines."""
    m = load_manifest(manifest(model_dir, ["c.wav"], kinds=["mel"], mel={"n_mels": 16}), base_dir=stim)
    report = run_batch(m, tmp_path / "s", scheduler=client, progress=False)
    (item,) = report.items
    assert item.status == "created" and "c.wav' has 2 channels and the mel spectrogram is taken of their mean" in item.note
    assert "Warning" not in capfd.readouterr().err
