"""Issue 21's data-loss cases with real processes: every command below is ``python -m giblet_store.cli``
in its own process, on real stores on disk, with the random-weight model.

1. gc / verify --repair on a store whose ``_staging`` or ``_quarantine`` is a link to a user's folder;
2. gc on damaged entries and folders it does not own (quarantined or left, never deleted), then a rebuild;
3. a stimulus rewritten in place, or renamed over, while an extract process has it open;
4. ``gc --older-than 0`` looping in one process while extract and batch processes write;
5. a writer SIGKILLed mid-write, then gc: the dead writer's lease and staging go, nothing else.

The in-process versions (with injected timing) are tests/store/test_gc.py, tests/features/
test_source_reads.py and tests/batch/test_crash.py; these check the same properties whatever the timing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from giblet_store import open_store, verify_store
from giblet_store.cli import main
from giblet_store.store.hashing import sha256_file
from giblet_store.store.leftovers import host_tag
from giblet_store.testing import synth_audio, write_wav

from helpers import TESTS, snapshot

FAST = ["--bandwidth", "1.5", "--chunk-seconds", "1", "--context-seconds", "0.5", "--no-progress"]
CHANGED = "changed while it was being read"
DEAD_PID = 4194305  # above Linux's largest pid_max: never a running process
HOURS_3 = 3 * 3600


# ------------------------------------------------------------------------------ processes
def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), os.environ.get("PYTHONPATH", "")])}


def _argv(*argv) -> list[str]:
    return [sys.executable, "-m", "giblet_store.cli", *map(str, argv)]


def cli(*argv, timeout: float = 300) -> subprocess.CompletedProcess:
    """``giblet-store ARGV`` in a new process; its exit status and output."""
    return subprocess.run(_argv(*argv), capture_output=True, text=True, env=_env(), timeout=timeout)


def spawn(*argv) -> subprocess.Popen:
    return subprocess.Popen(_argv(*argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())


def clean(p: subprocess.CompletedProcess | tuple) -> str:
    """The stderr of a finished command, checked for tracebacks and unexpected errors."""
    err = p.stderr if hasattr(p, "stderr") else p[1]
    assert "Traceback" not in err and "unexpected" not in err, err[-3000:]
    return err


_GC_LOOP = """
import contextlib, io, json, os, sys
from giblet_store.cli import main
store, stop = sys.argv[1:3]
while not os.path.exists(stop):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["gc", store, "--older-than", "0", "--json"])
    items = json.loads(out.getvalue())["items"] if code == 0 else []
    print(json.dumps({"code": code, "err": err.getvalue()[-2000:], "kept": sum(i["action"] == "keep" for i in items),
                      "removed": [i["path"] for i in items if i["removed"]]}), flush=True)
"""


def open_files(pid: int) -> list[str]:
    """The paths process ``pid`` has open now ([] once it has ended)."""
    out = []
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for fd in fds:
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
    return out


def wait_until(seen, proc: subprocess.Popen, what: str, timeout: float = 300):
    """Poll ``seen()`` every 2 ms until it is truthy (its value), failing if ``proc`` ends first."""
    t0 = time.monotonic()
    while not (got := seen()):
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the process ended (rc {proc.returncode}) before {what}: {out[-1000:]}{err[-3000:]}")
        assert time.monotonic() - t0 < timeout, f"timed out waiting for {what}"
        time.sleep(0.002)
    return got


# ------------------------------------------------------------------------------ files
def checksum(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` by relative name, folders and links named too (links not followed)."""
    out = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                out[rel] = "link -> " + os.readlink(p)
            elif os.path.isdir(p):
                out[rel] = "folder"
            else:
                out[rel] = hashlib.sha256(Path(p).read_bytes()).hexdigest()
    return out


def age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    for p in [path, *path.rglob("*")]:
        os.utime(p, (t, t), follow_symlinks=False)


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def outside(root: Path, *skip: str) -> dict:
    """snapshot(root) without the paths under ``skip`` (and the catalogue, which a write or gc may update)."""
    return {k: v for k, v in snapshot(root).items() if not k.startswith(("_catalog/", *skip))}


# ------------------------------------------------------------------------------ a reference store
@pytest.fixture(scope="module")
def refs(tmp_path_factory, model_dir):
    """Stimuli and a clean store of their codes: ``a``/``b`` (3 s, same header, other samples), ``s0``-``s2`` (1.5 s)."""
    d = tmp_path_factory.mktemp("realproc")
    stims = {"a": write_wav(d / "a.wav", synth_audio(3.0, 24000, seed=31), 24000),
             "b": write_wav(d / "b.wav", synth_audio(3.0, 24000, seed=32), 24000)}
    for i in range(3):
        stims[f"s{i}"] = write_wav(d / f"s{i}.wav", synth_audio(1.5, 24000, seed=40 + i), 24000)
    assert stims["a"].stat().st_size == stims["b"].stat().st_size
    store = d / "ref"
    assert main(["extract", *map(str, stims.values()), "--store", str(store), "--model", str(model_dir), *FAST]) == 0
    ref = open_store(store)
    by_sha = {e.attrs["source_sha256"]: e for e in ref.entries()}
    sha = {name: sha256_file(p) for name, p in stims.items()}
    assert set(by_sha) == set(sha.values())
    return SimpleNamespace(dir=d, stims=stims, store=store, sha=sha, by_sha=by_sha, model=model_dir,
                           key={name: by_sha[s].key for name, s in sha.items()})


def codes_of(root, entry) -> np.ndarray:
    return open_store(root).open(entry)["codes"].values


def assert_entries_are_clean(root: Path, refs) -> list:
    """Every codes entry in ``root`` is the clean store's entry of the bytes its ``source_sha256`` names."""
    entries = open_store(root).entries()
    for e in entries:
        ref = refs.by_sha.get(e.attrs["source_sha256"])
        assert ref is not None, f"{e.path} holds codes of bytes that are none of the stimuli"
        assert e.key == ref.key
        np.testing.assert_array_equal(codes_of(root, e), codes_of(refs.store, ref))
    assert verify_store(open_store(root)).ok
    return entries


def store_copy(refs, dest: Path, *names: str) -> Path:
    """A copy of the clean store holding only the entries of stimuli ``names``."""
    shutil.copytree(refs.store, dest)
    keep = {refs.key[n][:16] for n in names}
    for folder in (dest / "codes").iterdir():
        if folder.is_dir() and folder.name not in keep:
            shutil.rmtree(folder)
    assert main(["reindex", str(dest)]) == 0
    return dest


# ------------------------------------------------------------------------------ 1. links out of the store
@pytest.fixture
def victim(tmp_path, refs) -> Path:
    """A user's folder outside the store, 3 h old, holding names that look like a dead writer's of ``s0``."""
    v = tmp_path / "victim"
    (v / "project_a").mkdir(parents=True)
    (v / "project_a" / "thesis.tex").write_text("chapter 1")
    (v / "notes.txt").write_text("notes")
    k16 = refs.key["s0"][:16]
    for name in (f"{k16}-0badf00d", f"{k16}-0badf00d.done", f"{k16}-w{host_tag()}-{DEAD_PID}-0badf00d"):
        (v / name).mkdir()
        (v / name / "data.bin").write_bytes(b"precious")
    (v / f"{k16}-l{host_tag()}-{DEAD_PID}-0badf00d.lease").write_text("{}")
    age(v, HOURS_3)
    return v


def test_gc_verify_and_extract_processes_never_follow_a_staging_link(refs, victim, tmp_path):
    """Issue 21 #1: `_staging` replaced by a link to a user's folder; a gc that followed it emptied the folder."""
    root = store_copy(refs, tmp_path / "st", "s0")
    before = checksum(victim)
    shutil.rmtree(root / "_staging")
    (root / "_staging").symlink_to(victim)
    for older in ("1h", "0"):
        p = cli("gc", root, "--older-than", older)
        err = clean(p)
        assert p.returncode == 2 and "'_staging'" in err and "symbolic link" in err, err
        assert "remove the link itself" in err and checksum(victim) == before
    p = cli("verify", root, "--repair")
    assert p.returncode == 0 and "0 broken" in p.stdout, clean(p)
    assert checksum(victim) == before
    # a cache hit sweeps dead writers of its key: the dead writer's names in the victim stay
    p = cli("extract", refs.stims["s0"], "--store", root, "--model", refs.model, *FAST)
    assert p.returncode == 0 and " cached " in p.stdout, clean(p)
    assert checksum(victim) == before
    # a new entry (re-gridded from the cached frames: no model load) would stage and lease through the link
    p = cli("extract", refs.stims["s0"], "--store", root, "--model", refs.model, *FAST, "--tr", "0.75")
    err = clean(p)
    assert p.returncode == 2 and "'_staging'" in err and "symbolic link" in err, err
    assert checksum(victim) == before  # not even a lease was written into the user's folder


def test_gc_and_repair_processes_never_quarantine_into_a_link(refs, victim, tmp_path):
    root = store_copy(refs, tmp_path / "st", "s0")
    folder = root / "codes" / refs.key["s0"][:16]
    meta = folder / "zarr.json"
    meta.write_bytes(meta.read_bytes()[:-3])
    age(folder, HOURS_3)
    (root / "_quarantine").symlink_to(victim)
    before, entry = checksum(victim), files_under(folder)
    for argv in (("gc", root), ("verify", root, "--repair")):
        p = cli(*argv)
        err = clean(p)
        assert p.returncode == 2 and "'_quarantine'" in err and "symbolic link" in err, (argv, err)
        assert checksum(victim) == before and files_under(folder) == entry  # the entry stays where it was


# ------------------------------------------------------------------------------ 2. damaged entries, other folders
def _damage(folder: Path, how: str) -> None:
    meta = folder / "zarr.json"
    if how == "cut short":
        meta.write_bytes(meta.read_bytes()[:-3])
    elif how == "status writing":
        doc = json.loads(meta.read_text())
        doc["attributes"]["status"] = "writing"
        meta.write_text(json.dumps(doc))
    else:
        meta.unlink()


def test_gc_process_quarantines_damaged_entries_and_leaves_other_folders(refs, tmp_path):
    """Issue 21 #2: gc once printed "removed codes/<key16> (abandoned)" for each of these, chunks and all."""
    root = store_copy(refs, tmp_path / "st", "s0", "s1", "s2")
    damaged = {}
    for name, how in (("s0", "cut short"), ("s1", "status writing"), ("s2", "no zarr.json")):
        folder = root / "codes" / refs.key[name][:16]
        _damage(folder, how)
        damaged[f"codes/{folder.name}"] = files_under(folder)
    (root / "notes" / "drafts").mkdir(parents=True)
    (root / "notes" / "drafts" / "idea.md").write_text("keep me")
    (root / "codes" / "my-results").mkdir()
    (root / "codes" / "my-results" / "r.csv").write_text("a,b")
    (root / "_staging" / "my_copy_of_stimuli").mkdir()
    (root / "_staging" / "my_copy_of_stimuli" / "a.wav").write_bytes(b"RIFF")
    age(root, HOURS_3)
    kept = outside(root, *damaged)
    p = cli("gc", root, "--json")
    assert p.returncode == 0, clean(p)
    items = {i["path"]: i for i in json.loads(p.stdout)["items"]}
    for path, files in damaged.items():
        assert items[path]["action"] == "quarantine" and items[path]["moved_to"].startswith("_quarantine/")
        assert files_under(root / items[path]["moved_to"]) == files  # every chunk, byte for byte
        assert not (root / path).exists()
    assert items["notes"]["action"] == "leave" and items["_staging/my_copy_of_stimuli"]["action"] == "leave"
    assert not [i for i in items.values() if i["action"] == "remove"]
    assert outside(root, *damaged, "_quarantine/") == kept  # nothing else was touched
    p = cli("verify", root, "--repair")  # it once moved notes/drafts and codes/my-results to _quarantine too
    assert p.returncode == 0 and "0 broken" in p.stdout, clean(p)
    assert outside(root, *damaged, "_quarantine/") == kept
    # the same request, rerun in a process, rebuilds each entry (the quarantined copies stay)
    p = cli("extract", *(refs.stims[n] for n in ("s0", "s1", "s2")), "--store", root, "--model", refs.model, *FAST)
    assert p.returncode == 0 and p.stdout.count(" created ") == 3, clean(p)
    assert len(assert_entries_are_clean(root, refs)) == 3
    assert {str(p.relative_to(root)) for p in (root / "_quarantine").iterdir()} == {
        i["moved_to"] for i in items.values() if i["action"] == "quarantine"}
    assert (root / "notes" / "drafts" / "idea.md").read_text() == "keep me"


# ------------------------------------------------------------------------------ 3. a stimulus replaced mid-extract
def _replace(how: str, stim: Path, other: Path) -> None:
    if how == "rewrite":  # same inode, same size: only the bytes differ
        with open(stim, "r+b") as f:
            f.write(other.read_bytes())
    else:  # another file renamed over the path
        os.replace(other, stim)


@pytest.mark.parametrize("how", ["rewrite", "rename"])
def test_a_stimulus_replaced_while_an_extract_process_reads_it(refs, tmp_path, how):
    """Issue 21 #3: extract hashed A, loaded the model, then read B: B's codes cached under A's key.

    The swap comes as soon as the process has the stimulus or the model's weights open (the key's two
    hashes: the model is hashed after the stimulus, then loaded for seconds before the audio is read).
    Whatever the timing: exit 2 and the store unchanged, or the entry holds the codes of the bytes
    whose hash it carries.
    """
    stim, other = tmp_path / "stim.wav", tmp_path / "next.wav"
    shutil.copyfile(refs.stims["a"], stim)
    shutil.copyfile(refs.stims["b"], other)
    root = tmp_path / "st"
    open_store(root)
    before = snapshot(root)
    proc = spawn("extract", stim, "--store", root, "--model", refs.model, *FAST)
    try:
        weights = str(Path(refs.model) / "model.safetensors")
        wait_until(lambda: {str(stim), weights} & set(open_files(proc.pid)), proc, "the stimulus was opened")
        _replace(how, stim, other)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert sha256_file(stim) == refs.sha["b"]  # the swap really happened
    clean((out, err))
    if proc.returncode == 2:
        assert CHANGED in err and "nothing was stored" in err and snapshot(root) == before, err
        return
    assert proc.returncode == 0 and " created " in out, err
    (entry,) = assert_entries_are_clean(root, refs)  # the entry is the clean one of the hash it carries
    assert entry.attrs["source_sha256"] in (refs.sha["a"], refs.sha["b"])


# ------------------------------------------------------------------------------ 4. gc looping during writes
def _writer_ok(proc: subprocess.Popen, out: str, err: str) -> None:
    """A writer racing gc succeeds, or exits 2 saying its staging vanished and to rerun: never 1."""
    clean((out, err))
    assert proc.returncode in (0, 2), (proc.returncode, err[-3000:])
    if proc.returncode == 2:
        assert "vanished" in err and "rerun" in err, err[-3000:]


def test_gc_looping_with_older_than_0_never_breaks_extract_or_batch_processes(refs, tmp_path):
    """Issue 21 #5: `gc --older-than 0` during an extract killed it ("unexpected FileNotFoundError"), and a
    batch template untouched while its files encode was taken by gc, failing the batch after all the work."""
    root, stop, log = tmp_path / "st", tmp_path / "stop", tmp_path / "gc.jsonl"
    open_store(root)
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"model": str(refs.model), "bandwidths": [1.5], "trs": [1.5], "chunk_s": 1.0,
                                    "context_s": 0.5, "tr_chunk": 1,
                                    "stimuli": [str(refs.stims["s1"]), str(refs.stims["s2"])]}))
    with open(log, "w") as f:
        gc = subprocess.Popen([sys.executable, "-c", _GC_LOOP, str(root), str(stop)], stdout=f,
                              stderr=subprocess.STDOUT, env=_env())
    writers = []
    try:
        wait_until(lambda: log.read_text().count("\n") >= 1, gc, "the first gc pass")
        writers = [spawn("extract", refs.stims["a"], refs.stims["s0"], "--store", root, "--model", refs.model,
                         *FAST),
                   spawn("batch", manifest, "--store", root, "--workers", 1, "--no-progress")]
        done = [(w, *w.communicate(timeout=600)) for w in writers]
    finally:
        stop.touch()
        for p in (*writers, gc):
            try:
                p.wait(timeout=120)
            except subprocess.TimeoutExpired:
                p.kill()
    for w, out, err in done:
        _writer_ok(w, out, err)
    passes = [json.loads(line) for line in log.read_text().splitlines()]
    assert gc.returncode == 0 and len(passes) >= 2
    assert all(p["code"] == 0 and "unexpected" not in p["err"] for p in passes), passes
    assert sum(p["kept"] for p in passes) > 0  # gc did run while a write was in progress
    assert_entries_are_clean(root, refs)  # whatever was published is whole and right
    p = cli("extract", *(refs.stims[n] for n in ("a", "s0", "s1", "s2")), "--store", root, "--model",
            refs.model, *FAST)  # a rerun finishes whatever a refused writer left
    assert p.returncode == 0, clean(p)
    assert len(assert_entries_are_clean(root, refs)) == 4


# ------------------------------------------------------------------------------ 5. a writer killed mid-write
def test_gc_process_sweeps_a_killed_writer_and_nothing_else(refs, tmp_path):
    """An extract process SIGKILLed between staging and publishing leaves its lease and staging; hours
    later a gc process removes exactly those, while a live writer (this process: an old staging, a
    renewed lease), a complete entry and a user's folder stay."""
    import s3_writer
    from giblet_store.store.lease import Lease

    root = store_copy(refs, tmp_path / "st", "s0")
    (root / "notes").mkdir()
    (root / "notes" / "n.txt").write_text("mine")
    store, (ds, attrs, enc) = open_store(root), s3_writer.entry()
    dead16, live16 = refs.key["a"][:16], attrs["key"][:16]
    with Lease(store.storage, attrs["key"]):
        store.begin_write(ds, attrs, enc)  # a slow encode's template ...
        proc = spawn("extract", refs.stims["a"], "--store", root, "--model", refs.model, *FAST)
        try:
            wait_until(lambda: [n for n in os.listdir(root / "_staging") if n.startswith(f"{dead16}-w")], proc,
                       "the writer's staging")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
        assert proc.returncode == -signal.SIGKILL
        dead = sorted(n for n in os.listdir(root / "_staging") if n.startswith(dead16))
        assert [n for n in dead if n.endswith(".lease")] and [n for n in dead if f"{dead16}-w" in n], dead
        age(root, HOURS_3)  # hours later ...
        for lease in (root / "_staging").glob(f"{live16}-l*.lease"):
            os.utime(lease)  # ... the live writer has kept renewing its lease
        kept = outside(root, f"_staging/{dead16}", f"_staging/{live16}-l")
        p = cli("gc", root, "--json")
    assert p.returncode == 0, clean(p)
    items = json.loads(p.stdout)["items"]
    assert sorted(i["path"] for i in items if i["removed"]) == [f"_staging/{n}" for n in dead]
    assert {i["action"] for i in items if i["group"] == live16} == {"keep"}
    assert not [n for n in os.listdir(root / "_staging") if n.startswith(dead16)]
    assert outside(root, f"_staging/{dead16}", f"_staging/{live16}-l") == kept  # nothing else removed
    assert_entries_are_clean(root, refs)
