"""A multi-process cluster: `dask scheduler` and two `dask worker` processes on 127.0.0.1 with separate
working directories, `giblet-store batch` writing to the moto S3 server, one worker SIGKILLed mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from giblet_store import CodecParams, TrGrid, extract_codes, open_store
from giblet_store.cli import main
from giblet_store.testing import synth_audio, write_wav

from helpers import objects

DASK = str(Path(sys.executable).with_name("dask"))
CHUNK = {"chunk_s": 1.0, "context_s": 0.5}


def spawn(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]), os.environ.get(
        "PYTHONPATH", "")])}
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([DASK, *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # its own process group: the nanny and its worker die together


def stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=30)


def scheduler_address(sched: subprocess.Popen, scheduler_file: Path, timeout: float = 120) -> str:
    """The address a scheduler started with ``--port 0`` bound (the OS picked the port: no race with other
    processes for a port chosen beforehand), from its scheduler file; only the test reads that file."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sched.poll() is not None:
            raise AssertionError(f"dask scheduler exited with {sched.returncode} before it served")
        try:
            return json.loads(scheduler_file.read_text())["address"]
        except (OSError, ValueError, KeyError):  # not written yet, or half written
            time.sleep(0.1)
    raise AssertionError(f"dask scheduler wrote no {scheduler_file} within {timeout} s")


def wait_for_workers(address: str, n: int, timeout: float = 180) -> None:
    from distributed import Client

    with Client(address, timeout=timeout, set_as_default=False) as c:
        c.wait_for_workers(n, timeout=timeout)


@pytest.mark.slow
def test_scheduler_and_two_workers_batch_to_s3_survives_a_killed_worker(s3_url, model_dir, tmp_path):
    stim = tmp_path / "stim"
    stim.mkdir()
    write_wav(stim / "a.wav", synth_audio(4.0, 24000, seed=21), 24000)
    write_wav(stim / "b.wav", synth_audio(3.0, 24000, seed=22), 24000)
    (stim / "m.json").write_text(json.dumps({"model": str(model_dir), "bandwidths": [1.5], "trs": [1.0], **CHUNK,
                                             "stimuli": ["a.wav", "b.wav"]}))
    sched_file = tmp_path / "sched" / "scheduler.json"
    procs = [spawn(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file",
                    str(sched_file)], tmp_path / "sched")]
    try:
        address = scheduler_address(procs[0], sched_file)
        assert address.startswith("tcp://127.0.0.1:")
        for i in (1, 2):
            procs.append(spawn(["worker", address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard",
                                "--local-directory", str(tmp_path / f"w{i}"), "--name", f"w{i}"], tmp_path / f"w{i}"))
        wait_for_workers(address, 2)
        victim = procs[1]
        killed, did_kill = threading.Event(), []

        def kill_when_busy():  # SIGKILL worker w1 (nanny and worker) while it runs a batch task
            from distributed import Client

            with Client(address, timeout=60, set_as_default=False) as c:  # never the default scheduler
                deadline = time.time() + 300
                while time.time() < deadline and not killed.is_set():
                    info = c.scheduler_info(n_workers=-1)["workers"]
                    busy = {a for a, tasks in c.processing().items() if tasks}
                    if any(w.get("name") == "w1" and a in busy for a, w in info.items()):
                        os.killpg(victim.pid, signal.SIGKILL)
                        did_kill.append(time.time())
                        killed.set()
                        return
                    time.sleep(0.05)

        t = threading.Thread(target=kill_when_busy, daemon=True)
        t.start()
        code = main(["batch", str(stim / "m.json"), "--store", s3_url, "--scheduler", address, "--no-progress",
                     "--json"])
        killed.set()
        t.join(timeout=30)
        assert did_kill and victim.poll() is not None  # the worker really died while running a task
        if code != 0:  # the batch may report the chunks lost with the worker; a rerun completes them
            code = main(["batch", str(stim / "m.json"), "--store", s3_url, "--scheduler", address, "--no-progress",
                         "--json"])
        assert code == 0
    finally:
        for p in reversed(procs):
            stop(p)
    assert all(p.poll() is not None for p in procs)  # everything shut down
    # byte-identical to single-process extracts on a local directory
    ref = open_store(tmp_path / "ref")
    store = open_store(s3_url, "r")
    for name in ("a.wav", "b.wav"):
        e = extract_codes(ref, stim / name, CodecParams(str(model_dir), 1.5, **CHUNK), TrGrid(1.0)).entry
        got = store.get(e.key)
        want = {str(p.relative_to(tmp_path / "ref")): p.read_bytes()
                for p in (tmp_path / "ref" / e.path).rglob("*") if p.is_file()}
        assert objects(s3_url, got.path) == want
    assert not [k for k in objects(s3_url, "_staging")]  # nothing left to collect


# ------------------------------------------------------------------------------------ issue 21: a silent server
@pytest.fixture
def silent_server():
    """A TCP server on 127.0.0.1 that accepts every connection and never says anything (not Dask)."""
    import socket

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held, stop = [], threading.Event()

    def serve():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield f"tcp://127.0.0.1:{srv.getsockname()[1]}"
    stop.set()
    t.join()
    for c in held:
        c.close()
    srv.close()


def test_a_server_that_accepts_and_never_answers_is_refused_within_the_timeout(silent_server, tmp_path, capsys):
    from helpers import snapshot

    write_wav(tmp_path / "a.wav", synth_audio(0.5, 24000, seed=1), 24000)
    (tmp_path / "m.yaml").write_text("stimuli: [a.wav]\nkinds: [mel]\n")
    store = tmp_path / "st"
    open_store(store)
    before = snapshot(tmp_path)
    code = main(["batch", str(tmp_path / "m.yaml"), "--store", str(store), "--scheduler", silent_server,
                 "--connect-timeout", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and silent_server in err and "within 1 s (no answer: a server that accepts the connection but is not a Dask" in err, err
    assert snapshot(tmp_path) == before


def test_the_probe_accepts_a_real_scheduler():
    import distributed

    from giblet_store.batch.cluster import _probe_scheduler

    with distributed.LocalCluster(n_workers=0, processes=False, protocol="tcp://", dashboard_address=":0",
                                  host="127.0.0.1") as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        _probe_scheduler(cluster.scheduler_address, 10.0)  # raises ClusterError otherwise


@pytest.mark.parametrize("value", ["nan", "0", "-3", "inf"])
def test_connect_timeout_must_be_positive_seconds(tmp_path, capsys, value):
    write_wav(tmp_path / "a.wav", synth_audio(0.5, 24000, seed=1), 24000)
    (tmp_path / "m.yaml").write_text("stimuli: [a.wav]\nkinds: [mel]\n")
    code = main(["batch", str(tmp_path / "m.yaml"), "--store", str(tmp_path / "st"), "--scheduler",
                 "tcp://127.0.0.1:9", f"--connect-timeout={value}", "--no-progress"])
    assert code == 2 and "connect_timeout must be a positive number of seconds" in capsys.readouterr().err
