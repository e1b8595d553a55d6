"""``giblet-store verify STORE [--repair]``: list broken entries, and move them aside with ``--repair``.

Registered by :mod:`giblet_store.cli`; the checks live in :mod:`giblet_store.store.verify`.
"""

from __future__ import annotations

import sys

from .common import dump_entries

__all__ = ["add_verify"]


def add_verify(sub) -> None:
    """Register the ``verify`` subcommand on an argparse subparsers object."""
    p = sub.add_parser("verify", help="check every entry (metadata, schema, codecs, every chunk present and "
                                      "decodable); --repair quarantines")
    p.add_argument("store")
    p.add_argument("--repair", action="store_true",
                   help="move broken entries to STORE/_quarantine/ (nothing is deleted); reruns rebuild them")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_cmd_verify)


def _cmd_verify(args) -> int:
    from ..store.core import open_store
    from ..store.verify import verify_store

    store = open_store(args.store, mode="a" if args.repair else "r")
    report = verify_store(store, repair=args.repair)
    if args.json:
        dump_entries([], **report.to_dict())  # the broken ones are in "problems" (not openable entries)
    else:
        for p in report.problems:
            fate = f"moved to {p.moved_to}" if p.moved_to else ("left in place (not repairable)" if not p.repairable
                                                             else "rerun with --repair to move it aside")
            print(f"BROKEN  {p.path}  {p.reason}; {fate}")
        print(f"{report.checked} entries checked, {len(report.problems)} broken"
              + (f", {sum(p.moved_to is not None for p in report.problems)} moved aside" if args.repair else ""))
    if not report.ok:
        print(f"giblet-store: error: {sum(p.moved_to is None for p in report.problems)} broken entr(ies) left in "
              f"{store.url}; `giblet-store verify {args.store} --repair` moves them to _quarantine/",
              file=sys.stderr)
        return 2
    return 0
