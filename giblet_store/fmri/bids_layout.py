"""Finding a BIDS study's runs: BOLD files, sidecar TRs (with inheritance), events and confounds.

File names are found and parsed by ``nilearn.interfaces.bids`` (``get_bids_files``,
``parse_bids_filename``); this module only decides which of them belong together:

- **BOLD**: ``sub-*/[ses-*/]func/*_task-TASK_*bold.nii[.gz]`` of the raw dataset, or with
  ``derivatives="fmriprep"`` the ``desc-preproc_bold`` files of ``derivatives/fmriprep`` in one
  ``space`` (asked for when there are several). A ``space`` with no NIfTI but surface files
  (``*_hemi-L/R_space-SPACE_bold.func.gii`` pairs, or ``*_space-SPACE*_bold.dtseries.nii``) gives
  those: each run's ``bold`` is then its left func.gii (``hemis`` holds the pair) or its dtseries.
- **TR**: ``RepetitionTime`` of the BOLD's sidecars, merged from the top level down (BIDS
  inheritance: a sidecar applies to a file when its entities are a subset of the file's, and a
  deeper one overrides a shallower one). A derivative's own sidecar comes last; the raw dataset's
  chain of the same (sub, ses, task, run) comes before it.
- **events**: the raw dataset's ``_events.tsv`` of the same (sub, ses, task, run).
- **confounds**: fMRIPrep's ``desc-confounds_timeseries.tsv`` of the same (sub, ses, task, run).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import FmriError

__all__ = ["BidsRun", "find_runs", "sidecar", "run_sort_key"]

_KEYS = ("sub", "ses", "task", "run")


@dataclass
class BidsRun:
    """One (subject, run) of the study: its files and what the sidecars say."""

    subject: str
    run: str
    bold: Path
    entities: dict
    sidecar: dict = field(default_factory=dict)
    sidecar_files: list[Path] = field(default_factory=list)
    events: Path | None = None
    confounds: Path | None = None
    hemis: list[Path] = field(default_factory=list)

    @property
    def surface(self) -> bool:
        """Whether the run is on a surface (a func.gii pair or a CIFTI dtseries)."""
        return bool(self.hemis) or self.bold.name.endswith(".dtseries.nii")


def run_sort_key(run: str):
    """Runs order by their number (``run-2`` before ``run-10``), then by their label."""
    return (0, int(run), run) if run.isdigit() else (1, 0, run)


def _parse(path) -> dict:
    from nilearn.interfaces.bids import parse_bids_filename

    ref = parse_bids_filename(str(path))
    return dict(ref["entities"] if isinstance(ref, dict) else ref.entities)


def _files(root: Path, tag: str, ftype: str, filters: list, sub: str = "*") -> list[Path]:
    from nilearn.interfaces.bids import get_bids_files

    return [Path(p) for p in get_bids_files(root, file_tag=tag, file_type=ftype, sub_label=sub,
                                            modality_folder="func", filters=filters)]


def _surface_files(deriv: Path, base: list, space: str) -> list[Path]:
    """A surface space's BOLD: func.gii files (both hemispheres) or CIFTI dtseries."""
    out = []
    for ftype in ("func.gii", "dtseries.nii"):
        out += [p for p in _files(deriv, "bold", ftype, base) if _parse(p).get("space") == space]
    return out


def _bold_files(root: Path, deriv: Path | None, task: str, space: str | None, session: str | None) -> list[Path]:
    base = [("task", task)] + ([("ses", session)] if session else [])
    if deriv is None:
        return [p for p in _files(root, "bold", "nii*", base) if "desc" not in _parse(p)]
    files = _files(deriv, "bold", "nii*", base + [("desc", "preproc")])
    spaces = sorted({_parse(p).get("space", "") for p in files})
    if space is None and len(spaces) > 1:
        raise FmriError(f"{deriv}: the preprocessed BOLD of task {task!r} is in {len(spaces)} spaces "
                        f"({', '.join(s or '(none)' for s in spaces)}); choose one with space=... (CLI: --space)")
    if space is not None:
        files = [p for p in files if _parse(p).get("space") == space] or _surface_files(deriv, base, space)
        if not files:
            surf = sorted({_parse(p).get("space", "") for t in ("func.gii", "dtseries.nii")
                           for p in _files(deriv, "bold", t, base)} - {""})
            raise FmriError(f"{deriv}: no desc-preproc_bold of task {task!r} in space {space!r}; the spaces "
                            f"there are {', '.join(s or '(none)' for s in spaces) or 'none'}"
                            + (f" (surfaces: {', '.join(surf)})" if surf else ""))
    return files


def _tasks(root: Path) -> list[str]:
    return sorted({_parse(p).get("task", "") for p in _files(root, "bold", "nii*", [])} - {""})


def sidecar(bold: Path, root: Path) -> tuple[dict, list[Path]]:
    """The merged sidecar of a BOLD file under ``root`` (BIDS inheritance), and the files merged, in order."""
    from nilearn.interfaces.bids import get_bids_files

    ent = _parse(bold)
    cands = [Path(p) for p in get_bids_files(root, file_tag="bold", file_type="json", sub_folder=False)]
    cands += _files(root, "bold", "json", [], sub=ent["sub"])
    cands += [Path(p) for p in sorted((root / f"sub-{ent['sub']}").glob("*_bold.json"))]  # subject level
    if ent.get("ses"):
        cands += [Path(p) for p in sorted((root / f"sub-{ent['sub']}" / f"ses-{ent['ses']}").glob("*_bold.json"))]
    own = bold.with_name(re.sub(r"(\.dtseries\.nii|\.func\.gii|\.nii\.gz|\.nii)$", ".json", bold.name))
    chosen = {}
    for c in cands:
        e = _parse(c)
        if c != own and all(ent.get(k) == v for k, v in e.items()):
            chosen[c] = len(c.relative_to(root).parts)
    ordered = sorted(chosen, key=lambda c: (chosen[c], str(c))) + ([own] if own.exists() else [])
    merged: dict = {}
    for c in ordered:
        try:
            merged.update(json.loads(c.read_text()))
        except (OSError, ValueError) as e:
            raise FmriError(f"{c}: not a readable JSON sidecar ({e}); fix or remove it") from None
    return merged, ordered


def _same_run(root: Path, ent: dict, tag: str, ftype: str, extra: list | None = None) -> Path | None:
    filters = [(k, ent[k]) for k in ("task", "ses", "run") if ent.get(k)] + (extra or [])
    hits = [p for p in _files(root, tag, ftype, filters, sub=ent["sub"])
            if all(_parse(p).get(k) == ent.get(k) for k in _KEYS)]
    return hits[0] if hits else None


def _check_names(root: Path, found: list[Path], task: str, subjects, session) -> dict[str, list[Path]]:
    """The BOLD files by subject, with the subjects asked for (every one of them must exist)."""
    if not found:
        where = f" in session {session!r}" if session else ""
        raise FmriError(f"{root}: no BOLD file of task {task!r}{where}; the tasks there are "
                        f"{', '.join(_tasks(root)) or 'none'} (give one with --task)")
    by_sub: dict[str, list[Path]] = {}
    for p in found:
        by_sub.setdefault(_parse(p)["sub"], []).append(p)
    sessions = sorted({_parse(p).get("ses") or "" for p in found})
    if session is None and len(sessions) > 1:
        raise FmriError(f"{root}: task {task!r} was scanned in sessions {', '.join(sessions)}; one entry holds one "
                        "session: choose it with session=... (CLI: --session)")
    if subjects is not None:
        want = [re.sub(r"^sub-", "", str(s)) for s in subjects]
        missing = [s for s in want if s not in by_sub]
        if missing:
            raise FmriError(f"{root}: subject {missing[0]!r} has no BOLD of task {task!r}; the subjects there are "
                            f"{', '.join(sorted(by_sub))}")
        by_sub = {s: by_sub[s] for s in want}
    return by_sub


def find_runs(root, task: str, *, derivatives: str | None = None, space: str | None = None,
              subjects=None, runs=None, session: str | None = None) -> list[BidsRun]:
    """Every (subject, run) of task ``task``, subject-major, runs by number; files and sidecars attached."""
    root = Path(root)
    if not root.is_dir() or not (root / "dataset_description.json").is_file():
        raise FmriError(f"{root} is not a BIDS dataset (no dataset_description.json); give the dataset's root "
                        "folder, the one that holds dataset_description.json and the sub-*/ folders")
    deriv = None
    if derivatives:
        deriv = root / "derivatives" / derivatives
        if not deriv.is_dir():
            raise FmriError(f"{root}: no derivatives/{derivatives}/ folder; run fMRIPrep first, or ingest the raw "
                            "BOLD with derivatives=None (CLI: leave --derivatives out)")
    by_sub = _check_names(root, _bold_files(root, deriv, task, space, session), task, subjects, session)
    out = []
    for sub, files in by_sub.items():
        mine = _one_per_run(sub, files)
        out += _subject_runs(root, deriv, sub, mine, runs, by_sub)
    return out


def _one_per_run(sub: str, files: list[Path]) -> dict[str, Path | list[Path]]:
    """{run: BOLD} of one subject ({run: [left, right]} for func.gii pairs); two files of one run (echo-,
    acq-, dir-, ...) are refused, not chosen among."""
    mine: dict = {}
    for p in files:
        ent = _parse(p)
        run = str(ent.get("run", "1"))
        key = (run, ent.get("hemi")) if p.name.endswith(".func.gii") else (run, None)
        if key in mine:
            raise FmriError(f"subject {sub!r} run {run!r} has more than one BOLD file ({mine[key].name}, {p.name}); "
                            "one entry holds one series per run: copy the study without the others (echoes, "
                            "acquisitions) or ingest the files with ingest-fmri FILES --subject --run")
        mine[key] = p
    out: dict = {}
    for run in dict.fromkeys(r for r, _ in mine):
        if (run, None) in mine:
            out[run] = mine[(run, None)]
            continue
        pair = [mine.get((run, h)) for h in ("L", "R")]
        if None in pair:
            have = next(p for p in pair if p is not None)
            raise FmriError(f"subject {sub!r} run {run!r}: {have.name} has no other hemisphere (no hemi-"
                            f"{'R' if pair[1] is None else 'L'} file beside it); a surface run needs both: add it, "
                            "or leave the run out (--runs)")
        out[run] = pair
    return out


def _subject_runs(root, deriv, sub: str, mine: dict, runs, by_sub) -> list[BidsRun]:
    want = sorted({str(_parse(p).get("run", "1")) for fs in by_sub.values() for p in fs}, key=run_sort_key)
    if runs is not None:
        want = [re.sub(r"^run-", "", str(r)) for r in runs]
    missing = [r for r in want if r not in mine]
    if missing:
        raise FmriError(f"subject {sub!r} has no BOLD for run {missing[0]!r} (it has runs "
                        f"{', '.join(sorted(mine, key=run_sort_key))}); every subject needs every run: choose "
                        f"the runs all subjects have with runs=... (CLI: --runs), or leave subject {sub!r} out")
    out = []
    for r in sorted(want, key=run_sort_key):
        bold, hemis = (mine[r][0], list(mine[r])) if isinstance(mine[r], list) else (mine[r], [])
        ent = {k: v for k, v in _parse(bold).items() if k != "hemi"}
        run = BidsRun(sub, r, bold, ent, hemis=hemis)
        run.sidecar, run.sidecar_files = sidecar(bold, deriv or root)
        if deriv is not None:
            raw = _same_run(root, ent, "bold", "nii*")
            if raw is not None:
                inherited, files = sidecar(raw, root)
                run.sidecar, run.sidecar_files = {**inherited, **run.sidecar}, files + run.sidecar_files
            run.confounds = _same_run(deriv, ent, "timeseries", "tsv", [("desc", "confounds")])
        run.events = _same_run(root, ent, "events", "tsv")
        out.append(run)
    return out
