"""The ``giblet-store`` command line.

Errors a user can act on are printed to stderr without a traceback and exit with status 2
(``--debug`` shows the traceback). Each subcommand is an ``_add_<name>`` function that registers
its parser and a ``_cmd_<name>`` function that runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from .errors import GibletStoreError, ParameterError

__all__ = ["main", "build_parser"]

EXIT_ERROR = 2


# ------------------------------------------------------------------------------------ helpers
def _parse_value(text: str) -> Any:
    """``--where`` values: JSON when it parses (6, 1.5, true, "x"), else the string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _where(items: list[str]) -> dict[str, Any]:
    out = {}
    for it in items or []:
        name, sep, value = it.partition("=")
        if not sep or not name:
            raise ParameterError(f"--where takes NAME=VALUE (e.g. bandwidth_kbps=6), got {it!r}")
        out[name.strip()] = _parse_value(value.strip())
    return out


def _summary(attrs: dict) -> str:
    keys = [
        ("bandwidth_kbps", "kbps"), ("n_codebooks", "cb"), ("tr_s", "tr"), ("n_trs", "trs"),
        ("hrf", "hrf"), ("n_mels", "mels"), ("method", "method"), ("n_subjects", "subjects"),
    ]
    parts = [f"{label}={attrs[k]}" for k, label in keys if k in attrs and attrs[k] not in (None, "none")]
    return " ".join(parts)


def _print_table(entries, file=None) -> None:
    file = file or sys.stdout
    rows = [(e.key[:16], e.kind, str(e.attrs.get("source_name", "-")), _summary(e.attrs), e.path) for e in entries]
    header = ("KEY", "KIND", "SOURCE", "PARAMETERS", "PATH")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    for r in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip(), file=file)
    if not rows:
        print("(no entries)", file=file)


def _json_default(o):
    try:
        return o.item()
    except AttributeError:
        return str(o)


def _dump(obj) -> None:
    print(json.dumps(obj, indent=2, default=_json_default))


# ------------------------------------------------------------------------------------ extract
def _add_extract(sub) -> None:
    p = sub.add_parser("extract", help="encode audio files to EnCodec codes on a TR grid")
    p.add_argument("audio", nargs="+", help="wav/flac/ogg files")
    p.add_argument("--store", required=True, help="store directory or fsspec URL (created if absent)")
    p.add_argument("--model", default="facebook/encodec_24khz", help="hub name or save_pretrained directory")
    p.add_argument("--revision", default=None, help="hub revision (branch, tag or commit)")
    p.add_argument("--bandwidth", type=float, default=6.0, help="kbps (24 kHz: 1.5, 3, 6, 12, 24)")
    p.add_argument("--tr", type=float, default=1.5, help="TR in seconds")
    p.add_argument("--onset", type=float, default=0.0, help="stimulus time (s) at which TR 0 starts")
    p.add_argument("--n-trs", type=int, default=None, help="pad with empty TRs or crop (with a warning)")
    p.add_argument("--chunk-seconds", type=float, default=20.0, help="audio per encode call")
    p.add_argument("--context-seconds", type=float, default=5.0, help="left context per chunk")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, mps)")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(func=_cmd_extract)


def _cmd_extract(args) -> int:
    from .codec import CodecParams
    from .extract import extract_codes
    from .grid import TrGrid
    from .store import open_store

    codec = CodecParams(model=args.model, bandwidth_kbps=args.bandwidth, chunk_s=args.chunk_seconds,
                        context_s=args.context_seconds, revision=args.revision)
    grid = TrGrid(tr_s=args.tr, onset_s=args.onset, n_trs=args.n_trs)
    store = open_store(args.store)
    results, failed = [], 0
    for path in args.audio:
        try:
            r = extract_codes(store, path, codec, grid, device=args.device)
        except GibletStoreError as exc:
            failed += 1
            print(f"giblet-store: error: {path}: {exc}", file=sys.stderr)
            continue
        results.append(r)
        if not args.json:
            print(f"{r.entry.key}  {'created' if r.created else 'cached'}  {r.entry.path}  {path}")
    if args.json:
        _dump([{**r.entry.to_json(), "created": r.created, "source": r.source} for r in results])
    return EXIT_ERROR if failed else 0


# ------------------------------------------------------------------------------------ ls / show
def _add_ls(sub) -> None:
    p = sub.add_parser("ls", help="list complete entries, filtered by attributes")
    p.add_argument("store")
    p.add_argument("--kind", default=None)
    p.add_argument("--where", action="append", default=[], metavar="NAME=VALUE",
                   help="attribute filter, repeatable (bandwidth_kbps=6, hrf_params.peak_delay_s=6)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_ls)


def _cmd_ls(args) -> int:
    from .store import open_store

    store = open_store(args.store, mode="r")
    entries = store.find(kind=args.kind, **_where(args.where))
    if args.json:
        _dump([e.to_json() for e in entries])
    else:
        _print_table(entries)
    return 0


def _add_show(sub) -> None:
    p = sub.add_parser("show", help="show one entry: attributes and the xarray Dataset")
    p.add_argument("store")
    p.add_argument("key", metavar="KEY_OR_PREFIX")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_show)


def _cmd_show(args) -> int:
    from .store import open_store

    store = open_store(args.store, mode="r")
    entry = store.get(args.key)
    ds = store.open(entry)
    if args.json:
        doc = entry.to_json()
        doc["variables"] = {n: {"dims": list(v.dims), "dtype": str(v.dtype), "shape": list(v.shape)}
                            for n, v in {**ds.coords, **ds.data_vars}.items()}
        _dump(doc)
    else:
        print(ds)
    return 0


# ------------------------------------------------------------------------------------ decode
def _add_decode(sub) -> None:
    p = sub.add_parser("decode", help="decode a codes entry (or a TR range) to a wav file")
    p.add_argument("store")
    p.add_argument("key", metavar="KEY_OR_PREFIX")
    p.add_argument("-o", "--output", required=True, help="output .wav")
    p.add_argument("--trs", default=None, metavar="START:STOP", help="TR range (stop exclusive)")
    p.add_argument("--model", default=None, help="model to decode with (default: the entry's hub model)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_cmd_decode)


def _cmd_decode(args) -> int:
    from .store import open_store

    store = open_store(args.store, mode="r")
    entry = store.get(args.key)
    decoder = _DECODERS.get(entry.kind)
    if decoder is None:
        raise ParameterError(f"entry {entry.key[:16]} is a {entry.kind!r} entry; decode takes "
                             f"{' or '.join(sorted(_DECODERS))} entries")
    out = decoder(store, entry, args)
    print(f"wrote {out}")
    return 0


def _decode_codes(store, entry, args):
    from .extract import decode_entry

    return decode_entry(store, entry, args.output, trs=args.trs, model=args.model, device=args.device)


#: entry kind -> function(store, entry, args) -> output path; other work adds kinds (mel).
_DECODERS: dict[str, Callable] = {"codes": _decode_codes}


# ------------------------------------------------------------------------------------ demo
def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="encode a bundled stimulus into a local store and show it")
    p.add_argument("--store", default="demo_store")
    p.add_argument("--model", default="facebook/encodec_24khz")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(args.store, args.model)


# ------------------------------------------------------------------------------------ main
#: subcommand registrars, in help order; later work appends its own.
_COMMANDS: list[Callable] = [_add_extract, _add_ls, _add_show, _add_decode, _add_demo]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="giblet-store",
        description="Movie stimuli and fMRI in one chunked, labelled, versioned Zarr store.",
    )
    parser.add_argument("--version", action="version", version=f"giblet_store {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except GibletStoreError as exc:
        if args.debug:
            raise
        print(f"giblet-store: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("giblet-store: interrupted; nothing half-written is visible (staging is cleaned up)", file=sys.stderr)
        return 130
    except Exception as exc:  # an unexpected failure: say so plainly, traceback with --debug
        if args.debug:
            raise
        print(f"giblet-store: unexpected error ({type(exc).__name__}: {exc}); rerun with --debug "
              "for the traceback and report it", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
