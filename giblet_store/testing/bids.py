"""A small BIDS dataset with fMRIPrep-style derivatives and a planted stimulus-driven signal.

:func:`make_bids` writes what a lab downloads from OpenNeuro, at toy size::

    dataset_description.json, task-movie_bold.json (RepetitionTime, inherited by every run)
    stimuli/movie.wav                                          the movie's soundtrack
    sub-01/func/sub-01_task-movie_run-1_bold.nii.gz            raw
    sub-01/func/sub-01_task-movie_run-1_events.tsv             onset, duration, trial_type, stim_file
    derivatives/fmriprep/dataset_description.json
    derivatives/fmriprep/sub-01/func/
        sub-01_task-movie_run-1_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz (+ .json)
        sub-01_task-movie_run-1_space-MNI152NLin2009cAsym_desc-brain_mask.nii.gz
        sub-01_task-movie_run-1_desc-confounds_timeseries.tsv (+ .json)
        sub-01_task-movie_run-1_hemi-L_space-fsaverage6_bold.func.gii (+ .json; and hemi-R)

The surfaces (``surface_vertices`` per hemisphere, toy-sized; one data array per volume, as
fMRIPrep writes them) carry the same drive in the first half of each hemisphere's vertices
(``signal_vertices``) and the same kind of confound-driven noise, drawn from a generator of their own
so the NIfTI data does not depend on whether surfaces are written.

The BOLD of every voxel is ``baseline + noise``; the voxels of ``signal_voxels`` add ``amplitude *
drive``, where ``drive`` is the stimulus' loudness (z-scored log RMS of the soundtrack in each TR;
0 before the movie starts). The noise is white noise plus, in every voxel, a voxel-weighted mix of
the six motion parameters, the CSF/white-matter signals and a slow drift, all of which the
confounds file holds under fMRIPrep's column names: regressing them out (``motion``, ``wm_csf``,
``high_pass``) raises the planted signal's correlation.

Imports numpy, nibabel and soundfile only (testing knows nothing of the store).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["BidsStudy", "make_bids"]

SPACE = "MNI152NLin2009cAsym"
MOTION = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]


@dataclass(frozen=True)
class BidsStudy:
    """What :func:`make_bids` wrote: the root, names, and the planted truth.

    ``drive[(subject, run)]`` is the (tr,) planted regressor; ``signal_voxels`` the (x, y, z) bool
    voxels that carry it; ``onsets_s[run]`` the movie's onset in each run (the events file's).
    """

    root: Path
    task: str
    subjects: list[str]
    runs: list[str]
    tr_s: float
    space: str
    stimulus: Path
    onsets_s: dict[str, float]
    signal_voxels: np.ndarray
    drive: dict[str, np.ndarray] = field(default_factory=dict)
    surface_space: str | None = None
    signal_vertices: np.ndarray | None = None  # (vertex,) bool, left hemisphere's vertices then right's

    @property
    def fmriprep(self) -> Path:
        return self.root / "derivatives" / "fmriprep"


def _json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


def _tsv(path: Path, columns: dict[str, list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(columns)
    rows = ["\t".join(names)]
    for i in range(len(columns[names[0]])):
        rows.append("\t".join("n/a" if columns[n][i] is None else str(columns[n][i]) for n in names))
    path.write_text("\n".join(rows) + "\n")


def _soundtrack(seconds: float, sample_rate_hz: int, rng) -> np.ndarray:
    """Noise under a loudness that changes every second or so (what the planted signal follows)."""
    n = int(round(seconds * sample_rate_hz))
    knots = rng.uniform(-30, 0, size=int(seconds) + 2)  # dB
    env_db = np.interp(np.arange(n) / sample_rate_hz, np.arange(len(knots)), knots)
    x = 0.5 * 10 ** (env_db / 20) * rng.standard_normal(n)
    return np.clip(x, -1, 1).astype(np.float32)


def _drive(audio: np.ndarray, sample_rate_hz: int, onset_s: float, tr_s: float, n_trs: int) -> np.ndarray:
    """(tr,) log RMS of the soundtrack in stimulus time ``[k*tr - onset, (k+1)*tr - onset)``; 0 outside it."""
    out = np.full(n_trs, np.nan)
    for k in range(n_trs):
        a, b = (k * tr_s - onset_s) * sample_rate_hz, ((k + 1) * tr_s - onset_s) * sample_rate_hz
        a, b = int(round(max(a, 0))), int(round(min(b, len(audio))))
        if b - a > sample_rate_hz * tr_s / 2:
            out[k] = np.log(np.sqrt(np.mean(audio[a:b].astype(np.float64) ** 2)) + 1e-6)
    ok = np.isfinite(out)
    out[ok] = (out[ok] - out[ok].mean()) / (out[ok].std() or 1.0)
    return np.where(ok, out, 0.0)


def _confounds(n_trs: int, tr_s: float, rng) -> dict[str, np.ndarray]:
    """fMRIPrep's confound columns (the ones nilearn's load_confounds strategies read)."""
    cols: dict[str, np.ndarray] = {}
    for name in MOTION:  # random walks in mm and rad, and two 1 mm jerks (what scrubbing censors)
        cols[name] = np.cumsum(rng.normal(0, 0.05 if name.startswith("trans") else 0.001, n_trs))
    for t in rng.choice(np.arange(n_trs // 4, n_trs - 2), size=2, replace=False):
        cols["trans_x"][t] += 1.0
    for name in ["csf", "white_matter", "global_signal"]:
        cols[name] = 100 + np.cumsum(rng.normal(0, 1.0, n_trs))
    for name in MOTION + ["csf", "white_matter", "global_signal"]:
        d = np.concatenate([[np.nan], np.diff(cols[name])])
        cols[f"{name}_derivative1"] = d
        cols[f"{name}_power2"] = cols[name] ** 2
        cols[f"{name}_derivative1_power2"] = d ** 2
    dx = np.abs(np.diff(np.stack([cols[m] for m in MOTION]), axis=1))
    dx[3:] *= 50.0  # rotations as mm on a 50 mm sphere (Power et al.)
    cols["framewise_displacement"] = np.concatenate([[np.nan], dx.sum(0)])
    cols["std_dvars"] = np.concatenate([[np.nan], 1 + np.abs(rng.normal(0, 0.3, n_trs - 1))])
    cols["dvars"] = cols["std_dvars"] * 10
    for i in range(5):
        cols[f"a_comp_cor_{i:02d}"] = rng.standard_normal(n_trs) / np.sqrt(n_trs)
    n_cos = max(1, int(np.floor(2 * n_trs * tr_s / 128.0)))
    t = np.arange(n_trs)
    for i in range(n_cos):  # fMRIPrep's DCT basis (128 s cut-off)
        cols[f"cosine{i:02d}"] = np.sqrt(2.0 / n_trs) * np.cos(np.pi * (t + 0.5) * (i + 1) / n_trs)
    return cols


def _confounds_json(cols: dict) -> dict:
    """The sidecar nilearn reads for compcor: each a_comp_cor column's mask and method."""
    return {c: {"Method": "aCompCor", "Mask": "combined", "Retained": True,
                "VarianceExplained": 0.1, "CumulativeVarianceExplained": 0.1 * (i + 1)}
            for i, c in enumerate(x for x in cols if x.startswith("a_comp_cor_"))}


def _bold(shape, n_trs, drive, signal_voxels, cols, amplitude, noise, rng) -> np.ndarray:
    """(x, y, z, tr) float32: baseline + planted drive + motion/physiology/drift noise + white noise."""
    v = int(np.prod(shape))
    mix = np.stack([cols[m] - cols[m].mean() for m in MOTION] + [
        (cols[c] - cols[c].mean()) / 10 for c in ("csf", "white_matter")] + [np.linspace(-1, 1, n_trs)])
    weights = rng.normal(0, 1.0, size=(v, mix.shape[0])) * np.r_[[20.0] * 3, [1000.0] * 3, [3.0, 3.0], [4.0]]
    data = 1000.0 + weights @ mix + noise * rng.standard_normal((v, n_trs))
    data[signal_voxels.reshape(-1, order="F")] += amplitude * drive
    return data.reshape(*shape, n_trs, order="F").astype(np.float32)


def _nifti(path: Path, data: np.ndarray, tr_s: float) -> None:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data, np.diag([3.0, 3.0, 3.0, 1.0]))
    img.header.set_xyzt_units("mm", "sec")
    if data.ndim == 4:
        img.header.set_zooms((3.0, 3.0, 3.0, float(tr_s)))
    nib.save(img, str(path))


def make_bids(
    path: str | os.PathLike,
    *,
    task: str = "movie",
    n_subjects: int = 2,
    n_runs: int = 2,
    n_trs: int = 40,
    shape: tuple[int, int, int] = (6, 5, 4),
    tr_s: float = 2.0,
    onsets_s: tuple[float, ...] = (4.0, 6.0),
    space: str = SPACE,
    amplitude: float = 3.0,
    noise: float = 2.0,
    sample_rate_hz: int = 16000,
    seed: int = 0,
    sessions: tuple[str, ...] = (),
    surface_space: str | None = "fsaverage6",
    surface_vertices: int = 24,
) -> BidsStudy:
    """Write a BIDS dataset with fMRIPrep derivatives to ``path`` (created; must not hold a dataset yet).

    Parameters
    ----------
    task, n_subjects, n_runs, n_trs, shape, tr_s : the design (subjects ``01``.., runs ``1``..)
    onsets_s : the movie's onset in each run (seconds after the run's first volume), cycled over runs
    space : fMRIPrep's output space of the preprocessed BOLD
    amplitude, noise : the planted signal's amplitude and the white noise' std (scanner units)
    sample_rate_hz, seed : the soundtrack's rate; everything random is drawn from ``seed``
    sessions : session labels (``sub-01/ses-<label>/func/...``, every run in each); none: no session level
    surface_space, surface_vertices : the func.gii pairs' space and vertices per hemisphere (None or 0:
        no surfaces)

    Returns
    -------
    BidsStudy
    """
    root = Path(path)
    if (root / "dataset_description.json").exists():
        raise FileExistsError(f"{root} already holds a BIDS dataset")
    rng = np.random.default_rng(seed)
    subjects = [f"{i + 1:02d}" for i in range(n_subjects)]
    runs = [str(j + 1) for j in range(n_runs)]
    onsets = {r: float(onsets_s[j % len(onsets_s)]) for j, r in enumerate(runs)}
    stim, audio = _write_soundtrack(root, n_trs * tr_s - min(onsets.values()) + 1, sample_rate_hz, rng)
    _descriptions(root, task, tr_s)
    signal_voxels = np.zeros(shape, bool)
    signal_voxels[: shape[0] // 2] = True
    surf, signal_vertices = _surface_design(surface_space, surface_vertices)
    study = BidsStudy(root, task, subjects, runs, float(tr_s), space, stim, onsets, signal_voxels,
                      surface_space=surf, signal_vertices=signal_vertices)
    surf_rng = np.random.default_rng([seed, 19])
    for s in subjects:
        for ses in sessions or (None,):
            for r in runs:
                cols = _write_run(study, s, r, n_trs, audio, sample_rate_hz, amplitude, noise, rng, ses)
                if surf:
                    _write_surfaces(study, s, r, n_trs, cols, amplitude, noise, surf_rng, ses)
    return study


def _write_soundtrack(root: Path, seconds: float, sample_rate_hz: int, rng) -> tuple[Path, np.ndarray]:
    """stimuli/movie.wav, and its samples as a reader gets them back (what the drive follows)."""
    import soundfile as sf

    stim = root / "stimuli" / "movie.wav"
    stim.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(stim), _soundtrack(seconds, sample_rate_hz, rng), sample_rate_hz, subtype="PCM_16")
    return stim, sf.read(str(stim), dtype="float32")[0]


def _surface_design(space: str | None, n: int) -> tuple[str | None, np.ndarray | None]:
    """The surfaces' space (None: none written) and (vertex,) signal vertices: each hemisphere's first half."""
    if not space or not n:
        return None, None
    half = np.arange(n) < n // 2
    return space, np.concatenate([half, half])


def _gifti(path: Path, data: np.ndarray, hemi: str) -> None:
    """(vertex, tr) ``data`` as a func.gii: one float32 data array per volume (fMRIPrep's layout)."""
    import nibabel as nib

    meta = nib.gifti.GiftiMetaData({"AnatomicalStructurePrimary": "CortexLeft" if hemi == "L" else "CortexRight"})
    img = nib.gifti.GiftiImage(meta=meta)
    for t in range(data.shape[1]):
        img.add_gifti_data_array(nib.gifti.GiftiDataArray(np.ascontiguousarray(data[:, t], dtype=np.float32),
                                                          intent="NIFTI_INTENT_TIME_SERIES", datatype="float32"))
    nib.save(img, str(path))


def _write_surfaces(study: BidsStudy, s: str, r: str, n_trs: int, cols, amplitude, noise, rng, ses) -> None:
    """The run's func.gii pair (and sidecars) in ``study.surface_space``, with the run's drive and confounds."""
    level = f"sub-{s}" + (f"/ses-{ses}" if ses else "")
    stem = f"sub-{s}" + (f"_ses-{ses}" if ses else "") + f"_task-{study.task}_run-{r}"
    dfunc = study.fmriprep / level / "func"
    n = len(study.signal_vertices) // 2
    for i, hemi in enumerate(("L", "R")):
        sig = study.signal_vertices[i * n:(i + 1) * n].reshape(n, 1, 1)
        data = _bold((n, 1, 1), n_trs, study.drive[(s, r)], sig, cols, amplitude, noise, rng).reshape(n, n_trs)
        name = f"{stem}_hemi-{hemi}_space-{study.surface_space}_bold"
        _gifti(dfunc / f"{name}.func.gii", data, hemi)
        _json(dfunc / f"{name}.json", {"RepetitionTime": study.tr_s})


def _descriptions(root: Path, task: str, tr_s: float) -> None:
    """The dataset's and fMRIPrep's dataset_description.json, and the top-level sidecar every run inherits."""
    _json(root / "dataset_description.json", {"Name": "giblet_store toy movie study", "BIDSVersion": "1.8.0"})
    _json(root / f"task-{task}_bold.json", {"RepetitionTime": tr_s, "TaskName": task})
    _json(root / "derivatives" / "fmriprep" / "dataset_description.json", {
        "Name": "fMRIPrep output", "BIDSVersion": "1.8.0", "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "fMRIPrep", "Version": "23.1.0"}]})


def _write_run(study: BidsStudy, s: str, r: str, n_trs: int, audio, sample_rate_hz, amplitude, noise, rng,
               ses: str | None = None) -> dict:
    """One (subject, [session,] run): raw BOLD, events, preprocessed BOLD, brain mask, confounds."""
    level = f"sub-{s}" + (f"/ses-{ses}" if ses else "")
    stem = f"sub-{s}" + (f"_ses-{ses}" if ses else "") + f"_task-{study.task}_run-{r}"
    func, dfunc = study.root / level / "func", study.fmriprep / level / "func"
    drive = _drive(audio, sample_rate_hz, study.onsets_s[r], study.tr_s, n_trs)
    study.drive[(s, r)] = drive
    cols = _confounds(n_trs, study.tr_s, rng)
    shape = study.signal_voxels.shape
    bold = _bold(shape, n_trs, drive, study.signal_voxels, cols, amplitude, noise, rng)
    _nifti(func / f"{stem}_bold.nii.gz", bold, study.tr_s)
    movie_s = len(audio) / sample_rate_hz
    _tsv(func / f"{stem}_events.tsv", {"onset": [0.0, study.onsets_s[r]], "duration": [study.onsets_s[r], movie_s],
                                      "trial_type": ["fixation", "movie"], "stim_file": [None, "movie.wav"]})
    prep = f"{stem}_space-{study.space}"
    _nifti(dfunc / f"{prep}_desc-preproc_bold.nii.gz", bold, study.tr_s)
    _json(dfunc / f"{prep}_desc-preproc_bold.json", {"RepetitionTime": study.tr_s, "SkullStripped": False})
    _nifti(dfunc / f"{prep}_desc-brain_mask.nii.gz", np.ones(shape, np.uint8), study.tr_s)
    _tsv(dfunc / f"{stem}_desc-confounds_timeseries.tsv",
         {k: [None if not np.isfinite(x) else round(float(x), 6) for x in v] for k, v in cols.items()})
    _json(dfunc / f"{stem}_desc-confounds_timeseries.json", _confounds_json(cols))
    return cols
