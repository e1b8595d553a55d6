"""`giblet-store gc`: abandoned staging objects and unpublished entries go; complete entries and writes in
progress (touched within --older-than) stay. Local directories and S3."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from giblet_store import open_store, verify_store
from giblet_store.cli import main
from giblet_store.errors import ParameterError, StoreError
from giblet_store.store.gc import collect, parse_age

import s3_writer
from helpers import write
from helpers import objects, writer


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def age(path: Path, seconds: float) -> None:
    """Make every file and folder under ``path`` ``seconds`` old."""
    t = time.time() - seconds
    for p in [path, *path.rglob("*")]:
        os.utime(p, (t, t))


def test_local_gc_removes_only_abandoned_staging(store, capsys):
    done = write(store, 1)
    root = Path(store.root)
    complete = tree(root / "features")
    old = root / "_staging" / "0123456789abcdef-deadbeef"  # a Store.write killed mid-write, 2 h ago
    (old / "emb" / "c").mkdir(parents=True)
    (old / "emb" / "c" / "0").write_bytes(b"x" * 10)
    (root / "_staging" / "0123456789abcdef-cafe0000.done").mkdir()
    (root / "_staging" / "0123456789abcdef-cafe0000.done" / "emb.0").write_text("id")
    age(old, 7200)
    age(root / "_staging" / "0123456789abcdef-cafe0000.done", 7200)
    live = root / "_staging" / "fedcba9876543210-00000000"  # a write in progress: touched just now
    (live / "emb").mkdir(parents=True)
    (live / "emb" / "zarr.json").write_text("{}")
    assert main(["gc", str(root), "--dry-run", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["items"]
    assert sorted(r["path"] for r in report if r["reason"] == "abandoned") == [
        "_staging/0123456789abcdef-cafe0000.done", "_staging/0123456789abcdef-deadbeef"]
    assert not any(r["removed"] for r in report) and old.exists()  # dry run: nothing removed
    assert main(["gc", str(root), "--older-than", "1h"]) == 0
    assert not old.exists() and not (root / "_staging" / "0123456789abcdef-cafe0000.done").exists()
    assert live.exists() and tree(root / "features") == complete  # live write and complete entry untouched
    assert [e.key for e in store.entries()] == [done.key]
    assert main(["gc", str(root), "--older-than", "0s"]) == 0 and not live.exists()
    assert tree(root / "features") == complete


def test_bad_age_is_refused():
    assert parse_age("90s") == 90 and parse_age("30m") == 1800 and parse_age("2d") == 172800
    with pytest.raises(ParameterError, match="duration like"):
        parse_age("soon")
    assert parse_age(90) == 90.0 and parse_age(0.5) == 0.5
    for bad, match in ((float("nan"), "finite number"), (float("inf"), "finite number"), (True, "finite number"),
                       (-1, ">= 0, got -1")):  # NaN once passed and then matched nothing as stale
        with pytest.raises(ParameterError, match=match):
            parse_age(bad)
    assert main(["gc", "/nonexistent-store-13", "--older-than", "yesterday"]) == 2


def test_s3_gc_after_a_killed_writer(s3_url):
    other = write(open_store(s3_url), 3)
    kept = objects(s3_url, other.path)
    p = writer(s3_url, "chunk", 3)
    p.communicate(timeout=300)
    assert p.returncode == -signal.SIGKILL
    store = open_store(s3_url)
    left = objects(s3_url)
    key16 = s3_writer.entry()[1]["key"][:16]
    assert any(k.startswith(f"features/{key16}/") for k in left)  # an unpublished entry folder
    assert any(k.startswith(f"_staging/{key16}-") for k in left)  # and its markers
    assert all(not it.removed for it in collect(store, "1h"))  # just written: a write in progress
    later = time.time() + 2 * 3600
    items = collect(store, "1h", now=later)
    removed = sorted(it.path for it in items if it.removed)
    assert removed[0].startswith(f"_staging/{key16}-") and f"features/{key16}" in removed
    assert not any(k.startswith((f"features/{key16}/", "_staging/")) for k in objects(s3_url))
    assert objects(s3_url, other.path) == kept and [e.key for e in store.entries()] == [other.key]
    ds, attrs, enc = s3_writer.entry()
    assert store.write(ds, attrs, enc)[1]  # a rerun after gc publishes normally


# ------------------------------------------------------------------------------ issue 21: gc never loses data
def checksum(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def victim(tmp_path) -> Path:
    """A user's folder outside any store, 3 h old: gc must never touch it."""
    v = tmp_path / "victim"
    (v / "project_a").mkdir(parents=True)
    (v / "project_a" / "thesis.tex").write_text("chapter 1")
    (v / "notes.txt").write_text("notes")
    age(v, 3 * 3600)
    return v


def test_gc_never_follows_a_staging_link_out_of_the_store(store, victim, capsys):
    root = Path(store.root)
    before = checksum(victim)
    shutil.rmtree(root / "_staging", ignore_errors=True)
    (root / "_staging").symlink_to(victim)  # anyone who can write a shared store could do this
    assert main(["gc", str(root)]) == 2
    err = capsys.readouterr().err
    assert "'_staging'" in err and "symbolic link" in err and "remove the link itself" in err
    assert checksum(victim) == before
    with pytest.raises(StoreError, match="symbolic link"):
        collect(store, "0s")
    assert checksum(victim) == before


def test_gc_leaves_links_inside_staging_and_kind_folders(store, victim, capsys):
    root = Path(store.root)
    before = checksum(victim)
    (root / "_staging").mkdir(exist_ok=True)
    (root / "_staging" / "0123456789abcdef-deadbeef").symlink_to(victim)  # one of our names, but a link
    (root / "_staging" / "0123456789abcdef-deadbeef.done").symlink_to(victim / "project_a")
    (root / "codes").mkdir()
    (root / "codes" / "fedcba9876543210").symlink_to(victim)
    os.utime(root / "_staging", (0, 0))
    assert main(["gc", str(root), "--older-than", "0s", "--json"]) == 0
    items = {i["path"]: i for i in json.loads(capsys.readouterr().out)["items"]}
    for p in ("_staging/0123456789abcdef-deadbeef", "_staging/0123456789abcdef-deadbeef.done",
              "codes/fedcba9876543210"):
        assert items[p]["action"] == "leave" and "symbolic link" in items[p]["reason"] and not items[p]["removed"]
    assert checksum(victim) == before and (root / "codes" / "fedcba9876543210").is_symlink()


def test_storage_delete_refuses_a_link_anywhere_below_the_root(store, victim):
    root = Path(store.root)
    before = checksum(victim)
    (root / "_staging").mkdir(exist_ok=True)
    (root / "_staging" / "inner").symlink_to(victim)
    for rel in ("_staging/inner", "_staging/inner/project_a", "_staging/inner/notes.txt"):
        with pytest.raises(StoreError, match="symbolic link"):
            store.storage.delete(rel)
    with pytest.raises(StoreError, match="symbolic link"):
        store.storage.move("_staging/inner/project_a", "_staging/moved")
    assert checksum(victim) == before


@pytest.mark.parametrize("damage", ["cut short", "status writing", "no zarr.json"])
def test_local_gc_quarantines_a_damaged_entry_and_never_deletes_it(store, damage, capsys):
    entry = write(store, 5)
    root = Path(store.root)
    folder = root / entry.path
    meta = folder / "zarr.json"
    if damage == "cut short":
        meta.write_bytes(meta.read_bytes()[:-3])
    elif damage == "status writing":
        doc = json.loads(meta.read_text())
        doc["attributes"]["status"] = "writing"
        meta.write_text(json.dumps(doc))
    else:
        meta.unlink()
    chunks = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    age(folder, 3 * 3600)
    with pytest.warns(Warning, match="moved broken entry"):
        items = collect(store, "1h")
    (item,) = [i for i in items if i.path == entry.path]
    assert item.action == "quarantine" and item.removed and item.moved_to.startswith("_quarantine/")
    moved = root / item.moved_to
    assert {str(p.relative_to(moved)): p.read_bytes() for p in moved.rglob("*") if p.is_file()} == chunks
    assert not folder.exists()


def test_gc_leaves_and_reports_folders_it_does_not_own(store, capsys):
    write(store, 6)
    root = Path(store.root)
    (root / "notes" / "drafts").mkdir(parents=True)
    (root / "notes" / "drafts" / "idea.md").write_text("keep me")
    (root / "features" / "my-results").mkdir()
    (root / "_staging" / "my_copy_of_stimuli").mkdir(parents=True)
    (root / "_staging" / "my_copy_of_stimuli" / "a.wav").write_bytes(b"RIFF")
    age(root, 3 * 3600)
    before = checksum(root)
    assert main(["gc", str(root), "--older-than", "0s", "--json"]) == 0
    items = {i["path"]: i for i in json.loads(capsys.readouterr().out)["items"]}
    assert items["notes"]["action"] == "leave" and "not a kind" in items["notes"]["reason"]
    assert items["features/my-results"]["action"] == "leave"
    assert items["_staging/my_copy_of_stimuli"]["action"] == "leave"
    assert not any(i["removed"] for i in items.values())
    assert {k: v for k, v in checksum(root).items() if not k.startswith("_catalog")} == {
        k: v for k, v in before.items() if not k.startswith("_catalog")}


def test_a_live_lease_keeps_a_batch_template_whatever_older_than_says(store):
    """A batch template is untouched while its workers encode whole files: the client's lease keeps it."""
    from giblet_store.store.lease import Lease

    ds, attrs, enc = s3_writer.entry()
    root = Path(store.root)
    with Lease(store.storage, attrs["key"]):
        staging = store.begin_write(ds, attrs, enc)
        age(root / "_staging", 2 * 3600)  # no chunk written for 2 h: the encode is slow ...
        for p in (root / "_staging").glob("*.lease"):
            os.utime(p)  # ... while the writer's thread renews its lease
        items = collect(store, "0s")
        assert {i.action for i in items if i.group == attrs["key"][:16]} == {"keep"}
        assert all("lease is live" in i.reason for i in items if i.group == attrs["key"][:16])
        assert (root / staging.data).is_dir()
    # the writer is gone (its lease removed): the same template is abandoned
    items = collect(store, "1h")
    assert any(i.path == staging.data and i.removed for i in items) and not (root / staging.data).exists()


def test_a_killed_writers_lease_expires(store, monkeypatch):
    from giblet_store.store import lease

    ds, attrs, enc = s3_writer.entry()
    root = Path(store.root)
    store.begin_write(ds, attrs, enc)
    held = lease.Lease(store.storage, attrs["key"])
    held.add(attrs["key"])  # written once, never renewed: its writer was killed
    age(root / "_staging", lease.EXPIRES_S + 60)
    items = collect(store, "0s")
    assert all(i.removed for i in items if i.group == attrs["key"][:16])
    assert not any(p.name.endswith(".lease") for p in (root / "_staging").iterdir())


def test_gc_during_a_write_never_breaks_it(store, monkeypatch):
    """`gc --older-than 0` while Store.write stages (it once died with 'unexpected FileNotFoundError')."""
    import giblet_store.store.core as core

    real = core.publish_group
    seen = []

    def gc_then_publish(st, target, *a):
        seen.extend(collect(st, "0s"))  # the staging folder is complete and untouched for a moment
        return real(st, target, *a)

    monkeypatch.setattr(core, "publish_group", gc_then_publish)
    entry = write(store, 7)
    assert seen and all(i.action == "keep" for i in seen if i.group == entry.key[:16])
    assert store.get(entry.key).open().emb.shape[0] > 0


def test_a_write_whose_staging_vanishes_says_so(store, monkeypatch):
    import giblet_store.store.core as core

    def vanish(st, target, *a):
        shutil.rmtree(Path(st.root) / target)  # removed by hand (or by a collector that ignores leases)
        raise FileNotFoundError(target)

    monkeypatch.setattr(core, "publish_group", vanish)
    with pytest.raises(StoreError, match="vanished while it was written.*nothing was published.*rerun"):
        write(store, 8)
    assert store.entries() == []


def test_s3_gc_keeps_a_live_write_when_its_clock_runs_an_hour_ahead(s3_url, monkeypatch):
    from giblet_store.store import lease

    store = open_store(s3_url)
    ds, attrs, enc = s3_writer.entry()
    with lease.Lease(store.storage, attrs["key"]):
        store.begin_write(ds, attrs, enc)
        real_time = time.time
        monkeypatch.setattr(lease.time, "time", lambda: real_time() + 3600)  # the collector's clock
        items = collect(store, "1h")
        monkeypatch.setattr(lease.time, "time", real_time)
    mine = [i for i in items if i.group == attrs["key"][:16]]
    assert mine and all(i.action == "keep" for i in mine)


def test_s3_a_stalled_final_put_never_publishes_an_empty_entry(s3_url, monkeypatch):
    """The final zarr.json PUT stalls; meanwhile gc runs with a short age: the lease keeps the chunks.
    And if something removes them anyway, the writer withdraws the entry instead of reporting it."""
    import threading

    from giblet_store.store.storage import Storage

    store = open_store(s3_url)
    ds, attrs, enc = s3_writer.entry()
    final = f"features/{attrs['key'][:16]}/zarr.json"
    real_put = Storage.put
    report = {}

    def stalled_put(self, path, data):
        if path == final:
            t = threading.Thread(target=lambda: report.setdefault("gc", collect(open_store(s3_url), "0s")))
            t.start()
            t.join()  # gc ran while this PUT was in flight
        return real_put(self, path, data)

    monkeypatch.setattr(Storage, "put", stalled_put)
    entry, created = store.write(ds, attrs, enc)
    assert created and all(i.action == "keep" for i in report["gc"] if i.group == attrs["key"][:16])
    assert verify_store(store).ok

    other = open_store(s3_url)
    ds2, attrs2, enc2 = s3_writer.entry()
    attrs2 = {**attrs2, "key": "f" * 64, "inputs": {"other": 1}}
    final2 = f"features/{'f' * 16}/zarr.json"

    def put_after_chunks_vanish(self, path, data):
        if path == final2:
            for k in objects(s3_url, f"features/{'f' * 16}"):
                if "/c/" in k:
                    other.storage.delete(k)  # a collector that did not honour the lease
        return real_put(self, path, data)

    monkeypatch.setattr(Storage, "put", put_after_chunks_vanish)
    with pytest.raises(StoreError, match="lost .* chunk.*withdrawn, nothing is visible"):
        other.write(ds2, attrs2, enc2)
    assert [e.key for e in open_store(s3_url).entries()] == [entry.key]
    assert not any(k == final2 for k in objects(s3_url))
