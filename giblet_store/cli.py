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
from typing import Any, Callable

from .display import print_table as _print_table
from .errors import GibletStoreError, ParameterError

__all__ = ["main", "build_parser"]

EXIT_ERROR = 2


from .cli_util import dump as _dump, json_default as _json_default, tr_range as _tr_range, where as _where  # noqa: E402


def _add_no_progress(p) -> None:
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (bars are shown only when stderr is a terminal)")


def _progress(args, desc: str):
    """A progress bar for the Dask work of one command (off when stderr is no terminal or --no-progress)."""
    from .progress import progress_bar

    return progress_bar(desc, enabled=False if getattr(args, "no_progress", False) else None)


def _dump_entries(entries: list[dict], **extra) -> None:
    """The one ``--json`` shape of every command: ``{"entries": [entry, ...], ...}``.

    Each entry is ``Entry.to_json()`` (``key``, ``kind``, ``path``, ``attrs``) plus what the command
    adds (``created``, ``source``, ``variables``); batch adds ``store``, ``counts`` and ``wall_s``.
    """
    _dump({"entries": list(entries), **extra})


# ------------------------------------------------------------------------------------ extract
def _add_extract(sub) -> None:
    p = sub.add_parser("extract", help="encode audio files to EnCodec codes on a TR grid")
    p.add_argument("audio", nargs="+", help="wav/flac/ogg files, or video/audio containers (mp4, mkv, mov, ...)")
    p.add_argument("--store", required=True, help="store directory or fsspec URL (created if absent)")
    p.add_argument("--model", default="facebook/encodec_24khz", help="hub name or save_pretrained directory")
    p.add_argument("--revision", default=None, help="hub revision (branch, tag or commit)")
    p.add_argument("--audio-stream", type=int, default=None, metavar="N",
                   help="container stream index (as ffprobe's Stream #0:N); default: the default audio stream")
    p.add_argument("--bandwidth", type=float, default=6.0, help="kbps (24 kHz: 1.5, 3, 6, 12, 24)")
    p.add_argument("--tr", type=float, default=1.5, help="TR in seconds")
    p.add_argument("--onset", type=float, default=0.0, help="stimulus time (s) at which TR 0 starts")
    p.add_argument("--n-trs", type=int, default=None, help="pad with empty TRs or crop (with a warning)")
    p.add_argument("--chunk-seconds", type=float, default=10.0, help="audio per encode call (bounds memory)")
    p.add_argument("--context-seconds", type=float, default=2.0, help="left context per chunk")
    p.add_argument("--encoder", choices=("stream", "chunked"), default="stream",
                   help="stream: one exact pass with carried state (causal models); chunked: chunks with context. "
                        "A model with normalised chunks (48 kHz) always uses its own chunks (model_chunks)")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, mps)")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    _add_no_progress(p)
    p.set_defaults(func=_cmd_extract)


def _cmd_extract(args) -> int:
    from .codec import CodecParams
    from .codes import extract_codes
    from .grid import TrGrid

    codec = CodecParams(model=args.model, bandwidth_kbps=args.bandwidth, chunk_s=args.chunk_seconds,
                        context_s=args.context_seconds, revision=args.revision, encoder=args.encoder)
    grid = TrGrid(tr_s=args.tr, onset_s=args.onset, n_trs=args.n_trs)
    return _extract_each(args, lambda store, path: extract_codes(store, path, codec, grid, device=args.device,
                                                                 audio_stream=args.audio_stream))


def _extract_each(args, extract_one: Callable) -> int:
    """Run ``extract_one(store, path)`` for each of ``args.audio``: one line (or JSON object) per input.

    A bad input is reported on stderr and the others go on; the exit status says whether any failed.
    """
    from .store import open_store

    store = open_store(args.store)
    results, failed = [], 0
    for path in args.audio:
        try:
            with _progress(args, f"{args.command} {os.path.basename(str(path))}"):
                r = extract_one(store, path)
        except GibletStoreError as exc:
            failed += 1
            print(f"giblet-store: error: {path}: {exc}", file=sys.stderr)
            continue
        results.append(r)
        if not args.json:
            print(f"{r.entry.key}  {'created' if r.created else 'cached'}  {r.entry.path}  {path}")
    if args.json:
        _dump_entries([{**r.entry.to_json(), "created": r.created, "source": r.source} for r in results],
                      failed=failed)
    return EXIT_ERROR if failed else 0


# ------------------------------------------------------------------------------------ ls / show
def _add_ls(sub) -> None:
    p = sub.add_parser("ls", help="list complete entries, filtered by attributes")
    p.add_argument("store")
    p.add_argument("--kind", default=None, metavar="KIND",
                   help="only entries of this kind: codes, mel, embeddings, features, fmri, predictions, evaluation")
    p.add_argument("--where", action="append", default=[], metavar="NAME=VALUE",
                   help="attribute filter, repeatable (bandwidth_kbps=6, hrf_params.peak_delay_s=6)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_ls)


def _cmd_ls(args) -> int:
    from .store import open_store

    store = open_store(args.store, mode="r")
    entries = store.find(kind=args.kind, **_where(args.where))
    if args.json:
        _dump_entries([e.to_json() for e in entries])
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
        _dump_entries([doc])
    else:
        print(repr(entry))
        bare = ds.copy()
        bare.attrs = {}
        print(bare)
        print("Attributes (in full):")
        for name, value in entry.attrs.items():
            print(f"    {name}: {json.dumps(value, default=_json_default)}")
    return 0


# ------------------------------------------------------------------------------------ decode
def _add_decode(sub) -> None:
    p = sub.add_parser("decode", help="decode a codes, mel or reconstruction entry (or a TR range) to a wav file")
    p.add_argument("store")
    p.add_argument("key", metavar="KEY_OR_PREFIX")
    p.add_argument("-o", "--output", required=True, help="output .wav")
    p.add_argument("--trs", default=None, metavar="START:STOP", help="TR range (stop exclusive)")
    p.add_argument("--model", default=None, help="model to decode with (default: the entry's hub model)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--bandwidth", type=float, default=None,
                   help="reconstruction of embeddings: quantise at this bandwidth (kbps; default: the target's)")
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
    from .codes import decode_entry

    return decode_entry(store, entry, args.output, trs=args.trs, model=args.model, device=args.device)


#: entry kind -> function(store, entry, args) -> output path; other work adds kinds (mel).
_DECODERS: dict[str, Callable] = {"codes": _decode_codes}


# ------------------------------------------------------------------------------------ demo
def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="encode a bundled stimulus into a local store and show it")
    p.add_argument("--store", default="demo_store",
                   help="store directory; the stimulus and decoded wav files are written beside it")
    p.add_argument("--model", default="facebook/encodec_24khz", help="hub name or save_pretrained directory")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(args.store, args.model)


# ------------------------------------------------------------------------------------ mel / derive
def _add_mel(sub) -> None:
    p = sub.add_parser("mel", help="mel spectrograms of audio files on a TR grid (the legacy feature path)")
    p.add_argument("audio", nargs="+", help="wav/flac/ogg files")
    p.add_argument("--store", required=True, help="store directory or fsspec URL (created if absent)")
    p.add_argument("--tr", type=float, default=1.5, help="TR in seconds")
    p.add_argument("--onset", type=float, default=0.0, help="stimulus time (s) at which TR 0 starts")
    p.add_argument("--n-trs", type=int, default=None, help="pad with empty TRs or crop (with a warning)")
    p.add_argument("--sample-rate", type=int, default=22050, help="Hz the audio is resampled to")
    p.add_argument("--n-fft", type=int, default=2048, help="STFT size (samples)")
    p.add_argument("--hop", type=int, default=512, help="STFT hop (samples)")
    p.add_argument("--n-mels", type=int, default=128, help="mel bands (<= n_fft/2 + 1)")
    p.add_argument("--fmin", type=float, default=0.0, help="lowest band edge (Hz)")
    p.add_argument("--fmax", type=float, default=None, help="highest band edge (Hz; default sample rate / 2)")
    p.add_argument("--power", type=float, default=2.0, choices=(1.0, 2.0), help="1 magnitude, 2 power")
    p.add_argument("--no-db", action="store_true", help="store power/magnitude, not dB")
    p.add_argument("--ref", type=float, default=1.0, help="fixed dB reference (0 dB), never the file's max")
    p.add_argument("--chunk-seconds", type=float, default=60.0, help="audio per Dask task")
    p.add_argument("--audio-stream", type=int, default=None, metavar="N",
                   help="container stream index (as ffprobe's Stream #0:N); default: the default audio stream")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    _add_no_progress(p)
    p.set_defaults(func=_cmd_mel)


def _cmd_mel(args) -> int:
    from .grid import TrGrid
    from .mel import MelParams, extract_mel

    params = MelParams(sample_rate_hz=args.sample_rate, n_fft=args.n_fft, hop=args.hop, n_mels=args.n_mels,
                       fmin_hz=args.fmin, fmax_hz=args.fmax, power=args.power, db=not args.no_db,
                       ref=args.ref, chunk_s=args.chunk_seconds)
    grid = TrGrid(tr_s=args.tr, onset_s=args.onset, n_trs=args.n_trs)
    return _extract_each(args, lambda store, path: extract_mel(store, path, params, grid,
                                                               audio_stream=args.audio_stream))


def _decode_mel(store, entry, args):
    from .mel import decode_mel

    return decode_mel(store, entry, args.output, trs=args.trs)


_DECODERS["mel"] = _decode_mel


def _decode_reconstruction(store, entry, args):
    from .decoding import cli_decode_reconstruction

    return cli_decode_reconstruction(store, entry, args)


_DECODERS["reconstruction"] = _decode_reconstruction


def _parse_hrf(text: str):
    from .hrf import Fir, Hrf

    name, _, rest = text.partition(":")
    if name.strip().lower() == "fir":
        try:
            delays = tuple(int(d) for d in rest.split(",") if d.strip())
        except ValueError:
            raise ParameterError(f"--hrf fir takes whole-TR delays, e.g. fir:1,2,3,4; got {text!r}") from None
        return Fir(delays)
    if rest:
        raise ParameterError(f"--hrf {name} takes no ':' options (use --hrf-length, --oversampling); got {text!r}")
    return Hrf(model=name.strip())


def _add_derive(sub) -> None:
    p = sub.add_parser("derive", help="derive an entry: embeddings, HRF/FIR, or another TR grid (cached)")
    p.add_argument("store")
    p.add_argument("key", metavar="KEY_OR_PREFIX")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--hrf", metavar="spm|glover|fir:1,2,3,4", help="causal HRF convolution or FIR delays")
    what.add_argument("--resample-tr", type=float, metavar="S", help="resample to this TR (s) by stimulus time")
    what.add_argument("--stretch", type=int, metavar="N", help="the reference's stretch to N TRs (linspace)")
    what.add_argument("--embeddings", action="store_true", help="dequantise a codes entry (RVQ decode)")
    what.add_argument("--quantise", type=float, metavar="KBPS",
                      help="greedy RVQ of a reconstruction of embeddings at this bandwidth (-> codes)")
    p.add_argument("--hrf-length", type=float, default=32.0, help="HRF kernel length (s)")
    p.add_argument("--oversampling", type=int, default=1, help="HRF sub-samples averaged per TR (1: at TR multiples)")
    p.add_argument("--onset", type=float, default=0.0, help="--resample-tr: onset (s) of the target grid")
    p.add_argument("--n-trs", type=int, default=None, help="--resample-tr: target TR count")
    p.add_argument("--method", default="auto", choices=("auto", "linear", "previous"),
                   help="--resample-tr: linear (floats) / previous (codes)")
    p.add_argument("--no-antialias", action="store_true", help="--resample-tr: no low-pass when going coarser")
    p.add_argument("--variables", default=None, help="comma-separated data variables (default: per-TR floats)")
    p.add_argument("--axis", default=None, help="time dimension (required for fmri entries: --axis tr)")
    p.add_argument("--reference-codes", action="store_true",
                   help="--hrf on codes: the reference project's convolve-round-clip (warns)")
    p.add_argument("--model", default=None, help="--embeddings: model directory or hub name (default: the entry's)")
    p.add_argument("--device", default="cpu", help="--embeddings: torch device")
    p.add_argument("--json", action="store_true")
    _add_no_progress(p)
    p.set_defaults(func=_cmd_derive)


def _cmd_derive(args) -> int:
    import warnings

    from .derive import Embeddings, _derive
    from .resample import Resample
    from .store import open_store

    if args.embeddings:
        transform = Embeddings()
    elif args.quantise is not None:
        from .quantise import Quantise

        transform = Quantise(bandwidth_kbps=args.quantise)
    elif args.hrf is not None:
        transform = _parse_hrf(args.hrf)
        from .hrf import Hrf

        if isinstance(transform, Hrf):
            transform = Hrf(model=transform.model, length_s=args.hrf_length, oversampling=args.oversampling)
    elif args.stretch is not None:
        transform = Resample(method="stretch", n_trs=args.stretch, onset_s=args.onset)
    else:
        transform = Resample(tr_s=args.resample_tr, onset_s=args.onset, n_trs=args.n_trs,
                             method=args.method, antialias=not args.no_antialias)
    kw: dict[str, Any] = {}
    if args.variables:
        kw["variables"] = [v.strip() for v in args.variables.split(",") if v.strip()]
    if args.axis:
        kw["axis"] = args.axis
    if args.reference_codes:
        kw["reference_codes"] = True
    if args.embeddings or args.quantise is not None:
        kw.update(model=args.model, device=args.device)
    store = open_store(args.store, mode="r")
    parent = store.get(args.key)
    store = open_store(args.store)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with _progress(args, f"derive {type(transform).__name__.lower()}"):
            entry, created = _derive(store, parent, transform, **kw)
    for w in caught:
        print(f"giblet-store: warning: {w.message}", file=sys.stderr)
    if args.json:
        _dump_entries([{**entry.to_json(), "created": created}])
    else:
        print(f"{entry.key}  {'created' if created else 'cached'}  {entry.path}  <- {parent.key[:16]} ({parent.kind})")
    return 0


# ------------------------------------------------------------------------------------ batch
def _add_batch(sub) -> None:
    p = sub.add_parser("batch", help="extract every entry of a manifest on a Dask cluster (resumable)")
    p.add_argument("manifest", help="CSV, YAML or JSON manifest: stimuli x kinds x bandwidths x TRs")
    p.add_argument("--store", required=True, help="store directory or fsspec URL (created if absent)")
    p.add_argument("--scheduler", default="local",
                   help="'local' (a LocalCluster, the default) or a scheduler address (tcp://host:8786)")
    p.add_argument("--workers", type=int, default=None, help="local cluster workers (default: one per core)")
    p.add_argument("--tr-chunk", type=int, default=None,
                   help="TRs per Zarr chunk and write task (default: the store's, as extract writes)")
    p.add_argument("--connect-timeout", type=float, default=5.0, help="seconds to wait for a scheduler address")
    p.add_argument("--model", default=None, metavar="NAME_OR_DIR",
                   help="hub name or save_pretrained directory for stimuli that name none "
                        "(default: the manifest's, else facebook/encodec_24khz)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_cmd_batch)


def _cmd_batch(args) -> int:
    from .batch import run_batch

    if args.workers is not None and args.workers < 1:
        raise ParameterError(f"--workers must be >= 1, got {args.workers}")
    report = run_batch(args.manifest, args.store, scheduler=args.scheduler, workers=args.workers,
                       progress=not args.no_progress, connect_timeout=args.connect_timeout,
                       tr_chunk=args.tr_chunk, model=args.model)
    if args.json:
        doc = report.to_json()
        _dump_entries(doc.pop("items"), **doc)
    else:
        print(report.table())
    for item in report.failed:
        print(f"giblet-store: error: {item.source} ({item.kind} {item.params}): {item.reason}", file=sys.stderr)
    return 0 if report.ok else EXIT_ERROR


# ------------------------------------------------------------------------------------ main
#: subcommand registrars, in help order; later work appends its own.
_COMMANDS: list[Callable] = [_add_extract, _add_ls, _add_show, _add_decode, _add_demo]

from .cli_fmri import add_evaluate, add_ingest_fmri, add_to_nifti  # noqa: E402  (fMRI runs, evaluation, NIfTI)

_COMMANDS += [add_ingest_fmri, add_evaluate, add_to_nifti]
_COMMANDS += [_add_mel, _add_derive]
_COMMANDS += [_add_batch]

from .quality_cli import add_compare, add_quality  # noqa: E402  (audio quality metrics, codec comparison)

_COMMANDS += [add_quality, add_compare]


def _add_verify(sub) -> None:
    from .cli_verify import add_verify

    add_verify(sub)


_COMMANDS += [_add_verify]


from .cli_exchange import _add_export, _add_import  # noqa: E402

_COMMANDS += [_add_export, _add_import]


from .cli_admin import add_gc, add_reindex  # noqa: E402  (gc and reindex: store maintenance)

_COMMANDS += [add_gc, add_reindex]


def build_parser() -> argparse.ArgumentParser:
    from .version import __version__

    parser = argparse.ArgumentParser(
        prog="giblet-store",
        description="Movie stimuli and fMRI in one chunked, labelled, versioned Zarr store.",
    )
    parser.add_argument("--version", action="version", version=f"giblet_store {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in _COMMANDS:
        add(sub)
    from .cli_help import document

    document(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    import warnings

    from .cli_warnings import plain_warnings

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            plain_warnings()  # `giblet-store: warning: ...`, no source line
            return int(args.func(args) or 0)
    except GibletStoreError as exc:
        if args.debug:
            raise
        print(f"giblet-store: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except PermissionError as exc:  # an OS refusal the code did not expect: still the user's to fix
        if args.debug:
            raise
        print(f"giblet-store: error: permission denied: {exc.filename or exc}; check the file's and folder's "
              "permissions (or run as a user who may read/write them)", file=sys.stderr)
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
        print(f"giblet-store: unexpected error ({type(exc).__name__}: {exc}); rerun with --debug "
              "for the traceback and report it", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
