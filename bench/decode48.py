"""The 48 kHz stereo model: our decode of a whole codes entry against the model's own ``EncodecModel.decode``.

    python bench/decode48.py [--seconds 60] [--bandwidth 6] [--model DIR] [--profile] [--json OUT]

A synthetic stereo stimulus is extracted once (``extract_codes``, not timed) into a temporary store with
the model of ``bench/encode48.py`` (default: a random-weight model of the real 48 kHz architecture).
Then each path runs in its own subprocess (so peak RSS is its own):

``ours``   ``decode_entry`` of the whole entry (what ``giblet-store decode`` runs): open the entry, read its
           codes, frame times and scales, decode chunk by chunk, overlap-add, write a float32 wav
``model``  one ``EncodecModel.decode`` call on the same codes and scales, already in memory as the
           tensors ``EncodecModel.encode`` returns (read from the entry before the clock starts), with
           oneDNN off as the package decodes, on torch's default intra-op threads
``model1``        the same on one intra-op thread
``model_onednn``  the same with torch's defaults (oneDNN on): its samples depend on the thread count
``model1_onednn`` that on one intra-op thread

With oneDNN off, torch's kernels give the same bits for any thread count (``model`` = ``model1``), so our
samples are compared with ``model`` bit for bit; with oneDNN on, the model's own decode on 2 threads
differs from its decode on 1 in the last bits.

CPU time is the worker's (all threads; ``resource.getrusage``), measured around the decode only;
on a shared machine only the CPU-time ratio is comparable, so the load average is printed beside it.
The samples are compared (equal count, max abs difference). ``--profile`` runs our path under cProfile.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchjson, encode48: the shared bench helpers
from benchjson import cpu_s as _cpu_s, peak_rss as _peak_rss, row, write  # noqa: E402
from encode48 import _print_profile, _stimulus, model_dir  # noqa: E402

GIB = 1024**3


def worker(mode: str, model: str, store_dir: str, key: str, out: str, profile: bool) -> None:
    import torch

    from giblet_store import decode_entry, open_store
    from giblet_store.codec.encodec import load_codec

    codec = load_codec(model)
    store = open_store(store_dir, mode="r")
    entry = store.get(key)
    if mode.startswith("model"):
        from giblet_store.features.codes_normalised import entry_chunks

        got = entry_chunks(entry.open())  # not timed: the model's call starts from tensors in memory
        width = max(c.shape[-1] for c, _ in got)
        pad = width - got[-1][0].shape[-1]
        codes = torch.from_numpy(np.stack([np.pad(c.astype(np.int64), ((0, 0), (0, width - c.shape[-1])))
                                           for c, _ in got]))[:, None]  # (chunk, batch, codebook, frame)
        scales = [torch.tensor([[float(s)]], dtype=torch.float32) for _, s in got]
    base = _peak_rss()
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    t0, c0 = time.perf_counter(), _cpu_s()
    if mode.startswith("model"):
        from giblet_store.codec.encodec import reproducible_torch

        if mode.startswith("model1"):
            torch.set_num_threads(1)
        with reproducible_torch() if not mode.endswith("_onednn") else contextlib.nullcontext(), torch.inference_mode():
            audio = codec.model.decode(codes, scales, last_frame_pad_length=pad)[0][0].numpy()
    else:
        decode_entry(store, entry, out + ".wav", model=model)
    dt, cpu = time.perf_counter() - t0, _cpu_s() - c0
    if prof is not None:
        prof.disable()
        _print_profile(prof)
    if mode.startswith("model"):
        np.save(out + ".npy", audio)
    print(json.dumps({"seconds": dt, "cpu_s": cpu, "peak_rss": _peak_rss(), "rss_before": base,
                      "threads": torch.get_num_threads()}))


def _extract(model: str, wav: Path, store_dir: Path, bandwidth: float) -> str:
    from giblet_store import CodecParams, TrGrid, extract_codes, open_store

    return extract_codes(open_store(store_dir), wav, CodecParams(model, bandwidth), TrGrid(1.5)).entry.key


def _run(mode: str, a, model: str, store_dir: Path, key: str, tmp: Path) -> dict | None:
    out = tmp / f"{mode}"
    cmd = [sys.executable, __file__, "--worker", mode, "--model", model, "--store", str(store_dir), "--key", key,
           "--out", str(out)] + (["--profile"] if a.profile and mode == "ours" else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if a.profile and mode == "ours":
        print(proc.stderr[-6000:])
    if proc.returncode != 0:
        print(f"{mode}: failed (exit {proc.returncode}): {proc.stderr[-800:]}")
        return None
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    r["load"] = os.getloadavg()[0]
    if mode.startswith("model"):
        r["audio"] = np.load(str(out) + ".npy")  # (channel, sample)
    else:
        import soundfile as sf

        r["audio"] = sf.read(str(out) + ".wav", dtype="float32", always_2d=True)[0].T
    return r


def _compare(x: np.ndarray, y: np.ndarray) -> str:
    """How two (channel, sample) signals differ: lengths, samples equal bit for bit, max abs difference."""
    n = min(x.shape[-1], y.shape[-1])
    diff = float(np.max(np.abs(x[:, :n] - y[:, :n]))) if n else float("nan")
    equal = int((x[:, :n] == y[:, :n]).sum())
    return (f"{x.shape} and {y.shape}; of the {x[:, :n].size} samples in both, {equal} equal bit for bit, max abs "
            f"difference {diff:.2e} (peak {float(np.max(np.abs(y))):.2f})")


def _report(seconds: float, a, results: dict) -> list[dict]:
    o, m = results.get("ours"), results.get("model")
    print(f"\ndecode of a whole entry: {seconds:g} s of 48 kHz stereo, {a.bandwidth:g} kbps")
    print(f"{'':14s}{'wall s':>10s}{'CPU s':>10s}{'peak RSS GiB':>15s}{'load avg':>10s}{'threads':>9s}")
    for name, r in results.items():
        if r:
            print(f"{name:14s}{r['seconds']:10.2f}{r['cpu_s']:10.2f}{r['peak_rss'] / GIB:15.2f}{r['load']:10.1f}"
                  f"{r['threads']:9d}")
    done = [(k, r) for k, r in results.items() if r]
    for i, (na, x) in enumerate(done):  # every pair
        for nb, y in done[i + 1:]:
            print(f"samples {na} vs {nb}: {_compare(x['audio'], y['audio'])}")
    if not (o and m):
        return []
    ratio = m["cpu_s"] / o["cpu_s"]
    print(f"throughput ours / model: {ratio:.2f}x by CPU time, {m['seconds'] / o['seconds']:.2f}x by wall time "
          f"(target: >= 1.0x)")
    return [row("decode48", f"decode CPU time, {seconds:g} s stereo", "s", "EncodecModel.decode (oneDNN off)",
                m["cpu_s"], o["cpu_s"], ratio, ">= 1.0x", value=1.0),
            row("decode48", f"decode peak RSS, {seconds:g} s stereo", "GiB", "EncodecModel.decode (oneDNN off)",
                m["peak_rss"] / GIB, o["peak_rss"] / GIB, None, "")]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", default="60", help="comma-separated stimulus lengths")
    p.add_argument("--bandwidth", type=float, default=6.0)
    p.add_argument("--model", default=None)
    p.add_argument("--modes", default="ours,model")
    p.add_argument("--profile", action="store_true", help="cProfile our path (its own time per function)")
    p.add_argument("--json", default=None, help="write the figures (bench/benchjson.py) to this file")
    p.add_argument("--worker", default=None)
    p.add_argument("--store", default=None)
    p.add_argument("--key", default=None)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    if a.worker:
        return worker(a.worker, a.model, a.store, a.key, a.out, a.profile)
    model = a.model or model_dir()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_decode48_") as d:
        tmp = Path(d)
        for seconds in (float(s) for s in a.seconds.split(",")):
            wav = _stimulus(tmp / f"stim{seconds:g}.wav", seconds)
            store_dir = tmp / f"store{seconds:g}"
            key = _extract(model, wav, store_dir, a.bandwidth)
            results = {m: _run(m, a, model, store_dir, key, tmp) for m in a.modes.split(",")}
            rows += _report(seconds, a, results)
    write(a.json, rows)


if __name__ == "__main__":
    main()
