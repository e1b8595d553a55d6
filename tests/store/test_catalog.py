"""The catalogue (giblet_store.store.catalog): find/ls from a per-kind index, never an incomplete entry, never a
complete one missed; stale, missing, old-version catalogues repaired; `giblet-store reindex`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from giblet_store import content_key, open_store
from giblet_store.store import catalog
from giblet_store.cli import main

import s3_writer
from helpers import write

INDEX = f"_catalog/features/{catalog.INDEX}"


def scan(store) -> list[str]:
    """Complete entry keys by reading every zarr.json (the pre-catalogue way)."""
    return sorted(e.key for e in store.entries(include_incomplete=True) if e.attrs.get("status") == "complete")


def count_reads(monkeypatch, store) -> list[str]:
    """Paths of entry zarr.json documents read through the store's filesystem from now on."""
    reads = []
    orig = type(store.fs).cat_file

    def cat_file(self, path, *a, **k):
        if path.endswith("/zarr.json") and "/_catalog/" not in path:
            reads.append(path)
        return orig(self, path, *a, **k)

    monkeypatch.setattr(type(store.fs), "cat_file", cat_file)
    return reads


def test_find_answers_from_the_index_without_reading_entries(store, monkeypatch):
    n = catalog.COMPACT_AT + 6
    entries = [write(store, i) for i in range(n)]
    root = Path(store.root)
    # the 1st publish made the index, the 66th folded 65 log records into it; 4 records since
    assert len(list((root / "_catalog/features/log").iterdir())) == n - catalog.COMPACT_AT - 2
    index = json.loads((root / INDEX).read_text())
    assert index["catalog_version"] == catalog.CATALOG_VERSION and len(index["records"]) == catalog.COMPACT_AT + 2
    reads = count_reads(monkeypatch, store)
    before = sorted(str(p) for p in root.rglob("*"))
    assert sorted(e.key for e in store.find(kind="features")) == sorted(e.key for e in entries)
    hits = store.find(kind="features", tr_s=0.5)
    assert sorted(e.key for e in hits) == sorted(e.key for e in entries if e.attrs["tr_s"] == 0.5)
    assert reads == []  # no entry was read one by one
    assert sorted(str(p) for p in root.rglob("*")) == before  # queries never write
    assert sorted(e.key for e in entries) == scan(store)
    assert hits[0].attrs == store.storage.read_group_attrs(hits[0].path)  # the record is the entry's own attributes


def test_never_lists_incomplete_never_misses_complete(store):
    a, b = write(store, 1), write(store, 2)
    root = Path(store.root)
    # a writer that crashed between publishing and recording: found by the listing, then recorded
    (root / "_catalog/features/log" / f"{b.path.split('/')[1]}.json").unlink()
    # an entry copied in by hand (another key), and a folder that is still being written
    copied = root / "features" / ("f" * 16)
    shutil.copytree(root / a.path, copied)
    doc = json.loads((copied / "zarr.json").read_text())
    doc["attributes"]["key"] = "f" * 64
    (copied / "zarr.json").write_text(json.dumps(doc))
    partial = root / "features" / ("e" * 16)
    shutil.copytree(root / a.path, partial)
    doc["attributes"].update(key="e" * 64, status="writing")
    (partial / "zarr.json").write_text(json.dumps(doc))
    assert sorted(e.key for e in store.find(kind="features")) == sorted([a.key, b.key, "f" * 64]) == scan(store)
    catalog.kind_entries(store, "features", maintain=True)  # what the next compaction does
    index = json.loads((root / INDEX).read_text())["records"]
    assert sorted(index) == sorted([a.path.split("/")[1], b.path.split("/")[1], "f" * 16])  # repaired
    # deleted by hand: dropped; deleted by the API: its record goes too, so a rewrite is not listed early
    shutil.rmtree(copied)
    store.delete(b)
    assert [e.key for e in store.find(kind="features")] == [a.key]
    assert "f" * 16 not in json.loads((root / INDEX).read_text())["records"]
    shutil.copytree(root / a.path, root / b.path)  # b's folder reappears, unpublished (no complete status)
    d2 = json.loads((root / b.path / "zarr.json").read_text())
    d2["attributes"].update(key=b.key, status="writing")
    (root / b.path / "zarr.json").write_text(json.dumps(d2))
    assert [e.key for e in store.find(kind="features")] == [a.key]


def test_missing_or_old_catalogue_is_rebuilt_and_reindex(store, tmp_path, capsys):
    entries = [write(store, i) for i in range(5)]
    root = Path(store.root)
    keys = sorted(e.key for e in entries)
    shutil.rmtree(root / "_catalog")  # a store written by an older giblet_store
    assert sorted(e.key for e in store.find()) == keys  # found by (parallel) reads
    assert not (root / "_catalog").exists()  # a query never writes
    entries.append(write(store, 5))  # the next publish rebuilds the index from the entries
    assert len(json.loads((root / INDEX).read_text())["records"]) == 6
    (root / INDEX).write_text("{not json")  # unreadable: read everything, rebuilt by reindex
    assert sorted(e.key for e in open_store(root, "r").find()) == sorted(e.key for e in entries)
    assert main(["reindex", str(root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"entries": [], "counts": {"features": 6}}
    assert json.loads((root / INDEX).read_text())["catalog_version"] == catalog.CATALOG_VERSION
    assert main(["ls", str(root), "--kind", "features", "--where", "tr_s=0.5", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["entries"]) == 3


def test_catalogue_on_s3(s3_url, monkeypatch):
    import s3fs

    store = open_store(s3_url)
    entries = [write(store, i) for i in range(4)]
    fs = s3fs.S3FileSystem(use_listings_cache=False)
    root = s3_url.split("://", 1)[1]
    # an entry copied in by hand (server-side copies of every object, another key)
    src = f"{root}/{entries[0].path}"
    for p in fs.find(src):
        fs.copy(p, p.replace(entries[0].path, "features/" + "f" * 16))
    doc = json.loads(fs.cat_file(f"{root}/features/{'f' * 16}/zarr.json"))
    doc["attributes"]["key"] = "f" * 64
    fs.pipe_file(f"{root}/features/{'f' * 16}/zarr.json", json.dumps(doc).encode())
    want = sorted([e.key for e in entries] + ["f" * 64])
    assert sorted(e.key for e in store.find(kind="features")) == want == scan(store)
    reads = count_reads(monkeypatch, store)
    assert sorted(e.key for e in open_store(s3_url, "r").find(kind="features")) == want and reads == []


def test_reindex_that_cannot_write_the_index_fails_and_says_so(tmp_path, capsys):
    """issue 21: reindex exited 0 when its index could not be written (only a log warning)."""
    from pathlib import Path

    from giblet_store import open_store
    from giblet_store.cli import main
    from giblet_store.errors import StoreError
    from giblet_store.store.catalog import reindex

    from helpers import snapshot, write

    store = open_store(tmp_path / "st")
    write(store, 0)
    kind = store.entries()[0].kind
    index = next((Path(store.root) / "_catalog" / kind).glob("index*.json"))
    index.unlink()
    (index / "in-the-way").mkdir(parents=True)  # a folder where the index goes: the write fails
    before = snapshot(tmp_path)
    with pytest.raises(StoreError, match=f"reindex could not write the catalogue of 1 kind.s. .*{kind}: IsADirectoryError"):
        reindex(store)
    assert main(["reindex", str(store.root)]) == 2
    assert "then rerun reindex" in capsys.readouterr().err
    assert snapshot(tmp_path) == before
