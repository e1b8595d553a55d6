"""``giblet-store ingest-fmri``, ``evaluate`` and ``to-nifti``: the fMRI side of the command line.

Registered by :mod:`giblet_store.cli`; the work is done by :mod:`giblet_store.fmri.ingest`,
:mod:`giblet_store.training.evaluation` and :mod:`giblet_store.training.predictions`.
"""

from __future__ import annotations

import sys

from .fmri_bids import add_bids_options, check_not_bids, cmd_ingest_bids
from .util import dump, field_default, tr_range

__all__ = ["add_ingest_fmri", "add_evaluate", "add_to_nifti", "add_to_gifti"]


def _dump_entry(entry, created: bool) -> None:
    """The ``--json`` shape of every command: ``{"entries": [entry]}`` with ``created``."""
    dump({"entries": [{**entry.to_json(), "created": created}]})


# ------------------------------------------------------------------------------------ ingest-fmri
def add_ingest_fmri(sub) -> None:
    from ..fmri.ingest import FmriParams as F, MaskParams as M
    from ..validate import NanPolicy

    p = sub.add_parser("ingest-fmri", help="ingest 4D NIfTI series (one per subject, or per subject and run) "
                                          "as an fmri entry")
    p.add_argument("store", help="store directory or fsspec URL (created if absent)")
    p.add_argument("nifti", nargs="*", help="4D NIfTI files (.nii / .nii.gz), one per subject (or subject and run); "
                   "or surfaces: func.gii pairs (hemi-L then hemi-R, both per subject/run) or .dtseries.nii "
                   "files; or none with --bids")
    p.add_argument("--subject", nargs="+", action="extend", default=None, metavar="ID",
                   help="subject IDs, one per file, in the same order (required with NIfTI files)")
    p.add_argument("--run", nargs="+", action="extend", default=None, metavar="RUN",
                   help="run IDs, one per file, in the same order (e.g. --subject s1 s1 s2 s2 --run 1 2 1 2); "
                        "runs are stored one after the other along tr")
    p.add_argument("--mask", default=None, help=f"3D NIfTI mask (default: computed, std > "
                   f"{field_default(M, 'std_percentile'):g}th pct in >= {field_default(M, 'min_subject_fraction'):g} "
                   "of subjects)")
    p.add_argument("--tr", type=float, default=field_default(F, "tr_s"),
                   help="TR in seconds (default: from the headers)")
    p.add_argument("--stimulus", nargs="+", default=None, metavar="KEY",
                   help="stimulus entry whose TR grid the fMRI is on; with --run, one per run in run order")
    p.add_argument("--n-trs", type=int, default=field_default(F, "n_trs"),
                   help="keep the first N volumes of every subject")
    p.add_argument("--zscore-trs", default=field_default(F, "zscore_trs"), metavar="START:STOP",
                   help="z-score each voxel with the mean/std of these (training) TRs only")
    p.add_argument("--nan-policy", choices=[m.value for m in NanPolicy], default=field_default(F, "nan_policy"),
                   help="mask voxels that are NaN/inf at some TR: error, or drop them from the mask")
    p.add_argument("--mask-percentile", type=float, default=field_default(M, "std_percentile"),
                   help="computed mask: std percentile per subject")
    p.add_argument("--mask-fraction", type=float, default=field_default(M, "min_subject_fraction"),
                   help="computed mask: fraction of subjects to vote")
    p.add_argument("--chunk-trs", type=int, default=None, help="TRs per stored chunk (default ~4 MiB chunks)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (bars are shown only when stderr is a terminal)")
    add_bids_options(p)
    p.set_defaults(func=_cmd_ingest_fmri)


def _cmd_ingest_fmri(args) -> int:
    from ..fmri.ingest import FmriParams, MaskParams, ingest_fmri
    from .common import store_for_writing
    from ..progress import progress_bar

    if args.bids is not None:
        return cmd_ingest_bids(args, _dump_entry)
    check_not_bids(args)
    params = FmriParams(tr_s=args.tr, n_trs=args.n_trs, zscore_trs=tr_range(args.zscore_trs),
                        nan_policy=args.nan_policy)
    mask_params = MaskParams(std_percentile=args.mask_percentile, min_subject_fraction=args.mask_fraction)
    with store_for_writing(args.store) as store, \
            progress_bar("ingest-fmri", enabled=False if args.no_progress else None):
        stimulus = args.stimulus[0] if args.stimulus and len(args.stimulus) == 1 and not args.run else args.stimulus
        if _surface_files(args.nifti):
            r = _ingest_surface(store, args, params, stimulus)
        else:
            r = ingest_fmri(store, args.nifti, args.subject, runs=args.run, params=params, mask=args.mask,
                            mask_params=mask_params, stimulus=stimulus, chunk_trs=args.chunk_trs)
    if args.json:
        _dump_entry(r.entry, r.created)
    else:
        a = r.entry.attrs
        print(f"{r.entry.key}  {'created' if r.created else 'cached'}  {r.entry.path}  "
              f"subjects={a['n_subjects']} runs={a.get('n_runs', 1)} trs={a['n_trs']} "
              + (f"vertices={a['n_vertices']} space={a['surface']['space']} " if "surface" in a
                 else f"voxels={a['n_voxels']} ") + f"tr={a['tr_s']:g}s")
    return 0


def _surface_files(files) -> bool:
    return bool(files) and all(str(f).endswith((".func.gii", ".dtseries.nii")) for f in files)


def _ingest_surface(store, args, params, stimulus):
    """Plain surface files: func.gii pairs (one subject/run ID per pair) or dtseries (one per file)."""
    from ..errors import ParameterError
    from ..fmri.surface import ingest_surface

    if args.mask is not None:
        raise ParameterError("--mask is for NIfTI; a surface entry keeps every vertex: leave --mask out")
    return ingest_surface(store, args.nifti, args.subject, runs=args.run, params=params, stimulus=stimulus,
                          chunk_trs=args.chunk_trs)


# ------------------------------------------------------------------------------------ evaluate
def add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="per-voxel Pearson r of a predictions entry against its fmri")
    p.add_argument("store")
    p.add_argument("key", metavar="PREDICTIONS_KEY")
    p.add_argument("--trs", default=None, metavar="START:STOP", help="TR range (default: every predicted TR)")
    p.add_argument("--include-censored", action="store_true",
                   help="keep the TRs scrubbed at ingest (the fmri entry's censored) in r (default: left out)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(args) -> int:
    from .common import existing_store
    from ..training.evaluation import evaluate, undefined_note

    entry, created = evaluate(existing_store(args.store), args.key, trs=tr_range(args.trs),
                              include_censored=args.include_censored)
    if args.json:
        _dump_entry(entry, created)
    else:
        a = entry.attrs
        mean = "undefined" if a["r_mean_all"] is None else round(a["r_mean_all"], 4)
        print(f"{entry.key}  {'created' if created else 'cached'}  {entry.path}  trs={a['trs'][0]}:{a['trs'][1]} "
              f"mean r={mean}{_normalised_text(a)}")
        for run in a.get("runs") or []:
            r = "undefined" if run["r_mean_all"] is None else round(run["r_mean_all"], 4)
            span = "-" if run["trs"] is None else f"{run['trs'][0]}:{run['trs'][1]}"
            print(f"  run {run['run']}: trs={span} ({run['n_trs_used']} TRs) mean r={r}")
        if note := undefined_note(a):
            print(f"giblet-store: note: {note}", file=sys.stderr)
    return 0


def _normalised_text(a: dict) -> str:
    """`` r/ceiling=X over N voxel x subject pairs with a reliable ceiling`` (or why there is none)."""
    s = (a.get("scores") or {}).get("all") or {}
    if s.get("r_over_ceiling") is None:
        return "  r/ceiling=undefined (no voxel with a reliable noise ceiling)" if "scores" in a else ""
    return (f"  r/ceiling={s['r_over_ceiling']:.4f} (mean r / mean ceiling over {s['n_voxels_normalised']} "
            "voxel x subject pairs with a reliable ceiling)")


# ------------------------------------------------------------------------------------ to-nifti
def add_to_nifti(sub) -> None:
    p = sub.add_parser("to-nifti", help="export an fmri, predictions or evaluation entry to NIfTI")
    p.add_argument("store")
    p.add_argument("key", metavar="KEY_OR_PREFIX")
    p.add_argument("-o", "--output", required=True, help="output .nii or .nii.gz")
    p.add_argument("--subject", default=None, help="subject ID (evaluation: default is the mean over subjects)")
    p.add_argument("--var", default=None, help="variable (default: fmri, predictions, r or r_mean; evaluation "
                                                 "with --run: r_run or r_run_mean; noise_ceiling is per voxel)")
    p.add_argument("--trs", default=None, metavar="START:STOP", help="TR range of a 4D export")
    p.add_argument("--run", default=None, metavar="RUN",
                   help="only this run's TRs (an entry with runs; --trs then counts within the run), or "
                        "this run's map of an evaluation (r_run, r_run_mean)")
    _add_atlas(p)
    p.set_defaults(func=_cmd_to_nifti)


def _add_atlas(p) -> None:
    p.add_argument("--atlas", nargs="+", default=None, metavar="ATLAS",
                   help="a parcel entry's atlas (surface: one file per hemisphere), when it is no longer where it "
                        "was when derived: the parcels are painted back onto the voxels or vertices they average")


def _atlas(args):
    return None if args.atlas is None else (args.atlas[0] if len(args.atlas) == 1 else tuple(args.atlas))


def _cmd_to_nifti(args) -> int:
    from ..training.predictions import entry_to_nifti
    from ..store.core import open_store

    store = open_store(args.store, mode="r")
    trs, run = tr_range(args.trs), None
    if args.run is not None and store.get(args.key).kind == "evaluation":
        run = args.run  # a per-run map (r_run, r_run_mean): no TRs to select
    elif args.run is not None:
        trs = _run_trs(store, args.key, args.run, trs)
    out = entry_to_nifti(store, args.key, args.output, subject=args.subject, variable=args.var, trs=trs, run=run,
                         atlas=_atlas(args))
    print(f"wrote {out}")
    return 0


def add_to_gifti(sub) -> None:
    p = sub.add_parser("to-gifti", help="export a surface fmri, predictions or evaluation entry as a func.gii "
                                        "per hemisphere")
    p.add_argument("store")
    p.add_argument("key", metavar="KEY_OR_PREFIX")
    p.add_argument("-o", "--output", required=True, metavar="PREFIX",
                   help="writes PREFIX_hemi-L.func.gii and PREFIX_hemi-R.func.gii")
    p.add_argument("--subject", default=None, help="subject ID (evaluation: default is the mean over subjects)")
    p.add_argument("--var", default=None, help="variable (default: fmri, predictions, r or r_mean)")
    p.add_argument("--trs", default=None, metavar="START:STOP", help="TR range of a time-series export")
    p.add_argument("--run", default=None, metavar="RUN", help="only this run's TRs, or this run's map (r_run)")
    _add_atlas(p)
    p.set_defaults(func=_cmd_to_gifti)


def _cmd_to_gifti(args) -> int:
    from ..training.predictions import entry_to_gifti
    from ..store.core import open_store

    store = open_store(args.store, mode="r")
    trs, run = tr_range(args.trs), None
    if args.run is not None and store.get(args.key).kind == "evaluation":
        run = args.run
    elif args.run is not None:
        trs = _run_trs(store, args.key, args.run, trs)
    left, right = entry_to_gifti(store, args.key, args.output, subject=args.subject, variable=args.var, trs=trs,
                                 run=run, atlas=_atlas(args))
    print(f"wrote {left}\nwrote {right}")
    return 0


def _run_trs(store, key: str, run: str, within: tuple[int, int] | None) -> tuple[int, int]:
    """The global TR range of run ``run`` of the fmri entry behind ``key`` (``within``: TRs inside the run)."""
    from ..errors import ParameterError
    from ..fmri.nifti_write import fmri_entry_of
    from ..fmri.runs import run_table

    table = run_table(fmri_entry_of(store, key).attrs)
    rec = next((r for r in table if str(r["run"]) == str(run)), None)
    if rec is None:
        raise ParameterError(f"run {run!r} is not in entry {key}; its runs are {[r['run'] for r in table]}")
    off, n = int(rec["tr_offset"]), int(rec["n_trs"])
    a, b = within if within is not None else (0, n)
    if not 0 <= a < b <= n:
        raise ParameterError(f"--trs {a}:{b} is not within the {n} TRs of run {run!r}; give 0 <= START < STOP <= {n}")
    return off + a, off + b
