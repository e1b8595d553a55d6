"""Disk full / ``ulimit -f`` in real processes (issue 21): ``python -m giblet_store.cli`` under a file-size limit
(``RLIMIT_FSIZE``; Python ignores SIGXFSZ, so a write past it fails with EFBIG) exits 2 with a message naming the
file, leaves the store byte-identical (or absent, when the command would have created it), leaves no ``*.partial``
or staging anywhere, and a rerun without the limit stores exactly what a clean run stores.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from giblet_store.cli import main
from giblet_store.testing import synth_audio, write_wav

from helpers import snapshot, synth, write_series

FAST = ["--bandwidth", "1.5", "--chunk-seconds", "1", "--context-seconds", "0.5"]
REPO = Path(__file__).resolve().parents[2]


def _limited(argv, limit: int) -> subprocess.CompletedProcess:
    def preexec():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "giblet_store.cli", *map(str, argv)], preexec_fn=preexec,
                          capture_output=True, text=True, env=env, timeout=300)


def _no_leftovers(folder: Path) -> None:
    left = [str(p) for p in folder.rglob("*") if p.name.endswith(".partial")
            or (p.parent.name == "_staging" and p.name != "zarr.json")]
    assert left == []


def _refused(r, *must) -> str:
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "unexpected error" not in r.stderr
    assert "file size limit (ulimit -f) reached while writing " in r.stderr, r.stderr
    assert "Raise the file-size limit (`ulimit -f unlimited`) and rerun" in r.stderr
    for s in must:
        assert s in r.stderr, r.stderr
    return r.stderr


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, model_dir):
    d = tmp_path_factory.mktemp("full")
    clip = write_wav(d / "clip.wav", synth_audio(20.0, 24000, seed=4), 24000)  # codes chunk ~4 KB, metadata < 2 KB
    bold = write_series(d / "bold.nii", synth(shape=(8, 8, 6), n=20))       # fmri chunk ~30 KB
    base = d / "base"
    assert main(["extract", str(write_wav(d / "other.wav", synth_audio(2.0, 24000, seed=5), 24000)),
                 "--store", str(base), "--model", str(model_dir), *FAST]) == 0
    clean = d / "clean"
    shutil.copytree(base, clean)
    assert main(["extract", str(clip), "--store", str(clean), "--model", str(model_dir), *FAST]) == 0
    assert main(["ingest-fmri", str(clean), str(bold), "--subject", "s1"]) == 0
    return {"clip": clip, "bold": bold, "base": base, "clean": clean, "model": model_dir}


def _entries(st: Path) -> dict:
    return {k: v for k, v in snapshot(st).items() if k.split("/")[0] in ("codes", "fmri")}


def test_store_creation_past_the_limit_creates_nothing(inputs, tmp_path):
    r = _limited(["extract", inputs["clip"], "--store", tmp_path / "new" / "st", "--model", inputs["model"], *FAST],
                 100)
    _refused(r, "while writing zarr.json (the root document of the new store", "no store was created")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["extract", "ingest-fmri"])
def test_a_write_past_the_limit_mid_chunks_leaves_the_store_as_it_was(inputs, tmp_path, capsys, command):
    st = tmp_path / "st"
    shutil.copytree(inputs["base"], st)
    before = snapshot(st)
    if command == "extract":
        argv = ["extract", inputs["clip"], "--store", st, "--model", inputs["model"], *FAST]
        where = "/codes/c/0/0/0 (entry codes/"
    else:
        argv = ["ingest-fmri", st, inputs["bold"], "--subject", "s1"]
        where = "/fmri/c/0/0/0 (entry fmri/"
    _refused(_limited(argv, 2500), "while writing _staging/", where, f"in store '{st}'", "nothing was stored")
    assert snapshot(st) == before
    _no_leftovers(st)
    assert main([str(a) for a in argv]) == 0  # the rerun, no limit: what a clean run stores
    capsys.readouterr()
    kind = "codes" if command == "extract" else "fmri"
    got = {k: v for k, v in _entries(st).items() if k.startswith(f"{kind}/")}
    assert len(got) > 3 and got == {k: v for k, v in _entries(inputs["clean"]).items() if k.startswith(f"{kind}/")}


def test_a_store_the_refused_command_created_is_removed(inputs, tmp_path):
    """The root document fits, the entry does not: the store this command made is gone again (ingest-fmri)."""
    r = _limited(["ingest-fmri", tmp_path / "st", inputs["bold"], "--subject", "s1"], 2500)
    _refused(r, "/fmri/c/0/0/0", "nothing was stored")
    assert list(tmp_path.iterdir()) == []
