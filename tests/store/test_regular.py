"""A FIFO where the store expects a file is refused or reported, never opened for a blocking read
(issue 21 item 9): ``ls`` skips it, ``verify`` names it and ``--repair`` moves it aside."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from giblet_store import open_store
from giblet_store.cli import main
from giblet_store.store.regular import NotRegularFileError, non_regular_files, read_regular, regular_file

from helpers import snapshot, write


def test_read_regular_refuses_a_fifo_without_waiting(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "file").write_bytes(b"abc")
    os.symlink(tmp_path / "file", tmp_path / "link")
    with pytest.raises(NotRegularFileError, match="is a FIFO"):
        read_regular(tmp_path / "pipe")  # a plain open() here would wait for a writer forever
    with pytest.raises(NotRegularFileError, match="is a directory"):
        read_regular(tmp_path)
    assert read_regular(tmp_path / "link") == b"abc" and regular_file(tmp_path / "link")
    assert not regular_file(tmp_path / "pipe") and not regular_file(tmp_path / "missing")


@pytest.fixture
def two(tmp_path):
    store = open_store(tmp_path / "st")
    write(store, 0)
    write(store, 1)
    return store


def test_ls_and_find_skip_a_fifo_named_zarr_json(two, capsys):
    kind = Path(two.root) / two.entries()[0].path.split("/")[0]
    (kind / "0123456789abcdef").mkdir()
    os.mkfifo(kind / "0123456789abcdef" / "zarr.json")
    fresh = open_store(two.root)
    assert len(fresh.find()) == 2
    assert main(["ls", str(two.root)]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3  # header + the two real entries


def test_verify_names_a_fifo_chunk_and_repair_moves_it_aside(two, tmp_path, capsys):
    entry = two.entries()[0]
    folder = Path(two.root) / entry.path
    chunk = next(p for p in sorted(folder.rglob("c/*")) if p.is_file())
    chunk.unlink()
    os.mkfifo(chunk)
    assert non_regular_files(two.fs, str(folder)) == [f"{chunk.relative_to(folder).as_posix()} (a FIFO (named pipe))"]
    before = snapshot(tmp_path)
    assert main(["verify", str(two.root)]) == 2
    err = capsys.readouterr()
    assert "not regular files" in err.out and chunk.relative_to(folder).as_posix() in err.out
    assert snapshot(tmp_path) == before
    assert main(["verify", str(two.root), "--repair"]) == 0
    assert not folder.exists() and len(open_store(two.root).entries()) == 1
    moved = [p for p in (Path(two.root) / "_quarantine").rglob("*") if p.name == chunk.name and not p.is_file()]
    assert moved, "the FIFO was deleted instead of quarantined"
