"""Per-TR audio quality metrics: lazy Dask tasks on 2 cores vs a Python loop over TR slices.

Both sides call the same function (:func:`giblet_store.quality.score_segment`) on the same TR slices
of the same signals (synthesised stimulus at 24 kHz; degraded = + white noise at 20 dB SNR), with
every metric (SNR, SI-SDR, LSD, mel distance, STOI/ESTOI, PESQ wb/nb):

  * loop: ``for k in range(n_tr): score_segment(ref[b[k]:b[k+1]], deg[b[k]:b[k+1]], ...)``;
  * ours: :func:`giblet_store.quality_run.score_per_tr` (one Dask task per ``--block-trs`` TRs),
    computed with each ``--schedulers`` entry on ``--workers`` workers: "threads" (the threaded
    scheduler; PESQ's C code holds the GIL) and "processes" (Dask's multiprocessing scheduler).

Printed: wall seconds, seconds per audio minute, the ratio loop / ours (> 1: ours is faster), and
whether the values agree (NaN where both are NaN), and the 1-minute load average after each phase: on a
shared machine a ratio is only meaningful when the load stayed the same.

    .venv/bin/python bench/quality.py [--minutes 10] [--workers 2] [--block-trs 16]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def signals(minutes: float, sr: int = 24000) -> tuple[np.ndarray, np.ndarray]:
    from giblet_store.testing import synth_audio

    x = synth_audio(minutes * 60.0, sr, seed=0)[0].astype(np.float64)
    noise = np.random.default_rng(1).standard_normal(x.size) * np.sqrt(np.mean(x ** 2) / 100.0)
    return x, x + noise


def loop(ref, deg, sr, bounds, params) -> np.ndarray:
    from giblet_store.quality import score_segment

    out = np.empty((len(params.variables), len(bounds) - 1))
    for k in range(len(bounds) - 1):
        v, _ = score_segment(ref[bounds[k]:bounds[k + 1]], deg[bounds[k]:bounds[k + 1]], sr, params)
        out[:, k] = [v[n] for n in params.variables]
    return out


def ours(ref, deg, sr, bounds, params, scheduler: str, workers: int) -> np.ndarray:
    import dask

    from giblet_store.quality_run import score_per_tr

    values, reasons, _whole, _ = score_per_tr(ref, deg, sr, bounds, params)
    values, _ = dask.compute(values, reasons, scheduler=scheduler, num_workers=workers)
    return np.asarray(values)


def main(argv=None) -> None:
    from giblet_store.grid import TrGrid
    from giblet_store.quality import QualityParams

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--tr", type=float, default=1.5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--block-trs", type=int, default=16)
    ap.add_argument("--schedulers", default="threads,processes")
    args = ap.parse_args(argv)
    sr = 24000
    ref, deg = signals(args.minutes, sr)
    bounds = TrGrid(args.tr).layout(ref.size, sr, warn=False).starts
    params = QualityParams(block_trs=args.block_trs)
    score_warm = loop(ref[: 2 * sr], deg[: 2 * sr], sr, np.array([0, sr, 2 * sr]), params)  # imports, numba JIT
    del score_warm
    n_tr = len(bounds) - 1
    print(f"{args.minutes:g} min of audio at {sr} Hz, {n_tr} TRs of {args.tr:g} s, metrics {','.join(params.metrics)}")
    t0 = time.perf_counter()
    base = loop(ref, deg, sr, bounds, params)
    t_loop = time.perf_counter() - t0
    print(f"{'python loop':<28} {t_loop:8.1f} s  {t_loop / args.minutes:6.2f} s per audio minute  "
          f"(1-min load average after: {os.getloadavg()[0]:.1f})")
    for sched in args.schedulers.split(","):
        t0 = time.perf_counter()
        got = ours(ref, deg, sr, bounds, params, sched, args.workers)
        t = time.perf_counter() - t0
        same = np.allclose(got, base, rtol=1e-9, atol=0, equal_nan=True)
        print(f"{'dask ' + sched + f' ({args.workers} workers)':<28} {t:8.1f} s  {t / args.minutes:6.2f} s per "
              f"audio minute  loop/ours = {t_loop / t:4.2f}  values equal: {same}  "
              f"(load average after: {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
