"""Reading codes files in bounded memory: acomp text streamed into an int64 array, ``.npy`` headers
checked against the file size before numpy allocates what they claim.

An acomp file of 10**7 codes is ~40 MB of text; ``str.split`` of it holds ~110 bytes per code (one
Python string each). :func:`acomp_values` parses it block by block, so the peak is the int64 array
(4 bytes per code, twice while the blocks are joined) and one block.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import CodesFileError

__all__ = ["acomp_values", "check_npy_extent"]

_BLOCK = 1 << 18


def acomp_values(f: BinaryIO, block: int = _BLOCK) -> np.ndarray:
    """Every whitespace-separated integer from ``f``'s position to its end, as (n,) int32 (int64 when
    a value needs it).

    Raises
    ------
    ValueError
        A token that is not an integer (``OverflowError``: one beyond int64).
    """
    parts, carry = [], b""
    while True:
        data = f.read(block)
        text = carry + data
        if data:  # the last token may continue in the next block
            cut = max(text.rfind(b" "), text.rfind(b"\n"), text.rfind(b"\t"), text.rfind(b"\r"))
            text, carry = (text[: cut + 1], text[cut + 1 :]) if cut >= 0 else (b"", text)
            if len(carry) > 64:  # no integer code is that long: not an acomp file
                raise ValueError(f"a token of more than 64 characters ({carry[:20]!r}...)")
        tokens = text.split()
        if tokens:
            parts.append(_ints(tokens))
        if not data:
            break
    return np.concatenate(parts) if parts else np.zeros(0, np.int32)


def _ints(tokens: list) -> np.ndarray:
    for t in tokens:
        if not t.lstrip(b"+-").isdigit():
            raise ValueError(f"{t[:20].decode('ascii', 'replace')!r} is not an integer")
    big = [t for t in tokens if len(t.lstrip(b"+-")) > 18]
    if big and any(abs(int(t)) > np.iinfo(np.int64).max for t in big):
        raise OverflowError(f"code index {big[0][:30].decode()!r} is beyond int64; code indices are < 2**16")
    values = np.array(tokens, dtype=np.int64)
    if values.size and np.iinfo(np.int32).min <= values.min() and values.max() <= np.iinfo(np.int32).max:
        return values.astype(np.int32)  # codes are < 2**16: half the memory; out-of-range values keep int64
    return values


def check_npy_extent(path: Path) -> None:
    """Refuse a ``.npy`` whose header claims more data than the file holds (before numpy allocates it)."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in read:
                return  # numpy's own reader names the version
            shape, _fortran, dtype = read[version](f, max_header_size=10_000)
            start = f.tell()
    except (ValueError, OSError):
        return  # not a .npy numpy reads: np.load says so
    size = os.stat(path).st_size - start
    count = 1
    for n in shape:
        count *= int(n)
    need = count * np.dtype(dtype).itemsize
    if need > size:
        raise CodesFileError(f"{path.name}: its .npy header claims a {dtype} array of shape {tuple(shape)} "
                             f"({need:,} bytes) but the file holds {size:,} bytes of data; the file is damaged or "
                             "truncated. Save the (codebook, frame) stream again with np.save")
