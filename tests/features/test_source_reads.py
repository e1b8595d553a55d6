"""What extract and mel cache is exactly what they read (issue 21 #3, #12, #14).

A stimulus rewritten between hashing and decoding is refused (exit 2, store unchanged); one renamed
over the path is harmless (the open descriptor reads what was hashed); a name that is not UTF-8
keys like any other; the resampled audio of a killed extract leaves nothing in the temp folder.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import giblet_store.features.codes as codes_mod
import giblet_store.features.mel as mel_mod
from giblet_store import open_store
from giblet_store.store.hashing import sha256_file
from giblet_store.testing import synth_audio, write_wav

from helpers import snapshot

FAST = ["--bandwidth", "1.5", "--chunk-seconds", "1", "--context-seconds", "0.5"]
CHANGED = "changed while it was being read"


@pytest.fixture
def stims(tmp_path):
    """Two clips of the same length and rate (same header), different samples; a store already made."""
    a = write_wav(tmp_path / "stim.wav", synth_audio(2.0, 24000, seed=5), 24000)
    b = write_wav(tmp_path / "other.wav", synth_audio(2.0, 24000, seed=9), 24000)
    assert a.stat().st_size == b.stat().st_size and a.read_bytes() != b.read_bytes()
    open_store(tmp_path / "st")
    return a, b, tmp_path / "st"


def _swap_during(monkeypatch, module, name, action):
    real = getattr(module, name)

    def wrapped(*args, **kw):
        action()
        return real(*args, **kw)

    monkeypatch.setattr(module, name, wrapped)


def _rewrite_in_place(dst: Path, src: Path):
    def act():
        with open(dst, "r+b") as f:  # same inode, same size: only the bytes differ
            f.write(src.read_bytes())
    return act


def test_extract_refuses_a_stimulus_rewritten_after_it_was_hashed(run, stims, model_dir, monkeypatch):
    a, b, st = stims
    before = snapshot(st)
    _swap_during(monkeypatch, codes_mod, "load_codec", _rewrite_in_place(a, b))  # hashed, then the model loads
    code, out, err = run("extract", a, "--store", st, "--model", model_dir, *FAST)
    assert code == 2 and CHANGED in err and "nothing was stored" in err, out + err
    assert "unexpected" not in err and snapshot(st) == before
    assert a.read_bytes() == b.read_bytes()  # the swap really happened
    monkeypatch.undo()
    code, out, err = run("extract", a, "--store", st, "--model", model_dir, *FAST)  # a normal run still works
    assert code == 0 and " created " in out, err
    assert open_store(st).entries()[0].attrs["source_sha256"] == sha256_file(b)


def test_a_stimulus_renamed_over_during_extract_is_encoded_as_hashed(run, stims, model_dir, monkeypatch, tmp_path):
    """The descriptor opened for the hash is the one decoded: the new file at the path is not read."""
    a, b, st = stims
    a_bytes = a.read_bytes()
    _swap_during(monkeypatch, codes_mod, "load_codec", lambda: os.replace(b, a))
    code, out, err = run("extract", a, "--store", st, "--model", model_dir, *FAST)
    assert code == 0 and " created " in out, err
    monkeypatch.undo()
    clean = tmp_path / "clean.wav"
    clean.write_bytes(a_bytes)
    assert run("extract", clean, "--store", tmp_path / "ref", "--model", model_dir, *FAST)[0] == 0
    got, ref = open_store(st).entries()[0], open_store(tmp_path / "ref").entries()[0]
    assert got.key == ref.key and got.attrs["source_sha256"] == ref.attrs["source_sha256"]
    np.testing.assert_array_equal(open_store(st).open(got)["codes"].values, open_store(tmp_path / "ref").open(ref)["codes"].values)


def test_mel_refuses_a_stimulus_rewritten_after_it_was_hashed(run, stims, monkeypatch):
    a, b, st = stims
    before = snapshot(st)
    _swap_during(monkeypatch, mel_mod, "cache_hit", _rewrite_in_place(a, b))  # after the hash, before the read
    code, out, err = run("mel", a, "--store", st)
    assert code == 2 and CHANGED in err and snapshot(st) == before, out + err


def test_a_latin1_file_name_keys_like_any_other_and_is_stored_as_text(run, stims, model_dir):
    """Issue 21 #12: the same bytes at b'caf\\xe9.wav' and at an ASCII name are one entry, read by soundfile."""
    a, _, st = stims
    latin = Path(os.fsdecode(os.path.join(os.fsencode(a.parent), b"caf\xe9.wav")))
    latin.write_bytes(a.read_bytes())
    code, out, err = run("extract", latin, "--store", st, "--model", model_dir, *FAST)
    assert code == 0 and " created " in out and "caf\\xe9.wav" in out, err
    entry = open_store(st).entries()[0]
    assert "audio_stream" not in entry.attrs["inputs"] and "audio_stream" not in entry.attrs
    assert entry.attrs["source_name"] == "caf\\xe9.wav"
    json.dumps(entry.attrs, ensure_ascii=False).encode("utf-8")  # valid text: no lone surrogate
    code, out, err = run("extract", a, "--store", st, "--model", model_dir, *FAST)
    assert code == 0 and " cached " in out and out.split()[0] == entry.key, err


_KILLED = """
import sys
from giblet_store.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _fds_into(pid: int, folder: Path) -> list[str]:
    out = []
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith(str(folder)):
                out.append(target)
    except OSError:
        pass
    return out


def test_a_killed_extract_leaves_no_resampled_audio_behind(tmp_path, model_dir):
    """Issue 21 #14: a long input is resampled into a file with no name; SIGKILL mid-extract leaves nothing."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    long = write_wav(tmp_path / "long.wav", synth_audio(70.0, 16000, seed=3), 16000)  # > MEMMAP_ABOVE_S
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": os.pathsep.join(sys.path)}
    argv = [sys.executable, "-c", _KILLED, "extract", str(long), "--store", str(tmp_path / "st"), "--model",
            str(model_dir), "--no-progress", *FAST]
    log = tmp_path / "stderr.txt"
    with open(log, "wb") as err:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=err)
    seen = []
    try:
        deadline = time.monotonic() + 600
        while proc.poll() is None and time.monotonic() < deadline and not seen:
            seen = _fds_into(proc.pid, tmp) or [p.name for p in tmp.glob("giblet_audio*")]
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert seen, f"the extract never held its temporary audio: {log.read_text()[-2000:]}"
    assert proc.returncode == -signal.SIGKILL
    assert not list(tmp.glob("giblet_audio*")), seen
    assert subprocess.run(argv, env=env, capture_output=True).returncode == 0  # the rerun works, and leaves nothing
    assert not list(tmp.glob("giblet_audio*"))
