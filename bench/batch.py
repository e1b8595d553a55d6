"""Batch extraction on a LocalCluster vs the plain single-process loop: wall time and peak RSS.

    python bench/batch.py [--stimuli 8] [--minutes 2] [--long-minutes 20] [--bandwidth 6]
                          [--workers 1 2] [--chunk-s S] [--context-s S] [--model DIR] [--json OUT] [--no-s3]

Two workloads on synthetic stimuli at 24 kHz and one model (default: a random-weight model of the
real 24 kHz architecture; encoding cost is the architecture's, the codes mean nothing):

* ``--stimuli`` files of ``--minutes`` each: ``extract_codes`` in a loop (one process, Dask threads)
  vs ``run_batch`` on a ``LocalCluster`` of 1 and of 2 workers (one thread each);
* one ``--long-minutes`` file: ``extract_codes`` vs ``run_batch`` with 2 workers (its encode chunks
  spread over both).

The S3 column (``--no-s3`` skips it): the many-stimuli batch with the most ``--workers`` writing to a
moto S3 server (a separate process on 127.0.0.1; the workers get the endpoint and credentials from
the AWS_* environment they inherit) vs the same batch on the local directory (ratio), its objects
compared byte for byte with the local entries.

Every run is its own subprocess (peak RSS is its own; the batch's workers report theirs). Batch
times include starting the cluster. The stores are compared byte for byte at the end. Prints ratios
measured in this run; nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchjson: the shared bench helpers
from benchjson import peak_rss as _peak_rss  # noqa: E402

MIB = 1024**2



def run_loop(manifest: dict, store: str) -> dict:
    from giblet_store import open_store
    from giblet_store.codec.encodec import CodecParams
    from giblet_store.features.codes import extract_codes

    s = open_store(store)
    params = CodecParams(manifest["model"], bandwidth_kbps=manifest["bandwidths"][0], chunk_s=manifest["chunk_s"],
                         context_s=manifest["context_s"])
    t0 = time.perf_counter()
    for path in manifest["stimuli"]:
        extract_codes(s, path, params)
    return {"seconds": time.perf_counter() - t0, "peak_rss": [_peak_rss()]}


def run_cluster(manifest: dict, store: str, workers: int) -> dict:
    from distributed import Client, LocalCluster

    from giblet_store.batch.run import run_batch

    t0 = time.perf_counter()
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.CRITICAL) as cluster, Client(cluster) as client:
        t1 = time.perf_counter()
        report = run_batch(manifest, store, scheduler=client, progress=False)
        dt = time.perf_counter() - t1
        rss = sorted(client.run(_peak_rss).values())
    assert report.ok, report.table()
    return {"seconds": time.perf_counter() - t0, "batch_seconds": dt, "peak_rss": rss, "client_rss": _peak_rss()}


def _child(mode: str, manifest: str, store: str, workers: int) -> None:
    m = json.loads(Path(manifest).read_text())
    out = run_loop(m, store) if mode == "loop" else run_cluster(m, store, workers)
    print(json.dumps(out))


def _run(mode: str, manifest: dict, tmp: Path, name: str, workers: int = 0, store: "str | None" = None) -> dict:
    mpath = tmp / f"{name}.json"
    mpath.write_text(json.dumps(manifest))
    store = store or tmp / f"store-{name}"
    p = subprocess.run([sys.executable, __file__, "--child", mode, "--manifest", str(mpath), "--store", str(store),
                        "--child-workers", str(workers)], capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"{name} failed:\n{p.stderr[-4000:]}")
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["store"] = str(store)
    return out


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--stimuli", type=int, default=8)
    p.add_argument("--minutes", type=float, default=2.0)
    p.add_argument("--long-minutes", type=float, default=20.0, help="0 skips the long-file comparison")
    p.add_argument("--bandwidth", type=float, default=6.0)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--chunk-s", type=float, default=None, help="encode chunk (default: CodecParams's)")
    p.add_argument("--context-s", type=float, default=None, help="left context (default: CodecParams's)")
    p.add_argument("--model", default=None)
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--no-s3", action="store_true", help="skip the batch on a moto S3 server")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--manifest", default=None, help=argparse.SUPPRESS)
    p.add_argument("--store", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-workers", type=int, default=0, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        return _child(a.child, a.manifest, a.store, a.child_workers)

    from giblet_store.cli.demo import random_model_dir
    from giblet_store.testing import synth_audio, write_wav

    from giblet_store.codec.encodec import CodecParams

    model = a.model or str(random_model_dir())
    chunk_s = CodecParams().chunk_s if a.chunk_s is None else a.chunk_s
    context_s = CodecParams().context_s if a.context_s is None else a.context_s
    tmp = Path(tempfile.mkdtemp(prefix="bench_batch_"))
    wavs = [str(write_wav(tmp / f"stim{i}.wav", synth_audio(a.minutes * 60, 24000, seed=i), 24000))
            for i in range(a.stimuli)]
    base = {"model": model, "bandwidths": [a.bandwidth], "trs": [1.5], "chunk_s": chunk_s, "context_s": context_s}
    many = {**base, "stimuli": wavs}
    audio_s = a.stimuli * a.minutes * 60
    print(f"{a.stimuli} stimuli x {a.minutes:g} min at {a.bandwidth:g} kbps ({audio_s / 60:g} min of audio), "
          f"chunk {chunk_s:g} s + context {context_s:g} s, {os.cpu_count()} cores, torch threads: loop = default, "
          "workers = 1")
    results: dict = {"cores": os.cpu_count(), "many": {}, "long": {}}
    rows = [("loop (1 process)", _run("loop", many, tmp, "many-loop"))]
    for n in a.workers:
        rows.append((f"batch, {n} worker(s)", _run("cluster", many, tmp, f"many-w{n}", n)))
    ref = _tree(Path(rows[0][1]["store"]) / "codes")
    _report(rows, audio_s, ref, results["many"])
    if not a.no_s3:
        w = max(a.workers)
        results["s3"] = _s3_column(many, tmp, ref, w, dict(rows)[f"batch, {w} worker(s)"])
    if a.long_minutes > 0:
        long_wav = str(write_wav(tmp / "long.wav", synth_audio(a.long_minutes * 60, 24000, seed=99), 24000))
        one = {**base, "stimuli": [long_wav]}
        print(f"\none stimulus of {a.long_minutes:g} min")
        rows = [("loop (1 process)", _run("loop", one, tmp, "long-loop")),
                ("batch, 2 workers", _run("cluster", one, tmp, "long-w2", 2))]
        _report(rows, a.long_minutes * 60, _tree(Path(rows[0][1]["store"]) / "codes"), results["long"])
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2))


def _start_moto() -> tuple[subprocess.Popen, str]:
    """A moto S3 server (its own process on 127.0.0.1, a free port) with a bucket; AWS_* point at it."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p",
                               str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                      AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}")  # inherited by the child and its workers
    import s3fs

    fs = s3fs.S3FileSystem(use_listings_cache=False)
    for _ in range(300):
        try:
            fs.mkdir("bench")
            return server, "bench"
        except Exception:  # noqa: BLE001 - the server is starting
            if server.poll() is not None:
                break
            time.sleep(0.1)
    server.kill()
    server.wait()
    raise SystemExit(f"the moto server on port {port} did not start (exit {server.poll()})")


def _s3_column(manifest: dict, tmp: Path, ref: dict, workers: int, local: dict) -> dict:
    """The ``workers``-worker batch on a moto S3 server; ratio against the local run ``local``."""
    import s3fs

    server, bucket = _start_moto()
    try:
        r = _run("cluster", manifest, tmp, f"many-w{workers}-s3", workers, store=f"s3://{bucket}/store")
        fs = s3fs.S3FileSystem(use_listings_cache=False)
        root = f"{bucket}/store/codes/"
        got = {p[len(root):]: fs.cat_file(p) for p in sorted(fs.find(root))}
    finally:
        server.terminate()
        server.wait(timeout=30)
    same = got == ref
    print(f"\nS3 (moto on 127.0.0.1), batch with {workers} worker(s): {r['seconds']:.1f} s (batch alone "
          f"{r['batch_seconds']:.1f} s) vs {local['seconds']:.1f} s ({local['batch_seconds']:.1f} s) on the local "
          f"directory: {r['seconds'] / local['seconds']:.2f}x the time; identical objects: {same} "
          f"({len(got)} objects, {len(ref)} local files)")
    return {**r, "local_seconds": local["seconds"], "ratio": r["seconds"] / local["seconds"], "identical": same}


def _report(rows, audio_s: float, ref: dict, out: dict) -> None:
    base = rows[0][1]["seconds"]
    print(f"{'run':<22} {'wall s':>8} {'x realtime':>10} {'vs loop':>8} {'peak RSS MiB (per process)':>28} identical")
    for name, r in rows:
        same = _tree(Path(r["store"]) / "codes") == ref
        rss = "/".join(f"{v / MIB:.0f}" for v in r["peak_rss"])
        extra = f" (batch alone {r['batch_seconds']:.1f} s)" if "batch_seconds" in r else ""
        print(f"{name:<22} {r['seconds']:>8.1f} {audio_s / r['seconds']:>10.1f} {base / r['seconds']:>7.2f}x "
              f"{rss:>28} {same}{extra}")
        out[name] = {**r, "identical_to_loop": same}


if __name__ == "__main__":
    main()
