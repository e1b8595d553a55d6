"""The hostile campaign's defects (issue 9, items 1-10): each one refused, recovered or reported now."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from giblet_store import open_store
from giblet_store.errors import EntryNotFoundError, ManifestError, ModelError, NotAStoreError, ParameterError
from giblet_store.testing import synth_audio, write_wav

from helpers import snapshot

FAST = ["--bandwidth", "1.5", "--chunk-seconds", "1", "--context-seconds", "0.5"]


@pytest.fixture(scope="module")
def wav(tmp_path_factory) -> Path:
    return write_wav(tmp_path_factory.mktemp("rel") / "clip.wav", synth_audio(2.0, 24000, seed=5), 24000)


@pytest.fixture
def built(run, tmp_path, wav, model_dir):
    """A store with one codes entry (its key) made through the CLI."""
    st = tmp_path / "st"
    code, out, err = run("extract", wav, "--store", st, "--model", model_dir, *FAST)
    assert code == 0, err
    return st, out.split()[0]


def entry_dir(st: Path, key: str) -> Path:
    return st / "codes" / key[:16]


# ------------------------------------------------------------------------------------ 1 path traversal
def test_kind_and_key_are_validated_before_any_path_is_built(run, built, tmp_path, wav, model_dir):
    st, key = built
    other = tmp_path / "other_store"
    assert run("extract", wav, "--store", other, "--model", model_dir, "--bandwidth", "3",
               "--chunk-seconds", "1", "--context-seconds", "0.5")[0] == 0
    code, out, err = run("ls", st, "--kind", "../other_store/codes")
    assert code == 2 and "'../other_store/codes' is not a kind" in err and "choose one of codes" in err
    assert "clip.wav" not in out and "Traceback" not in err
    store = open_store(st, mode="r")
    for bad in ("../other_store/codes", "codes/..", "/etc", ""):
        with pytest.raises(ParameterError, match="is not a kind"):
            store.entries(kind=bad or "Codes")
    with pytest.raises(ParameterError):
        store.find(kind="../x")
    for bad in ("../../x", key[:8] + "/..", "zz", key + "0"):
        with pytest.raises(EntryNotFoundError, match="hex digits"):
            store.get(bad)
    with pytest.raises(EntryNotFoundError):
        store.lookup("../" + key[3:], "codes")
    assert run("show", st, "../other_store")[0] == 2


# ------------------------------------------------------------------------------------ 2 resource bounds
@pytest.mark.parametrize("args,match", [
    (["--tr", "1e-9"], "holds 7.5e-08 frames"),
    (["--n-trs", "1000000000"], "far beyond the stimulus"),
    (["--tr", "0.0133"], "a TR must hold at least one frame"),
])
def test_absurd_grids_are_refused_up_front_with_their_size(run, tmp_path, wav, model_dir, args, match):
    st = tmp_path / "new" / "st"
    code, _, err = run("extract", wav, "--store", st, "--model", model_dir, *FAST, *args)
    assert code == 2 and match in err and "Traceback" not in err
    assert not (tmp_path / "new").exists()  # the store (and the folder made for it) is removed again


def test_a_refused_extract_leaves_an_existing_or_used_store_in_place(run, tmp_path, wav, model_dir):
    st = tmp_path / "st"
    assert run("extract", wav, "--store", st, "--model", model_dir, *FAST)[0] == 0
    before = snapshot(st)
    assert run("extract", wav, "--store", st, "--model", model_dir, *FAST, "--tr", "1e-9")[0] == 2
    assert snapshot(st) == before
    fresh = tmp_path / "fresh"  # one input refused, one encoded: the new store stays, with its entry
    code, _, err = run("extract", tmp_path / "missing.wav", wav, "--store", fresh, "--model", model_dir, *FAST)
    assert code == 2 and "missing.wav" in err
    assert len(json.loads(run("ls", fresh, "--json")[1])["entries"]) == 1


def test_output_bytes_beyond_the_stated_limit_are_refused(run, tmp_path, wav, model_dir, monkeypatch):
    monkeypatch.setenv("GIBLET_STORE_MAX_ENTRY_BYTES", "900")
    code, _, err = run("extract", wav, "--store", tmp_path / "st", "--model", model_dir, *FAST)
    assert code == 2 and "would hold 904 bytes (2 TRs x 113 frames x 4 bytes)" in err and "900 bytes limit" in err


# ------------------------------------------------------------------------------------ 3 foreign codecs
@pytest.mark.parametrize("codec", ["numcodecs.pickle", "made-up-codec"])
def test_an_entry_naming_a_codec_we_never_write_is_refused(run, built, codec):
    st, key = built
    meta_path = entry_dir(st, key) / "codes" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["codecs"].append({"name": codec, "configuration": {}})
    meta_path.write_text(json.dumps(meta))
    before = snapshot(st)
    code, _, err = run("show", st, key[:12])
    assert code == 2 and "Traceback" not in err
    assert f"uses codec '{codec}' (array 'codes'), which giblet_store never writes; refusing to read it" in err
    assert snapshot(st) == before
    code, out, _ = run("verify", st)
    assert code == 2 and "never writes" in out


# ------------------------------------------------------------------------------------ 4 corrupt entry
def _damage(entry: Path, damage: str) -> None:
    meta_path = entry / ("codes" if damage in ("pickle codec", "wrong dtype") else "") / "zarr.json"
    if damage == "invalid json":
        meta_path.write_text("{not json")
    elif damage in ("json array", "json string"):  # parsable, but not an object (issue 21 #11)
        meta_path.write_text("[]" if damage == "json array" else '"group"')
    elif damage == "missing chunk":  # would read as fill values: code 0, a real code
        (entry / "codes" / "c" / "0" / "0" / "0").unlink()
    else:
        meta = json.loads(meta_path.read_text())
        if damage == "no key":
            del meta["attributes"]["key"]
        elif damage == "attributes list":
            meta["attributes"] = list(meta["attributes"])
        elif damage == "pickle codec":
            meta["codecs"].append({"name": "numcodecs.pickle"})
        else:
            meta["data_type"] = "int32"
        meta_path.write_text(json.dumps(meta))


DAMAGES = ["invalid json", "json array", "json string", "attributes list", "no key", "missing chunk", "pickle codec",
           "wrong dtype"]


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_corrupt_entry_is_quarantined_and_rebuilt(run, built, wav, model_dir, damage):
    """A rerun of the request never serves a broken entry as cached: it is moved aside and rebuilt."""
    st, key = built
    reference = snapshot(entry_dir(st, key))
    _damage(entry_dir(st, key), damage)
    code, out, err = run("extract", wav, "--store", st, "--model", model_dir, *FAST)
    assert code == 0 and " created " in out, err
    assert "giblet-store: warning: moved broken entry codes/" in err and "_quarantine/" in err
    assert snapshot(entry_dir(st, key)) == reference
    assert len(list((st / "_quarantine").iterdir())) == 1


@pytest.mark.parametrize("damage", ["json array", "json string", "attributes list"])
def test_a_wrongly_typed_document_is_broken_for_verify_and_gc_dry_run(run, built, damage):
    """Issue 21 #11: `[]` in an entry's zarr.json is listed as broken, and gc --dry-run reports without crashing."""
    st, key = built
    _damage(entry_dir(st, key), damage)
    before = snapshot(st)
    code, out, err = run("verify", st)
    assert code == 2 and f"BROKEN  codes/{key[:16]}" in out, out + err
    code, out, err = run("gc", st, "--dry-run")
    assert code == 0 and "unexpected" not in err and "Traceback" not in err, out + err
    assert snapshot(st) == before


def test_verify_lists_broken_entries_and_repair_moves_them_aside(run, built, wav, model_dir):
    st, key = built
    assert run("verify", st) == (0, "1 entries checked, 0 broken\n", "")
    chunk = entry_dir(st, key) / "codes" / "c" / "0" / "0" / "0"
    assert chunk.is_file()
    chunk.unlink()
    before = snapshot(st)
    code, out, err = run("verify", st)
    assert code == 2 and "BROKEN  codes/" in out and "chunk file(s) are missing (codes/c/0/0/0)" in out
    assert "--repair" in err and snapshot(st) == before
    code, out, _ = run("verify", st, "--repair", "--json")
    report = json.loads(out)
    assert code == 0 and report["problems"][0]["moved_to"].startswith("_quarantine/codes-")
    assert run("verify", st)[0] == 0 and not entry_dir(st, key).exists()
    code, out, _ = run("extract", wav, "--store", st, "--model", model_dir, *FAST)
    assert code == 0 and " created " in out and chunk.is_file()


# ------------------------------------------------------------------------------------ 5 unclean errors
def test_a_read_only_store_is_a_clear_error(run, built, wav, model_dir, monkeypatch):
    st, _ = built
    before = snapshot(st)
    if os.geteuid() == 0:  # root writes through chmod: simulate the refusal where the OS would raise it
        import xarray as xr

        def refuse(self, store, group=None, **kw):
            raise PermissionError(13, "Permission denied", f"{st}/_staging")

        monkeypatch.setattr(xr.Dataset, "to_zarr", refuse)
    else:
        os.chmod(st, 0o555)
    try:
        code, _, err = run("extract", wav, "--store", st, "--model", model_dir, "--bandwidth", "3",
                           "--chunk-seconds", "1", "--context-seconds", "0.5")
    finally:
        os.chmod(st, 0o755)
    assert code == 2 and "permission denied" in err and "unexpected" not in err
    assert snapshot(st) == before


def test_decode_into_a_missing_folder_is_a_clear_error(run, built, tmp_path):
    st, key = built
    code, _, err = run("decode", st, key[:12], "-o", tmp_path / "nope" / "out.wav")
    assert code == 2 and "does not exist; create it first (mkdir -p" in err and "unexpected" not in err


def test_an_unreadable_audio_file_is_permission_denied(run, tmp_path, wav, model_dir, monkeypatch):
    locked = shutil.copy(wav, tmp_path / "locked.wav")
    os.chmod(locked, 0)
    if os.geteuid() == 0:  # root reads mode 000 files: simulate the EACCES a user would get
        import giblet_store.audio.wavcheck as wc

        def denied(path, *a, **k):
            raise PermissionError(13, "Permission denied", str(path))

        monkeypatch.setattr(wc, "open", denied, raising=False)
    code, _, err = run("extract", locked, "--store", tmp_path / "st", "--model", model_dir, *FAST)
    assert code == 2 and "permission denied" in err and "not an audio file" not in err


# ------------------------------------------------------------------------------------ 6 NaN voxels
def test_nan_voxels_refused_by_default_or_counted_and_warned(run, tmp_path):
    from helpers import synth, write_series

    d = synth(n=10)
    d[2, 2, 2, 3] = np.nan  # one voxel, one TR
    d[1, 1, 1, :] = np.nan  # one voxel, every TR (background)
    path = write_series(tmp_path / "nan.nii", d)
    st = tmp_path / "st"
    code, _, err = run("ingest-fmri", st, path, "--subject", "s1", "--mask-percentile", "0")
    assert code == 2 and "1 voxel(s) of the brain (finite at other TRs) are NaN/inf" in err and "--nan-policy mask" in err
    code, out, err = run("ingest-fmri", st, path, "--subject", "s1", "--mask-percentile", "0", "--nan-policy", "mask",
                         "--json")
    assert code == 0 and "giblet-store: warning: nan_policy='mask': dropped 1 voxel(s)" in err
    attrs = json.loads(out)["entries"][0]["attrs"]
    assert attrs["n_voxels_dropped_nonfinite"] == 1 and attrs["n_voxels"] == 6 * 5 * 4 - 3  # 2 NaN, 1 at the 0th std percentile


# ------------------------------------------------------------------------------------ 7 float32 header TR
def test_a_float32_header_tr_is_stored_as_its_decimal(run, tmp_path):
    from helpers import stimulus_entry, synth, write_series

    path = write_series(tmp_path / "bold.nii", synth(n=12), tr=1.35)
    st = tmp_path / "st"
    stim = stimulus_entry(open_store(st), tr_s=1.35, n_trs=12)
    code, out, err = run("ingest-fmri", st, path, "--subject", "s1", "--stimulus", stim.key[:12], "--json")
    assert code == 0, err
    attrs = json.loads(out)["entries"][0]["attrs"]
    assert attrs["tr_s"] == 1.35 and attrs["tr_s_header_float32"] == float(np.float32(1.35)) != 1.35
    assert [e.key for e in open_store(st).find(kind="fmri", tr_s=1.35)] == [json.loads(out)["entries"][0]["key"]]


# ------------------------------------------------------------------------------------ 8 manifests
def test_a_manifest_reports_every_problem_at_once(tmp_path):
    from giblet_store.batch.manifest import load_manifest

    with pytest.raises(ManifestError) as info:
        load_manifest({"stimuli": ["missing.wav"], "bandwith": [6]}, base_dir=tmp_path)
    text = str(info.value)
    assert len(info.value.problems) == 2 and "unknown top-level key 'bandwith'" in text and "missing.wav" in text


# ------------------------------------------------------------------------------------ 9 store creation
def test_a_store_creation_killed_midway_is_finished_by_the_next_write(run, tmp_path, wav, model_dir):
    st = tmp_path / "st"
    code = (
        "import os, signal, giblet_store.store.root as sr\n"
        "def die(*a): os.kill(os.getpid(), signal.SIGKILL)\n"
        "sr.os.link = die\n"
        "from giblet_store import open_store\n"
        f"open_store({str(st)!r})\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == -9
    assert [p.suffix for p in st.iterdir()] == [".partial"]
    code, _, err = run("ls", st)
    assert code == 2 and "creation was interrupted" in err
    code, out, err = run("extract", wav, "--store", st, "--model", model_dir, *FAST)
    assert code == 0 and " created " in out, err
    assert run("ls", st)[0] == 0


def test_an_old_interrupted_creation_bare_group_plus_partial_is_recovered(tmp_path):
    import zarr

    st = tmp_path / "st"
    zarr.open_group(str(st), mode="w", zarr_format=3)
    (st / "zarr.0123abcd.partial").write_bytes(b'{"attri')
    assert open_store(st).entries() == []
    assert "giblet_store" in json.loads((st / "zarr.json").read_text())["attributes"]


def test_a_foreign_zarr_group_is_never_adopted(run, tmp_path, wav, model_dir):
    import zarr

    st = tmp_path / "foreign"
    zarr.open_group(str(st), mode="w", zarr_format=3)
    before = snapshot(st)
    with pytest.raises(NotAStoreError, match="not a giblet store"):
        open_store(st)
    code, _, err = run("extract", wav, "--store", st, "--model", model_dir, *FAST)
    assert code == 2 and "not a giblet store" in err and snapshot(st) == before


# ------------------------------------------------------------------------------------ 10 leftovers
def test_stale_staging_of_a_killed_write_is_collected_on_rerun(run, built, wav, model_dir):
    from giblet_store.store.leftovers import host_tag

    st, key = built
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = st / "_staging" / f"{key[:16]}-w{host_tag()}-{dead.pid}-0badc0de"
    live = st / "_staging" / f"{key[:16]}-w{host_tag()}-{os.getpid()}-0000beef"
    for d in (stale, live):
        (d / "codes").mkdir(parents=True)
    shutil.rmtree(entry_dir(st, key))
    assert run("extract", wav, "--store", st, "--model", model_dir, *FAST)[0] == 0
    assert not stale.exists() and live.exists()  # a live writer's folder is left alone


def test_a_truncated_wav_is_refused(run, tmp_path, wav, model_dir):
    from giblet_store.audio.wavcheck import wav_data_chunk

    offset = wav_data_chunk(wav)[0]
    cut = tmp_path / "cut.wav"
    cut.write_bytes(wav.read_bytes()[: offset + 2 * 24960])
    code, _, err = run("extract", cut, "--store", tmp_path / "st", "--model", model_dir, *FAST)
    assert code == 2 and "is truncated: its WAV header declares 48000 samples (2.000 s) but the file holds 24960" in err


def test_zero_trs_is_refused(run, tmp_path, wav, model_dir):
    code, _, err = run("extract", wav, "--store", tmp_path / "st", "--model", model_dir, *FAST, "--n-trs", "0")
    assert code == 2 and "n_trs=0 would make an empty entry" in err


def test_a_newer_format_version_is_refused_not_cached(run, built, wav, model_dir):
    st, key = built
    meta_path = entry_dir(st, key) / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["format_version"] = 999
    meta_path.write_text(json.dumps(meta))
    before = snapshot(st)
    code, out, err = run("extract", wav, "--store", st, "--model", model_dir, *FAST)
    assert code == 2 and "cached" not in out and "format_version 999" in err and "Upgrade giblet_store" in err
    assert snapshot(st) == before


def test_warnings_print_as_one_plain_line(run, tmp_path, wav, model_dir):
    code, _, err = run("extract", wav, "--store", tmp_path / "st", "--model", model_dir, *FAST, "--n-trs", "1")
    assert code == 0
    assert "giblet-store: warning: n_trs=1 crops" in err
    assert "UserWarning" not in err and ".py:" not in err and "warnings.warn" not in err


def test_weights_changed_in_place_with_the_same_size_and_mtime_are_a_new_identity(tmp_path, model_dir):
    from giblet_store.codec.encodec import model_identity

    d = shutil.copytree(model_dir, tmp_path / "model")
    first = model_identity(str(d))["model_sha256"]
    weights = d / "model.safetensors"
    st = weights.stat()
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    with open(weights, "r+b") as f:  # in place: same inode, same size
        f.write(data)
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert weights.stat().st_size == st.st_size and weights.stat().st_mtime_ns == st.st_mtime_ns
    assert model_identity(str(d))["model_sha256"] != first


def test_a_pickle_only_model_directory_is_refused(tmp_path, model_dir):
    from giblet_store.codec.encodec import load_codec, model_identity

    d = tmp_path / "pickled"
    d.mkdir()
    shutil.copy(model_dir / "config.json", d)
    (d / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    for fn in (model_identity, load_codec):
        with pytest.raises(ModelError, match=r"only pickle weights \(pytorch_model.bin\).*only from safetensors"):
            fn(str(d))


def test_quarantine_moves_only_an_entry_folder_of_the_store(built):
    from giblet_store.errors import StoreError
    from giblet_store.store.verify import quarantine

    st, _ = built
    outside = st.parent / "etc"
    outside.mkdir()
    before = snapshot(st.parent)
    for bad in ("../etc", "codes/../../etc", "/etc", "codes", "_staging/x", "codes/a/b"):
        with pytest.raises(StoreError, match="is not an entry folder"):
            quarantine(open_store(st), bad, "test")
    assert snapshot(st.parent) == before and outside.is_dir()
