"""The ``giblet-store`` command line.

Errors a user can act on are printed to stderr without a traceback and exit with status 2
(``--debug`` shows the traceback). Each subcommand is an ``_add_<name>`` function that registers
its parser and a ``_cmd_<name>`` function that runs it; groups of them live in modules named for
what they do (:mod:`giblet_store.cli.entries` ls/show, :mod:`giblet_store.cli.features` mel/derive, :mod:`giblet_store.cli.batch`,
:mod:`giblet_store.cli.exchange`, :mod:`giblet_store.cli.admin`, ...), registered in ``_COMMANDS`` below.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from ..errors import GibletStoreError, ParameterError
from ..validate import redact_url

__all__ = ["main", "build_parser"]

from .util import (  # noqa: E402
    EXIT_ERROR, add_grid_options, damaged_chunk_message, field_default as _default, no_room_message,
)
from .common import add_no_progress as _add_no_progress, extract_each as _extract_each  # noqa: E402


# ------------------------------------------------------------------------------------ extract
def _add_extract(sub) -> None:
    from ..codec.encodec import ENCODERS, CodecParams as C

    p = sub.add_parser("extract", help="encode audio files to EnCodec codes on a TR grid")
    p.add_argument("audio", nargs="+")  # help: cli.help.POSITIONAL_HELP["audio"]
    p.add_argument("--store", required=True, help="store directory or fsspec URL (created if absent)")
    p.add_argument("--model", default=_default(C, "model"), help="hub name or save_pretrained directory")
    p.add_argument("--revision", default=_default(C, "revision"), help="hub revision (branch, tag or commit)")
    p.add_argument("--audio-stream", type=int, default=None, metavar="N",
                   help="container stream index (as ffprobe's Stream #0:N); default: the default audio stream")
    p.add_argument("--bandwidth", type=float, default=_default(C, "bandwidth_kbps"),
                   help="kbps (24 kHz: 1.5, 3, 6, 12, 24)")
    add_grid_options(p)
    p.add_argument("--chunk-seconds", type=float, default=_default(C, "chunk_s"),
                   help="audio per chunked encode call; the stream encoder takes pieces of at most 5 s (bounds memory)")
    p.add_argument("--context-seconds", type=float, default=_default(C, "context_s"), help="left context per chunk")
    p.add_argument("--encoder", choices=ENCODERS, default=_default(C, "encoder"),
                   help="stream: one exact pass with carried state (causal models); chunked: chunks with context. "
                        "A model with normalised chunks (48 kHz) always uses its own chunks (model_chunks)")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, mps)")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    _add_no_progress(p)
    p.set_defaults(func=_cmd_extract)


def _cmd_extract(args) -> int:
    from ..codec.encodec import CodecParams
    from ..features.codes import extract_codes
    from ..grid import TrGrid

    codec = CodecParams(model=args.model, bandwidth_kbps=args.bandwidth, chunk_s=args.chunk_seconds,
                        context_s=args.context_seconds, revision=args.revision, encoder=args.encoder)
    grid = TrGrid(tr_s=args.tr, onset_s=args.onset, n_trs=args.n_trs)
    return _extract_each(args, lambda store, path: extract_codes(store, path, codec, grid, device=args.device,
                                                                 audio_stream=args.audio_stream))


# ------------------------------------------------------------------------------------ decode
def _add_decode(sub) -> None:
    p = sub.add_parser("decode", help="decode a codes, mel or reconstruction entry (or a TR range) to a wav file")
    p.add_argument("store")
    p.add_argument("key", metavar="KEY_OR_PREFIX")
    p.add_argument("-o", "--output", required=True, help="output .wav")
    p.add_argument("--trs", default=None, metavar="START:STOP", help="TR range (stop exclusive)")
    p.add_argument("--model", default=None,
                   help="model to decode with (hub name or save_pretrained directory); default: the entry's own "
                        "model, its hub name or the local directory this machine's model registry remembers for "
                        "its weights (~/.cache/giblet_store/models.json)")
    p.add_argument("--device", default="cpu", help="torch device for the decoder (cpu, cuda, cuda:1, mps)")
    p.add_argument("--bandwidth", type=float, default=None,
                   help="reconstruction of embeddings: quantise at this bandwidth (kbps; default: the target's)")
    p.set_defaults(func=_cmd_decode)


def _cmd_decode(args) -> int:
    from ..store.core import open_store

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
    from ..features.codes import decode_entry

    return decode_entry(store, entry, args.output, trs=args.trs, model=args.model, device=args.device)


#: entry kind -> function(store, entry, args) -> output path; other work adds kinds (mel).
_DECODERS: dict[str, Callable] = {"codes": _decode_codes}


# ------------------------------------------------------------------------------------ decoders of other kinds
def _decode_mel(store, entry, args):
    from ..features.mel import decode_mel

    return decode_mel(store, entry, args.output, trs=args.trs)


_DECODERS["mel"] = _decode_mel


def _decode_reconstruction(store, entry, args):
    from ..features.decoding import cli_decode_reconstruction

    return cli_decode_reconstruction(store, entry, args)


_DECODERS["reconstruction"] = _decode_reconstruction


# ------------------------------------------------------------------------------------ main
from .entries import add_ls, add_show  # noqa: E402  (ls and show: find and look at entries)
from .demo import add_demo  # noqa: E402
from .features import add_derive, add_mel  # noqa: E402  (mel and derive: stimulus features)
from .batch import add_batch  # noqa: E402  (batch: a manifest on a Dask cluster)

#: subcommand registrars, in help order; later work appends its own.
_COMMANDS: list[Callable] = [_add_extract, add_ls, add_show, _add_decode, add_demo]

from .fmri import add_evaluate, add_ingest_fmri, add_to_gifti, add_to_nifti  # noqa: E402  (fMRI, evaluation, export)

_COMMANDS += [add_ingest_fmri, add_evaluate, add_to_nifti, add_to_gifti]
_COMMANDS += [add_mel, add_derive]
_COMMANDS += [add_batch]

from .quality import add_compare, add_quality  # noqa: E402  (audio quality metrics, codec comparison)

_COMMANDS += [add_quality, add_compare]


def _add_verify(sub) -> None:
    from .verify import add_verify

    add_verify(sub)


_COMMANDS += [_add_verify]


from .exchange import _add_export, _add_import  # noqa: E402

_COMMANDS += [_add_export, _add_import]


from .admin import add_gc, add_reindex  # noqa: E402  (gc and reindex: store maintenance)

_COMMANDS += [add_gc, add_reindex]


def build_parser() -> argparse.ArgumentParser:
    from ..store.version import __version__

    parser = argparse.ArgumentParser(
        prog="giblet-store",
        description="Movie stimuli and fMRI in one chunked, labelled, versioned Zarr store.",
    )
    parser.add_argument("--version", action="version", version=f"giblet_store {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in _COMMANDS:
        add(sub)
    from .help import document

    document(sub)
    return parser


#: exit status when the reader of stdout went away (``| head``): 128 + SIGPIPE, as a Unix tool killed by it
EXIT_CLOSED_PIPE = 141


def _stdout_to_devnull() -> None:
    """Point the stdout file descriptor at /dev/null, so the interpreter's final flush of what is still
    buffered for the closed pipe does not fail again ("Exception ignored ... BrokenPipeError")."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real descriptor (captured in-process): nothing to flush
        pass


def main(argv: list[str] | None = None) -> int:
    """Run ``giblet-store ARGV``: 0 on success, 2 for an input to fix, 141 when stdout's reader closed the pipe
    (``giblet-store show S K | head -1``: the command ends quietly, as Unix tools do)."""
    try:
        try:
            return _main(argv)
        finally:  # output still buffered (help text included) meets a closed pipe here, not at interpreter exit
            sys.stdout.flush()
    except BrokenPipeError:
        _stdout_to_devnull()
        return EXIT_CLOSED_PIPE


def _main(argv: list[str] | None) -> int:
    import warnings

    from .warn import plain_warnings

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            plain_warnings()  # `giblet-store: warning: ...`, no source line
            return int(args.func(args) or 0)
    except BrokenPipeError:
        raise  # main ends quietly
    except GibletStoreError as exc:
        if args.debug:
            raise
        print(redact_url(f"giblet-store: error: {exc}"), file=sys.stderr)
        return EXIT_ERROR
    except PermissionError as exc:  # an OS refusal the code did not expect: still the user's to fix
        if args.debug:
            raise
        print(redact_url(f"giblet-store: error: permission denied: {exc.filename or exc}; check the file's and "
                         "folder's permissions (or run as a user who may read/write them)"), file=sys.stderr)
        return EXIT_ERROR
    except ImportError as exc:  # a missing optional extra: say which one to install
        from .extras import missing_extra_message

        if args.debug or (message := missing_extra_message(exc)) is None:
            raise
        print(f"giblet-store: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("giblet-store: interrupted; nothing half-written is visible (staging is cleaned up)", file=sys.stderr)
        return 130
    except Exception as exc:  # an unexpected failure: say so plainly, traceback with --debug
        if args.debug:
            raise
        if (message := damaged_chunk_message(exc, getattr(args, "store", None))) is not None:
            print(redact_url(f"giblet-store: error: {message}"), file=sys.stderr)
            return EXIT_ERROR
        if (message := no_room_message(exc)) is not None:  # a writer that does not name its file (not the store's)
            print(redact_url(f"giblet-store: error: {message}"), file=sys.stderr)
            return EXIT_ERROR
        print(redact_url(f"giblet-store: unexpected error ({type(exc).__name__}: {exc}); rerun with --debug "
                         "for the traceback and report it"), file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
