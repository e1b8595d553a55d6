"""Soak (issue 21): two writers, `gc --older-than 1s`, `verify --repair` and `reindex` in loops on one local
store and one S3 store at once. Every published entry holds the codes of a clean store, nothing outside the
stores changes, no command fails. GIBLET_SOAK_S sets the duration (default 120 s)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from giblet_store import CodecParams, TrGrid, extract_codes, open_store
from giblet_store.features.codes import entry_stream
from giblet_store.testing import synth_audio, write_wav

from helpers import TESTS

SOAK_S = float(os.environ.get("GIBLET_SOAK_S", "120"))


def _checksum(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_writers_gc_verify_and_reindex_in_loops_never_lose_or_corrupt(tmp_path, model_dir, s3_url):
    stims = tmp_path / "stimuli"
    stims.mkdir()
    for i in range(2):
        write_wav(stims / f"s{i}.wav", synth_audio(2.0 + i, 24000, seed=20 + i), 24000)
    sibling = tmp_path / "sibling"  # a user's folder beside the local store
    (sibling / "deep").mkdir(parents=True)
    (sibling / "deep" / "results.csv").write_text("a,b\n1,2\n")
    (sibling / "notes.txt").write_text("mine")
    before = _checksum(sibling)
    clean = open_store(tmp_path / "clean")  # the reference: one writer, no maintenance
    reference = {}
    for stim in sorted(stims.glob("*.wav")):
        r = extract_codes(clean, stim, CodecParams(str(model_dir), bandwidth_kbps=1.5), TrGrid(1.0))
        reference[r.entry.attrs["source_sha256"]] = entry_stream(clean, r.entry)[0]
    local = str(tmp_path / "store")
    open_store(local)
    open_store(s3_url)
    deadline = time.time() + 20 + SOAK_S  # the writers load their model in the first seconds
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, str(TESTS / "soak_worker.py"), role, url, str(model_dir), str(stims),
                               str(deadline)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for url in (local, s3_url) for role in ("writer", "writer", "maintain")]
    try:
        outs = [p.communicate(timeout=SOAK_S + 600) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    lines = [json.loads(line) for out, _ in outs for line in out.splitlines() if line.startswith("{")]
    failed = [line for line in lines if not line["ok"]]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    assert failed == [], failed[:5]
    roles = {line["role"] for line in lines}
    assert {"writer", "gc", "verify", "reindex"} <= roles, roles
    assert sum(line.get("created", False) for line in lines) >= 4  # the writers kept writing new entries
    for url in (local, s3_url):
        store = open_store(url)
        entries = store.find(kind="codes")
        assert entries, url
        for e in entries:  # every published entry: the same codes as the clean store, bit for bit
            np.testing.assert_array_equal(entry_stream(store, e)[0], reference[e.attrs["source_sha256"]])
    assert not (Path(local) / "_quarantine").exists()  # nothing healthy was ever taken for damage
    assert _checksum(sibling) == before
