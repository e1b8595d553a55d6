"""Bytes on disk of a codes entry vs the order-0 entropy of its codes and vs int64 .npy.

    python bench/storage.py [--seconds 300] [--bandwidth 6] [--model DIR]

Targets (issue 2): entry bytes <= 1.10x the order-0 entropy, <= 1/6 of the int64 .npy.
The entry's bytes are every file of its Zarr group (codes, n_frames, coordinates, metadata).
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
from pathlib import Path

import numpy as np


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def entropy_bits(values: np.ndarray) -> float:
    """Order-0 (empirical, memoryless) entropy of ``values`` in bits, summed over all symbols."""
    _, counts = np.unique(values, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum() * counts.sum())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=300.0)
    p.add_argument("--bandwidth", type=float, default=6.0)
    p.add_argument("--model", default=None)
    p.add_argument("--json", default=None, help="write the figures here (bench/benchjson.py)")
    a = p.parse_args()

    from giblet_store import open_store
    from giblet_store.codec.encodec import CodecParams
    from giblet_store.cli.demo import random_model_dir
    from giblet_store.features.codes import extract_codes
    from giblet_store.grid import TrGrid, from_tr
    from giblet_store.testing import synth_audio, write_wav

    model = a.model or str(random_model_dir())
    tmp = Path(tempfile.mkdtemp())
    wav = write_wav(tmp / "stim.wav", synth_audio(a.seconds, 24000, seed=5), 24000)
    store = open_store(tmp / "store")
    entry = extract_codes(store, wav, CodecParams(model, a.bandwidth), TrGrid(1.5)).entry
    ds = entry.open()
    codes = from_tr(ds.codes.values, ds.n_frames.values)  # (codebook, frame), real frames only
    on_disk = _dir_bytes(Path(store.root) / entry.path)
    h_global = entropy_bits(codes) / 8
    h_per_cb = sum(entropy_bits(c) for c in codes) / 8
    bound10 = codes.size * 10 / 8
    buf = io.BytesIO()
    np.save(buf, codes.astype(np.int64))
    npy = buf.tell()
    print(f"codes entry: {codes.shape[0]} codebooks x {codes.shape[1]} frames ({a.seconds:g} s, {a.bandwidth:g} kbps),"
          f" {ds.sizes['tr']} TRs")
    print(f"entry bytes on disk:                 {on_disk:>12,d}")
    print(f"order-0 entropy (all codes pooled):  {h_global:>12,.0f}  ratio {on_disk / h_global:.3f}x  (target <= 1.10x)")
    print(f"order-0 entropy (per codebook):      {h_per_cb:>12,.0f}  ratio {on_disk / h_per_cb:.3f}x")
    print(f"10-bit bound (log2 1024 per code):   {bound10:>12,.0f}  ratio {on_disk / bound10:.3f}x")
    print(f"int64 .npy of the same codes:        {npy:>12,d}  ratio {on_disk / npy:.3f}  (target <= {1 / 6:.3f})")
    if a.json:
        from benchjson import row, write

        write(a.json, [
            row("storage", f"entry bytes vs order-0 entropy, {a.seconds:g} s", "bytes", "order-0 entropy", h_global,
                on_disk, on_disk / h_global, "<= 1.10x", op="<=", value=1.10),
            row("storage", f"entry bytes vs int64 .npy, {a.seconds:g} s", "bytes", "int64 .npy", npy, on_disk,
                on_disk / npy, f"<= {1 / 6:.3f}x", op="<=", value=1 / 6),
        ])


if __name__ == "__main__":
    main()
