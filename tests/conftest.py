"""Shared fixtures: a saved random-weight EnCodec, synthetic stimuli, the shared real recordings."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from s3_fixture import s3_server, s3_url  # noqa: F401  (a moto S3 server on 127.0.0.1)
from hypothesis_profiles import register as _register_hypothesis_profiles
from cluster_fixture import two_worker_cluster, two_workers

# HYPOTHESIS_PROFILE=ci (default: the same cases on every machine) or explore (random, 25x the examples);
# tests with their own budget use @settings(budget(n), ...) so that explore scales it (hypothesis_profiles.py)
HYPOTHESIS_PROFILE = _register_hypothesis_profiles()

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _session_cache_dir(tmp_path_factory):
    """Session fixtures remember models in a temporary registry, never in the user's cache."""
    old = os.environ.get("GIBLET_STORE_CACHE")
    os.environ["GIBLET_STORE_CACHE"] = str(tmp_path_factory.mktemp("cache-session"))
    yield
    if old is None:
        os.environ.pop("GIBLET_STORE_CACHE", None)
    else:
        os.environ["GIBLET_STORE_CACHE"] = old


@pytest.fixture(autouse=True)
def cache_dir(tmp_path_factory, monkeypatch) -> Path:
    """Each test starts with an empty model registry (giblet_store.codec.registry) of its own."""
    d = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("GIBLET_STORE_CACHE", str(d))
    return d


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A random-weight 24 kHz-architecture EnCodec, codebooks filled, saved with save_pretrained."""
    from giblet_store.testing import save_test_model

    return save_test_model(tmp_path_factory.mktemp("encodec") / "model", seed=0)


@pytest.fixture(scope="session")
def model48_dir(tmp_path_factory) -> Path:
    """A random-weight model of the 48 kHz stereo architecture (giblet_store.testing.STEREO_48KHZ), saved."""
    from giblet_store.testing import STEREO_48KHZ, save_test_model

    return save_test_model(tmp_path_factory.mktemp("encodec48") / "model", seed=1, fill_seconds=8.0, **STEREO_48KHZ)


@pytest.fixture(scope="session")
def codec(model_dir):
    from giblet_store.codec.encodec import load_codec

    return load_codec(str(model_dir))


@pytest.fixture(scope="session")
def tone_wav(tmp_path_factory) -> Path:
    """10 s synthetic stimulus, 24 kHz mono PCM16."""
    from giblet_store.testing import synth_audio, write_wav

    return write_wav(tmp_path_factory.mktemp("audio") / "tone.wav", synth_audio(10.0, 24000, seed=3), 24000)


@pytest.fixture
def store(tmp_path):
    from giblet_store import open_store

    return open_store(tmp_path / "store")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the checkout; tests using it skip cleanly when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def run(capsys):
    """Run ``giblet-store ARGV...`` in-process (``giblet_store.cli.main``) with captured streams.

    ``run("ls", store_path, "--json")`` returns ``(exit status, stdout, stderr)``; arguments may be
    paths or numbers (each is passed as ``str``).
    """
    from giblet_store.cli import main

    def _run(*argv) -> tuple[int, str, str]:
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return _run


def pytest_addoption(parser):
    parser.addoption("--reverse", action="store_true",
                     help="run the collected tests in reverse order (no test may depend on another's leftovers)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--reverse"):
        items.reverse()


@pytest.fixture(scope="session")
def session_client():
    """A real two-process cluster, shared by the batch and crash tests (cluster_fixture.py)."""
    with two_worker_cluster() as c:
        yield c


@pytest.fixture
def client(session_client):
    """The shared cluster, with both workers running (a test before this one may have killed one)."""
    return two_workers(session_client)
