"""Store locations the OS or S3 cannot hold are refused before any I/O (issue 21, unclean list)."""

from __future__ import annotations

import pytest

from giblet_store import open_store
from giblet_store.errors import StoreError
from giblet_store.store.url_check import check_store_url


@pytest.mark.parametrize("bucket", ["Invalid_Bucket!", "ab", "a" * 64, "-start", "end-", "two..dots", "10.0.0.1"])
def test_bucket_names_s3_refuses(bucket):
    with pytest.raises(StoreError, match="is not a valid S3 bucket name: 3-63 characters"):
        open_store(f"s3://{bucket}/store")


@pytest.mark.parametrize("bucket", ["my-bucket", "giblet-0123456789ab", "a.b-c"])
def test_valid_bucket_names_pass(bucket):
    check_store_url(f"s3://{bucket}/store")
    check_store_url(f"s3://KEY:SECRET@{bucket}/store")  # userinfo is not the bucket


def test_a_store_path_the_os_cannot_hold(tmp_path):
    before = set(tmp_path.iterdir())
    with pytest.raises(StoreError, match=r"is \d+ bytes long; paths on this system are shorter than 4096 bytes"):
        open_store(tmp_path / ("a/" * 2100))
    with pytest.raises(StoreError, match="has a folder name of 300 bytes; a file or folder name holds at most 255"):
        open_store(tmp_path / ("b" * 300))
    assert set(tmp_path.iterdir()) == before
    check_store_url(str(tmp_path / "fine"))
