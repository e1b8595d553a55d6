"""What the ``giblet-store`` subcommand modules share: the progress option, ``--json`` output, a per-file loop.

Registered commands live in :mod:`giblet_store.cli` (extract, decode, ...) and in modules named for what they do
(:mod:`giblet_store.cli.entries`, :mod:`giblet_store.cli.features`, :mod:`giblet_store.cli.batch`, ...); each imports these helpers from here.
"""

from __future__ import annotations

import os
import sys
from typing import Callable

from .util import EXIT_ERROR, dump
from ..errors import GibletStoreError

__all__ = ["add_no_progress", "progress", "dump_entries", "extract_each"]


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


def extract_each(args, extract_one: Callable) -> int:
    """Run ``extract_one(store, path)`` for each of ``args.audio``: one line (or JSON object) per input.

    A bad input is reported on stderr and the others go on; the exit status says whether any failed.
    """
    from ..store.core import open_store
    from ..store.root import missing_local_ancestor, remove_unused_root
    from ..validate import path_text

    created = missing_local_ancestor(args.store)
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
    if args.json:
        dump_entries([{**r.entry.to_json(), "created": r.created, "source": r.source} for r in results],
                     failed=failed)
    return EXIT_ERROR if failed else 0
