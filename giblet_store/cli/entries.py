"""``giblet-store ls`` and ``giblet-store show``: find entries by attributes and look at one.

Registered by :mod:`giblet_store.cli`.
"""

from __future__ import annotations

import json

from .common import dump_entries
from .util import json_default, where
from .. import validate

__all__ = ["add_ls", "add_show"]


def add_ls(sub) -> None:
    p = sub.add_parser("ls", help="list complete entries, filtered by attributes")
    p.add_argument("store")
    p.add_argument("--kind", default=None, metavar="KIND",
                   help=f"only entries of this kind: {', '.join(validate.KINDS)}")
    p.add_argument("--where", action="append", default=[], metavar="NAME=VALUE",
                   help="attribute filter, repeatable (bandwidth_kbps=6, hrf_params.peak_delay_s=6)")
    p.add_argument("--columns", default=None, metavar="A,B,...",
                   help="table columns, comma-separated: key, kind, path, a label of the entry repr (source, model, "
                        "kbps, feature, onset_s, model_name, ...) or any attribute name (bandwidth_kbps, "
                        "hrf_params.peak_delay_s); default: key, kind, every repr label a listed entry has, path")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_ls)


def _cmd_ls(args) -> int:
    from .display import print_table
    from ..store.core import open_store

    store = open_store(args.store, mode="r")
    entries = store.find(kind=args.kind, **where(args.where))
    if args.json:
        dump_entries([e.to_json() for e in entries])
    else:
        print_table(entries, columns=[c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None)
    return 0


def add_show(sub) -> None:
    p = sub.add_parser("show", help="show one entry: attributes and the xarray Dataset")
    p.add_argument("store")
    p.add_argument("key", metavar="KEY_OR_PREFIX")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_show)


def _cmd_show(args) -> int:
    from ..store.core import open_store

    store = open_store(args.store, mode="r")
    entry = store.get(args.key)
    ds = store.open(entry)
    if args.json:
        doc = entry.to_json()
        doc["variables"] = {n: {"dims": list(v.dims), "dtype": str(v.dtype), "shape": list(v.shape)}
                            for n, v in {**ds.coords, **ds.data_vars}.items()}
        dump_entries([doc])
    else:
        print(repr(entry))
        bare = ds.copy()
        bare.attrs = {}
        print(bare)
        print("Attributes (in full):")
        for name, value in entry.attrs.items():
            print(f"    {name}: {json.dumps(value, default=json_default)}")
    return 0
