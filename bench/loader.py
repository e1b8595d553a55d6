"""Training-loader throughput: StoreDataset + DataLoader against naive, bulk and in-memory reads.

A store is built with ~20,000 TRs of codes-shaped data (tr, codebook=8, frame=113) int16 + n_frames
(the layout of 6 kbps EnCodec at TR 1.5 s, laid on the TR grid by giblet_store.grid, random codes)
and an fmri entry ingested from a synthetic NIfTI (1 subject x 20,000 TRs x ~3,000 voxels). A sample
is (codes (8, 113) int64, n_frames int64, fmri (voxel,) float32) for one (subject, tr).

  (a) naive        per-sample reads of the zarr arrays, zf[s, t], zc[t], zn[t] (random order)
  (b) ours         StoreDataset(batch_size=64, shuffle=True) + DataLoader(batch_size=None),
                   num_workers 0 and 2 (fork): first epoch (incl. worker start) and steady state
                   (persistent workers, best of later epochs); also per-sample mode + DataLoader(64)
  (c) bulk         one sequential read of the same arrays, zf[:], zc[:], zn[:]
  (d) in-memory    shuffled batches of 64 from numpy arrays already in RAM (+ int64 cast, to tensor)

Rates are samples/s; ratios are computed in the same run. With a GPU, (b) is also timed with batches
moved to it (pin_memory, non_blocking).

    .venv/bin/python bench/loader.py [--trs 20000] [--voxels 3000] [--dir DIR] [--keep DIR] [--json OUT]

Targets (issue 14): workers=0 >= 0.8x bulk, workers=2 >= 0.5x bulk (steady state), >= 50x naive.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def build_store(root: Path, n_trs: int, n_voxels: int, seed: int = 0):
    """The bench store: a schema-valid codes entry of random codes, and an ingested fmri entry."""
    import dask.array as da
    import xarray as xr

    import giblet_store as gs
    from giblet_store.fmri.ingest import FmriParams, ingest_fmri
    from giblet_store.grid import to_tr
    from giblet_store.fmri.nifti_write import write_nifti
    from giblet_store.store.core import default_encoding

    store = gs.open_store(root / "store")
    done = {e.kind: e for e in store.entries() if e.attrs.get("inputs", {}).get("bench") == "loader"
            and e.attrs["n_trs"] == n_trs}
    if "codes" in done:
        fm = [e for e in store.entries("fmri") if e.attrs.get("stimulus_key") == done["codes"].key
              and e.attrs["n_voxels"] == n_voxels]
        if fm:
            return store, done["codes"], fm[0]
    grid = gs.TrGrid(1.5, n_trs=n_trs)
    n_frames = int(n_trs * 112.5)
    rng = np.random.default_rng(seed)
    stream = rng.integers(0, 1024, size=(8, n_frames), dtype=np.int16)
    layout = grid.layout(n_frames, 75)
    ds = xr.Dataset(
        {"codes": (("tr", "codebook", "frame"), to_tr(stream, layout, fill=-1).astype(np.int16)),
         "n_frames": (("tr",), layout.n_frames.astype(np.int16))},
        coords={"tr": np.arange(n_trs), "tr_start_s": (("tr",), grid.tr_start_s(n_trs)),
                "codebook": np.arange(8), "frame": np.arange(layout.slots)},
    )
    inputs = {"bench": "loader", "n_trs": n_trs, "seed": seed}
    attrs = {  # a synthetic stand-in: every field says so
        "kind": "codes", "key": gs.content_key(inputs), "source_sha256": gs.content_key({"synthetic": seed}),
        "source_name": "synthetic (bench/loader.py)", "duration_s": n_trs * 1.5, "codec": "encodec",
        "model": "bench-random-codes", "model_sha256": gs.content_key({"no model": 0}), "bandwidth_kbps": 6.0,
        "sample_rate_hz": 24000, "frame_rate_hz": 75.0, "hop_samples": 320, "codebook_size": 1024,
        "n_codebooks": 8, "audio_channels": 1, "chunk_s": 20.0, "context_s": 5.0, "tr_s": 1.5, "onset_s": 0.0,
        "n_trs": n_trs, "frames_per_tr": "225/2", "n_stream_frames": n_frames, "frames_before_grid": 0,
        "frames_after_grid": 0, "hrf": "none", "algorithm_version": 1, "inputs": inputs,
    }
    codes, _ = store.write(ds, attrs, default_encoding(ds))
    # fmri: a (x, y, z) grid with ~n_voxels in a mask, written to NIfTI block by block
    side = int(np.ceil((n_voxels * 1.3) ** (1 / 3)))
    mask = np.zeros((side, side, side), bool)
    mask.reshape(-1)[np.sort(rng.choice(mask.size, n_voxels, replace=False))] = True
    data = da.random.default_rng(seed).standard_normal((n_trs, n_voxels), chunks=(2000, n_voxels),
                                                       dtype=np.float32) + 100
    nii = root / "sub-01.nii"
    write_nifti(nii, data, mask, np.eye(4), tr_s=1.5)
    fmri = ingest_fmri(store, [nii], ["sub-01"], mask=mask, stimulus=codes,
                       params=FmriParams(zscore_trs=(0, int(0.8 * n_trs)))).entry
    nii.unlink()
    return store, codes, fmri


def bench_naive(zf, zc, zn, n_trs: int, n: int) -> float:
    order = np.random.default_rng(1).integers(0, n_trs, n)
    t = time.perf_counter()
    for i in order:
        zf[0, int(i)], zc[int(i)], zn[int(i)]
    return n / (time.perf_counter() - t)


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def memory_epoch(f, c, nf, bs: int, seed: int) -> None:
    import torch

    order = np.random.default_rng(seed).permutation(len(c))
    for j in range(0, len(order), bs):
        idx = order[j : j + bs]
        torch.from_numpy(f[idx]), torch.from_numpy(c[idx].astype(np.int64)), torch.from_numpy(nf[idx].astype(np.int64))


def make_loaders(store, fmri, codes, device: str | None):
    """Our Dataset + DataLoader in the configurations measured; workers persist between epochs."""
    from torch.utils.data import DataLoader

    from giblet_store.training.dataset import StoreDataset

    feats = (codes, ["codes", "n_frames"])
    pin = device is not None
    out = {}
    for w in (0, 2):
        ds = StoreDataset(store, fmri, feats, batch_size=64, seed=0)
        kw = dict(num_workers=w, pin_memory=pin)
        if w:
            kw.update(persistent_workers=True, multiprocessing_context="fork")
        out[f"b ours, workers={w}"] = (ds, ds.loader(**kw))
    ds = StoreDataset(store, fmri, feats, batch_size=None, seed=0)
    out["b' per-sample + DataLoader(64), workers=0"] = (ds, DataLoader(ds, batch_size=64, pin_memory=pin))
    return out


class _SameSizeBatches:
    """The IPC ceiling of a DataLoader: pre-shaped batches like ours (one storage each), no reading."""

    def __new__(cls, like: dict, n_batches: int):
        from torch.utils.data import IterableDataset, get_worker_info

        class Batches(IterableDataset):
            def __len__(self):
                return n_batches * 64

            def __iter__(self):
                import torch

                info = get_worker_info()
                w, n_w = (info.id, info.num_workers) if info else (0, 1)
                sizes = {k: v.numel() * v.element_size() for k, v in like.items()}
                for _ in range(w, n_batches, n_w):
                    buf, out, o = torch.empty(sum(sizes.values()), dtype=torch.uint8), {}, 0
                    for k, v in like.items():
                        out[k] = buf[o : o + sizes[k]].view(v.dtype).view(v.shape)
                        o += sizes[k]
                    yield out

        return Batches()


def loader_epoch(ds, loader, device: str | None) -> None:
    import torch

    n = 0
    for b in loader:
        if device is not None:
            b = {k: v.to(device, non_blocking=True) for k, v in b.items()}
        n += len(b["tr"])
    if device is not None:
        torch.cuda.synchronize()
    assert n == len(ds), (n, len(ds))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trs", type=int, default=20000)
    ap.add_argument("--voxels", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds; steady state = best after the first")
    ap.add_argument("--naive", type=int, default=500, help="samples timed for (a)")
    ap.add_argument("--dir", default=None, help="parent of the temporary store")
    ap.add_argument("--keep", default=None, help="build the store here once and reuse it on later runs")
    ap.add_argument("--json", default=None, help="write the figures here (bench/benchjson.py)")
    args = ap.parse_args(argv)
    import torch
    import zarr

    from giblet_store.training.dataset import StoreDataset

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        t = time.perf_counter()
        root = Path(args.keep or tmp)
        root.mkdir(parents=True, exist_ok=True)
        store, codes, fmri = build_store(root, args.trs, args.voxels)
        n = args.trs
        g = lambda e: zarr.open_group(store.zstore, path=e.path, mode="r")  # noqa: E731
        zf, zc, zn = g(fmri)["fmri"], g(codes)["codes"], g(codes)["n_frames"]
        print(f"store: codes {zc.shape} int16 chunks {zc.chunks}; fmri {zf.shape} float32 chunks {zf.chunks}; "
              f"built in {time.perf_counter() - t:.0f} s; {os.cpu_count()} CPU(s); "
              f"GPU: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")
        res = {"a naive per-index": bench_naive(zf, zc, zn, n, args.naive)}
        f = c = nf = None
        devices = [None] + (["cuda"] if torch.cuda.is_available() else [])
        loaders = {dev: make_loaders(store, fmri, codes, dev) for dev in devices}
        rates: dict[str, list[float]] = {}
        # interleaved rounds (the machine may be shared): every configuration sees the same conditions
        # in each round. Round 0 is our loaders' cold first epoch; the steady state is the best later one
        for r in range(args.rounds):
            runs = {"c bulk sequential read": timed(lambda: (zf[:], zc[:], zn[:]))}
            if f is None:
                f, c, nf = zf[0], zc[:], zn[:]
            runs["d in-memory numpy"] = timed(lambda: memory_epoch(f, c, nf, 64, r))
            for dev in devices:
                for name, (ds, loader) in loaders[dev].items():
                    label = name if dev is None else name.replace("b ours", "b ours -> " + dev)
                    runs[label] = timed(lambda: loader_epoch(ds, loader, dev))
            for label, sec in runs.items():
                rates.setdefault(label, []).append(n / sec)
        # what the DataLoader itself can move with 2 workers on this machine, and with the
        # file_system sharing strategy (a process-wide torch setting, so measured last)
        import torch.multiprocessing as tmp_mp
        from torch.utils.data import DataLoader

        like = next(iter(loaders[None]["b ours, workers=0"][0]))
        dummy = _SameSizeBatches(like, n // 64)
        ceiling = DataLoader(dummy, batch_size=None, num_workers=2, persistent_workers=True,
                             multiprocessing_context="fork", prefetch_factor=4)
        for _ in range(3):
            rates.setdefault("e DataLoader IPC ceiling, workers=2 (no reading)", []).append(
                n // 64 * 64 / timed(lambda: sum(1 for _ in ceiling)))
        tmp_mp.set_sharing_strategy("file_system")
        ds_fs = StoreDataset(store, fmri, (codes, ["codes", "n_frames"]), batch_size=64, seed=0)
        fs_loader = ds_fs.loader(num_workers=2, persistent_workers=True, multiprocessing_context="fork")
        for _ in range(3):
            rates.setdefault("b ours, workers=2, sharing_strategy=file_system", []).append(
                n / timed(lambda: loader_epoch(ds_fs, fs_loader, None)))
        for label, rs in rates.items():
            if label.startswith("e"):
                res[label] = max(rs)
            elif label.startswith("b"):
                res[label + " (steady)"] = max(rs[1:] or rs)
                res[label + " (first epoch)"] = rs[0]
            else:
                res[label] = max(rs)
        width = max(map(len, res))
        print(f"\n{'samples/s':>{width + 12}s}")
        for k, v in res.items():
            print(f"{k:{width}s} {v:12,.0f}")
        bulk, naive = res["c bulk sequential read"], res["a naive per-index"]
        print(f"\nratios (target: (b) >= 0.8x (c) and >= 50x (a)); {args.rounds} interleaved rounds, best of")
        for k, v in res.items():
            if k.startswith("b"):
                print(f"  {k:{width}s} {v / bulk:5.2f}x (c) {v / naive:7.0f}x (a)")
        write_json(args.json, res)
    return 0


def write_json(path, res: dict) -> None:
    """The figures of bench/benchjson.py: our loader against the bulk read and the naive reads."""
    from benchjson import row, write

    bulk, naive = res["c bulk sequential read"], res["a naive per-index"]
    rows = []
    for w, goal in ((0, 0.8), (2, 0.5)):
        for phase in ("steady", "first epoch"):
            v = res[f"b ours, workers={w} ({phase})"]
            rows.append(row("loader", f"workers={w}, {phase}", "samples/s", "bulk sequential read", bulk, v,
                            v / bulk, f">= {goal}x" if phase == "steady" else "(includes worker start)",
                            value=goal if phase == "steady" else None))
    v = res["b ours, workers=0 (steady)"]
    rows.append(row("loader", "workers=0 vs naive", "samples/s", "naive per-index reads", naive, v, v / naive,
                    ">= 50x", value=50))
    write(path, rows)


if __name__ == "__main__":
    sys.exit(main())
