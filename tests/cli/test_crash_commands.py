"""SIGKILL during extract, derive and ingest-fmri at several points, then a rerun: byte-identical entries,
nothing partial ever visible, the dead writer's staging collected. Two processes extracting the same
request at once leave one complete entry; a changed source byte or parameter is never a cache hit.
(Batch kills, worker and client, live in tests/test_crash.py.)"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from giblet_store import open_store
from giblet_store.cli import main
from giblet_store.testing import synth_audio, write_wav

FAST = ["--bandwidth", "1.5", "--chunk-seconds", "1", "--context-seconds", "0.5"]

#: a driver run in a child process: arm one kill point, then run the CLI
DRIVER = r"""
import os, signal, sys
import xarray as xr
import giblet_store.features.codes as ex
import giblet_store.store.core as store_core
point, argv = sys.argv[1], sys.argv[2:]
def die():
    os.kill(os.getpid(), signal.SIGKILL)
if point == "encode":  # in the middle of the work, nothing written yet
    real = ex._codes_dataset
    ex._codes_dataset = lambda *a, **k: die()
elif point == "arrays-written":  # staging arrays on disk, attributes (status) not yet
    real_to_zarr = xr.Dataset.to_zarr
    def to_zarr(self, *a, **k):
        real_to_zarr(self, *a, **k)
        die()
    xr.Dataset.to_zarr = to_zarr
elif point == "before-publish":  # staging complete, the rename not done
    store_core.publish_group = lambda *a, **k: die()
elif point == "after-publish":  # published, the process dies before reporting
    real_publish = store_core.publish_group
    def publish(*a, **k):
        real_publish(*a, **k)
        die()
    store_core.publish_group = publish
from giblet_store.cli import main
sys.exit(main(argv))
"""


def tree(root: Path) -> dict[str, bytes]:
    """Every file of the store but the catalogue (an index holding file stamps, rebuilt from the entries)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not str(p.relative_to(root)).startswith("_catalog")}


def kill_at(point: str, argv: list) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", DRIVER, point, *map(str, argv)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def leftovers(st: Path) -> list[str]:
    """Staging folders left in the store (its ``_staging`` group's own zarr.json aside)."""
    staging = st / "_staging"
    return sorted(p.name for p in staging.iterdir() if p.name != "zarr.json") if staging.exists() else []


def visible(st: Path) -> list:
    return [e.key for e in open_store(st, mode="r").entries()]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_wav(tmp_path_factory.mktemp("crash_cmd") / "clip.wav", synth_audio(3.0, 24000, seed=21), 24000)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, clip, model_dir) -> Path:
    st = tmp_path_factory.mktemp("ref") / "st"
    assert main(["extract", str(clip), "--store", str(st), "--model", str(model_dir), *FAST]) == 0
    return st


def codes_tree(st: Path) -> dict:
    return tree(st / "codes")


@pytest.mark.parametrize("point", ["encode", "arrays-written", "before-publish", "after-publish"])
def test_extract_killed_then_rerun_is_byte_identical(point, tmp_path, clip, model_dir, reference):
    st = tmp_path / "st"
    argv = ["extract", clip, "--store", st, "--model", model_dir, *FAST]
    kill_at(point, argv)
    assert visible(st) == ([] if point != "after-publish" else visible(reference))  # never a partial entry
    assert main([str(a) for a in argv]) == 0
    assert codes_tree(st) == codes_tree(reference)
    assert leftovers(st) == []


@pytest.fixture(scope="module")
def fmri_input(tmp_path_factory) -> Path:
    import nibabel as nib

    d = tmp_path_factory.mktemp("crash_fmri")
    data = 100 + np.random.default_rng(3).standard_normal((4, 3, 3, 6)).astype(np.float32)
    img = nib.Nifti1Image(data, np.diag([3.0, 3.0, 3.0, 1.0]))
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_zooms((3.0, 3.0, 3.0, 1.5))
    nib.save(img, d / "bold.nii")
    return d / "bold.nii"


@pytest.mark.parametrize("point", ["arrays-written", "before-publish"])
@pytest.mark.parametrize("command", ["derive", "ingest-fmri"])
def test_derive_and_ingest_killed_then_rerun_is_byte_identical(command, point, tmp_path, reference, fmri_input):
    key = visible(reference)[0]
    argvs = {"derive": ["derive", "{st}", key[:12], "--resample-tr", "2.0"],
             "ingest-fmri": ["ingest-fmri", "{st}", fmri_input, "--subject", "s1"]}
    ref = tmp_path / "ref"
    shutil.copytree(reference, ref)
    argv = [str(a).replace("{st}", str(ref)) for a in argvs[command]]
    assert main(argv) == 0
    made = sorted(set(visible(ref)) - {key})
    st = tmp_path / "st"
    shutil.copytree(reference, st)
    argv = [str(a).replace("{st}", str(st)) for a in argvs[command]]
    kill_at(point, argv)
    assert visible(st) == [key]
    assert main(argv) == 0
    assert sorted(set(visible(st)) - {key}) == made
    assert tree(st) == tree(ref)  # the dead writer's staging folder was collected by the rerun


def test_two_processes_extracting_one_request_leave_one_complete_entry(tmp_path, clip, model_dir, reference):
    st = tmp_path / "st"
    argv = [sys.executable, "-m", "giblet_store.cli", "extract", str(clip), "--store", str(st), "--model",
            str(model_dir), *FAST]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    states = sorted(out.split()[1] for out, _ in results)
    assert states in (["cached", "created"], ["created", "created"])  # a lost race reports the winner's entry
    assert visible(st) == visible(reference) and codes_tree(st) == codes_tree(reference)
    assert leftovers(st) == []
    assert main(["verify", str(st)]) == 0


def test_a_changed_source_byte_or_parameter_is_never_a_cache_hit(tmp_path, clip, model_dir, capsys):
    st = tmp_path / "st"
    shutil.copy(clip, tmp_path / "a.wav")
    base = ["--store", str(st), "--model", str(model_dir), *FAST]

    def extract(path, *extra) -> tuple[str, str]:
        assert main(["extract", str(path), *base, *extra]) == 0
        out = capsys.readouterr().out.split()
        return out[0], out[1]

    key0, state = extract(tmp_path / "a.wav")
    assert state == "created" and extract(tmp_path / "a.wav") == (key0, "cached")
    data = bytearray((tmp_path / "a.wav").read_bytes())
    data[-1] ^= 0x01  # one bit of the last sample
    (tmp_path / "a.wav").write_bytes(bytes(data))
    key1, state = extract(tmp_path / "a.wav")
    assert state == "created" and key1 != key0
    keys = {key0, key1}
    for extra in (["--onset", "0.001"], ["--tr", "1.4999"], ["--n-trs", "3"], ["--bandwidth", "3"],
                  ["--chunk-seconds", "1.5"], ["--encoder", "chunked", "--context-seconds", "0.25"]):
        key, state = extract(tmp_path / "a.wav", *extra)
        assert state == "created" and key not in keys, extra
        keys.add(key)
    assert len(json.loads(json.dumps(sorted(keys)))) == 8
