"""Ingest of a synthetic Sherlock-scale subject: peak memory and throughput against nibabel reading the file.

The subject is 61x73x61 voxels x 946 TRs (the Sherlock grid), int16 with a scale factor like scanner
output: an ellipsoidal "brain" of ~84k voxels with BOLD-like noise, zeros outside. It is written to
disk volume by volume. Each measurement runs in a fresh Python process, so its peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is its own:

  nibabel get_fdata   the reference pipeline's read: the whole series as float64 (2 GB)
  nibabel streamed    dataobj[..., t] volume by volume (the floor for any streamed reader)
  ingest (computed)   giblet_store.ingest_fmri: reference mask rule, z-score on the first 80% TRs
  ingest (given mask) the same with a given mask (one scan pass less), values as read

Throughput is voxel-TRs of the file per second; the ratio is against ``nibabel get_fdata``.

    .venv/bin/python bench/ingest.py [--trs 946] [--gz] [--dir DIR] [--json OUT]

Targets (issue 14): ingest >= 0.5x the throughput of ``get_fdata``, peak RSS <= 512 MiB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHAPE = (61, 73, 61)

CHILD = r"""
import json, resource, sys, time
import numpy as np
what, path, store_dir, n_trs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
import nibabel as nib
if what.startswith("ingest"):
    import giblet_store as gs
    from giblet_store.fmri.ingest import FmriParams, ingest_fmri
    import dask.array, xarray, zarr, jsonschema  # imported by the first ingest of a session: not timed
    try:
        import distributed  # dask imports it on the first compute when installed (~1 s): not timed either
    except ImportError:
        pass
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
if what == "get_fdata":
    x = nib.load(path).get_fdata()
    info = {"checksum": float(x[30, 36, 30].sum())}
elif what == "streamed":
    img = nib.load(path, keep_file_open=True)
    s = 0.0
    for i in range(n_trs):
        s += float(np.asarray(img.dataobj[..., i], dtype=np.float64)[30, 36, 30])
    info = {"checksum": s}
elif what == "ingest_computed":
    r = ingest_fmri(gs.open_store(store_dir), [path], ["sub-01"],
                    params=FmriParams(zscore_trs=(0, int(0.8 * n_trs))))
    info = {"n_voxels": r.entry.attrs["n_voxels"], "chunk_trs": r.entry.attrs["chunk_trs"]}
elif what == "ingest_given":
    mask = nib.load(path.replace(".nii", ".mask.nii")).get_fdata() > 0
    r = ingest_fmri(gs.open_store(store_dir), [path], ["sub-01"], mask=mask)
    info = {"n_voxels": r.entry.attrs["n_voxels"], "chunk_trs": r.entry.attrs["chunk_trs"]}
sec = time.perf_counter() - t
info.update(seconds=sec, peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            rss_after_imports_mib=base / 1024)
print(json.dumps(info))
"""


def brain_mask(shape=SHAPE) -> np.ndarray:
    """An ellipsoid filling ~30% of the box (Sherlock: ~83k brain voxels of 272k)."""
    g = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    return sum((c / 0.84) ** 2 for c in g) <= 1.0


def write_subject(path: Path, n_trs: int, seed: int = 0) -> Path:
    """Stream a synthetic int16 series to ``path`` (.nii or .nii.gz) without holding it in memory."""
    import gzip

    import nibabel as nib

    mask = brain_mask()
    rng = np.random.default_rng(seed)
    n_in = int(mask.sum())
    baseline = 1000 + 200 * rng.random(n_in)
    slow = rng.standard_normal(n_in)
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(SHAPE + (n_trs,))
    hdr.set_data_dtype(np.int16)
    aff = np.diag([3.0, 3.0, 3.0, 1.0])
    aff[:3, 3] = [-90, -126, -72]
    hdr.set_qform(aff, code=4)
    hdr.set_sform(aff, code=4)
    hdr.set_xyzt_units("mm", "sec")
    hdr.set_zooms((3.0, 3.0, 3.0, 1.5))
    hdr["vox_offset"] = 352
    hdr.set_slope_inter(0.5, 0.0)
    opener = gzip.open if path.name.endswith(".gz") else open
    vol = np.zeros(SHAPE, np.int16)
    with opener(path, "wb") as f:
        f.write(hdr.binaryblock + b"\x00" * 4)
        for t in range(n_trs):
            v = baseline + 8 * np.sin(2 * np.pi * t / 60) * slow + 10 * rng.standard_normal(n_in)
            vol[mask] = np.round(v / 0.5).astype(np.int16)
            f.write(vol.tobytes(order="F"))
    m = nib.Nifti1Image(mask.astype(np.uint8), aff)
    nib.save(m, str(path).replace(".nii", ".mask.nii"))
    return path


def run_child(what: str, path: Path, store_dir: Path, n_trs: int) -> dict:
    p = subprocess.run([sys.executable, "-c", CHILD, what, str(path), str(store_dir), str(n_trs)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{what} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trs", type=int, default=946)
    ap.add_argument("--gz", action="store_true", help="write the subject as .nii.gz")
    ap.add_argument("--dir", default=None, help="working directory (default: a temporary one)")
    ap.add_argument("--skip-get-fdata", action="store_true", help="skip the 2 GB whole-file read")
    ap.add_argument("--repeat", type=int, default=2, help="runs of each; the fastest is shown, the largest RSS")
    ap.add_argument("--json", default=None, help="write the figures here (bench/benchjson.py)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tmp = Path(tmp)
        path = tmp / ("sub-01.nii.gz" if args.gz else "sub-01.nii")
        t = time.perf_counter()
        write_subject(path, args.trs)
        print(f"wrote {path.name}: {SHAPE} x {args.trs} TRs int16, {path.stat().st_size / 2**20:.0f} MiB "
              f"in {time.perf_counter() - t:.1f} s; {os.cpu_count()} CPU(s)")
        voxel_trs = int(np.prod(SHAPE)) * args.trs
        rows = []
        runs = [("nibabel get_fdata", "get_fdata")] * (not args.skip_get_fdata) + [
            ("nibabel streamed", "streamed"), ("ingest (computed)", "ingest_computed"),
            ("ingest (given mask)", "ingest_given")]
        for i, (label, what) in enumerate(runs):  # best of --repeat (the machine may be shared)
            tries = [run_child(what, path, tmp / f"store{i}-{k}", args.trs) for k in range(args.repeat)]
            best = min(tries, key=lambda r: r["seconds"])
            best["peak_rss_mib"] = max(r["peak_rss_mib"] for r in tries)
            rows.append((label, best))
        ref = rows[0][1]["seconds"]
        print(f"\n{'run':22s} {'seconds':>8s} {'Mvox-TR/s':>10s} {'vs ' + rows[0][0]:>22s} {'peak RSS MiB':>13s}  notes")
        for label, r in rows:
            notes = {k: v for k, v in r.items() if k in ("n_voxels", "chunk_trs")}
            print(f"{label:22s} {r['seconds']:8.2f} {voxel_trs / r['seconds'] / 1e6:10.1f} "
                  f"{ref / r['seconds']:21.2f}x {r['peak_rss_mib']:13.0f}  "
                  f"(imports {r['rss_after_imports_mib']:.0f} MiB) {notes if notes else ''}")
        write_json(args.json, rows, voxel_trs, has_reference=not args.skip_get_fdata)
    return 0


def write_json(path, rows, voxel_trs: int, has_reference: bool) -> None:
    """The figures of bench/benchjson.py: throughput vs get_fdata and peak RSS of each ingest."""
    from benchjson import row, write

    by = dict(rows)
    ref = by.get("nibabel get_fdata")
    out = []
    for label in ("ingest (computed)", "ingest (given mask)"):
        r = by[label]
        if has_reference:
            out.append(row("ingest", f"throughput, {label[8:-1]}", "Mvox-TR/s", "nibabel get_fdata",
                           voxel_trs / ref["seconds"] / 1e6, voxel_trs / r["seconds"] / 1e6,
                           ref["seconds"] / r["seconds"], ">= 0.5x", value=0.5))
        out.append(row("ingest", f"peak RSS, {label[8:-1]}", "MiB", "nibabel get_fdata",
                       ref["peak_rss_mib"] if ref else None, r["peak_rss_mib"], None, "<= 512 MiB", on="ours",
                       op="<=", value=512))
    write(path, out)


if __name__ == "__main__":
    sys.exit(main())
