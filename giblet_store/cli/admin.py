"""Store maintenance commands: ``giblet-store gc`` and ``giblet-store reindex`` (registered by :mod:`giblet_store.cli`)."""

from __future__ import annotations

import sys

from .common import dump_entries

__all__ = ["add_gc", "add_reindex"]


def add_gc(sub) -> None:
    p = sub.add_parser("gc", help="remove staging objects and unpublished entries that writers left behind")
    p.add_argument("store")
    p.add_argument("--older-than", default="1h", metavar="AGE",
                   help="keep anything touched more recently than this: a write in progress (90s, 30m, 1h, 2d); "
                        "a writer's live lease keeps its files whatever this says")
    p.add_argument("--dry-run", action="store_true", help="say what would be removed; remove nothing")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_gc)


def _cmd_gc(args) -> int:
    from ..store.gc import collect, parse_age
    from ..store.core import open_store

    age = parse_age(args.older_than)  # a bad value is refused before the store is opened
    store = open_store(args.store, mode="r" if args.dry_run else "a")
    items = collect(store, age, dry_run=args.dry_run)
    if args.json:
        dump_entries([], items=[it.to_dict() for it in items])  # no entries: the paths it removed or kept
        return 0
    dry = args.dry_run
    verbs = {"remove": "would remove" if dry else "removed", "quarantine": "would quarantine" if dry else "quarantined",
             "keep": "kept", "leave": "left alone"}
    for it in items:
        age = f", {it.age_s:.0f} s old" if it.action != "leave" else ""
        moved = f" -> {it.moved_to}" if it.moved_to else ""
        print(f"{verbs[it.action]:>16}  {it.path if it.path.isprintable() else ascii(it.path)}{moved}  ({it.reason}{age})")
    count = {a: sum(it.action == a for it in items) for a in verbs}
    print(f"{count['remove']} abandoned path(s) {verbs['remove']}; {count['quarantine']} damaged entr(ies) "
          f"{verbs['quarantine']}; {count['keep']} kept as writes in progress; {count['leave']} left alone "
          "(not giblet_store's, or links)", file=sys.stderr)
    return 0


def add_reindex(sub) -> None:
    p = sub.add_parser("reindex", help="rebuild the catalogue (find/ls index) from the entries themselves")
    p.add_argument("store")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_reindex)


def _cmd_reindex(args) -> int:
    from .common import existing_store
    from ..store.catalog import reindex

    counts = reindex(existing_store(args.store))
    if args.json:
        dump_entries([], counts=dict(sorted(counts.items())))  # entries per kind in the new catalogue
    else:
        for kind, n in sorted(counts.items()):
            print(f"{kind:<14} {n} entries")
    return 0
