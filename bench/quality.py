"""Per-TR audio quality metrics: lazy Dask tasks on 2 cores vs a Python loop over TR slices.

Both sides call the same function (:func:`giblet_store.quality.metrics.score_segment`) on the same TR slices
of the same signals (synthesised stimulus at 24 kHz; degraded = + white noise at 20 dB SNR), with
every metric (SNR, SI-SDR, LSD, mel distance, STOI/ESTOI, PESQ wb/nb):

  * loop: ``for k in range(n_tr): score_segment(ref[b[k]:b[k+1]], deg[b[k]:b[k+1]], ...)``, run twice:
    as a user's script runs it (numpy's BLAS with its default threads) and with BLAS on one thread
    (threadpoolctl; the faster of the two on 2 shared cores, so the baseline ratios are taken against);
  * ours: :func:`giblet_store.quality.run.score_per_tr` (one Dask task per ``--block-trs`` TRs)
    computed by :func:`giblet_store.quality.pool.compute_scores`, as ``score_audio`` does, with each
    ``--schedulers`` entry: "default" (``score_audio``'s default: a spawn process pool of
    ``--workers`` processes, BLAS on one thread, metric packages warmed), "threads" (Dask threads;
    PESQ/pystoi/librosa hold the GIL), "processes" (the same pool whatever the size), "sync". The
    pool's workers stay up between calls: the first pool run includes starting and warming them
    ("cold"), a later one reuses them ("warm").

A last phase times what ``score_audio`` computes (per TR plus one whole-signal score, the whole-signal
task first on one worker) against the 1-thread loop plus one whole-signal call (``--no-whole`` skips it).

Printed: wall seconds, seconds per audio minute, the ratio best loop / ours (> 1: ours is faster),
whether the values agree (rtol 1e-9; NaN where both are NaN), and the 1-minute load average after each
phase: on a shared machine a ratio is only meaningful when the load stayed the same.

    .venv/bin/python bench/quality.py [--minutes 10] [--workers 2] [--block-trs 16] [--schedulers default,default,threads] [--no-whole]
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
    from giblet_store.quality.metrics import score_segment

    out = np.empty((len(params.variables), len(bounds) - 1))
    for k in range(len(bounds) - 1):
        v, _ = score_segment(ref[bounds[k]:bounds[k + 1]], deg[bounds[k]:bounds[k + 1]], sr, params)
        out[:, k] = [v[n] for n in params.variables]
    return out


def ours(ref, deg, sr, bounds, params, scheduler: str, workers: int) -> np.ndarray:
    from giblet_store.quality.pool import compute_scores
    from giblet_store.quality.run import score_per_tr

    values, reasons, _whole, _ = score_per_tr(ref, deg, sr, bounds, params)
    values, _ = compute_scores(values, reasons, params=params, n_trs=len(bounds) - 1,
                               scheduler=None if scheduler == "default" else scheduler, workers=workers)
    return np.asarray(values)


def ours_with_whole(ref, deg, sr, bounds, params, workers: int) -> tuple[np.ndarray, dict]:
    """What ``score_audio`` computes: per-TR blocks and the whole-signal task together, default placement."""
    from giblet_store.quality.pool import compute_scores
    from giblet_store.quality.run import score_per_tr

    values, reasons, whole, _ = score_per_tr(ref, deg, sr, bounds, params)
    values, _, whole = compute_scores(values, reasons, whole, params=params, n_trs=len(bounds) - 1, workers=workers)
    return np.asarray(values), whole[0]


def _line(name: str, t: float, minutes: float, extra: str = "") -> None:
    print(f"{name:<42} {t:8.1f} s  {t / minutes:6.2f} s per audio minute  {extra}"
          f"(1-min load average after: {os.getloadavg()[0]:.1f})", flush=True)


def main(argv=None) -> None:
    from threadpoolctl import threadpool_limits

    from giblet_store.grid import TrGrid
    from giblet_store.quality.metrics import QualityParams
    from giblet_store.quality.pool import POOL_MIN_TRS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--tr", type=float, default=1.5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--block-trs", type=int, default=16)
    ap.add_argument("--schedulers", default="default,default")
    ap.add_argument("--no-whole", action="store_true", help="skip the per TR + whole-signal phase")
    args = ap.parse_args(argv)
    sr = 24000
    ref, deg = signals(args.minutes, sr)
    bounds = TrGrid(args.tr).layout(ref.size, sr, warn=False).starts
    params = QualityParams(block_trs=args.block_trs)
    loop(ref[: 2 * sr], deg[: 2 * sr], sr, np.array([0, sr, 2 * sr]), params)  # imports, numba JIT
    print(f"{args.minutes:g} min of audio at {sr} Hz, {len(bounds) - 1} TRs of {args.tr:g} s, metrics "
          f"{','.join(params.metrics)}; load average before: {os.getloadavg()[0]:.1f}", flush=True)
    t0 = time.perf_counter()
    base = loop(ref, deg, sr, bounds, params)
    t_default = time.perf_counter() - t0
    _line("python loop (default BLAS threads)", t_default, args.minutes)
    t0 = time.perf_counter()
    with threadpool_limits(limits=1):
        base1 = loop(ref, deg, sr, bounds, params)
    t_one = time.perf_counter() - t0
    _line("python loop (BLAS on 1 thread)", t_one, args.minutes,
          f"values equal: {np.allclose(base1, base, rtol=1e-9, atol=0, equal_nan=True)}  ")
    t_loop = min(t_default, t_one)
    pool_runs = 0
    for sched in args.schedulers.split(","):
        t0 = time.perf_counter()
        got = ours(ref, deg, sr, bounds, params, sched, args.workers)
        t = time.perf_counter() - t0
        same = np.allclose(got, base, rtol=1e-9, atol=0, equal_nan=True)
        label = sched
        if sched == "default" and len(bounds) - 1 < POOL_MIN_TRS:
            label += f", in this process (< {POOL_MIN_TRS} TRs)"
        elif sched in ("default", "processes"):
            label += ", warm pool" if pool_runs else ", cold pool"
            pool_runs += 1
        _line(f"dask {label} ({args.workers} workers)", t, args.minutes,
              f"best loop/ours = {t_loop / t:4.2f}  values equal: {same}  ")
    if not args.no_whole:
        _whole_phase(ref, deg, sr, bounds, params, base, t_one, args)


def _whole_phase(ref, deg, sr, bounds, params, base, t_one, args) -> None:
    """score_audio's work: per TR + one whole-signal score, against the 1-thread loop + one whole call."""
    from threadpoolctl import threadpool_limits

    from giblet_store.quality.metrics import score_segment

    t0 = time.perf_counter()
    with threadpool_limits(limits=1):
        want, _ = score_segment(ref, deg, sr, params)
    t_whole = time.perf_counter() - t0
    _line("whole-signal call (BLAS on 1 thread)", t_whole, args.minutes)
    t0 = time.perf_counter()
    got, whole = ours_with_whole(ref, deg, sr, bounds, params, args.workers)
    t = time.perf_counter() - t0
    same = np.allclose(got, base, rtol=1e-9, atol=0, equal_nan=True) and np.allclose(
        [whole[n] for n in params.variables], [want[n] for n in params.variables], rtol=1e-9, atol=0, equal_nan=True)
    _line(f"dask default, per TR + whole ({args.workers} workers)", t, args.minutes,
          f"(loop + whole call)/ours = {(t_one + t_whole) / t:4.2f}  values equal: {same}  ")


if __name__ == "__main__":
    main()
