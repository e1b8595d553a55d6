"""bench/catalog.py's moto server: its sorted LIST gives moto's own answers (the bench's S3 figures rest on it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"

# in a child process: the replacement patches moto's S3Backend class, which this session's s3 server also uses
CHILD = r"""
import sys
sys.path.insert(0, sys.argv[1])
import catalog as cb
from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import S3Backend, s3_backends

backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
backend.create_bucket("bench-test", "us-east-1")
for i in range(1100):  # > 1 page of 1,000 folders, nested objects in each, a log, the root
    name = f"{i * 7919 % 100003:016x}"
    for rel in ("zarr.json", "codes/c/0/0/0"):
        backend.put_object("bench-test", f"store/codes/{name}/{rel}", b"x")
for i in range(3):
    backend.put_object("bench-test", f"store/_catalog/codes/log/{i:016x}.json", b"{}")
backend.put_object("bench-test", "store/zarr.json", b"{}")
stock = S3Backend.list_objects
cb.sorted_moto_listing()
assert S3Backend.list_objects is not stock
cb.check_listing(backend, "bench-test")
backend.put_object("bench-test", "store/codes/zzzz/zarr.json", b"{}")  # a new key: the cached name list is renewed
backend.delete_object("bench-test", "store/_catalog/codes/log/0000000000000001.json")
cb.check_listing(backend, "bench-test")
got = backend.list_objects_v2(backend.get_bucket("bench-test"), "store/codes/", "/", None, None, 1000)
assert len(got[0]) == 1000 and got[1], got[1:]  # first of two pages of folders
print("ok")
"""


def test_sorted_listing_equals_moto_listing():
    pytest.importorskip("moto.server", reason="needs moto[server]")
    p = subprocess.run([sys.executable, "-c", CHILD, str(BENCH)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr[-3000:]
