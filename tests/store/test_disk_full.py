"""A write that finds no room (issue 21: disk full / ``ulimit -f``), in-process: zarr's lowest write function
fails with ENOSPC at its k-th call, for every k of an extract and an ingest. Each run either ends with exit 2,
a message naming the store-relative file, and the store byte-identical (no ``*.partial``, no staging); or,
when only the catalogue (a cache) could not be written, with the entry stored exactly as a clean run stores it.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pytest
import zarr.storage._local as zlocal

from giblet_store.cli import main
from giblet_store.errors import DiskFullError
from giblet_store.store import root as root_mod
from giblet_store.testing import synth_audio, write_wav

from helpers import snapshot, write_series, synth

FAST = ["--bandwidth", "1.5", "--chunk-seconds", "1", "--context-seconds", "0.5"]


def _full_at(monkeypatch, k: int, err: int = errno.ENOSPC) -> list:
    """Make zarr's ``_put`` fail at its k-th call as a full disk does: its temporary file made, the write refused."""
    calls, orig = [], zlocal._put

    def put(path, value, exclusive=False):
        calls.append(path)
        if len(calls) == k:
            path.parent.mkdir(parents=True, exist_ok=True)
            with zlocal._atomic_write(path, "wb", exclusive=exclusive):
                raise OSError(err, "No space left on device" if err == errno.ENOSPC else "File too large")
        return orig(path, value, exclusive)

    monkeypatch.setattr(zlocal, "_put", put)
    return calls


def _leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.name.endswith(".partial") or (p.parent.name == "_staging" and p.name != "zarr.json"))


def _entries(root: Path, kind: str) -> dict:
    return {k: v for k, v in snapshot(root).items() if k.startswith(f"{kind}/")}


def _each_k(tmp_path, monkeypatch, capsys, caplog, base: Path, argv, kind: str, clean: dict) -> tuple[int, int]:
    """Run ``argv`` (``{st}``: a fresh copy of ``base``) failing at every write in turn; (refused, stored) counts."""
    refused = stored = 0
    for k in range(1, 200):
        st = tmp_path / f"k{k}"
        shutil.copytree(base, st)
        before = snapshot(st)
        with monkeypatch.context() as m:
            calls = _full_at(m, k)
            code = main([a.format(st=st) for a in argv])
        out, err = capsys.readouterr()
        if len(calls) < k:  # every write of the run passed: k went past the last
            assert code == 0 and refused > 0
            return refused, stored
        assert "Traceback" not in err and "unexpected error" not in err
        assert _leftovers(st) == [], (k, code, err)
        if code == 2:
            refused += 1
            assert "no space left on device while writing " in err and "nothing was stored" in err, err
            assert "Free some space" in err and str(st) in err
            assert snapshot(st) == before, k
        else:  # the entry was published; only the catalogue (a cache) missed the write: said as a warning
            assert code == 0 and "could not record" in caplog.text + err, (k, err)
            stored += 1
            assert _entries(st, kind) == clean, k
        shutil.rmtree(st)
        caplog.clear()
    raise AssertionError("more than 200 writes")


def test_extract_with_a_full_disk_at_every_write(tmp_path, monkeypatch, capsys, caplog, model_dir):
    clip = write_wav(tmp_path / "clip.wav", synth_audio(2.0, 24000, seed=5), 24000)
    base, clean = tmp_path / "base", tmp_path / "clean"
    argv = ["extract", str(clip), "--store", "{st}", "--model", str(model_dir), *FAST]
    assert main([a.format(st=base) for a in argv]) == 0
    shutil.rmtree(base / "codes")  # a store with its root and staging groups, no entry yet
    shutil.copytree(base, clean)
    assert main([a.format(st=clean) for a in argv]) == 0
    capsys.readouterr()
    refused, stored = _each_k(tmp_path, monkeypatch, capsys, caplog, base, argv, "codes", _entries(clean, "codes"))
    assert refused >= 10 and stored >= 1  # the lease, the staging's every document and chunk; then the catalogue


def test_ingest_with_a_full_disk_at_every_write(tmp_path, monkeypatch, capsys, caplog):
    bold = write_series(tmp_path / "bold.nii", synth(n=12))
    base, clean = tmp_path / "base", tmp_path / "clean"
    argv = ["ingest-fmri", "{st}", str(bold), "--subject", "s1"]
    assert main([a.format(st=base) for a in argv]) == 0
    shutil.rmtree(base / "fmri")
    shutil.copytree(base, clean)
    assert main([a.format(st=clean) for a in argv]) == 0
    capsys.readouterr()
    refused, stored = _each_k(tmp_path, monkeypatch, capsys, caplog, base, argv, "fmri", _entries(clean, "fmri"))
    assert refused >= 10 and stored >= 1


@pytest.mark.parametrize("k", [1, 2, 5, 9])
@pytest.mark.parametrize("bids", [False, True], ids=["nifti", "bids"])
def test_a_new_store_a_failed_write_created_is_removed(tmp_path, monkeypatch, capsys, k, bids):
    """A store this command created is gone again, whichever write found no room (ingest-fmri, and --bids)."""
    from giblet_store.testing import make_bids

    st = tmp_path / "new" / "st"
    if bids:
        make_bids(tmp_path / "in")
        argv = ["ingest-fmri", str(st), "--bids", str(tmp_path / "in"), "--task", "movie", "--derivatives", "fmriprep"]
    else:
        (tmp_path / "in").mkdir()
        argv = ["ingest-fmri", str(st), str(write_series(tmp_path / "in" / "bold.nii", synth(n=12))), "--subject", "s1"]
    with monkeypatch.context() as m:
        _full_at(m, k, errno.EFBIG)
        assert main(argv) == 2
    err = capsys.readouterr().err
    assert "file size limit (ulimit -f) reached while writing " in err and "Raise the file-size limit" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_store_creation_with_a_full_disk_leaves_nothing(tmp_path, monkeypatch, capsys):
    real_open = open

    def full_open(path, mode="r", *a, **kw):
        f = real_open(path, mode, *a, **kw)
        if "w" in mode and str(path).endswith(".partial"):
            f.close()
            raise OSError(errno.ENOSPC, "No space left on device")
        return f

    monkeypatch.setattr(root_mod, "open", full_open, raising=False)
    (tmp_path / "empty").mkdir()
    for st in (tmp_path / "a" / "b" / "st", tmp_path / "empty"):
        with pytest.raises(DiskFullError, match=r"no space left on device while writing zarr.json \(the root "
                                                r"document of the new store .*\); no store was created"):
            from giblet_store import open_store

            open_store(st)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"] and not any((tmp_path / "empty").iterdir())


# ---- a failed first write of a kind racing another writer's first entry of that kind (both orders; helpers.write
# writes `features` entries)
def test_a_failed_first_write_leaves_the_group_of_an_entry_published_meanwhile(tmp_path, monkeypatch):
    """The failed write looked (only an empty group document), deleted it; the other writer then renamed its entry
    in: the folder is no longer empty, so the document it deleted is put back."""
    import zarr

    from giblet_store import open_store
    from giblet_store.store.storage import Storage
    from helpers import write

    other = open_store(tmp_path / "other")
    ready = tmp_path / "other" / write(other, 1).path  # the other writer's entry, whole, about to be renamed in
    st = open_store(tmp_path / "st")
    st.storage.ensure_group("features")  # the other writer's ensure_group, after the failed write's first look
    delete = Storage.delete

    def delete_then_publish(self, rel):
        delete(self, rel)
        if rel == "features/zarr.json":
            ready.rename(tmp_path / "st" / "features" / ready.name)

    monkeypatch.setattr(Storage, "delete", delete_then_publish)
    st.storage.remove_unused_group("features")  # the failed write's clean-up
    monkeypatch.undo()
    assert (tmp_path / "st" / "features" / "zarr.json").is_file()
    assert zarr.open_group(str(tmp_path / "st"), path="features", mode="r").attrs.asdict() == {}
    assert [e.path for e in open_store(tmp_path / "st").entries()] == [f"features/{ready.name}"]


def test_a_first_entry_is_published_when_a_failed_write_removed_the_kind_folder_under_it(tmp_path, monkeypatch):
    """The other order: the failed write removed the empty kind folder between this writer's ensure_group and
    its rename; the rename makes the group again and publishes."""
    from giblet_store import open_store, verify_store
    from giblet_store.store.storage import Storage
    from helpers import write

    st = open_store(tmp_path / "st")
    move, raced = Storage.move, []

    def remove_kind_then_move(self, src, dst):
        if src.startswith("_staging/") and not raced:
            raced.append(dst)
            self.remove_unused_group("features")  # exactly the failed write's clean-up: the folder goes
            assert not (tmp_path / "st" / "features").exists()
        return move(self, src, dst)

    monkeypatch.setattr(Storage, "move", remove_kind_then_move)
    entry = write(st, 1)
    monkeypatch.undo()
    assert raced == [entry.path]
    assert (tmp_path / "st" / "features" / "zarr.json").is_file()
    assert [e.path for e in open_store(tmp_path / "st").entries()] == [entry.path]
    assert verify_store(open_store(tmp_path / "st")).ok
