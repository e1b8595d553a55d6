"""The giblet-store command line: every command on real recordings, and every bad input."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from giblet_store.testing import synth_audio, write_wav

from helpers import snapshot


@pytest.fixture
def stims(tmp_path, shared_data):
    """The two real recordings, copied so tests may not touch ../shared."""
    return [shutil.copy(shared_data / n, tmp_path / n) for n in ("arctic_a0007.wav", "encodec_test_24k.wav")]


def test_extract_ls_show_decode_on_real_recordings(run, tmp_path, stims, model_dir):
    st = tmp_path / "st"
    code, out, err = run("extract", *stims, "--store", st, "--model", model_dir, "--bandwidth", 1.5, "--tr", 1.5)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 2 and all(" created " in line for line in lines)
    keys = [line.split()[0] for line in lines]
    code, out, _ = run("extract", *stims, "--store", st, "--model", model_dir, "--bandwidth", 1.5, "--tr", 1.5)
    assert code == 0 and [line.split()[1] for line in out.strip().splitlines()] == ["cached", "cached"]

    code, out, _ = run("ls", st)
    assert code == 0 and "arctic_a0007.wav" in out and "encodec_test_24k.wav" in out
    head, *rows = [line.split() for line in out.strip().splitlines()]
    assert [dict(zip(head, r))["KBPS"] for r in rows] == ["1.5", "1.5"]
    code, out, _ = run("ls", st, "--kind", "codes", "--where", "source_name=arctic_a0007.wav", "--json")
    listing = json.loads(out)["entries"]
    assert [e["key"] for e in listing] == [keys[0]] and listing[0]["attrs"]["duration_s"] == 4.0
    assert {"key", "kind", "path", "attrs"} <= set(listing[0])
    code, out, _ = run("ls", st, "--where", "bandwidth_kbps=6")
    assert "(no entries)" in out

    code, out, _ = run("show", st, keys[1][:10])
    assert code == 0 and "codes" in out and "(tr, codebook, frame)" in out
    code, out, _ = run("show", st, keys[1][:10], "--json")
    (doc,) = json.loads(out)["entries"]
    assert doc["variables"]["codes"]["shape"] == [14, 2, 113]  # 20 s / 1.5 s -> 14 TRs

    wav = tmp_path / "out.wav"
    code, out, err = run("decode", st, keys[1][:10], "-o", wav, "--trs", "0:3", "--model", model_dir)
    assert code == 0, err
    assert sf.info(str(wav)).frames == (113 + 112 + 113) * 320


def test_extract_json(run, tmp_path, tone_wav, model_dir):
    code, out, _ = run("extract", tone_wav, "--store", tmp_path / "st", "--model", model_dir,
                       "--bandwidth", 3, "--tr", 2.0, "--n-trs", 6, "--json")
    (doc,) = json.loads(out)["entries"]
    assert code == 0 and doc["created"] is True and doc["kind"] == "codes"
    assert doc["attrs"]["n_codebooks"] == 4 and doc["attrs"]["n_trs"] == 6 and doc["path"].startswith("codes/")


@pytest.fixture
def populated(tmp_path, tone_wav, model_dir, run):
    st = tmp_path / "st"
    run("extract", tone_wav, "--store", st, "--model", model_dir, "--bandwidth", 1.5, "--tr", 1.5)
    run("extract", tone_wav, "--store", st, "--model", model_dir, "--bandwidth", 1.5, "--tr", 2.0)
    return st


def _bad_inputs(tmp_path: Path, model_dir) -> dict:
    """name -> (argv pieces before --store, expected message fragment)."""
    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros((0, 1), np.float32), 24000)
    short = write_wav(tmp_path / "short.wav", synth_audio(0.01, 24000)[:, :200], 24000)
    nan = tmp_path / "nan.wav"
    x = synth_audio(0.5, 24000)
    x[0, 100] = np.nan
    sf.write(str(nan), x.T, 24000, subtype="FLOAT")
    inf = tmp_path / "inf.wav"
    x[0, 100] = np.inf
    sf.write(str(inf), x.T, 24000, subtype="FLOAT")
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    good = write_wav(tmp_path / "good.wav", synth_audio(1.0, 24000), 24000)
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert"}))
    m = ["--model", str(model_dir)]
    return {
        "missing file": ([tmp_path / "nope.wav", *m], "does not exist"),
        "not audio": ([text, *m], "not an audio file"),
        "zero-length": ([empty, *m], "no samples"),
        "shorter than a hop": ([short, *m], "shorter than one EnCodec hop"),
        "nan samples": ([nan, *m], "NaN or infinite"),
        "inf samples": ([inf, *m], "NaN or infinite"),
        "unsupported bandwidth": ([good, *m, "--bandwidth", "5"], "choose one of 1.5, 3, 6, 12, 24"),
        "tr zero": ([good, *m, "--tr", "0"], "tr_s must be a positive"),
        "tr negative": ([good, *m, "--tr=-1.5"], "tr_s must be a positive"),
        "tr nan": ([good, *m, "--tr", "nan"], "tr_s must be a positive"),
        "tr absurd": ([good, *m, "--tr", "1500"], "longer than 60 s"),
        "negative n_trs": ([good, *m, "--n-trs=-3"], "n_trs must be a positive integer"),
        "not an encodec dir": ([good, "--model", str(bert)], "not an EnCodec model"),
    }


BAD = ["missing file", "not audio", "zero-length", "shorter than a hop", "nan samples", "inf samples",
       "unsupported bandwidth", "tr zero", "tr negative", "tr nan", "tr absurd", "negative n_trs",
       "not an encodec dir"]


@pytest.mark.parametrize("case", BAD)
def test_bad_extract_input_is_a_clear_error_and_changes_nothing(run, populated, tmp_path, model_dir, case):
    argv, message = _bad_inputs(tmp_path, model_dir)[case]
    before = snapshot(populated)
    code, out, err = run("extract", *argv, "--store", populated)
    assert code == 2
    assert message in err and err.startswith("giblet-store: error:")
    assert "Traceback" not in err
    assert snapshot(populated) == before


def test_store_path_is_a_file(run, tmp_path, tone_wav, model_dir):
    f = tmp_path / "file"
    f.write_text("x")
    code, _, err = run("extract", tone_wav, "--store", f, "--model", model_dir)
    assert code == 2 and "regular file" in err and f.read_text() == "x"


def test_store_dir_that_is_not_a_store(run, tmp_path, tone_wav, model_dir):
    d = tmp_path / "thesis"
    d.mkdir()
    (d / "ch1.tex").write_text("x")
    code, _, err = run("ls", d)
    assert code == 2 and "not a giblet store" in err
    code, _, err = run("extract", tone_wav, "--store", d, "--model", model_dir)
    assert code == 2 and os.listdir(d) == ["ch1.tex"]


def test_newer_format_version(run, populated):
    meta = populated / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["giblet_store"]["format_version"] = 2
    meta.write_text(json.dumps(doc))
    code, _, err = run("ls", populated)
    assert code == 2 and "format_version 2" in err and "Upgrade" in err


def _keys(run, st) -> list[str]:
    return [e["key"] for e in json.loads(run("ls", st, "--json")[1])["entries"]]


def test_decode_errors(run, populated, tmp_path, model_dir):
    before = snapshot(populated)
    out = tmp_path / "o.wav"
    keys = _keys(run, populated)
    missing = next(d * 16 for d in "0123456789abcdef" if not any(k.startswith(d) for k in keys))
    code, _, err = run("decode", populated, missing, "-o", out, "--model", model_dir)
    assert code == 2 and "no complete entry" in err
    code, _, err = run("decode", populated, keys[0], "-o", out, "--trs", "0:999", "--model", model_dir)
    assert code == 2 and "outside the entry's TRs 0:" in err
    assert not out.exists() and snapshot(populated) == before


def test_ambiguous_prefix(run, populated, tmp_path, tone_wav, model_dir):
    # add entries until two keys share a first hex digit (deterministic keys: at most 17 needed)
    for tr in np.arange(1.0, 3.0, 0.125):
        keys = _keys(run, populated)
        shared = [d for d in "0123456789abcdef" if sum(k.startswith(d) for k in keys) >= 2]
        if shared:
            break
        run("extract", tone_wav, "--store", populated, "--model", model_dir, "--bandwidth", 1.5, "--tr", tr)
    n = sum(k.startswith(shared[0]) for k in keys)
    code, _, err = run("decode", populated, shared[0], "-o", tmp_path / "o.wav", "--model", model_dir)
    assert code == 2 and f"matches {n} entries" in err and "give more hex digits" in err


def test_console_script_prints_errors_without_traceback(tmp_path):
    exe = Path(sys.executable).parent / "giblet-store"
    if not exe.exists():
        pytest.skip("console script not installed in this environment")
    p = subprocess.run([str(exe), "ls", str(tmp_path / "missing")], capture_output=True, text=True)
    assert p.returncode == 2 and "no giblet store" in p.stderr and "Traceback" not in p.stderr
    p = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
    assert p.returncode == 0 and "extract" in p.stdout and "decode" in p.stdout


@pytest.mark.parametrize("argv", [("show", "{st}", "{key}"), ("ls", "{st}")], ids=["show", "ls"])
def test_a_closed_stdout_pipe_ends_the_command_quietly(tmp_path, argv):
    """Issue 20 item 7: `giblet-store show S K | head -1` said "unexpected error (BrokenPipeError)", exit 1.

    The read end of stdout is closed before the command (a real process) writes its first byte, so
    every write meets a closed pipe, whatever the timing: exit 141 (128 + SIGPIPE), nothing on stderr.
    """
    from helpers import write
    from giblet_store import open_store

    st = tmp_path / "st"
    key = write(open_store(st), 0).key
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")])}
    with subprocess.Popen([sys.executable, "-m", "giblet_store.cli", *(a.format(st=st, key=key) for a in argv)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as p:
        p.stdout.close()
        err = p.stderr.read().decode()
        assert p.wait(timeout=120) == 141 and err == ""
