"""The cluster a batch runs on: a new LocalCluster, a scheduler address, or a given Client; and which
progress display fits it."""

from __future__ import annotations

import logging
import os
import sys

from .report import _reason
from ..errors import ClusterError, ParameterError
from ..validate import int_in_range

__all__: list[str] = []

#: A local cluster runs one process per worker, each loading the model: at most this many per CPU core.
WORKERS_PER_CORE = 4


def local_workers(workers: int | None) -> int | None:
    """``workers`` for a new LocalCluster, checked before anything starts: None, or 1 to 4 per CPU core.

    Raises
    ------
    ParameterError
        Not an integer, below 1, or more processes than the machine can hold (``--workers 100000``
        would start until the machine runs out of memory).
    """
    n = int_in_range("workers", workers, 1, optional=True)
    cores = os.cpu_count() or 1
    if n is not None and n > WORKERS_PER_CORE * cores:
        raise ParameterError(f"workers={n} is more than a local cluster can hold: it runs one process per worker, "
                             f"each loading the model; at most {WORKERS_PER_CORE} per CPU core "
                             f"({WORKERS_PER_CORE * cores} on these {cores} cores). Give fewer --workers")
    return n


def _connect(scheduler, workers: int | None, in_process: bool, timeout: float, stack):
    """A distributed Client: a new LocalCluster (``"local"``), a scheduler address, or a given Client."""
    import distributed

    workers = int_in_range("workers", workers, 1, optional=True)
    if isinstance(scheduler, distributed.Client):
        if workers is not None:
            raise ParameterError("workers sets the size of a local cluster; the given Client has its own workers")
        return scheduler, False
    if scheduler in (None, "local"):
        n = local_workers(workers) or os.cpu_count() or 1
        try:
            cluster = stack.enter_context(distributed.LocalCluster(
                n_workers=n, threads_per_worker=1, processes=not in_process, dashboard_address=":0",
                silence_logs=logging.CRITICAL))
            return stack.enter_context(distributed.Client(cluster)), True
        except Exception as exc:
            raise ClusterError(f"could not start a LocalCluster with {n} worker(s): {_reason(exc)}") from None
    if not isinstance(scheduler, str) or not scheduler.strip():
        raise ClusterError(f"scheduler must be 'local' or an address like tcp://host:8786, got {scheduler!r}")
    if workers is not None:
        raise ParameterError(f"--workers sets the size of a local cluster; the cluster at {scheduler} has its own "
                             "workers. Drop --workers, or use --scheduler local")
    if in_process:
        raise ClusterError(f"the store lives in this process's memory (memory://), which workers of the cluster at "
                           f"{scheduler} cannot reach; give a shared directory or an object-store URL")
    try:
        client = distributed.Client(scheduler, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterError(
            f"cannot reach the Dask scheduler at {scheduler!r} within {timeout:g} s ({exc}); check the address "
            "(`dask scheduler` prints it), or run with --scheduler local"
        ) from None
    stack.callback(client.close)
    try:
        client.wait_for_workers(1, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"the Dask scheduler at {scheduler!r} has no workers after {timeout:g} s ({exc}); start "
                           "some (`dask worker ADDRESS`) and rerun") from None
    return client, False


def _progress_mode(progress, own_cluster: bool) -> str | None:
    if progress is False:
        return None
    if progress in ("tqdm", "distributed"):
        return progress
    if progress is None and not sys.stderr.isatty():
        return None
    return "tqdm" if own_cluster else "distributed"
