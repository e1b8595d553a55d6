"""Garbage collection: remove only what a writer of this package left and is provably gone.

What gc may **remove** (grouped by the key prefix ``<key16>`` it belongs to):

* under ``_staging/``, names only this package makes: write stagings ``<key16>-w<host>-<pid>-<id>``,
  templates ``<key16>-<tag>`` and their copies ``<key16>-<tag>.tmp-<id>``, chunk-marker folders
  ``<key16>-<tag>.done``, leases ``<key16>-l<host>-<pid>-<id>.lease`` and clock probes ``.clock-<id>``;
* on object stores only, an entry folder ``<kind>/<key16>/`` with no ``zarr.json`` whose chunk
  markers (``_staging/<key16>-<tag>.done``) prove it is an in-place write that never published.

What gc **moves to** ``_quarantine/`` (never deletes): an entry folder whose ``zarr.json`` is
missing, unreadable, not a group, or not ``status: complete`` and that no marker proves to be a
write in progress (on local disk every such folder: entries appear there only by a rename of a
whole group).

What gc **leaves and reports**: every other name (a folder of notes, an unknown kind, a name not
ours), and every symbolic link. A store whose ``_staging`` is itself a link is an error.

**Alive** is decided per group, before anything of it is touched: a lease renewed less than
:data:`~giblet_store.store.lease.EXPIRES_S` ago (writers renew theirs while they encode and
publish), or any file or object of the group younger than ``older_than`` (default 1 hour), keeps
the whole group. Ages are measured on the storage's clock. A complete entry is never a candidate,
and its status is read again just before anything of its group is removed. Markers go first, then
data, so a writer resuming later starts its template afresh.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ParameterError, StoreError
from ..validate import KINDS, finite
from .entry import STAGING
from .lease import EXPIRES_S, LEASE_SUFFIX, object_mtime, storage_now

if TYPE_CHECKING:
    from .core import Store

__all__ = ["GcItem", "collect", "parse_age"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_KEY16 = re.compile(r"[0-9a-f]{16}\Z")
#: every name this package writes under ``_staging/`` (see the module docstring)
_OURS = re.compile(r"(?P<key>[0-9a-f]{16})-(w[0-9a-f]{6}-\d+-[0-9a-f]{8}|[0-9a-f]{8}(\.tmp-[0-9a-f]{8}|\.done)?"
                   r"|l[0-9a-f]{6}-\d+-[0-9a-f]{8}\.lease)\Z|\.clock-[0-9a-f]{8}\Z")


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
    """One path gc looked at: removed (or would be, with ``dry_run``), quarantined, kept or left.

    ``action`` is ``"remove"``, ``"quarantine"``, ``"keep"`` (a live write) or ``"leave"`` (not
    this package's); ``removed`` is True once a removal or move happened.
    """

    path: str
    group: str
    age_s: float
    removed: bool
    reason: str
    action: str = "remove"
    moved_to: str | None = None

    def to_dict(self) -> dict:
        return {"path": self.path, "group": self.group, "age_s": round(self.age_s, 1), "removed": self.removed,
                "reason": self.reason, "action": self.action, "moved_to": self.moved_to}


@dataclass
class _Group:
    ours: list            # paths gc may remove
    damaged: list         # entry folders to quarantine
    leases: list          # lease paths (also in ours)


def _is_link(store: "Store", path: str) -> bool:
    return store.local and os.path.islink(store.storage.path(path))


def _newest_mtime(store: "Store", path: str) -> float:
    """Newest modification time (epoch s) of ``path`` and everything under it (links not followed); 0 when gone."""
    full = store.storage.path(path)
    if store.local:
        newest = 0.0
        for n in _walk_local(full):
            try:
                newest = max(newest, os.lstat(n).st_mtime)
            except FileNotFoundError:  # removed while we walked (its writer published or cleaned up)
                pass
            except OSError as exc:  # unknown age must not read as "very old" (that would remove it)
                raise StoreError(f"gc cannot read the age of {n!r} ({exc}); it stopped before touching "
                                 f"{path!r}: fix the permissions and rerun") from None
        return newest
    try:
        infos = store.fs.find(full, detail=True, withdirs=False)
    except FileNotFoundError:  # gone: nothing is left to age (any other error must not read as "very old")
        return 0.0
    if not infos and store.fs.isfile(full):
        infos = {full: store.fs.info(full)}
    return max((object_mtime(i) for i in infos.values()), default=0.0)


def _walk_local(full: str):
    if not os.path.lexists(full):
        return
    yield full
    if os.path.isdir(full) and not os.path.islink(full):
        for folder, dirs, files in os.walk(full):  # followlinks=False: a link is aged, never entered
            yield from (os.path.join(folder, n) for n in dirs + files)


def _scan(store: "Store") -> tuple[dict[str, _Group], list[tuple[str, str]]]:
    """(candidate groups by key16, [(path, why it is left alone)])."""
    from .catalog import kind_entries

    if (link := store.storage.link_in(STAGING)) is not None:
        raise store.storage.link_error(link, "collect anything in")
    groups: dict[str, _Group] = {}
    left: list[tuple[str, str]] = []
    group = lambda k: groups.setdefault(k, _Group([], [], []))  # noqa: E731
    staged = [n for n in store.storage.names(STAGING) if n != "zarr.json"]
    for name in sorted(staged):
        path = f"{STAGING}/{name}"
        m = _OURS.match(name)
        if m is None or _is_link(store, path):
            left.append((path, "a symbolic link: never followed" if m else "not a name giblet_store writes"))
            continue
        g = group(m["key"] or "clock")
        g.ours.append(path)
        if name.endswith(LEASE_SUFFIX):
            g.leases.append(path)
    markers = {p.split("/", 1)[1][:16] for g in groups.values() for p in g.ours if p.endswith(".done")}
    for kind in store.storage.kind_dirs():
        if kind not in KINDS or _is_link(store, kind):
            left.append((kind, "a symbolic link: never followed" if kind in KINDS else "not a kind giblet_store writes"))
            continue
        complete = {e.path for e in kind_entries(store, kind)}
        for name in store.storage.names(kind, dirs=True):
            path = f"{kind}/{name}"
            if path in complete:
                continue
            if not _KEY16.match(name) or _is_link(store, path):
                left.append((path, "a symbolic link: never followed" if _KEY16.match(name)
                             else "not an entry folder giblet_store writes"))
            elif not store.local and name in markers and not store.storage.exists(f"{path}/zarr.json"):
                group(name).ours.append(path)  # an in-place write that never published
            else:
                group(name).damaged.append(path)
    return groups, left


def collect(store: "Store", older_than: "str | float" = "1h", dry_run: bool = False,
            now: float | None = None) -> list[GcItem]:
    """Remove abandoned writes, quarantine damaged entries, report the rest (see the module docstring).

    Parameters
    ----------
    older_than : str or float
        A group with a file/object younger than this (``"1h"``, ``"30m"``, seconds) is a write in
        progress and is kept. A live lease keeps a group whatever this says.
    dry_run : bool
        Report what would be done; change nothing.
    now : float, optional
        The storage clock's time (tests); default measured with a probe object
        (:func:`~giblet_store.store.lease.storage_now`).

    Returns
    -------
    list of GcItem, one per path looked at (removed, quarantined, kept as live, or left alone).

    Raises
    ------
    StoreError
        ``_staging`` is a symbolic link, or an age cannot be read.
    """
    age_limit = parse_age(older_than)
    if not dry_run:
        store.storage.check_writable()
    groups, left = _scan(store)
    now = storage_now(store.storage, write=not dry_run) if now is None else now
    out = [GcItem(p, "-", 0.0, False, why, "leave") for p, why in left]
    for key16, g in sorted(groups.items()):
        out += _collect_group(store, key16, g, age_limit, now, dry_run)
    return out


def _collect_group(store: "Store", key16: str, g: _Group, age_limit: float, now: float,
                   dry_run: bool) -> list[GcItem]:
    from .verify import quarantine

    paths = g.ours + g.damaged
    newest = max((_newest_mtime(store, p) for p in paths), default=0.0)
    age = now - newest if newest else float("inf")
    lease_age = now - max((_newest_mtime(store, p) for p in g.leases), default=0.0) if g.leases else float("inf")
    if lease_age < EXPIRES_S:
        return [GcItem(p, key16, age, False, "in progress (its writer's lease is live)", "keep") for p in paths]
    if age < age_limit:
        return [GcItem(p, key16, age, False, "in progress (touched recently)", "keep") for p in paths]
    out = []
    for p in sorted(g.ours, key=lambda p: (not p.endswith(".done"), p)):  # markers first
        if _now_complete(store, p):  # published since we looked: not ours to touch
            continue
        if not dry_run:
            store.storage.delete(p)
        out.append(GcItem(p, key16, age, not dry_run, "abandoned"))
    for p in g.damaged:
        if _now_complete(store, p):
            continue
        dest = None if dry_run else quarantine(store, p, "gc found a damaged or unfinished entry")
        out.append(GcItem(p, key16, age, not dry_run, "damaged entry (quarantined, never deleted)", "quarantine", dest))
    return out


def _now_complete(store: "Store", path: str) -> bool:
    attrs = store.storage.read_group_attrs(path) if not path.startswith(f"{STAGING}/") else None
    return bool(attrs) and attrs.get("status") == "complete"
