"""`giblet-store gc`: abandoned staging objects and unpublished entries go; complete entries and writes in
progress (touched within --older-than) stay. Local directories and S3."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from giblet_store import open_store
from giblet_store.cli import main
from giblet_store.errors import ParameterError
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
