"""A write that found no room: a full disk (``ENOSPC``), a quota (``EDQUOT``) or the file-size limit
(``EFBIG``: ``ulimit -f``; Python ignores ``SIGXFSZ``, so the write fails instead of killing the process).

Every writer of the store turns such an ``OSError`` into one :class:`~giblet_store.errors.DiskFullError`
that says what failed, which file (relative to the store's root), that nothing was stored, and what
to do. The writers themselves remove what they had written (see :meth:`Store.write`,
:func:`~giblet_store.store.root.create_local_root`).
"""

from __future__ import annotations

import errno
import os

from ..errors import DiskFullError

__all__ = ["FULL_ERRNOS", "is_disk_full", "disk_full_error", "relative_to"]

#: errno values that mean "no room for these bytes"
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})

_CAUSES = {
    errno.ENOSPC: "no space left on device",
    errno.EFBIG: "file size limit (ulimit -f) reached",
    errno.EDQUOT: "disk quota exceeded",
}


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is an ``OSError`` for lack of room (:data:`FULL_ERRNOS`)."""
    return isinstance(exc, OSError) and exc.errno in FULL_ERRNOS


def relative_to(filename, root: str, fallback: str) -> str:
    """``filename`` relative to ``root`` when it lies below it (a key stays as it is); else ``fallback``."""
    if not filename:
        return fallback
    name = os.fsdecode(filename)
    if not os.path.isabs(name):
        return name
    rel = os.path.relpath(name, root)
    return fallback if rel.startswith("..") else rel


def disk_full_error(exc: OSError, what: str, outcome: str = "nothing was stored") -> DiskFullError:
    """The error for ``exc`` (one of :data:`FULL_ERRNOS`) met while writing ``what``.

    ``outcome`` says what is left ("nothing was stored"); the advice fits the cause.
    """
    cause = _CAUSES.get(exc.errno, os.strerror(exc.errno or 0))
    if exc.errno == errno.EFBIG:
        fix = "Raise the file-size limit (`ulimit -f unlimited`) and rerun"
    else:
        fix = "Free some space (or use a store on another disk) and rerun"
    return DiskFullError(f"{cause} while writing {what}; {outcome}. {fix}")
