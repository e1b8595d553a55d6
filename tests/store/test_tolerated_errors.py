"""Excepts tolerate only what they must (a path removed concurrently); every other OS error is raised
with what failed, or logged when swallowing it is the design (the catalogue is a cache)."""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

import pytest

from giblet_store.store import catalog, gc
from giblet_store.cli import main
from giblet_store.errors import StoreError

from helpers import write


def _failing(orig, marker: str, exc: OSError):
    def fn(path, *a, **k):
        if marker in str(path):
            raise exc
        return orig(path, *a, **k)
    return fn


def test_unreadable_entry_document_is_an_error_not_a_missing_entry(store, monkeypatch):
    a = write(store, 1)
    shutil.rmtree(Path(store.root) / "_catalog")  # no catalogue: every zarr.json is read
    name = a.path.split("/")[1]
    import giblet_store.store.storage as storage_mod  # local reads go through Storage.get -> read_regular

    monkeypatch.setattr(storage_mod, "read_regular", _failing(storage_mod.read_regular, f"{name}/zarr.json",
                                                              PermissionError(13, "Permission denied")))
    with pytest.raises(StoreError, match=rf"cannot read 'features/{name}/zarr.json'.*PermissionError.*permissions"):
        store.find(kind="features")


def test_entry_removed_between_listing_and_reading_is_skipped(store, monkeypatch):
    a, b = write(store, 1), write(store, 2)
    shutil.rmtree(Path(store.root) / "_catalog")
    name = a.path.split("/")[1]
    import giblet_store.store.storage as storage_mod  # local reads go through Storage.get -> read_regular

    monkeypatch.setattr(storage_mod, "read_regular", _failing(storage_mod.read_regular, f"{name}/zarr.json",
                                                              FileNotFoundError(2, "gone")))
    assert [e.key for e in store.find(kind="features")] == [b.key]


def test_storage_delete_tolerates_only_a_file_already_gone(store, monkeypatch):
    write(store, 1)
    log = next((Path(store.root) / "_catalog/features").rglob("*.json"))
    rel = str(log.relative_to(store.root))
    # storage.delete unlinks by name relative to its folder's descriptor (no link followed)
    monkeypatch.setattr(os, "unlink", _failing(os.unlink, log.name, FileNotFoundError(2, "gone")))
    store.storage.delete(rel)  # a concurrent compactor removed it: fine
    monkeypatch.setattr(os, "unlink", _failing(os.unlink, log.name, PermissionError(13, "Permission denied")))
    with pytest.raises(PermissionError):
        store.storage.delete(rel)
    assert log.exists()


def test_catalogue_write_failure_is_logged_not_silent(store, monkeypatch, caplog):
    a = write(store, 1)

    def put(path, data):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(store.storage, "put", put)
    with caplog.at_level(logging.WARNING, logger="giblet_store.store.catalog"):
        catalog.record(store, a)
        catalog.kind_entries(store, "features", maintain=True)
    text = caplog.text
    assert f"could not record features entry {a.key[:16]}" in text and "Permission denied" in text
    assert "could not rewrite the features catalogue" in text


def test_gc_does_not_take_an_unreadable_age_for_abandoned(store, monkeypatch, capsys):
    root = Path(store.root)
    old = root / "_staging" / "0123456789abcdef-deadbeef"
    (old / "emb").mkdir(parents=True)
    (old / "emb" / "zarr.json").write_text("{}")
    t = time.time() - 7200
    for p in [old, *old.rglob("*")]:
        os.utime(p, (t, t))
    monkeypatch.setattr(gc.os, "lstat", _failing(os.lstat, "emb/zarr.json", PermissionError(13, "Permission denied")))
    assert main(["gc", str(root), "--older-than", "1h"]) == 2
    err = capsys.readouterr().err
    assert "gc cannot read the age of" in err and "emb/zarr.json" in err and "Traceback" not in err
    monkeypatch.undo()
    assert (old / "emb" / "zarr.json").exists()  # before: age 0 read as "very old" and the folder was removed
    monkeypatch.setattr(gc.os, "stat", _failing(os.stat, "emb/zarr.json", FileNotFoundError(2, "gone")))
    assert main(["gc", str(root), "--older-than", "1h"]) == 0 and not old.exists()


def test_a_stray_temp_file_that_cannot_be_removed_is_logged_not_raised(store, monkeypatch, caplog):
    from giblet_store.store.staging import StagedWriter

    folder = Path(store.root) / "features" / "sweep"
    folder.mkdir(parents=True)
    for n in ("x.partial", "y.partial", "keep.json"):
        (folder / n).write_bytes(b"")
    unlink = _failing(os.unlink, "x.partial", PermissionError(13, "Permission denied"))
    monkeypatch.setattr(os, "unlink", _failing(unlink, "y.partial", FileNotFoundError(2, "gone")))
    with caplog.at_level(logging.WARNING, logger="giblet_store.store.staging"):
        StagedWriter(store)._sweep_partials("features/sweep")  # a publish must not fail on a stray temp file
    assert "could not remove the temporary file" in caplog.text and "x.partial" in caplog.text
    assert "Permission denied" in caplog.text and "y.partial" not in caplog.text  # already gone: nothing to say


def test_an_unwritable_model_registry_is_logged(tmp_path, monkeypatch, caplog):
    from giblet_store.codec.registry import registered_model_dirs, remember_model

    (tmp_path / "afile").write_text("")
    monkeypatch.setenv("GIBLET_STORE_CACHE", str(tmp_path / "afile" / "cache"))  # under a file: cannot be made
    with caplog.at_level(logging.WARNING, logger="giblet_store.codec.registry"):
        remember_model("ab" * 32, tmp_path)
    assert "could not remember where the model abababababab... lives" in caplog.text
    assert "GIBLET_STORE_CACHE" in caplog.text and registered_model_dirs("ab" * 32) == []


def test_random_model_dir_tolerates_only_losing_the_race(tmp_path, monkeypatch):
    from giblet_store import testing
    from giblet_store.cli import demo

    monkeypatch.setenv("GIBLET_STORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(testing, "save_test_model", lambda d, seed: (Path(d) / "config.json").write_text("{}"))
    orig = os.replace

    def lost_race(src, dst):  # another process publishes the same model first
        shutil.copytree(src, dst)
        raise OSError(39, "Directory not empty")

    monkeypatch.setattr(os, "replace", lost_race)
    d = demo.random_model_dir()
    assert (d / "config.json").exists() and sorted(p.name for p in d.parent.iterdir()) == [d.name]  # no leftover
    shutil.rmtree(d)
    monkeypatch.setattr(os, "replace", lambda src, dst: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
    with pytest.raises(PermissionError):
        demo.random_model_dir()
    monkeypatch.setattr(os, "replace", orig)
