"""Garbage collection: remove what writers that died left behind, never a complete entry or a live write.

What is collected, grouped by the entry (key prefix) it belongs to:

* everything under ``_staging/`` -- local staging groups and templates (``<key16>-<id>``), their
  temporary copies (``.tmp-*``), chunk-marker folders (``<key16>-<tag>.done``), probe objects;
* on stores without rename, entry folders ``<kind>/<key16>/`` whose ``zarr.json`` is absent or not
  ``status: complete`` (an in-place write that never published).

**In progress** is decided by a heartbeat: the newest modification time of any file/object of the
group (its chunks, its markers, its staging folder). A writer touches one of them with every chunk,
so a group whose newest object is younger than ``older_than`` (default 1 hour) is a live write and is
left alone. Choose ``older_than`` longer than the slowest chunk of your longest write. A complete
entry is never a candidate, and its status is read again just before anything of its group is
removed. Markers go first, then data, so a writer resuming later starts its template afresh.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ParameterError, StoreError
from ..validate import finite

if TYPE_CHECKING:
    from .core import Store

__all__ = ["GcItem", "collect", "parse_age"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_age(text: "str | float | int") -> float:
    """Seconds from ``"90s"``, ``"30m"``, ``"1h"``, ``"2d"`` or a plain number of seconds."""
    if not isinstance(text, str):
        return finite("--older-than (seconds)", text, minimum=0.0)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not m:
        raise ParameterError(f"--older-than must be a duration like 90s, 30m, 1h or 2d, got {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


@dataclass(frozen=True)
class GcItem:
    """One file or folder gc removed (or would remove, with ``dry_run``), or left as a live write."""

    path: str
    group: str
    age_s: float
    removed: bool
    reason: str

    def to_dict(self) -> dict:
        return {"path": self.path, "group": self.group, "age_s": round(self.age_s, 1), "removed": self.removed,
                "reason": self.reason}


def _newest_mtime(store: "Store", path: str) -> float:
    """Newest modification time (epoch s) of ``path`` and everything under it; 0 when it is gone."""
    full = store._p(path)
    if store.local:
        newest = 0.0
        for folder, dirs, files in os.walk(full):
            for n in [folder] + [os.path.join(folder, f) for f in files]:
                try:
                    newest = max(newest, os.stat(n).st_mtime)
                except FileNotFoundError:  # removed while we walked (its writer published or cleaned up)
                    pass
                except OSError as exc:  # unknown age must not read as "very old" (that would remove it)
                    raise StoreError(f"gc cannot read the age of {n!r} ({exc}); it stopped before touching "
                                     f"{path!r}: fix the permissions and rerun") from None
        if not newest and os.path.isfile(full):
            newest = os.stat(full).st_mtime
        return newest
    try:
        infos = store.fs.find(full, detail=True, withdirs=False)
    except FileNotFoundError:  # gone: nothing is left to age (any other error must not read as "very old")
        return 0.0
    if not infos and store.fs.isfile(full):
        infos = {full: store.fs.info(full)}
    return max((_mtime(i) for i in infos.values()), default=0.0)


def _mtime(info: dict) -> float:
    for k in ("LastModified", "mtime", "last_modified", "created"):
        v = info.get(k)
        if v is None:
            continue
        return v.timestamp() if hasattr(v, "timestamp") else float(v)
    return 0.0


def _groups(store: "Store") -> dict[str, list[str]]:
    """Candidate paths grouped by the key prefix they belong to (incomplete entry folders first)."""
    from .catalog import _names, kind_entries
    from .staging import STAGING

    groups: dict[str, list[str]] = {}
    for kind in store._kind_dirs():
        complete = {e.path for e in kind_entries(store, kind)}
        for name in _names(store, kind, dirs=True):
            if f"{kind}/{name}" not in complete:
                groups.setdefault(name, []).append(f"{kind}/{name}")
    staged = _names(store, STAGING, dirs=True) + [n for n in _names(store, STAGING, dirs=False) if n != "zarr.json"]
    for name in sorted(staged):
        group = name.lstrip(".").split("-", 1)[0] if not name.startswith(".") else name
        groups.setdefault(group, []).append(f"{STAGING}/{name}")
    return groups


def collect(store: "Store", older_than: "str | float" = "1h", dry_run: bool = False,
            now: float | None = None) -> list[GcItem]:
    """Remove abandoned staging objects and never-published entry folders (see the module docstring).

    Parameters
    ----------
    older_than : str or float
        A group whose newest file/object is younger than this (``"1h"``, ``"30m"``, seconds) is a
        write in progress and is kept.
    dry_run : bool
        Report what would be removed; remove nothing.

    Returns
    -------
    list of GcItem, one per candidate path (removed, would be removed, or kept as in progress).
    """
    from .catalog import remove_path

    age_limit = parse_age(older_than)
    if not dry_run:
        store._check_writable()
    now = time.time() if now is None else now
    out = []
    for group, paths in sorted(_groups(store).items()):
        newest = max((_newest_mtime(store, p) for p in paths), default=0.0)
        age = now - newest if newest else float("inf")
        if age < age_limit:
            out += [GcItem(p, group, age, False, "in progress (touched recently)") for p in paths]
            continue
        if any(_now_complete(store, p) for p in paths):  # published since we looked: not ours to touch
            paths = [p for p in paths if p.startswith("_staging/") and not _now_complete(store, p)]
        markers_first = sorted(paths, key=lambda p: (not p.endswith(".done"), p))
        for p in markers_first:
            if not dry_run:
                remove_path(store, p)
            out.append(GcItem(p, group, age, not dry_run, "abandoned"))
    return out


def _now_complete(store: "Store", path: str) -> bool:
    attrs = store._read_group_attrs(path) if not path.startswith("_staging/") else None
    return bool(attrs) and attrs.get("status") == "complete"
