"""Where per-TR scoring runs: each block scored once, BLAS on one thread, the warmed process pool."""

import os

import dask
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import giblet_store.quality.run as quality_run
from giblet_store.quality.metrics import QualityParams
from giblet_store.quality.pool import POOL_MIN_TRS, _blas_threads, compute_scores
from giblet_store.quality.run import score_per_tr
from giblet_store.testing import synth_audio

SR = 16000
FAST = QualityParams(metrics=("snr", "si_sdr", "lsd", "mel_distance"), block_trs=2)


@pytest.fixture(scope="module")
def pair():
    x = synth_audio(6.0, SR, seed=3)[0].astype(np.float64)
    y = x + 0.05 * np.random.default_rng(0).standard_normal(x.size)
    y[2 * SR : 3 * SR] = 0.0  # one silent degraded TR: SI-SDR undefined there, a reason to merge
    return x, y, np.arange(0, x.size + 1, SR)


def test_values_and_reasons_computed_together_score_each_block_once(pair, monkeypatch):
    x, y, bounds = pair
    calls = []
    real = quality_run._score_block

    def counted(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(quality_run, "_score_block", counted)
    values, reasons, whole, starts = score_per_tr(x, y, SR, bounds, FAST)
    got, why = dask.compute(values, reasons, scheduler="sync")
    assert len(calls) == len(starts) == 3  # a delayed reasons list beside the array scored every block twice
    assert got.shape == (len(FAST.variables), 6)
    assert [sorted(b) for b in why] == [[], ["si_sdr_db"], []]


def test_local_schedulers_run_blas_on_one_thread_and_restore_it():
    with threadpool_limits(limits=2):
        for sched in ("sync", "threads"):
            (pid, n), = compute_scores(dask.delayed(_blas_threads)(), params=FAST, n_trs=1, scheduler=sched)
            assert pid == os.getpid() and n == 1
        assert _blas_threads()[1] == 2


def test_pool_scores_equal_this_process_and_runs_blas_on_one_thread(pair):
    x, y, bounds = pair
    values, reasons, whole, _ = score_per_tr(x, y, SR, bounds, FAST)
    here = compute_scores(values, reasons, whole, params=FAST, n_trs=6, scheduler="sync")
    pooled = compute_scores(values, reasons, whole, params=FAST, n_trs=6, scheduler="processes", workers=2)
    np.testing.assert_array_equal(pooled[0], here[0])
    assert list(pooled[1]) == list(here[1]) and pooled[2] == here[2]
    (pid, n), = compute_scores(dask.delayed(_blas_threads)(), params=FAST, n_trs=1, scheduler="processes",
                               workers=2)
    assert pid != os.getpid() and n == 1


def test_default_uses_the_pool_from_pool_min_trs_on():
    task = dask.delayed(os.getpid)()
    (small,) = compute_scores(task, params=FAST, n_trs=POOL_MIN_TRS - 1, workers=2)
    (large,) = compute_scores(task, params=FAST, n_trs=POOL_MIN_TRS, workers=2)
    (one_core,) = compute_scores(task, params=FAST, n_trs=POOL_MIN_TRS, workers=1)
    assert small == os.getpid() and one_core == os.getpid() and large != os.getpid()
