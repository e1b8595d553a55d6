"""HashedFile: the sha256 of a file, and reads that return only the bytes hashed (issue 21 #3)."""

from __future__ import annotations

import hashlib
import os

import pytest

from giblet_store.store.hashing import HashedFile, SourceChangedError, sha256_file


def _data(n: int, seed: int) -> bytes:
    import numpy as np

    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def test_hash_and_reads_equal_the_file(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(_data(3 * 4096 + 17, 0))
    with HashedFile(p, block=4096) as h:
        assert h.sha256 == sha256_file(p) == hashlib.sha256(p.read_bytes()).hexdigest() and h.size == p.stat().st_size
        f = h.open()
        assert f.read() == p.read_bytes()
        f.seek(5000)
        assert f.read(10) == p.read_bytes()[5000:5010]
        assert f.seek(0, os.SEEK_END) == h.size and f.read(1) == b""
        h.check_unchanged()
        assert not h.changed


@pytest.mark.parametrize("change", ["rewrite", "append", "truncate"])
def test_a_file_changed_after_hashing_cannot_be_read(tmp_path, change):
    p = tmp_path / "f.bin"
    data = _data(3 * 4096 + 17, 0)
    p.write_bytes(data)
    with HashedFile(p, block=4096) as h:
        if change == "rewrite":  # same inode, same size, one block differs
            with open(p, "r+b") as f:
                f.seek(2 * 4096 + 1)
                f.write(b"\x00" if data[2 * 4096 + 1] else b"\x01")
        elif change == "append":
            with open(p, "ab") as f:
                f.write(b"more")
        else:
            os.truncate(p, 4096 + 5)
        got = h.open().read()  # decoders call file objects from C: a changed block reads as the end, and a flag
        assert got != data and data.startswith(got) and h.changed
        with pytest.raises(SourceChangedError, match="changed while it was being read"):
            h.raise_if_changed()
        with pytest.raises(SourceChangedError):
            h.check_unchanged()


def test_a_file_renamed_over_the_path_does_not_change_what_is_read(tmp_path):
    p, q = tmp_path / "f.bin", tmp_path / "g.bin"
    p.write_bytes(_data(9000, 0))
    q.write_bytes(_data(9000, 1))
    before = p.read_bytes()
    with HashedFile(p, block=4096) as h:
        os.replace(q, p)
        assert h.open().read() == before and h.sha256 == hashlib.sha256(before).hexdigest()


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    from giblet_store.errors import GibletStoreError

    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(GibletStoreError, match="not a regular file"):
        HashedFile(tmp_path / "fifo")
