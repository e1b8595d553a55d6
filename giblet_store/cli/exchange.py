"""``giblet-store export`` and ``giblet-store import``: codes to and from other tools' files.

Registered by :mod:`giblet_store.cli`; the work is done by :mod:`giblet_store.features.exchange`.
"""

from __future__ import annotations

__all__: list[str] = []


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="write a codes entry (or TRs of it) as .ecdc, acomp text, .npy or .csv")
    p.add_argument("store")
    p.add_argument("key", help="codes entry key or unique prefix")
    p.add_argument("--format", choices=("acomp", "ecdc", "npy", "csv"), default=None,
                   help="default: from the suffix of -o (.ecdc, .acomp/.txt, .npy, .csv)")
    p.add_argument("-o", "--out", required=True, help="file to write")
    p.add_argument("--trs", default=None, metavar="START:STOP", help="only these TRs' frames")
    p.set_defaults(func=_cmd_export)


def _cmd_export(args) -> int:
    from ..features.exchange import export_codes
    from ..store.core import open_store

    out = export_codes(open_store(args.store, mode="r"), args.key, args.out, fmt=args.format, trs=args.trs)
    print(out)
    return 0


def _add_import(sub) -> None:
    from .util import add_grid_options, field_default as _default
    from ..codec.encodec import CodecParams

    p = sub.add_parser("import", help="make a codes entry from an .ecdc (no --lm), acomp text or .npy codes file")
    p.add_argument("file", help="codes file")
    p.add_argument("--store", required=True, help="store directory or fsspec URL (created if absent)")
    p.add_argument("--format", choices=("acomp", "ecdc", "npy"), default=None, help="default: from the suffix")
    p.add_argument("--model", default=_default(CodecParams, "model"),
                   help="hub name or save_pretrained directory of the model that made the codes")
    add_grid_options(p)
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument("--json", action="store_true", help="print the entry as JSON")
    p.set_defaults(func=_cmd_import)


def _cmd_import(args) -> int:
    from .common import dump_entries, store_for_writing
    from ..features.exchange import import_codes
    from ..grid import TrGrid

    grid = TrGrid(tr_s=args.tr, onset_s=args.onset, n_trs=args.n_trs)
    with store_for_writing(args.store) as store:
        r = import_codes(store, args.file, model=args.model, grid=grid, fmt=args.format, device=args.device)
    if args.json:
        dump_entries([{**r.entry.to_json(), "created": r.created}])
    else:
        print(f"{r.entry.key}  {'created' if r.created else 'cached'}  {r.entry.path}  {args.file}")
    return 0
