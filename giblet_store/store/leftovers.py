"""Staging folders of killed writers: named for their writer, collected when that writer is gone.

:meth:`Store.write` stages an entry in ``_staging/<key16>-w<host>-<pid>-<id>``. A writer killed
mid-write leaves that folder (and its lease, :mod:`giblet_store.store.lease`) behind; the next write of
the same key removes every such folder and lease whose process no longer runs on this host (a live concurrent writer's folder is left alone). Folders made
on another host are left to ``giblet-store gc`` (:mod:`giblet_store.store.gc`).
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import uuid

__all__ = ["staging_name", "sweep_dead_writers", "host_tag"]

#: a write staging ``<key16>-w<host>-<pid>-<id>`` or a lease ``<key16>-l<host>-<pid>-<id>.lease``
_NAME = re.compile(r"(?P<key>[0-9a-f]{16})-[wl](?P<host>[0-9a-f]{6})-(?P<pid>\d+)-[0-9a-f]{8}(\.lease)?\Z")


def host_tag() -> str:
    """Six hex digits naming this host (so a pid is only judged on the host that owns it)."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


def staging_name(key16: str) -> str:
    """The staging folder name of a write of ``key16`` by this process."""
    return f"{key16}-w{host_tag()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def sweep_dead_writers(store, key16: str) -> list[str]:
    """Remove ``_staging`` folders and leases of ``key16`` left by dead writers on this host; their names."""
    from .entry import STAGING

    names = store.storage.names(STAGING)
    gone = []
    for name in names:
        m = _NAME.match(name)
        if m and m["key"] == key16 and m["host"] == host_tag() and not _alive(int(m["pid"])):
            store.storage.delete(f"{STAGING}/{name}")
            gone.append(name)
    return gone
