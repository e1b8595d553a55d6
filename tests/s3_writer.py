"""Run as a process by tests: write one deterministic features entry (10 chunks) to a store URL.

``python s3_writer.py URL [kill_point N] [start_at]``: SIGKILL this process at the ``N``-th ``kill_point``
(``chunk``: after a chunk's data PUT, before its marker; ``publish``: just before the entry's
``zarr.json`` PUT); wait until the epoch second ``start_at`` before writing (to start writers together).
"""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np
import xarray as xr

N_TRS, CHUNK = 40, 4


def entry():
    """(ds, attrs, encoding) of the test entry: 10 chunks along tr, float32 (tr, frame, dim) + int16 (tr,)."""
    from giblet_store import content_key

    rng = np.random.default_rng(7)
    ds = xr.Dataset({"emb": (("tr", "frame", "dim"), rng.standard_normal((N_TRS, 3, 2)).astype(np.float32)),
                     "count": (("tr",), np.arange(N_TRS, dtype=np.int16))},
                    coords={"tr": np.arange(N_TRS), "tr_start_s": (("tr",), 0.5 * np.arange(N_TRS))})
    inputs = {"writer": "s3", "n_trs": N_TRS}
    attrs = {"kind": "features", "key": content_key(inputs), "parent": "c" * 64, "parent_kind": "codes",
             "transform": "hrf", "transform_params": {"model": "spm"}, "variables": ["emb", "count"],
             "axis": "tr", "tr_s": 0.5, "onset_s": 0.0, "n_trs": N_TRS, "hrf": "spm", "hrf_params": {},
             "algorithm_version": 1, "inputs": inputs}
    return ds, attrs, {"emb": {"chunks": (CHUNK, 3, 2)}, "count": {"chunks": (CHUNK,)}}


def arm(point: str, nth: int) -> None:
    from zarr.storage import FsspecStore

    from giblet_store.store.storage import Storage

    count = {"n": 0}

    def hit():
        count["n"] += 1
        if count["n"] == nth:
            os.kill(os.getpid(), signal.SIGKILL)

    if point == "chunk":
        orig = FsspecStore.set

        async def set_(self, key, value, *a, **k):
            await orig(self, key, value, *a, **k)
            if "/emb/c/" in key:
                hit()

        FsspecStore.set = set_
    elif point == "publish":
        orig_put = Storage.put

        def put(self, path, data):
            if path.startswith("features/") and path.count("/") == 2 and path.endswith("/zarr.json"):
                hit()
            return orig_put(self, path, data)

        Storage.put = put


def main(argv: list[str]) -> int:
    import dask

    from giblet_store import open_store

    url = argv[1]
    if len(argv) > 3 and argv[2] != "none":
        arm(argv[2], int(argv[3]))
    if len(argv) > 4:
        time.sleep(max(0.0, float(argv[4]) - time.time()))
    ds, attrs, enc = entry()
    with dask.config.set(scheduler="synchronous"):
        e, created = open_store(url).write(ds, attrs, enc)
    print("created" if created else "cached", e.path, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
