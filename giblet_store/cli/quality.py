"""``giblet-store quality``: score a degraded signal against a reference (files or codes entries)."""

from __future__ import annotations

import contextlib
import math
import sys

from .util import field_default
from ..grid import TrGrid

__all__ = ["add_quality"]


def _metrics_default() -> str:
    """``--metrics`` default: every metric of :class:`~giblet_store.quality.metrics.QualityParams`, comma-separated."""
    from ..quality.metrics import QualityParams

    return ",".join(field_default(QualityParams, "metrics"))


def add_quality(sub) -> None:
    p = sub.add_parser("quality", help="audio quality metrics (SNR, SI-SDR, LSD, mel distance, STOI, PESQ), "
                                       "whole and per TR")
    p.add_argument("ref", metavar="REF",
                   help="reference: an audio file, or a codes, mel or reconstruction entry key (needs --store)")
    p.add_argument("deg", metavar="DEG",
                   help="degraded: an audio file, or a codes, mel or reconstruction entry key (needs --store)")
    p.add_argument("--store", default=None, help="store: resolves entry keys and keeps the scores as a quality entry")
    p.add_argument("--trs", default=None, metavar="A:B", help="TR range (stop exclusive); default every TR")
    p.add_argument("--metrics", default=_metrics_default(),
                   help="comma-separated metrics; the default is all of them")
    p.add_argument("--align", action="store_true", help="trim both to the shorter when lengths differ")
    p.add_argument("--tr", type=float, default=None,
                   help=f"TR in seconds for two files (default {field_default(TrGrid, 'tr_s'):g})")
    p.add_argument("--onset", type=float, default=field_default(TrGrid, "onset_s"),
                   help="stimulus time (s) of TR 0 for two files")
    p.add_argument("--deg-start", type=float, default=None, metavar="SECONDS",
                   help="stimulus time at which the degraded file starts (default: what `decode` recorded in "
                        "it, else 0)")
    p.add_argument("--model", default=None, help="model directory, for entries made with a local model")
    p.add_argument("--device", default="cpu", help="torch device for decoding a codes entry (cpu, cuda, mps)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (bars are shown only when stderr is a terminal)")
    p.set_defaults(func=_cmd_quality)


def _cmd_quality(args) -> int:
    from .util import dump as _dump
    from ..quality.metrics import QualityParams
    from .common import store_for_writing
    from ..quality.run import _jsonable, score_audio

    params = QualityParams(metrics=tuple(args.metrics.split(",")))
    grid = None
    if args.tr is not None or args.onset:
        grid = TrGrid(tr_s=field_default(TrGrid, "tr_s") if args.tr is None else args.tr, onset_s=args.onset)
    from ..progress import progress_bar

    with (store_for_writing(args.store) if args.store else contextlib.nullcontext()) as store, \
            progress_bar("quality", enabled=False if args.no_progress else None):  # the bar: on a terminal only
        r = score_audio(args.ref, args.deg, store=store, params=params, grid=grid, trs=args.trs, align=args.align,
                        model=args.model, device=args.device, deg_start=args.deg_start)
    metrics, notes = _jsonable(r.metrics, r.notes)
    if args.json:
        out = {"entries": [], "metrics": metrics, "notes": notes, "n_trs": int(r.per_tr.sizes["tr"]),
               "nan_reasons": r.nan_reasons}
        if r.entry is not None:  # the quality entry, and (as before) its key, created and path at the top
            out.update(entries=[{**r.entry.to_json(), "created": r.created}], key=r.entry.key, created=r.created,
                       path=r.entry.path)
        _dump(out)
        return 0
    _print_scores(r, metrics)
    return 0


def _print_scores(r, metrics: dict, file=None) -> None:
    file = file or sys.stdout
    print(f"{'METRIC':<16} {'WHOLE':>10} {'TR MEAN':>10} {'TR MIN':>10} {'NaN TRs':>8}", file=file)
    for name, v in metrics.items():
        col = r.per_tr[name].values
        ok = col[~(col != col)]  # drop NaN
        finite = ok[abs(ok) != math.inf]
        mean = f"{finite.mean():.3f}" if finite.size else "-"
        low = f"{ok.min():.3f}" if ok.size else "-"
        whole = "-" if v is None else f"{v:.3f}"
        if v is None and name in r.notes:
            whole = "inf" if "infinite" in r.notes[name] else "nan"
        print(f"{name:<16} {whole:>10} {mean:>10} {low:>10} {int(col.size - ok.size):>8}", file=file)
    for line in _nan_lines(r.nan_reasons):
        print(line, file=file)
    if r.entry is not None:
        print(f"{r.entry.key}  {'created' if r.created else 'cached'}  {r.entry.path}", file=file)


def _tr_list(trs: list) -> str:
    """'TR 2', 'TRs 0, 3, 7' or 'TRs 0 ... 49 (50)': which TRs a reason covers, short."""
    trs = sorted(trs)
    if len(trs) == 1:
        return f"TR {trs[0]}"
    if len(trs) <= 6:
        return "TRs " + ", ".join(str(t) for t in trs)
    return f"TRs {trs[0]} ... {trs[-1]} ({len(trs)})"


def _nan_lines(nan_reasons: dict) -> list[str]:
    """One line per distinct (reason, TRs): the variables it makes NaN, where, and why."""
    grouped: dict[tuple, list[str]] = {}
    for var, by_reason in nan_reasons.items():
        for reason, trs in by_reason.items():
            grouped.setdefault((reason, tuple(sorted(trs))), []).append(var)
    return [f"NaN {', '.join(names)} in {_tr_list(list(trs))}: {reason}" for (reason, trs), names in grouped.items()]


def _floats(text: str, what: str) -> list[float]:
    from ..errors import ParameterError

    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ParameterError(f"{what} takes comma-separated numbers (e.g. 1.5,6), got {text!r}") from None


def add_compare(sub) -> None:
    from ..codec.encodec import CodecParams

    p = sub.add_parser("compare", help="codec comparison report: EnCodec bandwidths vs mel + Griffin-Lim "
                                       "(CSV, Markdown, PNG)")
    p.add_argument("audio", metavar="AUDIO",
                   help="an audio file (wav, flac, ogg, ...) or a video/audio container (mp4, mov, mkv, ...)")
    p.add_argument("-o", "--output", required=True, metavar="REPORT_DIR", help="report directory (created)")
    p.add_argument("--model", default=field_default(CodecParams, "model"), help="hub name or save_pretrained directory")
    p.add_argument("--bandwidths", default=None, help="kbps, comma-separated (default: every one the model offers)")
    p.add_argument("--n-mels", default="64,128,512", help="mel sizes for Griffin-Lim, comma-separated")
    p.add_argument("--store", default=None, help="store for the entries (default: REPORT_DIR/store)")
    p.add_argument("--metrics", default=_metrics_default(), help="comma-separated metrics to score every method with")
    p.add_argument("--tr", type=float, default=field_default(TrGrid, "tr_s"), help="TR of the entries and per-TR scores")
    p.set_defaults(func=_cmd_compare)


def _cmd_compare(args) -> int:
    from ..quality.compare import compare_codecs
    from .common import store_for_writing
    from ..quality.metrics import QualityParams

    bws = _floats(args.bandwidths, "--bandwidths") if args.bandwidths else None
    n_mels = [int(x) for x in _floats(args.n_mels, "--n-mels")]
    with store_for_writing(args.store) if args.store else contextlib.nullcontext() as store:
        rep = compare_codecs(args.audio, args.output, model=args.model, bandwidths=bws, n_mels=n_mels, store=store,
                             params=QualityParams(metrics=tuple(args.metrics.split(","))), tr_s=args.tr)
    print(rep.first_line)
    print(rep.markdown.read_text().split("\n", 2)[2])
    print(f"wrote {rep.csv}, {rep.markdown}, {rep.png}")
    return 0
