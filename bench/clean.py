"""Denoised BIDS ingest against nilearn's NiftiMasker on the same files: peak RSS, throughput, values.

A study is generated with ``giblet_store.testing.make_bids`` (fMRIPrep-style derivatives: preprocessed
BOLD ``.nii.gz``, ``desc-confounds_timeseries.tsv`` with fMRIPrep's column names, sidecars), by default
2 subjects x 2 runs x 600 TRs x 100,000 voxels (a 50 x 50 x 40 box of 3 mm, every voxel in the mask).
Both sides remove the same things from each run: the confounds of ``load_confounds(strategy=("motion",
"wm_csf"), motion="basic", wm_csf="basic")`` (8 columns of the TSV), a linear trend and a 0.01 Hz
butterworth high-pass; neither standardises.

  ours     ``gs.ingest_bids(store, root, "movie", derivatives="fmriprep", clean=CleanParams(...),
           mask=all)``: discovery, sidecars, confounds, cleaning in voxel blocks, the Zarr entry written
  nilearn  per run ``NiftiMasker(mask_img=all, detrend=True, high_pass=0.01, t_r=TR,
           standardize=False).fit_transform(bold, confounds=load_confounds(bold, ...)[0])``; each run's
           (tr, voxel) result is kept until the run is done (then saved, untimed, for the comparison)

Each side runs in its own fresh Python process, so its peak RSS (``ru_maxrss``) is its own (the study
is written by a third one: a child's ``ru_maxrss`` starts at its parent's); imports are done before
the clock starts. Throughput is voxel-TRs per CPU second (user + system, all threads:
the machine is shared, so wall time is not comparable). Values: our entry's ``fmri`` against nilearn's
arrays, max abs difference, within float32 tolerance (rtol 1e-5 of the largest value).

    .venv/bin/python bench/clean.py [--voxels 100000] [--trs 600] [--dir DIR] [--json OUT]

Targets (issue 19): ours <= 1 GiB peak RSS, >= 0.5x nilearn's throughput, values equal.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TR_S = 2.0
STRATEGY = {"strategy": ("motion", "wm_csf"), "motion": "basic", "wm_csf": "basic"}
HIGH_PASS_HZ = 0.01

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import numpy as np
what, root, work = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
cfg = json.loads(sys.argv[4])
import nibabel as nib
from nilearn.interfaces.fmriprep import load_confounds
if what == "ours":
    import giblet_store as gs
    import dask.array, xarray, zarr, jsonschema, pandas  # imported by the first ingest of a session: not timed
    from nilearn import signal
    try:
        import distributed  # dask imports it on the first compute when installed: not timed either
    except ImportError:
        pass
else:
    from nilearn.maskers import NiftiMasker
    from nilearn import image, masking, signal  # imported by the first fit_transform: not timed
    import scipy.signal, sklearn.base
mask = np.ones(tuple(cfg["shape"]), bool)

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
cpu0, t0, info = cpu(), time.perf_counter(), {}
if what == "ours":
    clean = gs.CleanParams(confounds=tuple(cfg["strategy"]), motion=cfg["motion"], wm_csf=cfg["wm_csf"],
                           detrend=True, high_pass_hz=cfg["high_pass_hz"])
    r = gs.ingest_bids(gs.open_store(work / "store"), root, "movie", derivatives="fmriprep", clean=clean, mask=mask)
    info["key"] = r.entry.key
    cpu_s, wall_s = cpu() - cpu0, time.perf_counter() - t0
else:
    cpu_s = wall_s = 0.0
    masker_mask = nib.Nifti1Image(mask.astype(np.int8), np.diag([3.0, 3.0, 3.0, 1.0]))
    for bold in cfg["bolds"]:
        c, w = cpu(), time.perf_counter()
        conf, _ = load_confounds(bold, strategy=tuple(cfg["strategy"]), motion=cfg["motion"], wm_csf=cfg["wm_csf"])
        masker = NiftiMasker(mask_img=masker_mask, detrend=True, high_pass=cfg["high_pass_hz"], t_r=cfg["tr_s"],
                             standardize=False)
        x = masker.fit_transform(bold, confounds=conf)
        cpu_s, wall_s = cpu_s + cpu() - c, wall_s + time.perf_counter() - w
        np.save(work / (Path(bold).name.split("_space")[0] + ".npy"), np.asarray(x, dtype=np.float32))
        info["n_confounds"] = int(conf.shape[1])
        del x
info.update(cpu_s=cpu_s, wall_s=wall_s, peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            rss_after_imports_mib=base_rss / 1024)
print(json.dumps(info))
"""


def box(voxels: int) -> tuple[int, int, int]:
    """A (x, 50, 40) box of at least ``voxels`` voxels ((x, 10, 10) below 2,000)."""
    y, z = (50, 40) if voxels >= 2000 else (10, 10)
    return (max(1, math.ceil(voxels / (y * z))), y, z)


def generate(root: Path, n_trs: int, shape: tuple[int, int, int]) -> Path:
    """The study, written by ``make_bids`` in a child process: Linux carries a parent's peak RSS into the
    ``ru_maxrss`` of the children it starts, so this process stays small (the data never enters it)."""
    code = ("import sys; from giblet_store.testing import make_bids; make_bids(sys.argv[1], n_subjects=2, "
            f"n_runs=2, n_trs={int(n_trs)}, shape={tuple(shape)!r}, tr_s={TR_S!r}, seed=0)")
    p = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"make_bids failed:\n{p.stderr[-3000:]}")
    return root


def run_child(what: str, root: Path, work: Path, cfg: dict) -> dict:
    p = subprocess.run([sys.executable, "-c", CHILD, what, str(root), str(work), json.dumps(cfg)],
                       capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if p.returncode != 0:
        raise SystemExit(f"{what} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def compare(work: Path, key: str) -> dict:
    """Max abs difference between our entry and nilearn's per-run arrays (every subject and run)."""
    import giblet_store as gs

    st = gs.open_store(work / "store", mode="r")
    entry = st.get(key)
    ds = st.open(entry)
    worst, scale = 0.0, 0.0
    for i, s in enumerate(str(x) for x in ds["subject"].values):
        for rec in entry.attrs["runs"]:
            ref = np.load(work / f"sub-{s}_task-movie_run-{rec['run']}.npy")
            a = int(rec["tr_offset"])
            ours = ds["fmri"][i, a : a + int(rec["n_trs"])].values
            worst = max(worst, float(np.abs(ours.astype(np.float64) - ref).max()))
            scale = max(scale, float(np.abs(ref).max()))
    return {"max_abs_diff": worst, "max_abs_value": scale, "tolerance": 1e-5 * scale, "equal": worst <= 1e-5 * scale}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--voxels", type=int, default=100_000, help="voxels per volume (every one in the mask)")
    ap.add_argument("--trs", type=int, default=600, help="TRs per run")
    ap.add_argument("--dir", default=None, help="working directory (default: a temporary one)")
    ap.add_argument("--json", default=None, help="write the figures here (bench/benchjson.py)")
    args = ap.parse_args(argv)
    shape = box(args.voxels)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        root = generate(tmp / "ds", args.trs, shape)
        bolds = sorted(str(p) for p in (root / "derivatives" / "fmriprep").rglob("*desc-preproc_bold.nii.gz"))
        n_vox = int(np.prod(shape))
        print(f"wrote {len(bolds)} runs of {shape} = {n_vox} voxels x {args.trs} TRs (.nii.gz) in "
              f"{time.perf_counter() - t:.0f} s; {os.cpu_count()} CPU(s)")
        cfg = {**STRATEGY, "high_pass_hz": HIGH_PASS_HZ, "tr_s": TR_S, "shape": list(shape), "bolds": bolds}
        (tmp / "nilearn").mkdir()
        theirs = run_child("nilearn", root, tmp / "nilearn", cfg)
        ours = run_child("ours", root, tmp / "nilearn", cfg)  # the store beside nilearn's arrays
        values = compare(tmp / "nilearn", ours["key"])
        voxel_trs = n_vox * args.trs * len(bolds)
        report(theirs, ours, values, voxel_trs, args.json, f"{len(bolds)} runs x {args.trs} TRs x {n_vox} voxels")
    return 0


def report(theirs: dict, ours: dict, values: dict, voxel_trs: int, json_path, size: str) -> None:
    from benchjson import row, write

    thr = {k: voxel_trs / r["cpu_s"] / 1e6 for k, r in (("nilearn", theirs), ("ours", ours))}
    ratio = thr["ours"] / thr["nilearn"]
    print(f"\n{size}, confounds {theirs.get('n_confounds')} columns + detrend + {HIGH_PASS_HZ} Hz high-pass")
    print(f"{'run':28s} {'CPU s':>8s} {'wall s':>8s} {'Mvox-TR/CPU s':>14s} {'peak RSS MiB':>13s}")
    for label, r in (("nilearn NiftiMasker", theirs), ("giblet_store ingest_bids", ours)):
        t = thr["nilearn" if label.startswith("nilearn") else "ours"]
        print(f"{label:28s} {r['cpu_s']:8.1f} {r['wall_s']:8.1f} {t:14.2f} {r['peak_rss_mib']:13.0f}  "
              f"(imports {r['rss_after_imports_mib']:.0f} MiB)")
    print(f"throughput ratio ours/nilearn: {ratio:.2f}x (target >= 0.5x); peak RSS ours "
          f"{ours['peak_rss_mib'] / 1024:.2f} GiB (target <= 1 GiB)")
    print(f"values: max abs diff {values['max_abs_diff']:.3g} (largest value {values['max_abs_value']:.3g}, "
          f"tolerance {values['tolerance']:.3g}): {'equal' if values['equal'] else 'NOT EQUAL'}")
    write(json_path, [
        row("clean", f"throughput, {size}", "Mvox-TR/CPU s", "nilearn NiftiMasker.fit_transform", thr["nilearn"],
            thr["ours"], ratio, ">= 0.5x", value=0.5),
        row("clean", f"peak RSS, {size}", "MiB", "nilearn NiftiMasker.fit_transform", theirs["peak_rss_mib"],
            ours["peak_rss_mib"], None, "<= 1024 MiB", on="ours", op="<=", value=1024),
        row("clean", f"max abs diff vs nilearn, {size}", "", "tolerance (rtol 1e-5 of the largest value)",
            values["tolerance"], values["max_abs_diff"], None, "<= tolerance", on="ours", op="<=",
            value=values["tolerance"]),
    ])


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
