"""A BIDS study end to end: fMRIPrep derivatives in, denoised at ingest, a ridge model, an r map.

1. a small BIDS dataset with fMRIPrep derivatives is generated (``giblet_store.testing.make_bids``:
   2 subjects x 2 runs x 40 TRs of 6x5x4 voxels; half the voxels follow the soundtrack's loudness,
   every voxel carries motion, physiological and drift noise that the confounds file describes),
   or ``--bids DIR`` names one of yours (it must have ``stimuli/<stim_file>`` and events);
2. the soundtrack becomes mel features on each run's TR grid: the events put the movie at a
   different onset in each run, so TR k of a run pairs with stimulus time ``k*TR - onset``;
3. the study is ingested twice from its BIDS files: as fMRIPrep wrote it, and denoised with
   nilearn (motion, white matter/CSF, cosine drift regressors); the TR comes from the sidecar;
4. a ridge model (closed form, numpy) is fitted per entry on run 1 and predicts run 2; predictions
   and the per-voxel r on run 2 go into the store, and the denoised r map is written as NIfTI.

Denoising must raise the r of the voxels that carry the planted signal (the script asserts it).

    python examples/bids_study.py --store bids_store
    python examples/bids_study.py --store s --bids my_dataset --task movie

The last line printed is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np

import giblet_store as gs


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", required=True, help="store directory (created if absent)")
    p.add_argument("--bids", default=None, help="BIDS dataset root (default: a generated one)")
    p.add_argument("--task", default="movie")
    p.add_argument("--alpha", type=float, default=10.0, help="ridge penalty")
    return p.parse_args(argv)


def features(store, stimulus: Path, tr_s: float, onsets: dict, n_trs: int) -> dict:
    """A mel entry per run, on that run's grid (onset_s = -events onset)."""
    mp = gs.MelParams(sample_rate_hz=16000, n_fft=512, hop=256, n_mels=16)
    with warnings.catch_warnings():  # the runs end before the movie does: the grids crop its end
        warnings.filterwarnings("ignore", message=r"n_trs=\d+ crops")
        return {run: gs.extract_mel(store, stimulus, mp, gs.TrGrid(tr_s=tr_s, onset_s=-o, n_trs=n_trs)).entry
                for run, o in onsets.items()}


def design(store, mel: dict, runs: list[str]) -> np.ndarray:
    """(tr, band) mel means of the runs one after the other; TRs before the movie hold NaN."""
    return np.concatenate([store.open(mel[r])["mel_mean"].values.astype(np.float64) for r in runs])


def ridge(x_train, y_train, x_test, alpha: float):
    """Closed-form ridge on standardised features (training statistics; NaN -> the training mean)."""
    mu, sd = np.nanmean(x_train, 0), np.nanstd(x_train, 0) + 1e-9
    xs = [np.nan_to_num((x - mu) / sd) for x in (x_train, x_test)]
    xs = [np.c_[np.ones(len(x)), x] for x in xs]
    reg = alpha * np.eye(xs[0].shape[1])
    reg[0, 0] = 0.0
    w = np.linalg.solve(xs[0].T @ xs[0] + reg, xs[0].T @ y_train)
    return xs[1] @ w, w


def fit_and_evaluate(store, entry, x, train, test, alpha, work: Path) -> tuple:
    """Per subject: fit on ``train`` TRs, predict ``test``; store predictions and their evaluation."""
    ds = store.open(entry)
    y = ds["fmri"].values.astype(np.float64)
    preds, weights = [], []
    for i in range(y.shape[0]):
        p, w = ridge(x[train[0]:train[1]], y[i, train[0]:train[1]], x[test[0]:test[1]], alpha)
        preds.append(p)
        weights.append(w)
    ckpt = work / f"ridge_{entry.key[:12]}.npy"
    np.save(ckpt, np.stack(weights))
    pe, _ = gs.write_predictions(store, np.stack(preds).astype(np.float32), entry, model_name="ridge(mel_mean)",
                                 checkpoint=ckpt, training_params={"alpha": alpha, "train_trs": list(train)},
                                 trs=test)
    ev, _ = gs.evaluate(store, pe, trs=test)
    return pe, ev


def signal_r(store, ev, fmri_entry, signal_voxels) -> float:
    """Mean r over subjects and the voxels that carry the planted signal."""
    ijk = store.open(fmri_entry)["voxel_ijk"].values
    sig = signal_voxels[ijk[:, 0], ijk[:, 1], ijk[:, 2]]
    return float(np.nanmean(store.open(ev)["r"].values[:, sig]))


def main(argv=None) -> dict:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bids_study_") as work:  # the generated study, the ridge weights
        return run(args, Path(work))


def run(args, work: Path) -> dict:
    from giblet_store.testing import make_bids

    study = make_bids(work / "ds") if args.bids is None else None
    root = Path(args.bids) if args.bids else study.root
    store = gs.open_store(args.store)
    raw = gs.ingest_bids(store, root, args.task, derivatives="fmriprep", event="movie.wav").entry
    runs = [r["run"] for r in raw.attrs["runs"]]
    onsets = {r["run"]: r["stimulus_onset_s"] for r in raw.attrs["runs"]}
    n_trs = raw.attrs["runs"][0]["n_trs"]
    mel = features(store, root / "stimuli" / "movie.wav", raw.attrs["tr_s"], onsets, n_trs)
    clean = gs.CleanParams(confounds=("motion", "wm_csf", "high_pass"), motion="basic")
    cleaned = gs.ingest_bids(store, root, args.task, derivatives="fmriprep", clean=clean,
                          stimulus=[mel[r].key for r in runs]).entry
    x = design(store, mel, runs)
    train, test = (0, n_trs), (n_trs, 2 * n_trs)  # fit on run 1, test on run 2
    out = {"fmri_raw_key": raw.key, "fmri_clean_key": cleaned.key, "mel_keys": [mel[r].key for r in runs],
           "confounds": cleaned.attrs["runs"][0]["confounds"], "onsets_s": onsets, "tr_s": cleaned.attrs["tr_s"]}
    for name, entry in (("raw", raw), ("clean", cleaned)):
        pe, ev = fit_and_evaluate(store, entry, x, train, test, args.alpha, work)
        out[f"evaluation_{name}_key"] = ev.key
        if study is not None:
            out[f"r_signal_{name}"] = signal_r(store, ev, entry, study.signal_voxels)
    out["r_map"] = str(gs.entry_to_nifti(store, out["evaluation_clean_key"],
                                         Path(args.store).with_name(Path(args.store).name + ".r_map.nii.gz")))
    if study is not None:
        assert out["r_signal_clean"] > out["r_signal_raw"], out
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
