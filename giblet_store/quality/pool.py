"""Where per-TR quality scoring runs: a warmed process pool, each worker's BLAS on one thread.

Two measured facts (``bench/quality.py``, 2 cores) decide it:

- PESQ's C code, pystoi and librosa's Python hold the GIL, so Dask *threads* score no faster than a
  plain loop: only processes run two TRs at once.
- OpenBLAS starts its own threads for ``numpy.dot`` (SNR, SI-SDR) and the mel filterbank product; on
  2 shared cores two such threads waiting on each other made those calls 10-170x slower (SNR of one
  1.5 s TR: 16-26 ms with 2 BLAS threads, 0.15 ms with 1). Scoring runs BLAS on one thread per worker.

:func:`compute_scores` computes the lazy scores of :func:`giblet_store.quality.run.score_per_tr`:

- ``scheduler=None`` (the default): fewer than :data:`POOL_MIN_TRS` TRs (starting processes costs
  seconds) in this process; otherwise joblib's reusable loky process pool of ``workers`` processes,
  whose initializer holds BLAS to one thread and imports and JIT-compiles the metric packages
  (librosa, pystoi, pesq) before the first task, driven by Dask's multiprocessing scheduler one task
  at a time. The workers stay warm for the next call (5 idle minutes). loky, unlike
  multiprocessing's ``spawn``, does not re-run the caller's ``__main__`` in its workers, so an
  unguarded script works and is not run twice.
- ``"sync"`` / ``"threads"``: in this process, BLAS on one thread during the compute (restored after).
- ``"processes"``: the warmed pool whatever the size.
- a ``distributed.Client`` (its workers run BLAS on one thread by default) or any other Dask
  scheduler: as given.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import numpy as np

from .metrics import QualityParams, score_segment

__all__ = ["POOL_MIN_TRS", "compute_scores", "default_workers"]

#: below this many TRs (5 min at TR 1.5 s) scoring runs in this process: starting and warming the pool
#: took 5 s on 2 quiet cores, and a warm pool scored 1.44x faster than one process (bench/quality.py,
#: 3 min), so a cold pool pays off from about 170 TRs
POOL_MIN_TRS = 200


def default_workers() -> int:
    """The CPU cores this process may run on (``os.sched_getaffinity``, else ``os.cpu_count``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def _one_blas_thread():
    """Context: BLAS/OpenMP pools of this process on one thread; a no-op without threadpoolctl."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with the [quality] extra
        return contextlib.nullcontext()
    return threadpool_limits(limits=1)


def _blas_threads() -> tuple[int, int]:
    """(process id, the most threads a BLAS library of this process may use): what a task runs with.

    OpenMP pools (torch's, if loaded) are left out: their thread count is per calling thread, and no
    metric uses them.
    """
    from threadpoolctl import threadpool_info

    return os.getpid(), max((p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"), default=1)


def _warm_worker(params: QualityParams) -> None:
    """Pool initializer: BLAS on one thread for the worker's life, metric packages imported and JIT-compiled."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
    sr = 16000
    x = np.random.default_rng(0).standard_normal(sr)
    score_segment(x, x + 0.1 * np.random.default_rng(1).standard_normal(sr), sr, params)


def _pool(workers: int, params: QualityParams):
    """joblib's reusable loky executor: workers stay warm between calls (shut down after 5 idle minutes).

    loky starts clean processes without re-running the caller's ``__main__`` (multiprocessing's
    ``spawn`` re-runs an unguarded script, writes included); BLAS is held to one thread by the
    environment the workers start with and again by the initializer.
    """
    from joblib.externals.loky import get_reusable_executor

    env = {v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    return get_reusable_executor(max_workers=workers, timeout=300, initializer=_warm_worker, initargs=(params,),
                                 env=env)


def _in_pool(collections, workers: int, params: QualityParams):
    import dask

    return dask.compute(*collections, scheduler="processes", pool=_pool(workers, params), chunksize=1)


def compute_scores(*collections, params: QualityParams, n_trs: int, scheduler: Any = None,
                   workers: int | None = None) -> tuple:
    """``dask.compute(*collections)`` where scoring is fastest (see the module docstring).

    Parameters
    ----------
    collections : Dask collections from :func:`giblet_store.quality.run.score_per_tr`
    params : QualityParams (the pool's warm-up scores one second with these metrics)
    n_trs : int, TRs being scored (decides pool or this process when ``scheduler`` is None)
    scheduler : None, "sync", "threads", "processes", a ``distributed.Client`` or any Dask scheduler
    workers : processes of the pool / threads of "threads"; default :func:`default_workers`

    Returns
    -------
    tuple, the computed collections in order
    """
    import dask

    n = workers or default_workers()
    if scheduler == "processes" or (scheduler is None and n > 1 and n_trs >= POOL_MIN_TRS):
        return _in_pool(collections, n, params)
    if scheduler is None or scheduler in ("sync", "threads", "single-threaded", "synchronous"):
        kw = {"scheduler": scheduler or "sync"}
        if kw["scheduler"] == "threads":
            kw["num_workers"] = n
        with _one_blas_thread():
            return dask.compute(*collections, **kw)
    return dask.compute(*collections, scheduler=scheduler)
