"""The cluster a batch runs on: a new LocalCluster, a scheduler address, or a given Client; and which
progress display fits it."""

from __future__ import annotations

import logging
import os
import sys

from .report import _reason
from ..errors import ClusterError, ParameterError
from ..validate import int_in_range, positive_seconds

__all__: list[str] = []

#: A local cluster runs one process per worker, each loading the model: at most this many per CPU core.
WORKERS_PER_CORE = 4
#: How long a local cluster waits for a killed worker's restart before closing its nanny for good. distributed's
#: default (15 s) drops a worker whose restart joins late (a loaded machine, a slow model load): the rest of the
#: batch then runs on fewer workers, silently. The batch's own cluster never gives a worker up.
LOST_WORKER_TIMEOUT = "1h"


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


def connect_timeout(value) -> float:
    """``--connect-timeout``: a positive, finite number of seconds."""
    return positive_seconds("connect_timeout", value)


async def _identity(address: str, timeout: float) -> dict:
    from distributed.comm import connect

    comm = await connect(address, timeout=timeout)
    try:
        await comm.write({"op": "identity", "reply": True})
        return await comm.read()
    finally:
        comm.abort()


def _probe_scheduler(address: str, timeout: float) -> None:
    """Ask ``address`` who it is, the whole exchange bounded by ``timeout`` seconds.

    ``distributed.Client(address, timeout=...)`` bounds the TCP connect but not every read of its
    handshake: a server that accepts and never answers (not a Dask scheduler) keeps it waiting forever.
    Here the connect, the request and the reply share one deadline, in a loop of our own.

    Raises
    ------
    ClusterError
        No answer within ``timeout``, or an answer that is not a Dask scheduler's.
    """
    import asyncio
    import threading

    result: dict = {}

    def run() -> None:
        try:
            result["reply"] = asyncio.run(asyncio.wait_for(_identity(address, timeout), timeout))
        except BaseException as exc:  # handed to the caller below
            result["error"] = exc

    t = threading.Thread(target=run, name="giblet-scheduler-probe", daemon=True)
    t.start()
    t.join(timeout + 5.0)  # wait_for ends the loop at the deadline; the margin covers closing it
    reply = result.get("reply")
    if isinstance(reply, dict) and reply.get("type") == "Scheduler":
        return
    if t.is_alive() or isinstance(result.get("error"), (TimeoutError, asyncio.TimeoutError)):
        why = "no answer: a server that accepts the connection but is not a Dask scheduler, or none at all"
    elif "error" in result:
        why = _reason(result["error"])
    else:
        why = f"it answered as {str(reply)[:80]!r}, not as a Dask scheduler"
    raise ClusterError(f"cannot reach the Dask scheduler at {address!r} within {timeout:g} s ({why}); check the "
                       "address and port (`dask scheduler` prints it), or run with --scheduler local")


def _connect(scheduler, workers: int | None, in_process: bool, timeout: float, stack):
    """A distributed Client: a new LocalCluster (``"local"``), a scheduler address, or a given Client."""
    import distributed

    timeout = connect_timeout(timeout)

    workers = int_in_range("workers", workers, 1, optional=True)
    if isinstance(scheduler, distributed.Client):
        if workers is not None:
            raise ParameterError("workers sets the size of a local cluster; the given Client has its own workers")
        return scheduler, False
    if scheduler in (None, "local"):
        import dask

        n = local_workers(workers) or os.cpu_count() or 1
        stack.enter_context(dask.config.set({"distributed.deploy.lost-worker-timeout": LOST_WORKER_TIMEOUT}))
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
    _probe_scheduler(scheduler, timeout)
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
