"""Crash safety: SIGKILL of a worker mid-write (several points, local and object-store semantics), SIGKILL
of the batch client mid-run, and two batch processes on one store. Every rerun must give entries
byte-identical to an uninterrupted run, and nothing partial may ever be visible."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import pytest

from giblet_store import open_store
from giblet_store.batch.run import run_batch
from giblet_store.testing import synth_audio, write_wav


# the functions below run inside worker processes: ship them by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])

MANIFEST = {"bandwidths": [1.5], "trs": [1.5], "chunk_s": 1.0, "context_s": 0.5,
            "stimuli": ["a.wav", "b.wav"], "tr_chunk": 1}


@pytest.fixture(scope="module")
def job(tmp_path_factory, model_dir):
    d = tmp_path_factory.mktemp("crash")
    write_wav(d / "a.wav", synth_audio(6.0, 24000, seed=11), 24000)  # 4 TR chunks, 6 encode tasks
    write_wav(d / "b.wav", synth_audio(4.0, 16000, seed=12), 16000)  # resampled on a worker
    (d / "m.json").write_text(json.dumps({**MANIFEST, "model": str(model_dir)}))
    return d


@pytest.fixture(scope="module")
def reference(session_client, job, tmp_path_factory) -> dict:
    """An uninterrupted run."""
    root = tmp_path_factory.mktemp("ref") / "s"
    assert run_batch(job / "m.json", root, scheduler=session_client, progress=False).counts["created"] == 2
    return tree(root / "codes")


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


def staging_leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "_staging").iterdir() if p.name != "zarr.json")


# ------------------------------------------------------------------------------------ worker-side traps
def _once(flag: str) -> bool:
    """True for the first caller across all processes (the flag file is created exclusively)."""
    try:
        os.close(os.open(flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def _arm(point: str, nth: int, flag: str) -> None:
    """Make this worker SIGKILL itself at the ``nth`` time it reaches ``point`` (once per cluster)."""
    import fsspec.implementations.local as fs_local
    import zarr.storage._local as zlocal

    from giblet_store.store.storage import Storage

    count = {"n": 0}
    _armed().extend([(zlocal, "_put", zlocal._put), (Storage, "put", Storage.put), (Storage, "move", Storage.move),
                     (fs_local.LocalFileSystem, "pipe_file", fs_local.LocalFileSystem.pipe_file)])

    def hit() -> bool:
        count["n"] += 1
        return count["n"] == nth and _once(flag)

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    if point == "chunk":  # local disk: a torn temp file of a chunk
        orig = zlocal._put

        def _put(path, value, exclusive=False):
            if "/codes/c/" in str(path) and hit():
                data = value.to_bytes()
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path.with_suffix(".deadbeef.partial"), "wb") as f:
                    f.write(data[: len(data) // 2])
                die()
            return orig(path, value, exclusive)

        zlocal._put = _put
    elif point == "chunk-url":  # object-store semantics on a non-atomic filesystem: a torn chunk in place
        cls = fs_local.LocalFileSystem
        orig_pipe = cls.pipe_file

        def pipe_file(self, path, value, *args, **kwargs):
            if "/codes/c/" in str(path) and hit():
                with open(path, "wb") as f:
                    f.write(bytes(value)[: len(value) // 2])
                die()
            return orig_pipe(self, path, value, *args, **kwargs)

        cls.pipe_file = pipe_file
    elif point == "marker":  # the chunk is written, its marker is not
        orig_store_put = Storage.put

        def store_put(self, path, data):
            if ".done/codes." in path and hit():
                die()
            return orig_store_put(self, path, data)

        Storage.put = store_put
    elif point == "publish":  # every chunk is there; killed before the rename / the last zarr.json
        orig_move, orig_store_put = Storage.move, Storage.put

        def move(self, src, dst):
            if src.startswith("_staging/") and not dst.startswith("_staging/") and hit():
                die()
            return orig_move(self, src, dst)

        def store_put(self, path, data):
            if path.endswith("/zarr.json") and path.startswith("codes/") and hit():
                die()
            return orig_store_put(self, path, data)

        Storage.move, Storage.put = move, store_put
    else:
        raise ValueError(point)


def _arm_every_worker(client, *args) -> None:
    """:func:`_arm` on both workers of the cluster (the ``client`` fixture waited for a killed worker's restart:
    with one worker armed, the trap may never see its ``nth`` write)."""
    assert len(client.run(_arm, *args)) == 2


def _armed() -> list:
    """(owner, name, original) of every trap in this worker process (kept in a module: these
    functions are shipped by value, so their own globals are not shared between calls)."""
    import types

    return sys.modules.setdefault("_giblet_test_traps", types.ModuleType("_giblet_test_traps")).__dict__.setdefault(
        "armed", [])


def _disarm() -> None:
    armed = _armed()
    while armed:
        owner, name, orig = armed.pop()
        setattr(owner, name, orig)


def _block_chunk(i: int, blocked: str, release: str) -> None:
    """Make the first write of chunk ``i`` wait until ``release`` exists; ``blocked`` names its markers."""
    from giblet_store.store.core import Store

    orig = Store.write_chunk
    _armed().append((Store, "write_chunk", orig))

    def write_chunk(self, staging, name, idx, data):
        if idx == i and _once(blocked + ".lock"):
            with open(blocked + ".tmp", "w") as f:
                f.write(staging.markers)
            os.rename(blocked + ".tmp", blocked)
            while not os.path.exists(release):
                time.sleep(0.05)
        return orig(self, staging, name, idx, data)

    Store.write_chunk = write_chunk


def _wait_for(path: Path, proc=None, timeout: float = 240.0) -> None:
    t0 = time.monotonic()
    while not path.exists():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the batch ended (rc {proc.returncode}) before {path.name}: "
                                 f"{proc.stderr.read()[-3000:] if proc.stderr else ''}")
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {path}")
        time.sleep(0.05)


# ------------------------------------------------------------------------------------ tests
@pytest.mark.parametrize("url,point,nth", [
    ("", "chunk", 2),
    ("", "marker", 3),
    ("", "publish", 1),
    ("local://", "chunk-url", 2),
    ("local://", "publish", 1),
])
def test_worker_killed_mid_write(client, job, reference, tmp_path, url, point, nth):
    flag = tmp_path / "killed"
    _arm_every_worker(client, point, nth, str(flag))
    root = tmp_path / "s"
    report = run_batch(job / "m.json", f"{url}{root}", scheduler=client, progress=False)
    assert flag.exists(), "the trap never fired"
    client.run(_disarm)  # the nanny restarted the killed worker; disarm the other one
    # dask retried the killed task on a fresh worker; a rerun finishes whatever is missing
    if not report.ok:
        report = run_batch(job / "m.json", f"{url}{root}", scheduler=client, progress=False)
    assert report.ok, report.table()
    assert run_batch(job / "m.json", f"{url}{root}", scheduler=client, progress=False).counts["cached"] == 2
    assert tree(root / "codes") == reference
    assert staging_leftovers(root) == []


# ---- issue 22, item 1: the 48 kHz model's chunk-planned entries are kill-safe and resumable too
@pytest.fixture(scope="module")
def job48(tmp_path_factory, model48_dir):
    d = tmp_path_factory.mktemp("crash48")
    write_wav(d / "s.wav", synth_audio(3.1, 48000, seed=13, channels=2), 48000)  # 4 model chunks, 4 TR chunks
    (d / "m.json").write_text(json.dumps({"model": str(model48_dir), "bandwidths": [3], "trs": [1.0],
                                          "tr_chunk": 1, "stimuli": ["s.wav"]}))
    return d


# The job writes 4 chunk markers, which two workers share in any split: only an nth <= 2 is sure to be reached on
# one of them (nth 3 never fired when the split was 2/2, as in a reversed run)
@pytest.mark.parametrize("point,nth", [("chunk", 2), ("marker", 2), ("publish", 1)])
def test_worker_killed_mid_write_48khz(client, job48, tmp_path, point, nth):
    ref = tmp_path / "ref"
    assert run_batch(job48 / "m.json", ref, scheduler=client, progress=False).counts["created"] == 1
    flag = tmp_path / "killed"
    _arm_every_worker(client, point, nth, str(flag))
    root = tmp_path / "s"
    report = run_batch(job48 / "m.json", root, scheduler=client, progress=False)
    assert flag.exists(), "the trap never fired"
    client.run(_disarm)
    if not report.ok:
        report = run_batch(job48 / "m.json", root, scheduler=client, progress=False)
    assert report.ok, report.table()
    assert tree(root / "codes") == tree(ref / "codes")
    assert staging_leftovers(root) == []


def test_client_killed_mid_batch_resumes(client, job, reference, tmp_path):
    blocked, release = tmp_path / "blocked", tmp_path / "release"
    assert len(client.run(_block_chunk, 2, str(blocked), str(release))) == 2
    root = tmp_path / "s"
    code = ("import sys\nfrom giblet_store.batch.run import run_batch\n"
            f"r = run_batch({str(job / 'm.json')!r}, {str(root)!r}, scheduler={client.scheduler.address!r}, "
            "progress=False)\nsys.exit(0 if r.ok else 3)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(blocked, proc)
        markers = root / blocked.read_text()  # the blocked entry's finished chunks
        t0 = time.monotonic()
        while not list(markers.glob("codes.*")) and time.monotonic() - t0 < 120:
            time.sleep(0.05)
        done_before = sorted(p.name for p in markers.glob("codes.*"))
        os.kill(proc.pid, signal.SIGKILL)  # the client dies; its blocked task is still running
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert open_store(root).entries() == [] or len(open_store(root).entries()) < 2
    client.run(_disarm)
    release.touch()  # the orphaned task now writes its chunk while the rerun runs
    report = run_batch(job / "m.json", root, scheduler=client, progress=False)
    assert report.ok, report.table()
    assert done_before and "codes.2" not in done_before
    notes = [it.note for it in report.items if it.note.startswith("resumed:")]
    assert notes and all(int(n.split()[1]) >= 1 for n in notes), report.table()
    assert tree(root / "codes") == reference
    assert staging_leftovers(root) == []


def test_two_batch_processes_on_one_store(client, job, reference, tmp_path):
    root = tmp_path / "s"
    argv = [sys.executable, "-m", "giblet_store.cli", "batch", str(job / "m.json"), "--store", str(root),
            "--scheduler", client.scheduler.address, "--no-progress", "--json"]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    reports = [json.loads(out) for out, _ in outs]
    for r in reports:
        assert r["counts"]["failed"] == 0 and r["counts"]["created"] + r["counts"]["cached"] == 2
    assert tree(root / "codes") == reference
    assert len(open_store(root).entries()) == 2
    assert staging_leftovers(root) == []


def _staged(root: Path, job: Path):
    """Two store handles (two writers) on one staging of job's first codes entry, every chunk written.

    Returns (a, b, staging, one chunk's zeros)."""
    import numpy as np

    from giblet_store.batch.run import _plan
    from giblet_store.batch.manifest import load_manifest

    a, b = open_store(root), open_store(root)
    _, plans, _ = _plan(load_manifest(job / "m.json"), a, None)
    plan = plans[0][1]
    staging = a.begin_write(plan.ds, plan.attrs, plan.encoding)
    chunk_len, n = staging.chunk_len("codes")
    shape = plan.ds["codes"].shape
    for i in range(n):
        rows = min(chunk_len, shape[0] - i * chunk_len)
        assert a.write_chunk(staging, "codes", i, np.zeros((rows, *shape[1:]), np.int16))
    return a, b, staging, np.zeros((min(chunk_len, shape[0]), *shape[1:]), np.int16)


def test_commit_racing_another_publisher_returns_its_entry(job, tmp_path):
    """Writer B counts the markers just as writer A publishes and discards them: B must report A's
    entry (created=False), not "chunks are not written" (a failure once seen in CI)."""
    a, b, staging, _ = _staged(tmp_path / "s", job)
    real = b.staged.done_chunks

    def done_chunks_after_a_published(st):
        a.commit(st)
        return real(st)

    b.staged.done_chunks = done_chunks_after_a_published  # what B's commit counts with
    entry, created = b.commit(staging)
    assert not created and entry.key == staging.key
    assert staging_leftovers(tmp_path / "s") == []


def test_chunk_written_after_another_writer_published_leaves_nothing(job, tmp_path):
    """A late writer's chunk lands after the entry was published: no staging path or marker stays."""
    a, b, staging, chunk = _staged(tmp_path / "s", job)
    real_put = b.storage.put

    def put_after_a_published(path, data):
        if ".done/codes." in path:
            a.commit(staging)
            (tmp_path / "s" / staging.data / "codes").mkdir(parents=True)  # the late chunk re-created its path
        return real_put(path, data)

    b.storage.put = put_after_a_published
    b.staged._marker = lambda path: None  # B has not seen A's marker for this chunk
    assert b.write_chunk(staging, "codes", 0, chunk) is False
    assert staging_leftovers(tmp_path / "s") == []
    assert a.lookup(staging.key, "codes") is not None


def test_a_file_added_while_the_staging_is_removed_does_not_fail_the_publish(job, tmp_path):
    """Another writer's marker lands while the publisher removes the markers folder (``Directory not
    empty``): the publish still succeeds and the removal is retried until nothing is left."""
    import errno

    a, _, staging, _ = _staged(tmp_path / "s", job)
    real_remove, failures = a.storage.delete, []

    def remove_racing_a_marker(path):
        if path == staging.markers and not failures:
            failures.append(path)
            raise OSError(errno.ENOTEMPTY, "Directory not empty", path)
        return real_remove(path)

    a.storage.delete = remove_racing_a_marker
    entry, created = a.commit(staging)
    assert failures and created and entry.key == staging.key
    assert staging_leftovers(tmp_path / "s") == []


def test_a_writer_that_saw_no_template_never_removes_another_writers_template(job, tmp_path):
    """Writers A and B begin one staging at once: B looked before A's template was renamed into place,
    so B makes its own. B must join A's template, not remove it (A's chunks and markers would be lost
    and A's commit would fail with "3 chunk(s) are not written": test_two_batch_processes_on_one_store
    failed so, once in a dozen runs)."""
    from giblet_store.batch.run import _plan
    from giblet_store.batch.manifest import load_manifest

    a, b, staging, _ = _staged(tmp_path / "s", job)  # A's template, every chunk written and marked
    real, calls = b.staged._staging_id, []

    def none_at_first(st):  # B's first look happened before A's rename
        calls.append(st)
        return None if len(calls) == 1 else real(st)

    b.staged._staging_id = none_at_first
    _, plans, _ = _plan(load_manifest(job / "m.json"), b, None)
    plan = plans[0][1]
    assert b.begin_write(plan.ds, plan.attrs, plan.encoding) == staging
    b.staged._staging_id = real
    entry, created = a.commit(staging)
    assert created and entry.key == staging.key
    assert staging_leftovers(tmp_path / "s") == []
