"""Find broken entries, and move them aside (quarantine) so they never block a rebuild.

An entry is broken when its ``zarr.json`` is missing or not JSON, its attributes lack a valid
``key``/``kind``/``status: complete`` or disagree with its path, an array names a codec giblet_store
never writes, it does not match its kind's schema, or a chunk file is missing (entries written
with ``all_chunks_stored``: every chunk, even an all-fill one, is on disk, so an absent chunk is
damage, never a silent read of fill values), or a chunk's bytes cannot be decoded (truncated or
overwritten; :func:`verify_store` reads every chunk). :func:`verify_store` lists them; with
``repair`` each is moved to ``_quarantine/<kind>-<name>-<id>`` (nothing is deleted) and a rerun of
the request that made it writes it again. A request whose result is such an entry
(:func:`cache_hit`: every check but the chunk reads) moves it aside itself and rebuilds it. Entries
written by a newer giblet_store are reported, never moved.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import uuid
import warnings
from dataclasses import dataclass, field

from .codecs_allowed import UnsafeCodecError
from .regular import non_regular_files
from ..errors import GibletStoreError, StoreError

__all__ = ["QUARANTINE", "QuarantineWarning", "Problem", "VerifyReport", "verify_store", "quarantine", "cache_hit", "missing_chunks"]

QUARANTINE = "_quarantine"
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_KEY16 = re.compile(r"[0-9a-f]{16}\Z")  # an entry folder's name: the key's first 16 hex digits


class QuarantineWarning(UserWarning):
    """A broken entry was moved aside to ``_quarantine/``."""


@dataclass(frozen=True)
class Problem:
    """One broken entry: its path in the store, why, and where ``--repair`` moved it (or None)."""

    path: str
    reason: str
    repairable: bool = True
    moved_to: str | None = None

    def to_dict(self) -> dict:
        return {"path": self.path, "reason": self.reason, "repairable": self.repairable, "moved_to": self.moved_to}


@dataclass
class VerifyReport:
    """What :func:`verify_store` found: ``checked`` entries, ``problems`` (one per broken entry)."""

    url: str
    checked: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing broken is left in place (every problem was moved aside, or none)."""
        return all(p.moved_to is not None for p in self.problems)

    def to_dict(self) -> dict:
        return {"url": self.url, "checked": self.checked, "ok": self.ok,
                "problems": [p.to_dict() for p in self.problems]}


def quarantine(store, path: str, reason: str) -> str:
    """Move the entry folder ``path`` to ``_quarantine/`` with a :class:`QuarantineWarning`; its new path.

    Raises
    ------
    StoreError
        ``path`` is not ``<kind folder>/<entry folder>`` inside the store (``..``, absolute, nested).
    """
    parts = path.split("/")
    if len(parts) != 2 or any(p in ("", ".", "..") or p.startswith("_") for p in parts):
        raise StoreError(f"{path!r} is not an entry folder of {store.url!r} (<kind>/<name>); nothing was moved")
    dest = f"{QUARANTINE}/{path.replace('/', '-')}-{uuid.uuid4().hex[:8]}"
    if store.local:
        if (link := store.storage.link_in(QUARANTINE)) is not None:
            raise store.storage.link_error(link, "move anything into")
        os.makedirs(store.storage.path(QUARANTINE), exist_ok=True)
    store.storage.move(path, dest)  # a linked entry moves as the link; nothing above it is followed
    warnings.warn(f"moved broken entry {path} of {store.url} aside to {dest}: {reason}", QuarantineWarning,
                  stacklevel=3)
    return dest


def _attr_problem(attrs: dict, kind_dir: str, name: str) -> str | None:
    key = attrs.get("key")
    if not isinstance(key, str) or not _HEX64.match(key):
        return f"its attributes have no valid 'key' (64 hex digits), got {key!r}"
    if key[: len(name)] != name:
        return f"its key {key[:16]}... does not match its folder name {name!r}"
    if attrs.get("kind") != kind_dir:
        return f"its kind {attrs.get('kind')!r} does not match its folder {kind_dir!r}"
    if attrs.get("status") != "complete":
        return f"its status is {attrs.get('status')!r}, not 'complete' (an unfinished or damaged write)"
    return None


def _group_attrs(store, path: str) -> tuple[dict | None, str | None]:
    """(attributes, None) of the group at ``path``, or (None, why it is unreadable)."""
    try:
        raw = store.storage.get(f"{path}/zarr.json")
    except FileNotFoundError:
        return None, "it has no zarr.json (files were deleted, or a write never finished)"
    except OSError as exc:
        return None, f"its zarr.json cannot be read ({exc})"
    try:
        meta = json.loads(raw)
    except ValueError:
        return None, "its zarr.json is not valid JSON"
    if not isinstance(meta, dict) or meta.get("node_type") != "group":
        return None, "its zarr.json does not describe a Zarr group"
    attrs = meta.get("attributes")
    return (attrs, None) if isinstance(attrs, dict) else (None, "its zarr.json has no attributes")


def missing_chunks(store, path: str) -> list[str]:
    """Chunk files an entry's arrays should have and do not (regular grid, default key encoding)."""
    root = store.storage.path(path)
    present = {f[len(root) + 1:] for f in store.fs.find(root)}
    missing = []
    for name in sorted({p.split("/", 1)[0] for p in present if "/" in p}):
        try:
            meta = json.loads(store.storage.get(f"{path}/{name}/zarr.json"))
        except (OSError, ValueError):
            continue
        if not isinstance(meta, dict) or meta.get("node_type") != "array":
            continue
        shape = meta.get("shape") or []
        chunk = (meta.get("chunk_grid") or {}).get("configuration", {}).get("chunk_shape") or shape
        sep = ((meta.get("chunk_key_encoding") or {}).get("configuration") or {}).get("separator", "/")
        counts = [-(-s // max(c, 1)) for s, c in zip(shape, chunk)]
        if any(n == 0 for n in counts):
            continue
        for idx in itertools.product(*[range(n) for n in counts]):
            key = "c" + "".join(f"{sep}{i}" for i in idx) if idx else "c"
            if f"{name}/{key}" not in present:
                missing.append(f"{name}/{key}")
    return missing


def _damaged_chunks(store, path: str) -> list[str]:
    """Chunks of an entry's arrays that cannot be read back (truncated or overwritten bytes), with why."""
    import zarr

    group = zarr.open_group(store.zstore, path=path, mode="r", zarr_format=3)
    bad = []
    for name, arr in sorted(group.arrays()):
        grid = arr.metadata.chunk_grid.chunk_shape  # the stored objects' grid (shards, if sharded)
        counts = [-(-s // max(c, 1)) for s, c in zip(arr.shape, grid)]
        for idx in itertools.product(*[range(n) for n in counts]):
            try:
                arr[tuple(slice(i * c, (i + 1) * c) for i, c in zip(idx, grid))]  # one stored chunk, decoded
            except Exception as exc:  # whatever the codec raises for bytes it cannot decode
                bad.append(f"{name}/c/{'/'.join(map(str, idx))} ({type(exc).__name__}: {exc})")
    return bad


def _content_problem(store, path: str, attrs: dict, read_chunks: bool = False) -> tuple[str | None, bool]:
    """(why the entry's content is broken, repairable), or (None, True) when it reads as its schema says.

    ``read_chunks`` also decodes every chunk (reads the whole entry) to find damaged chunk bytes.
    """
    from ..errors import FormatVersionError
    from .entry import Entry

    if odd := non_regular_files(store.fs, store.storage.path(path)):  # reading one would wait forever
        return (f"it holds {len(odd)} file(s) that are not regular files: {', '.join(odd[:3])}; a store holds "
                "only files it wrote"), True
    try:
        store.open(Entry(store, path, attrs), validate=True)
    except FormatVersionError as exc:
        return str(exc), False
    except UnsafeCodecError as exc:
        return str(exc), True
    except GibletStoreError as exc:
        return str(exc), True
    except Exception as exc:  # damaged metadata zarr/xarray cannot parse
        return f"it cannot be opened ({type(exc).__name__}: {exc})", True
    if attrs.get("all_chunks_stored") is True and (missing := missing_chunks(store, path)):
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        return f"{len(missing)} chunk file(s) are missing ({', '.join(missing[:3])}{more})", True
    if read_chunks and (damaged := _damaged_chunks(store, path)):
        more = f" and {len(damaged) - 2} more" if len(damaged) > 2 else ""
        return f"{len(damaged)} chunk file(s) cannot be decoded: {'; '.join(damaged[:2])}{more}", True
    return None, True


def cache_hit(store, key: str, kind: str):
    """The complete entry with ``key`` if it is whole, for a request that would otherwise write it.

    A cache hit is checked as :func:`verify_store` checks an entry (codecs, metadata, schema, chunk
    files present): a broken one is moved to ``_quarantine/`` with a :class:`QuarantineWarning` and
    None is returned, so the request rebuilds it instead of serving damage (a missing chunk would
    read as fill values: code 0 is a real code). A read-only store is not checked.

    Returns
    -------
    Entry or None
    """
    entry = store.lookup(key, kind)
    if entry is None or store.read_only:
        return entry
    why, repairable = _content_problem(store, entry.path, entry.attrs)
    if why is None or not repairable:
        _sweep_quietly(store, key)
        return entry
    try:
        quarantine(store, entry.path, why + "; rebuilt")
    except FileNotFoundError:  # another process moved it first
        pass
    return None


def _sweep_quietly(store, key: str) -> None:
    """A hit rerun after a writer was killed past its publish: that dead writer's lease goes (best effort)."""
    from .leftovers import sweep_dead_writers

    try:
        sweep_dead_writers(store, key[:16])
    except (OSError, StoreError) as exc:  # litter only: gc removes it later
        logging.getLogger(__name__).warning("could not remove a dead writer's leftovers of %s (%s)", key[:16], exc)


def _entry_dirs(store) -> list[tuple[str, str]]:
    """(kind folder, entry folder) of every folder that may be an entry: ``<kind>/<16 hex digits>``.

    Any other folder (``notes/drafts``, ``codes/my-results``) is not this package's: never checked,
    never moved (``gc`` reports it as left alone).
    """
    from ..validate import KINDS

    out = []
    for kind_dir in store.storage.kind_dirs():
        if kind_dir not in KINDS:
            continue
        try:
            children = store.fs.ls(store.storage.path(kind_dir), detail=True)
        except FileNotFoundError:
            continue
        for info in children:  # a symlinked entry folder is listed by `ls`, so it is checked here too
            name = info["name"].rstrip("/").rsplit("/", 1)[-1]
            if not _KEY16.match(name):
                continue
            if info.get("type") == "directory" or (info.get("islink") and store.fs.isdir(info["name"])):
                out.append((kind_dir, name))
    return sorted(out)


def verify_store(store, repair: bool = False, read_chunks: bool = True) -> VerifyReport:
    """Check every entry of ``store``; with ``repair``, move each broken one to ``_quarantine/``.

    ``read_chunks`` (default) decodes every chunk, so damaged chunk bytes (a truncated or overwritten
    chunk file) are found too; this reads the whole store. False checks metadata and chunk presence only.

    Returns
    -------
    VerifyReport
        ``problems`` names each broken entry and why; ``ok`` is True when none is left in place.
    """
    if repair:
        store.storage.check_writable()
    report = VerifyReport(store.url)
    for kind_dir, name in _entry_dirs(store):
        path = f"{kind_dir}/{name}"
        report.checked += 1
        if not store.local and not store.fs.exists(store.storage.path(f"{path}/zarr.json")):
            continue  # object store: a write in progress (its zarr.json is written last)
        attrs, why = _group_attrs(store, path)
        repairable = True
        if why is None:
            why = _attr_problem(attrs, kind_dir, name)
        if why is None:
            why, repairable = _content_problem(store, path, attrs, read_chunks)
        if why is None:
            continue
        moved = None
        if repair and repairable:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", QuarantineWarning)
                moved = quarantine(store, path, why)
        report.problems.append(Problem(path, why, repairable, moved))
    return report
