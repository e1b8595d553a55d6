"""What the ``giblet-store`` subcommand modules share: the progress option, ``--json`` output, a per-file loop.

Registered commands live in :mod:`giblet_store.cli` (extract, decode, ...) and in modules named for what they do
(:mod:`giblet_store.cli.entries`, :mod:`giblet_store.cli.features`, :mod:`giblet_store.cli.batch`, ...); each imports these helpers from here.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Callable, Iterator

from .util import EXIT_ERROR, dump
from ..errors import GibletStoreError

__all__ = ["add_no_progress", "progress", "dump_entries", "extract_each", "store_for_writing", "existing_store"]


def add_no_progress(p) -> None:
    """Add ``--no-progress`` to the subcommand parser ``p``."""
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (bars are shown only when stderr is a terminal)")


def progress(args, desc: str):
    """A progress bar for the Dask work of one command (off when stderr is no terminal or --no-progress)."""
    from ..progress import progress_bar

    return progress_bar(desc, enabled=False if getattr(args, "no_progress", False) else None)


def dump_entries(entries: list[dict], **extra) -> None:
    """The one ``--json`` shape of every command: ``{"entries": [entry, ...], ...}``.

    Each entry is ``Entry.to_json()`` (``key``, ``kind``, ``path``, ``attrs``) plus what the command
    adds (``created``, ``source``, ``variables``); batch adds ``store``, ``counts`` and ``wall_s``.
    """
    dump({"entries": list(entries), **extra})


@contextlib.contextmanager
def store_for_writing(url) -> Iterator:
    """The store at ``url``, created if absent; if the command then fails, a store it created is removed again.

    Only a local folder this call created, holding nothing but the root document, is removed
    (:func:`~giblet_store.store.root.remove_unused_root`); in an empty folder that was there before,
    only the root document written into it: a refused command leaves the disk as it found it.
    """
    from ..store.core import open_store
    from ..store.root import (
        empty_local_folder, missing_local_ancestor, remove_unused_root, remove_unused_root_document,
    )

    created, empty = missing_local_ancestor(url), empty_local_folder(url)
    store = open_store(url)
    try:
        yield store
    except BaseException:
        remove_unused_root(created, store.root)
        remove_unused_root_document(empty)
        raise


def existing_store(url, mode: str = "a"):
    """The store at ``url``, which must exist already ("no giblet store at ..." otherwise, nothing created)."""
    from ..store.core import open_store

    open_store(url, mode="r")
    return open_store(url, mode=mode)


def extract_each(args, extract_one: Callable) -> int:
    """Run ``extract_one(store, path)`` for each of ``args.audio``: one line (or JSON object) per input.

    A bad input is reported on stderr and the others go on; the exit status says whether any failed.
    """
    from ..store.core import open_store
    from ..store.root import (
        empty_local_folder, missing_local_ancestor, remove_unused_root, remove_unused_root_document,
    )
    from ..validate import path_text

    created, empty = missing_local_ancestor(args.store), empty_local_folder(args.store)
    store = open_store(args.store)
    results, failed = [], 0
    for path in args.audio:
        try:
            with progress(args, f"{args.command} {os.path.basename(str(path))}"):
                r = extract_one(store, path)
        except GibletStoreError as exc:
            failed += 1
            print(f"giblet-store: error: {path_text(path)}: {exc}", file=sys.stderr)
            continue
        results.append(r)
        if not args.json:  # a name that is not UTF-8 is printed escaped (printing it raw would fail)
            print(f"{r.entry.key}  {'created' if r.created else 'cached'}  {r.entry.path}  {path_text(path)}")
    if not results:  # every input refused: a store this command created is removed again
        remove_unused_root(created, store.root)
        remove_unused_root_document(empty)
    if args.json:
        dump_entries([{**r.entry.to_json(), "created": r.created, "source": r.source} for r in results],
                     failed=failed)
    return EXIT_ERROR if failed else 0
