"""Store locations checked before any filesystem is asked: a local path the OS can hold, an S3 bucket
name S3 accepts. Each refusal says what was given, the rule, and what to give instead."""

from __future__ import annotations

import os
import re

from ..errors import StoreError

__all__ = ["check_store_url", "MAX_PATH_BYTES", "MAX_NAME_BYTES"]

#: Longest path (bytes) Linux accepts (PATH_MAX), and longest single file or folder name (NAME_MAX).
MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
_IP = re.compile(r"\d+\.\d+\.\d+\.\d+\Z")


def _short(text: str, n: int = 60) -> str:
    return repr(text if len(text) <= n else text[: n // 2] + "..." + text[-n // 2 :])


def check_store_url(url: str) -> None:
    """Refuse a local store path too long for the OS, or an ``s3://`` URL whose bucket name S3 refuses.

    Raises
    ------
    StoreError
        The message names the path (shortened) or bucket and the rule it breaks.
    """
    if "://" not in url:
        path = os.fsencode(os.path.abspath(os.path.expanduser(url)))
        if len(path) >= MAX_PATH_BYTES:
            raise StoreError(f"the store path {_short(url)} is {len(path)} bytes long; paths on this system are "
                             f"shorter than {MAX_PATH_BYTES} bytes. Give a shorter path")
        longest = max(path.split(b"/"), key=len)
        if len(longest) > MAX_NAME_BYTES:
            raise StoreError(f"the store path {_short(url)} has a folder name of {len(longest)} bytes; a file or "
                             f"folder name holds at most {MAX_NAME_BYTES} bytes. Give a shorter name")
        return
    protocol, rest = url.split("://", 1)
    if protocol.lower() not in ("s3", "s3a"):
        return
    bucket = rest.split("/", 1)[0].rsplit("@", 1)[-1]  # userinfo (never printed) stands before '@'
    if not _BUCKET.match(bucket) or ".." in bucket or _IP.match(bucket):
        raise StoreError(f"{_short(bucket)} is not a valid S3 bucket name: 3-63 characters of lowercase letters, "
                         "digits, '.' and '-', starting and ending with a letter or digit. Give the bucket's real "
                         "name (s3://my-bucket/path)")
