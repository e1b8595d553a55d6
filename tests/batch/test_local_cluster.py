"""The batch's own LocalCluster (``--scheduler local``) keeps every worker through a kill, however slow the restart:
distributed's default closes a nanny whose restart has not joined 15 s after the loss, and the rest of the batch
would run on fewer workers without a word."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time

import pytest


@pytest.mark.slow
def test_the_batchs_local_cluster_waits_for_a_slow_restart(monkeypatch):
    from distributed.nanny import WorkerProcess

    from giblet_store.batch.cluster import _connect

    start = WorkerProcess.start

    async def slow_start(self):
        if getattr(slow_start, "armed", False):
            await asyncio.sleep(17.0)  # past distributed's 15 s lost-worker timeout
        return await start(self)

    monkeypatch.setattr(WorkerProcess, "start", slow_start)
    with contextlib.ExitStack() as stack:
        client, own = _connect("local", 2, False, 30.0, stack)
        assert own
        client.wait_for_workers(2, timeout=120)
        nannies = dict(client.cluster.workers)
        addr, pid = sorted(client.run(os.getpid).items())[0]
        slow_start.armed = True
        os.kill(pid, signal.SIGKILL)
        t0 = time.monotonic()
        while addr in client.scheduler_info(n_workers=-1)["workers"]:
            assert time.monotonic() - t0 < 60
            time.sleep(0.1)
        client.wait_for_workers(2, timeout=120)  # the nanny's own restart, 17 s late
        assert dict(client.cluster.workers) == nannies
        assert len(client.run(os.getpid)) == 2
