"""A BIDS study (raw or fMRIPrep derivatives) -> one ``fmri`` entry with runs, optionally denoised.

:func:`ingest_bids` finds the runs of one task (:mod:`giblet_store.fmri.bids_layout`), takes the TR
from the sidecars, the stimulus onset of each run from its events file, the confounds from
fMRIPrep's TSV (:mod:`giblet_store.fmri.clean`), and stores the runs as :func:`ingest_fmri` does
(subject-major, runs by number along ``tr``). Everything is read and checked before the first byte
is written; the key covers every file's sha256 (BOLD, sidecars, events, confounds) and every option,
so a raw and a cleaned ingest of the same files are two entries.

Pairing: an events row whose ``stim_file`` (or ``trial_type``) names the stimulus starts the movie
``onset`` seconds after the run's first volume, so TR ``k`` of the run pairs with stimulus time
``k*TR - onset``: the run's TR grid has ``onset_s = -onset`` (the store's convention: TR ``i`` covers
stimulus time ``[onset_s + i*tr, ...)``). A stimulus entry on another onset is refused with the onset
to extract it at.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import FmriError, ParameterError
from ..grid import exact
from ..params import ALGORITHM_VERSION, content_key
from ..store.core import Entry, Store
from ..store.hashing import sha256_file
from ..store.schema import FORMAT_VERSION
from ..store.verify import cache_hit
from ..validate import tr_seconds
from .bids_layout import BidsRun, find_runs
from .clean import CleanParams, RunConfounds, clean_run, clean_values, run_confounds, scratch_dir
from .ingest import FmriParams, IngestResult, MaskParams, ingest_fmri
from .inputs import mask_key
from .nifti import BLOCK_BYTES, open_series

__all__ = ["ingest_bids", "study_tr", "stimulus_onset"]


def study_tr(runs: list[BidsRun], series) -> tuple[float, str]:
    """The one TR of the runs (the sidecars', else the headers' with a warning) and where it came from."""
    trs = []
    for run, s in zip(runs, series):
        tr = run.sidecar.get("RepetitionTime")
        where = str(run.sidecar_files[-1]) if run.sidecar_files else None
        if tr is None:
            if s.header_tr_s is None:
                raise FmriError(f"{run.bold}: no sidecar gives RepetitionTime and the header has no TR; add "
                                f"task-{run.entities.get('task')}_bold.json with RepetitionTime at the dataset root")
            warnings.warn(f"{run.bold.name}: no sidecar gives RepetitionTime; using the header's TR "
                          f"{s.header_tr_s:g} s", UserWarning, stacklevel=3)
            tr, where = s.header_tr_s, f"{run.bold.name} (header)"
        else:
            tr = tr_seconds(tr, f"RepetitionTime in {where}")
            if s.header_tr_s is not None and abs(s.header_tr_s - tr) > 1e-3:
                raise FmriError(f"{where} gives RepetitionTime {tr:g} s but the header of {run.bold} says "
                                f"{s.header_tr_s:g} s; they differ by more than 1 ms: fix the sidecar or the header")
        trs.append((float(tr), where))
    if len({exact(t) for t, _ in trs}) > 1:
        listing = ", ".join(f"sub-{r.subject} run-{r.run}: {t:g} s" for r, (t, _) in zip(runs, trs))
        raise FmriError(f"the runs have different TRs ({listing}); one entry holds one TR grid: ingest them apart")
    return trs[0]


def stimulus_onset(events: Path | None, name: str, column: str, bold: Path) -> float:
    """Seconds from the run's first volume to the events row whose ``column`` names the stimulus ``name``."""
    import pandas as pd

    if events is None:
        raise FmriError(f"{bold.name}: no _events.tsv for this run, so the stimulus onset is unknown; add the events "
                        "file, or ingest without a stimulus")
    try:
        df = pd.read_csv(events, sep="\t", na_values=["n/a"], dtype={column: str})
    except (OSError, ValueError) as e:
        raise FmriError(f"{events}: cannot read the events file ({e})") from None
    if column not in df.columns or "onset" not in df.columns:
        raise FmriError(f"{events}: no {column!r} or 'onset' column (it has {', '.join(map(str, df.columns))}); "
                        "choose the column naming the stimulus with event_column= (CLI: --event-column)")
    values = df[column].fillna("").astype(str)
    hit = df[(values == name) | (values.map(lambda v: Path(v).name) == Path(name).name)]
    if hit.empty:
        present = sorted(set(values) - {""})
        raise FmriError(f"{events}: no row whose {column} names the stimulus {name!r} (it names "
                        f"{', '.join(present) or 'nothing'}); give the name the events use with event=... "
                        "(CLI: --event NAME), or the events column with --event-column")
    return float(hit["onset"].astype(float).min())


def _stimuli(store: Store, stimulus: Any, runs: list[str]) -> list[Entry | None]:
    if stimulus is None:
        return [None] * len(runs)
    if isinstance(stimulus, dict):
        stimulus = [stimulus.get(r) for r in runs]
    stimulus = [stimulus] * len(runs) if isinstance(stimulus, (str, Entry)) else list(stimulus)
    if len(stimulus) != len(runs):
        raise FmriError(f"{len(stimulus)} stimulus entr(ies) for runs {runs}; give one, or one per run")
    return [store.get(s) if s is not None else None for s in stimulus]


def _check_onset(stim: Entry | None, onset: float, run: BidsRun, events: Path) -> None:
    if stim is None:
        return
    have = float(stim.attrs.get("onset_s", 0.0))
    if exact(have) != exact(-onset):
        raise FmriError(f"{events.name}: the movie starts {onset:g} s into run {run.run}, so TR k pairs with "
                        f"stimulus time k*TR - {onset:g}; stimulus entry {stim.key[:16]} is on onset_s={have:g}. "
                        f"Extract the stimulus with --onset {-onset:g} (TrGrid(onset_s={-onset:g})); from an "
                        "entry of the same file that holds every frame (onset 0, no --n-trs) its frames are "
                        "re-grouped, not encoded again")


def _onsets(store, runs: list[BidsRun], run_ids, stimulus, event, column) -> tuple[list, list[float | None]]:
    stims = _stimuli(store, stimulus, run_ids)
    out: list[float | None] = []
    for r in runs:
        st = stims[run_ids.index(r.run)]
        name = event or (st.attrs.get("source_name") if st is not None else None)
        if name is None:
            out.append(None)
            continue
        onset = stimulus_onset(r.events, str(name), column, r.bold)
        _check_onset(st, onset, r, r.events)
        out.append(onset)
    for rid in run_ids:
        mine = {o for r, o in zip(runs, out) if r.run == rid}
        if len(mine) > 1:
            listing = ", ".join(f"sub-{r.subject}: {o:g} s" for r, o in zip(runs, out) if r.run == rid)
            raise FmriError(f"run {rid}: the events files put the stimulus at different onsets ({listing}); one "
                            "entry holds one TR grid per run: ingest the subjects apart (--subjects)")
    return [s.key if s is not None else None for s in stims], out


def _sha(p: Path | None) -> str | None:
    return sha256_file(p) if p is not None else None


def _file_records(runs: list[BidsRun], root: Path, confs: list[RunConfounds], onsets) -> list[dict]:
    """Per (subject, run): every file's name and sha256, the confound columns used, the onset."""
    out = []
    for r, c, onset in zip(runs, confs, onsets):
        out.append({"subject": r.subject, "run": r.run, "bold": str(r.bold.relative_to(root)),
                    "bold_sha256": _sha(r.bold), "entities": r.entities,
                    "sidecars": [{"file": str(p.relative_to(root)), "sha256": _sha(p)} for p in r.sidecar_files],
                    "events": str(r.events.relative_to(root)) if r.events else None, "events_sha256": _sha(r.events),
                    "confounds_file": str(r.confounds.relative_to(root)) if r.confounds else None,
                    "confounds_sha256": _sha(r.confounds), "confounds": c.names,
                    "n_censored": int(c.censored.sum()), "stimulus_onset_s": onset})
        if r.hemis:  # a surface pair: both hemispheres' bytes are in the key
            out[-1]["bold_files"] = [{"file": str(p.relative_to(root)), "sha256": _sha(p)} for p in r.hemis]
    return out


def _key(bids: dict, params: FmriParams, mask, mask_params: MaskParams, series0, stims: list) -> str:
    if mask is None:
        m = {"computed": mask_params.to_dict()}
    elif isinstance(mask, np.ndarray):
        m = {"given": mask_key(mask.astype(bool), series0.affine)}
    else:
        m = {"given_file_sha256": sha256_file(mask)}
    return content_key({"kind": "fmri", "algorithm_version": ALGORITHM_VERSION, "format_version": FORMAT_VERSION,
                        "bids": bids, "fmri": params.to_dict(), "mask": m, "stimuli": stims})


def _label(x, prefix: str) -> str:
    return str(x)[len(prefix):] if str(x).startswith(prefix) else str(x)


def ingest_bids(
    store: Store, bids_dir, task: str, *, stimulus: Any = None, derivatives: str | None = None,
    space: str | None = None, subjects: Sequence[str] | None = None, runs: Sequence[str] | None = None,
    session: str | None = None, event: str | None = None, event_column: str = "stim_file",
    clean: CleanParams | None = None, params: FmriParams | None = None, mask: Any = None,
    mask_params: MaskParams | None = None, chunk_trs: int | None = None, block_bytes: int = BLOCK_BYTES,
    scheduler: Any = "threads",
) -> IngestResult:
    """Ingest task ``task`` of a BIDS study as one ``fmri`` entry with runs (or return the cached one).

    Parameters
    ----------
    store : Store
    bids_dir : the dataset's root (holding dataset_description.json and sub-*/)
    task : the BIDS task label (``task-<label>``)
    stimulus : a stimulus entry (or key) on the scan's TR grid for every run, or one per run (list in run
        order or ``{run: key}``); its onset must be ``-onset`` of the run's events row (refused otherwise)
    derivatives : "fmriprep" (``derivatives/fmriprep``'s desc-preproc_bold) or None (the raw BOLD)
    space, subjects, runs, session : which files (labels with or without their ``sub-``/``run-``/``ses-``);
        default: the one space, every subject, every run, the one session
    event, event_column : the events rows whose ``event_column`` names ``event`` (default: the
        stimulus entry's source file name) give each run's stimulus onset
    clean : CleanParams (confounds, detrending, filters); default: nothing removed
    params, mask, mask_params, chunk_trs, block_bytes, scheduler : as :func:`ingest_fmri`; the TR comes
        from the sidecars (``params.tr_s`` must be None)

    Returns
    -------
    IngestResult
        As :func:`ingest_fmri`; its ``runs`` records carry ``stimulus_onset_s``, ``events_sha256``,
        ``confounds`` (the columns used) and ``n_censored``; a cleaned entry has ``censored`` (subject, tr).

    Raises
    ------
    FmriError
        Not a BIDS folder, unknown task/subject/space/session, a missing run, sidecar and header TRs
        over 1 ms apart, confounds rows != volumes, an unknown confound, events without the stimulus,
        a stimulus entry on another onset. Nothing is written.
    """
    clean, params = clean or CleanParams(), params or FmriParams()
    if params.tr_s is not None or params.n_trs is not None:
        raise ParameterError("a BIDS ingest takes the TR from the sidecars and keeps every volume; leave "
                             "params.tr_s and params.n_trs unset")
    root, session = Path(bids_dir), None if session is None else _label(session, "ses-")
    found = find_runs(root, task, derivatives=derivatives, space=space,
                      subjects=None if subjects is None else [_label(s, "sub-") for s in subjects],
                      runs=runs, session=session)
    if found[0].surface and mask is not None:
        raise ParameterError(f"space {space!r} is a surface: every vertex is kept; leave the mask out (--mask)")
    bids = {"task": task, "session": session, "space": space, "derivatives": derivatives, "event": event,
            "event_column": event_column, "clean": clean.to_dict()}
    series, tr_s, stim_keys, confs, prov = _plan(store, root, found, bids, stimulus, clean)
    key = _key(bids, params, mask, mask_params or MaskParams(), series[0], stim_keys)
    if (hit := cache_hit(store, key, "fmri")) is not None:
        return IngestResult(hit, False)
    prov["key"] = key
    fparams = FmriParams(tr_s=tr_s, zscore_trs=params.zscore_trs, nan_policy=params.nan_policy)
    kw = dict(runs=[r.run for r in found], params=fparams, mask=mask, mask_params=mask_params,
              stimulus=stim_keys, chunk_trs=chunk_trs, block_bytes=block_bytes, scheduler=scheduler, provenance=prov)
    return _ingest(store, found, series, confs, clean, tr_s, block_bytes, kw)


def _ingest(store, found, series, confs, clean: CleanParams, tr_s: float, block_bytes: int, kw: dict):
    """The runs as read, or cleaned into scratch NIfTIs (removed afterwards), through :func:`ingest_fmri`;
    surface runs through :func:`~giblet_store.fmri.surface.ingest_surface`, cleaned in memory."""
    subj = [r.subject for r in found]
    if found[0].surface:
        from .surface import ingest_surface

        def cleaner(i: int, x):
            return clean_values(x, confs[i], clean, tr_s, found[i].bold.name)

        kw = {k: v for k, v in kw.items() if k not in ("mask", "mask_params", "block_bytes")}
        return ingest_surface(store, [r.hemis or r.bold for r in found], subj,
                              cleaner=cleaner if clean.active else None, **kw)
    if not clean.active:
        return ingest_fmri(store, [r.bold for r in found], subj, **kw)
    with scratch_dir() as tmp:
        cleaned = [clean_run(s, c, clean, tr_s, Path(tmp) / f"{i:04d}.nii", block_bytes)
                   for i, (s, c) in enumerate(zip(series, confs))]
        return ingest_fmri(store, cleaned, subj, **kw)


def _open_run(r: BidsRun):
    """The run's series: a NIfTI, a func.gii pair, or a CIFTI dtseries."""
    if not r.surface:
        return open_series(r.bold)
    from .surface_read import open_surface, open_surface_pair

    return open_surface_pair(r.hemis) if r.hemis else open_surface(r.bold)


def _plan(store, root: Path, found: list[BidsRun], bids: dict, stimulus, clean: CleanParams):
    """Everything read and checked before a write: series, TR, stimuli, confounds; ``bids`` gets the files."""
    series = [_open_run(r) for r in found]
    if found[0].surface and any(not r.surface for r in found):
        raise FmriError("the runs mix surface and volume files; one entry holds one kind: choose one space")
    tr_s, tr_file = study_tr(found, series)
    clean.check_filters(tr_s)
    run_ids = list(dict.fromkeys(r.run for r in found))
    stim_keys, onsets = _onsets(store, found, run_ids, stimulus, bids["event"], bids["event_column"])
    confs = [run_confounds(clean, r.bold, r.confounds, s.n_volumes, [str(p) for p in r.hemis] or None)
             for r, s in zip(found, series)]
    files = _file_records(found, root, confs, onsets)
    bids.update(tr_s=tr_s, files=files)
    tr_file = str(Path(tr_file).relative_to(root)) if Path(tr_file).is_relative_to(root) else tr_file
    return series, tr_s, stim_keys, confs, _provenance(bids, found, files, confs, run_ids, tr_file)


def _provenance(bids, found, files, confs, run_ids, tr_file) -> dict:
    """What the entry records of the BIDS files (see ``ingest_fmri``'s ``provenance``; the key comes later)."""
    n_sub = len(dict.fromkeys(r.subject for r in found))
    first = {r.run: f for r, f in zip(found, files) if r.subject == found[0].subject}
    runs = [{"stimulus_onset_s": first[r]["stimulus_onset_s"], "events_sha256": first[r]["events_sha256"],
             "events_file": first[r]["events"], "confounds": first[r]["confounds"]} for r in run_ids]
    censored = None
    if bids["clean"]["confounds"]:
        censored = np.stack([np.concatenate([c.censored for c in confs[i * len(run_ids):(i + 1) * len(run_ids)]])
                             for i in range(n_sub)])
    sources = [{"source_name": r.bold.name, "source_sha256": f["bold_sha256"], "bids_path": f["bold"],
                "entities": f["entities"], "events_sha256": f["events_sha256"], "confounds": f["confounds"],
                "n_censored": f["n_censored"], "stimulus_onset_s": f["stimulus_onset_s"]}
               for r, f in zip(found, files)]
    ent = found[0].entities
    attrs = {"bids": {k: v for k, v in bids.items() if k != "files"}, "clean": bids["clean"],
             "tr_source": tr_file, "bids_entities": {k: ent.get(k) for k in ("task", "ses", "space", "desc")}}
    return {"inputs": {"bids": bids, "sources": [{"subject": f["subject"], "run": f["run"],
                                                              "sha256": f["bold_sha256"]} for f in files]},
            "attrs": attrs, "sources": sources, "runs": runs, "censored": censored,
            "onsets": [None if o is None else -o for o in (first[r]["stimulus_onset_s"] for r in run_ids)]}
