"""The codecs giblet_store writes, and the check that an entry uses no other before it is read.

A Zarr array names its codec chain in its ``zarr.json``. A hand-edited or foreign entry could name
``numcodecs.pickle`` (which runs arbitrary code when decoded) or a codec nobody has installed; either
way, opening it must be a deliberate refusal, not an accident deep in a read. :func:`check_entry_codecs`
reads the metadata of every array of an entry (no chunk is touched) and refuses any codec outside
:data:`ALLOWED_CODECS`.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

from ..errors import SchemaError

__all__ = ["ALLOWED_CODECS", "UnsafeCodecError", "entry_codecs", "check_entry_codecs"]

#: Every codec name found in the arrays giblet_store writes (serialisers, compressors, sharding).
ALLOWED_CODECS = frozenset({
    "bytes", "blosc", "zstd", "gzip", "crc32c", "transpose", "vlen-utf8", "vlen-bytes", "sharding_indexed",
})


class UnsafeCodecError(SchemaError):
    """An entry names a codec giblet_store never writes; it is not read."""


def _names(codecs: Any) -> Iterator[str]:
    """Every codec name in a codec chain, nested chains (sharding) included; non-names as their repr."""
    for c in codecs if isinstance(codecs, list) else [codecs]:
        if isinstance(c, str):
            yield c
            continue
        if not isinstance(c, dict) or not isinstance(c.get("name"), str):
            yield repr(c)
            continue
        yield c["name"]
        conf = c.get("configuration") or {}
        if isinstance(conf, dict):
            for nested in ("codecs", "index_codecs"):
                if nested in conf:
                    yield from _names(conf[nested])


def entry_codecs(fs, entry_root: str) -> dict[str, list[str]]:
    """``{array name: [codec names]}`` of every array directly under ``entry_root`` (metadata only).

    Unreadable metadata is reported under the codec name ``"<unreadable zarr.json>"``.
    """
    out: dict[str, list[str]] = {}
    try:
        children = fs.ls(entry_root, detail=True)
    except (FileNotFoundError, OSError):
        return out
    for info in children:
        if info.get("type") != "directory":
            continue
        name = info["name"].rstrip("/").rsplit("/", 1)[-1]
        try:
            meta = json.loads(fs.cat_file(f"{entry_root}/{name}/zarr.json"))
        except FileNotFoundError:
            continue
        except (OSError, ValueError):
            out[name] = ["<unreadable zarr.json>"]
            continue
        if isinstance(meta, dict) and meta.get("node_type") == "array":
            out[name] = list(_names(meta.get("codecs", [])))
    return out


def check_entry_codecs(fs, entry_root: str, where: str) -> None:
    """Refuse an entry any of whose arrays names a codec outside :data:`ALLOWED_CODECS`.

    Raises
    ------
    UnsafeCodecError
        "entry X uses codec Y, which giblet_store never writes; refusing to read it".
    """
    for array, names in sorted(entry_codecs(fs, entry_root).items()):
        for codec in names:
            if codec not in ALLOWED_CODECS:
                raise UnsafeCodecError(
                    f"{where} uses codec {codec!r} (array {array!r}), which giblet_store never writes; refusing "
                    f"to read it. Delete the entry or re-create it with giblet_store "
                    f"(`giblet-store verify STORE --repair` moves it aside)"
                )
