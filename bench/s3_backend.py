"""Zarr on S3 through s3fs (zarr's FsspecStore, what giblet_store uses) vs obstore (zarr's ObjectStore).

    python bench/s3_backend.py [--trs 400] [--tr-chunk 2] [--repeat 3]

Starts a moto S3 server (a separate process on 127.0.0.1), writes one codes-like array
(tr, codebook, frame) int16 chunked along tr, then times reading it whole through each backend, and
listing the store. Needs ``pip install obstore``; prints times and the ratio measured in this run.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    import numpy as np
    import zarr

    ap = argparse.ArgumentParser()
    ap.add_argument("--trs", type=int, default=400)
    ap.add_argument("--tr-chunk", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p",
                               str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                      AWS_ENDPOINT_URL=endpoint)
    try:
        import s3fs
        from obstore.store import S3Store

        fs = s3fs.S3FileSystem(use_listings_cache=False)
        for _ in range(100):
            try:
                fs.mkdir("bench")
                break
            except Exception:  # noqa: BLE001 - the server is starting
                time.sleep(0.1)
        fstore = zarr.storage.FsspecStore.from_url("s3://bench/store", storage_options={"endpoint_url": endpoint})
        data = np.random.default_rng(0).integers(0, 1024, (args.trs, 8, 113)).astype(np.int16)
        zarr.create_array(fstore, name="codes", data=data, chunks=(args.tr_chunk, 8, 113))
        ostore = zarr.storage.ObjectStore(S3Store("bench", prefix="store", endpoint=endpoint, region="us-east-1",
                                                  access_key_id="bench", secret_access_key="bench",
                                                  client_options={"allow_http": True}), read_only=True)
        rows = {}
        for name, st in (("s3fs (FsspecStore)", fstore), ("obstore (ObjectStore)", ostore)):
            times = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                got = zarr.open_array(st, path="codes", mode="r")[:]
                times.append(time.perf_counter() - t)
            assert np.array_equal(got, data)
            rows[name] = statistics.median(times)
        n = -(-args.trs // args.tr_chunk)
        print(f"read one (tr={args.trs}, 8, 113) int16 array in {n} chunks from moto S3, median of {args.repeat}:")
        for name, t in rows.items():
            print(f"  {name:<24} {t:7.3f} s")
        a, b = rows.values()
        print(f"  obstore / s3fs time ratio: {b / a:.2f}")
    finally:
        server.terminate()
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
