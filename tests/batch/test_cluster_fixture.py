"""The shared test cluster keeps two workers through kills (tests/cluster_fixture.py): the failure a CI run met,
where the cluster closed a killed worker's nanny before its restart joined, is reproduced here on purpose."""

from __future__ import annotations

import os
import signal
import time

import pytest

from cluster_fixture import WORKERS, running_workers, two_worker_cluster, two_workers


def _kill_one_worker(client) -> None:
    """SIGKILL one worker and return once the scheduler has seen it go."""
    addr, pid = sorted(client.run(os.getpid).items())[0]
    os.kill(pid, signal.SIGKILL)
    _wait_until(lambda: addr not in client.scheduler_info(n_workers=-1)["workers"])


def _wait_until(cond, timeout: float = 60.0) -> None:
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, "the cluster never reached the expected state"
        time.sleep(0.1)


@pytest.mark.slow
def test_a_worker_whose_nanny_the_cluster_closed_is_started_again():
    # lost-worker-timeout 0 s: the cluster closes the killed worker's nanny at once, before its restart can join
    with two_worker_cluster(lost_worker_timeout="0s") as client:
        client.wait_for_workers(WORKERS, timeout=120)
        _kill_one_worker(client)
        _wait_until(lambda: len(client.cluster.workers) == WORKERS - 1)  # the CI failure: a nanny closed for good
        time.sleep(2.0)
        assert running_workers(client) == WORKERS - 1  # and nothing brings it back by itself
        assert two_workers(client, wait_s=20) is client
        assert running_workers(client) == WORKERS
        assert len(client.run(os.getpid)) == WORKERS


@pytest.mark.slow
def test_the_shared_cluster_waits_for_a_slow_restart(session_client, monkeypatch):
    """A restart slower than distributed's default lost-worker-timeout (15 s) joins the same nanny."""
    import asyncio

    from distributed.nanny import WorkerProcess

    client = two_workers(session_client)
    nannies = dict(client.cluster.workers)
    start = WorkerProcess.start

    async def slow_start(self):
        await asyncio.sleep(17.0)
        return await start(self)

    monkeypatch.setattr(WorkerProcess, "start", slow_start)
    _kill_one_worker(client)
    client.wait_for_workers(WORKERS, timeout=120)  # the nanny's own restart: no repair by two_workers
    assert dict(client.cluster.workers) == nannies  # the same nanny objects, none closed or replaced
    assert running_workers(client) == WORKERS
