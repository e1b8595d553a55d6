"""find() over many entries: today's scan (one zarr.json read per entry, one after another) vs the catalogue.

    python bench/catalog.py [--n 10000] [--s3-n 10000] [--repeat 3] [--no-s3] [--json OUT]

Builds ``--n`` synthetic codes entries (real attribute documents with varied bandwidth and TR, one tiny
array each) on a local directory and on a moto S3 server (a separate process on 127.0.0.1), then
times ``find(kind="codes", bandwidth_kbps=6, tr_s=1.5)``:

* ``scan``: the pre-catalogue ``Store.entries`` -- list the kind folder, read every ``zarr.json`` in turn;
* ``no index``: a query on a store without a catalogue (every entry read, in parallel);
* ``reindex``: rebuilding the index (what the first publish on such a store does);
* ``catalogue``: queries with the index (one listing, one index read).

Both return the same entries (checked). Prints times and ratios measured in this run; not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

QUERY = {"kind": "codes", "bandwidth_kbps": 6, "tr_s": 1.5}


def synthetic_objects(n: int) -> dict[str, bytes]:
    """Objects of ``n`` codes entries: group zarr.json with codes attributes + a tiny int16 array."""
    import numpy as np
    import xarray as xr
    import zarr

    mem = zarr.storage.MemoryStore()
    xr.Dataset({"n_frames": (("tr",), np.full(4, 112, np.int16))}).to_zarr(mem, mode="w", zarr_format=3,
                                                                          consolidated=False)
    from giblet_store.staging import _store_items

    items = _store_items(mem)
    group = json.loads(items.pop("zarr.json"))
    out = {}
    for i in range(n):
        key = f"{i:064x}"
        name = key[-16:]
        attrs = {"kind": "codes", "key": key, "status": "complete", "format_version": 1,
                 "bandwidth_kbps": [1.5, 3, 6, 12, 24][i % 5], "tr_s": [1.5, 2.0][(i // 5) % 2],
                 "source_name": f"stim{i}.wav", "source_sha256": f"{i * 7:064x}", "model": "bench",
                 "n_codebooks": 8, "n_trs": 4, "onset_s": 0.0, "sample_rate_hz": 24000, "frame_rate_hz": 75,
                 "frames_per_tr": "225/2", "inputs": {"i": i}}
        out[f"codes/{name}/zarr.json"] = json.dumps({**group, "attributes": attrs}).encode()
        for k, v in items.items():
            out[f"codes/{name}/{k}"] = v
    return out


def scan_find(store) -> list[str]:
    """The pre-catalogue find: every entry's zarr.json read one after another, then filtered."""
    from giblet_store.store import _MISSING, _lookup_attr, _match

    keys = []
    for info in store.fs.ls(store._p("codes"), detail=True):
        if info.get("type") != "directory":
            continue
        attrs = store._read_group_attrs(f"codes/{info['name'].rstrip('/').rsplit('/', 1)[-1]}")
        if not attrs or attrs.get("status") != "complete":
            continue
        if all((v := _lookup_attr(attrs, k)) is not _MISSING and _match(v, w) for k, w in QUERY.items() if k != "kind"):
            keys.append(attrs["key"])
    return sorted(keys)


def timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def measure(url: str, repeat: int) -> dict:
    from giblet_store import catalog, open_store, reindex

    store = open_store(url)
    t_scan, want = timed(lambda: scan_find(store), 1 if url.startswith("s3") else repeat)
    t_parallel, first = timed(lambda: sorted(e.key for e in store.find(**QUERY)), 1)  # no index: parallel reads
    t0 = time.perf_counter()
    reindex(store)  # what the first publish on such a store does
    t_rebuild = time.perf_counter() - t0
    assert store.fs.exists(store._p(f"{catalog.CATALOG}/codes/{catalog.INDEX}"))
    t_cat, got = timed(lambda: sorted(e.key for e in store.find(**QUERY)), repeat)
    assert first == want == got, "catalogue and scan disagree"
    return {"hits": len(got), "scan_s": t_scan, "parallel_s": t_parallel, "rebuild_s": t_rebuild,
            "catalogue_s": t_cat, "speedup": t_scan / t_cat}


def local(n: int, repeat: int) -> dict:
    from giblet_store import open_store

    d = Path(tempfile.mkdtemp(prefix="bench-catalog-")) / "store"
    open_store(d)
    for path, data in synthetic_objects(n).items():
        p = d / path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return measure(str(d), repeat)


def s3(n: int, repeat: int) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p",
                               str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                      AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}")
    try:
        import s3fs

        fs = s3fs.S3FileSystem(use_listings_cache=False)
        for _ in range(100):
            try:
                fs.ls("")
                break
            except Exception:  # noqa: BLE001 - the server is starting
                time.sleep(0.1)
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        fs.mkdir(bucket)
        from giblet_store import open_store

        open_store(f"s3://{bucket}/store")
        objs = synthetic_objects(n)
        t = time.perf_counter()
        fs.pipe({f"{bucket}/store/{k}": v for k, v in objs.items()}, batch_size=64)
        print(f"  (uploaded {len(objs)} objects in {time.perf_counter() - t:.1f} s)", file=sys.stderr)
        return measure(f"s3://{bucket}/store", repeat)
    finally:
        server.terminate()
        server.wait(timeout=30)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--s3-n", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-s3", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    rows = {"local": local(args.n, args.repeat)}
    if not args.no_s3:
        rows["moto S3"] = s3(args.s3_n, args.repeat)
    print(f"find(kind='codes', bandwidth_kbps=6, tr_s=1.5) over {args.n} entries (local), {args.s3_n} (S3)")
    print(f"| store | hits | scan (s) | no index, parallel reads (s) | reindex (s) | catalogue (s) | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['hits']} | {r['scan_s']:.3f} | {r['parallel_s']:.3f} | {r['rebuild_s']:.3f} | "
              f"{r['catalogue_s']:.3f} | {r['speedup']:.1f}x |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
