"""``giblet-store mel`` and ``giblet-store derive``: stimulus features beside the codes.

Registered by :mod:`giblet_store.cli`. Option defaults are the parameter dataclasses' field defaults
(:class:`~giblet_store.features.mel.MelParams`, :class:`~giblet_store.grid.TrGrid`, :class:`~giblet_store.features.hrf.Hrf`,
:class:`~giblet_store.features.resample.Resample`), read with :func:`giblet_store.cli.util.field_default`.
"""

from __future__ import annotations

import sys
from typing import Any

from .common import add_no_progress, dump_entries, extract_each, progress
from .util import add_grid_options, field_default as _default
from ..errors import ParameterError
from ..grid import TrGrid
from ..features.hrf import Hrf
from ..features.mel import MelParams
from ..features.resample import RESAMPLE_METHODS, Resample

__all__ = ["add_mel", "add_derive", "parse_hrf"]


def add_mel(sub) -> None:
    p = sub.add_parser("mel", help="mel spectrograms of audio files on a TR grid (the legacy feature path)")
    p.add_argument("audio", nargs="+")  # help: cli.help.POSITIONAL_HELP["audio"]
    p.add_argument("--store", required=True, help="store directory or fsspec URL (created if absent)")
    add_grid_options(p)
    m = MelParams
    p.add_argument("--sample-rate", type=int, default=_default(m, "sample_rate_hz"),
                   help="Hz the audio is resampled to")
    p.add_argument("--n-fft", type=int, default=_default(m, "n_fft"), help="STFT size (samples)")
    p.add_argument("--hop", type=int, default=_default(m, "hop"), help="STFT hop (samples)")
    p.add_argument("--n-mels", type=int, default=_default(m, "n_mels"), help="mel bands (<= n_fft/2 + 1)")
    p.add_argument("--fmin", type=float, default=_default(m, "fmin_hz"), help="lowest band edge (Hz)")
    p.add_argument("--fmax", type=float, default=_default(m, "fmax_hz"),
                   help="highest band edge (Hz; default sample rate / 2)")
    p.add_argument("--power", type=float, default=_default(m, "power"), choices=(1.0, 2.0),
                   help="1 magnitude, 2 power")
    p.add_argument("--no-db", action="store_true", help="store power/magnitude, not dB")
    p.add_argument("--ref", type=float, default=_default(m, "ref"),
                   help="fixed dB reference (0 dB), never the file's max")
    p.add_argument("--chunk-seconds", type=float, default=_default(m, "chunk_s"), help="audio per Dask task")
    p.add_argument("--audio-stream", type=int, default=None, metavar="N",
                   help="container stream index (as ffprobe's Stream #0:N); default: the default audio stream")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    add_no_progress(p)
    p.set_defaults(func=_cmd_mel)


def _cmd_mel(args) -> int:
    from ..features.mel import extract_mel

    params = MelParams(sample_rate_hz=args.sample_rate, n_fft=args.n_fft, hop=args.hop, n_mels=args.n_mels,
                       fmin_hz=args.fmin, fmax_hz=args.fmax, power=args.power, db=not args.no_db,
                       ref=args.ref, chunk_s=args.chunk_seconds)
    grid = TrGrid(tr_s=args.tr, onset_s=args.onset, n_trs=args.n_trs)
    return extract_each(args, lambda store, path: extract_mel(store, path, params, grid,
                                                              audio_stream=args.audio_stream))


def parse_hrf(text: str):
    """``--hrf spm|glover|fir:1,2,3,4`` as an :class:`Hrf` (default shape) or a :class:`Fir`."""
    from ..features.hrf import Fir

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


def add_derive(sub) -> None:
    p = sub.add_parser("derive", help="derive an entry: embeddings, HRF/FIR, parcels, or another TR grid (cached)")
    p.add_argument("store")
    p.add_argument("key", metavar="KEY_OR_PREFIX")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--hrf", metavar="spm|glover|fir:1,2,3,4", help="causal HRF convolution or FIR delays")
    what.add_argument("--resample-tr", type=float, metavar="S", help="resample to this TR (s) by stimulus time")
    what.add_argument("--stretch", type=int, metavar="N", help="the reference's stretch to N TRs (linspace)")
    what.add_argument("--embeddings", action="store_true", help="dequantise a codes entry (RVQ decode)")
    what.add_argument("--quantise", type=float, metavar="KBPS",
                      help="greedy RVQ of a reconstruction of embeddings at this bandwidth (-> codes)")
    what.add_argument("--parcellate", metavar="ATLAS", nargs="+",
                      help="average an fmri entry's voxels within each label of this atlas NIfTI (0: background); "
                           "a surface entry: one .label.gii or .annot per hemisphere (two paths)")
    p.add_argument("--resample-atlas", action="store_true",
                   help="--parcellate: resample an atlas on another grid to the data's (nearest neighbour)")
    p.add_argument("--hrf-length", type=float, default=_default(Hrf, "length_s"), help="HRF kernel length (s)")
    p.add_argument("--oversampling", type=int, default=_default(Hrf, "oversampling"),
                   help="HRF sub-samples averaged per TR (1: at TR multiples)")
    p.add_argument("--onset", type=float, default=_default(Resample, "onset_s"),
                   help="--resample-tr: onset (s) of the target grid")
    p.add_argument("--n-trs", type=int, default=_default(Resample, "n_trs"), help="--resample-tr: target TR count")
    p.add_argument("--method", default=_default(Resample, "method"),
                   choices=tuple(m for m in RESAMPLE_METHODS if m != "stretch"),
                   help="--resample-tr: linear (floats) / previous (codes)")
    p.add_argument("--no-antialias", action="store_true", help="--resample-tr: no low-pass when going coarser")
    p.add_argument("--variables", default=None, help="comma-separated data variables (default: per-TR floats)")
    p.add_argument("--axis", default=None, help="time dimension (required for fmri entries: --axis tr)")
    p.add_argument("--reference-codes", action="store_true",
                   help="--hrf on codes: the reference project's convolve-round-clip (warns)")
    p.add_argument("--model", default=None, help="--embeddings: model directory or hub name (default: the entry's)")
    p.add_argument("--device", default="cpu", help="--embeddings: torch device")
    p.add_argument("--json", action="store_true")
    add_no_progress(p)
    p.set_defaults(func=_cmd_derive)


def _transform(args):
    """The transform ``derive`` applies, from the one of --embeddings/--quantise/--hrf/--stretch/--resample-tr given."""
    from ..features.derive import Embeddings

    if args.resample_atlas and args.parcellate is None:
        raise ParameterError("--resample-atlas is an option of --parcellate ATLAS; give both or neither")
    if args.embeddings:
        return Embeddings()
    if args.parcellate is not None:
        from ..fmri.parcels import Parcellate

        atlas = args.parcellate[0] if len(args.parcellate) == 1 else tuple(args.parcellate)
        return Parcellate(atlas=atlas, resample=args.resample_atlas)
    if args.quantise is not None:
        from ..features.quantise import Quantise

        return Quantise(bandwidth_kbps=args.quantise)
    if args.hrf is not None:
        transform = parse_hrf(args.hrf)
        if isinstance(transform, Hrf):
            transform = Hrf(model=transform.model, length_s=args.hrf_length, oversampling=args.oversampling)
        return transform
    if args.stretch is not None:
        return Resample(method="stretch", n_trs=args.stretch, onset_s=args.onset)
    return Resample(tr_s=args.resample_tr, onset_s=args.onset, n_trs=args.n_trs,
                    method=args.method, antialias=not args.no_antialias)


def _derive_options(args) -> dict[str, Any]:
    """Keyword arguments of :func:`giblet_store.features.derive._derive` that the options set."""
    kw: dict[str, Any] = {}
    if args.variables:
        kw["variables"] = [v.strip() for v in args.variables.split(",") if v.strip()]
    if args.axis:
        kw["axis"] = args.axis
    if args.reference_codes:
        kw["reference_codes"] = True
    if args.embeddings or args.quantise is not None:
        kw.update(model=args.model, device=args.device)
    return kw


def _cmd_derive(args) -> int:
    import warnings

    from ..features.derive import _derive
    from ..store.core import open_store

    transform, kw = _transform(args), _derive_options(args)
    store = open_store(args.store, mode="r")
    parent = store.get(args.key)
    store = open_store(args.store)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with progress(args, f"derive {type(transform).__name__.lower()}"):
            entry, created = _derive(store, parent, transform, **kw)
    for w in caught:
        print(f"giblet-store: warning: {w.message}", file=sys.stderr)
    if args.json:
        dump_entries([{**entry.to_json(), "created": created}])
    else:
        print(f"{entry.key}  {'created' if created else 'cached'}  {entry.path}  <- {parent.key[:16]} ({parent.kind})")
    return 0
