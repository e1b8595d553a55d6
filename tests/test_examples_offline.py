"""Issue 20 item 17: without --model and with the hub unreachable, every example that encodes runs on a
random-weight EnCodec and says so in the first line it prints (before: movie_codes, train_encoding_model,
reconstruct_from_fmri and compare_codecs died with a ModelError traceback; quickstart and features fell back
with a line of their own, not the first)."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FALLBACK = ("model: facebook/encodec_24khz unavailable offline; using a random-weight EnCodec (codes are not "
            "meaningful) -- pass --model DIR for real weights (")

# each example with small arguments (its outputs in the test's temporary directory)
CASES = {
    "quickstart": ["--store", "qs"],
    "features": ["--store", "fs", "--png", "f.png"],
    "movie_codes": ["--store", "ms"],
    "train_encoding_model": ["--store", "ts", "--epochs", "1"],
    "reconstruct_from_fmri": ["--store", "rs"],
    "compare_codecs": ["--bandwidths", "1.5", "--n-mels", "64", "--seconds", "2", "--out", "rep"],
}


@pytest.fixture(scope="module")
def random_cache(tmp_path_factory, model_dir) -> Path:
    """A model cache holding the random-weight fallback model: the tests' model_dir is the same
    ``save_test_model(seed=0)``, copied where ``random_model_dir`` looks (making it again takes ~30 s)."""
    import shutil

    from giblet_store.cli.demo import RANDOM_MODEL

    d = tmp_path_factory.mktemp("offline-cache")
    shutil.copytree(model_dir, d / RANDOM_MODEL)
    return d


@pytest.fixture
def offline(random_cache, monkeypatch, tmp_path) -> Path:
    """The hub cannot be reached (and holds no copy of the default model); the fallback model is cached."""
    import huggingface_hub

    from giblet_store.codec import models
    from giblet_store.codec.encodec import DEFAULT_MODEL

    if isinstance(huggingface_hub.try_to_load_from_cache(DEFAULT_MODEL, "config.json"), str):
        pytest.skip(f"{DEFAULT_MODEL} is in this machine's hub cache: the offline fallback is not reached in-process")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(models, "_hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setenv("GIBLET_STORE_CACHE", str(random_cache))
    monkeypatch.chdir(tmp_path)
    return random_cache


def run_example(name: str, argv: list[str], monkeypatch) -> int:
    """Run examples/NAME.py as ``python NAME.py ARGV`` would, in this process; its exit status."""
    path = EXAMPLES / f"{name}.py"
    monkeypatch.setattr(sys, "argv", [str(path), *argv])
    try:
        runpy.run_path(str(path), run_name="__main__")
    except SystemExit as exc:
        return 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
    return 0


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_every_example_falls_back_to_the_random_model_offline(name, offline, monkeypatch, capsys):
    from giblet_store.cli.demo import random_model_dir

    code = run_example(name, CASES[name], monkeypatch)
    out, err = capsys.readouterr()
    assert code == 0, err[-3000:]
    first = out.splitlines()[0]
    assert first == f"{FALLBACK}{random_model_dir()})"
    assert "Traceback" not in err and "ModelError" not in out + err


def test_a_model_given_that_cannot_be_loaded_stops_the_example_with_the_reason(offline, monkeypatch, capsys):
    missing = offline.parent / "no_such_model"
    code = run_example("movie_codes", ["--store", "ms", "--model", str(missing)], monkeypatch)
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith(f"model: {missing} cannot be loaded: model directory {str(missing)!r} does not exist")
    assert not Path("ms").exists()  # nothing was made


def test_offline_example_in_a_subprocess(random_cache, tmp_path):
    """The same rule with the hub cut off the way a user would: HF_HUB_OFFLINE=1 and an empty hub cache."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "GIBLET_STORE_CACHE": str(random_cache)}
    p = subprocess.run([sys.executable, "-W", "error", str(EXAMPLES / "movie_codes.py"), "--store", "ms"],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.splitlines()[0].startswith(FALLBACK) and "Traceback" not in p.stderr
    assert "identical codes: True" in p.stdout
