"""``giblet-store ingest-fmri STORE --bids DIR --task TASK``: a BIDS study (and fMRIPrep's derivatives).

The options of :func:`giblet_store.fmri.bids.ingest_bids` and of the denoising
(:class:`giblet_store.fmri.clean.CleanParams`), added to ``ingest-fmri`` by :mod:`giblet_store.cli.fmri`.
"""

from __future__ import annotations

from .util import field_default, tr_range

__all__ = ["add_bids_options", "cmd_ingest_bids", "check_not_bids"]

_BIDS_ONLY = ("task", "derivatives", "space", "subjects", "runs", "session", "event", "confounds", "detrend",
              "high_pass", "low_pass", "fd_threshold")


def add_bids_options(p) -> None:
    from ..fmri.clean import STRATEGIES, CleanParams as C

    g = p.add_argument_group("BIDS study (instead of NIfTI files)")
    g.add_argument("--bids", default=None, metavar="DIR", help="a BIDS dataset's root (dataset_description.json)")
    g.add_argument("--task", default=None, help="the BIDS task label (task-<label>)")
    g.add_argument("--derivatives", default=None, metavar="PIPELINE",
                   help="ingest derivatives/PIPELINE's desc-preproc_bold (fmriprep) instead of the raw BOLD")
    g.add_argument("--space", default=None, help="fMRIPrep output space (needed when there are several)")
    g.add_argument("--subjects", nargs="+", default=None, metavar="SUB", help="only these subjects (default: all)")
    g.add_argument("--runs", nargs="+", default=None, metavar="RUN", help="only these runs (default: all)")
    g.add_argument("--session", default=None, help="the session (needed when there are several)")
    g.add_argument("--event", default=None, metavar="NAME",
                   help="the events' name of the stimulus (default: the stimulus entry's file name)")
    g.add_argument("--event-column", default="stim_file", choices=["stim_file", "trial_type"],
                   help="events column that names the stimulus")
    g.add_argument("--confounds", nargs="+", default=None, metavar="STRATEGY_OR_COLUMN",
                   help=f"regress out confounds: load_confounds strategies ({', '.join(STRATEGIES)}) and/or "
                        "columns of the confounds TSV")
    g.add_argument("--detrend", action="store_true", help="remove a linear trend per run")
    g.add_argument("--high-pass", type=float, default=field_default(C, "high_pass_hz"), metavar="HZ",
                   help="butterworth high-pass cut-off")
    g.add_argument("--low-pass", type=float, default=field_default(C, "low_pass_hz"), metavar="HZ",
                   help="butterworth low-pass cut-off")
    g.add_argument("--fd-threshold", type=float, default=None, metavar="MM",
                   help="scrub: framewise displacement above which a volume is censored "
                        f"(default {field_default(C, 'fd_threshold'):g})")


def check_not_bids(args) -> None:
    """NIfTI mode: files and --subject are needed, and no BIDS-only option is given."""
    from ..errors import ParameterError

    if not args.nifti or not args.subject:
        raise ParameterError("ingest-fmri needs 4D NIfTI files with --subject ID..., or --bids DIR --task TASK")
    given = [n for n in _BIDS_ONLY if getattr(args, n) not in (None, False)]
    if given:
        raise ParameterError(f"--{given[0].replace('_', '-')} is an option of a BIDS ingest; add --bids DIR --task "
                             "TASK, or leave it out")


def cmd_ingest_bids(args, dump_entry) -> int:
    from ..errors import ParameterError
    from ..fmri.bids import ingest_bids
    from ..fmri.clean import CleanParams
    from ..fmri.ingest import FmriParams, MaskParams
    from ..progress import progress_bar
    from .common import store_for_writing

    if args.nifti or args.subject or args.run or args.tr is not None or args.n_trs is not None:
        raise ParameterError("--bids takes the files, subjects, runs and TR from the dataset; leave out NIfTI "
                             "files, --subject, --run, --tr and --n-trs (choose with --subjects/--runs)")
    if not args.task:
        raise ParameterError("--bids needs --task TASK (the BIDS task label, e.g. --task movie)")
    clean = CleanParams(confounds=tuple(args.confounds or ()), detrend=args.detrend, high_pass_hz=args.high_pass,
                        low_pass_hz=args.low_pass, **({} if args.fd_threshold is None else
                                                      {"fd_threshold": args.fd_threshold}))
    params = FmriParams(zscore_trs=tr_range(args.zscore_trs), nan_policy=args.nan_policy)
    mask_params = MaskParams(std_percentile=args.mask_percentile, min_subject_fraction=args.mask_fraction)
    stimulus = args.stimulus[0] if args.stimulus and len(args.stimulus) == 1 else args.stimulus
    with store_for_writing(args.store) as store, \
            progress_bar("ingest-fmri", enabled=False if args.no_progress else None):  # refused: a new store goes
        r = ingest_bids(store, args.bids, args.task, stimulus=stimulus, derivatives=args.derivatives,
                        space=args.space, subjects=args.subjects, runs=args.runs, session=args.session,
                        event=args.event, event_column=args.event_column, clean=clean, params=params, mask=args.mask,
                        mask_params=mask_params, chunk_trs=args.chunk_trs)
    if args.json:
        dump_entry(r.entry, r.created)
        return 0
    a = r.entry.attrs
    censored = sum(int(s.get("n_censored", 0)) for s in a["sources"])
    print(f"{r.entry.key}  {'created' if r.created else 'cached'}  {r.entry.path}  subjects={a['n_subjects']} "
          f"runs={a.get('n_runs', 1)} trs={a['n_trs']} "
          + (f"vertices={a['n_vertices']} " if "surface" in a else f"voxels={a['n_voxels']} ") + f"tr={a['tr_s']:g}s "
          f"confounds={len((a.get('runs') or [{}])[0].get('confounds') or [])} censored={censored}")
    return 0
