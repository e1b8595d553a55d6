"""The real two-process LocalCluster that the batch and crash tests share, kept at two running workers.

The kill tests SIGKILL a worker and its nanny starts a new one. distributed's LocalCluster (a SpecCluster) also
watches for lost workers: when no worker of the lost one's name is in its (lagging) copy of the scheduler's state
``distributed.deploy.lost-worker-timeout`` after the loss (15 s by default), it closes that worker's nanny for good.
A restart slower than that (a loaded machine) lost a worker for the rest of a CI run: every later two-worker test
waited 180 s and failed on one worker. Here the cluster never gives a killed worker up (as the batch's own
LocalCluster does not: giblet_store.batch.cluster), and :func:`two_workers`
waits for a restarting worker and otherwise starts the missing ones again from the cluster's own spec."""

from __future__ import annotations

import logging
from contextlib import contextmanager

WORKERS = 2
# a nanny restarts a killed worker in a few seconds; this is the wait before the cluster starts a missing one itself
RESTART_WAIT_S = 120.0


@contextmanager
def two_worker_cluster(lost_worker_timeout: str | None = None, workers: int = WORKERS):
    """A Client on a real ``LocalCluster(processes=True)`` of ``workers`` one-thread workers (``lost_worker_timeout``:
    the batch's own, which gives no worker up)."""
    import dask
    from distributed import Client, LocalCluster

    from giblet_store.batch.cluster import LOST_WORKER_TIMEOUT

    lost_worker_timeout = LOST_WORKER_TIMEOUT if lost_worker_timeout is None else lost_worker_timeout

    with dask.config.set({"distributed.deploy.lost-worker-timeout": lost_worker_timeout}), \
            LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                         silence_logs=logging.CRITICAL) as cluster, \
            Client(cluster, set_as_default=False) as client:
        yield client


def running_workers(client) -> int:
    return sum(w.get("status") == "running" for w in client.scheduler_info(n_workers=-1)["workers"].values())


def two_workers(client, wait_s: float = RESTART_WAIT_S):
    """``client`` once its cluster has :data:`WORKERS` running workers (a test before may have killed one)."""
    try:
        client.wait_for_workers(WORKERS, timeout=wait_s)
        return client
    except TimeoutError:
        pass
    cluster = client.cluster
    lost = sorted(set(map(str, cluster.worker_spec)) - set(map(str, cluster.workers)))
    cluster.scale(WORKERS)  # starts the spec's workers whose nanny the cluster closed
    try:
        client.wait_for_workers(WORKERS, timeout=wait_s)
    except TimeoutError:
        raise AssertionError(f"the test cluster has {running_workers(client)} of {WORKERS} workers running "
                             f"{2 * wait_s:.0f} s after a kill (nannies closed: {lost or 'none'}); "
                             "the tests that need both workers cannot run") from None
    return client
