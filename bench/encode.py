"""Chunked extraction vs one whole-file EnCodec encode call: peak RSS, throughput, code agreement.

    python bench/encode.py [--seconds 600] [--bandwidth 6] [--model DIR]

Each approach runs in its own subprocess (so peak RSS is its own) on the same synthetic stimulus and
the same model (default: a random-weight model of the real 24 kHz architecture, codebooks filled from
encoder outputs). Prints ratios measured in this run. Targets (issue 2): chunked peak RSS <= 1.5 GiB,
throughput >= 1.0x the whole-file call, codes agreement >= 99.5%.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

GIB = 1024**3


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def worker(mode: str, model: str, seconds: float, bandwidth: float, wav: str, out: str) -> None:
    import torch

    from giblet_store import open_store
    from giblet_store.codec import CodecParams, load_codec
    from giblet_store.codes import extract_codes
    from giblet_store.audio import load_audio
    from giblet_store.grid import from_tr

    codec = load_codec(model)
    base = _peak_rss()
    t0 = time.perf_counter()
    if mode == "whole":
        audio, _ = load_audio(wav, 24000)
        with torch.inference_mode():
            enc = codec.model.encode(torch.from_numpy(audio)[None], bandwidth=bandwidth)
        codes = enc.audio_codes[0, 0].numpy().astype(np.int16)
    else:
        store = open_store(tempfile.mkdtemp() + "/store")
        entry = extract_codes(store, wav, CodecParams(model, bandwidth), scheduler="threads").entry
        ds = entry.open()
        codes = from_tr(ds.codes.values, ds.n_frames.values)
    dt = time.perf_counter() - t0
    np.save(out, codes)
    print(json.dumps({"seconds": dt, "peak_rss": _peak_rss(), "rss_before": base, "frames": int(codes.shape[1])}))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=600.0)
    p.add_argument("--bandwidth", type=float, default=6.0)
    p.add_argument("--model", default=None)
    p.add_argument("--worker", default=None)
    p.add_argument("--wav", default=None)
    p.add_argument("--out", default=None)
    p.add_argument("--json", default=None, help="write the figures here (bench/benchjson.py)")
    a = p.parse_args()
    if a.worker:
        return worker(a.worker, a.model, a.seconds, a.bandwidth, a.wav, a.out)

    from giblet_store.demo import random_model_dir
    from giblet_store.testing import synth_audio, write_wav

    model = a.model or str(random_model_dir())
    tmp = Path(tempfile.mkdtemp())
    wav = write_wav(tmp / "stim.wav", synth_audio(a.seconds, 24000, seed=7), 24000)
    results = {}
    for mode in ("chunked", "whole"):
        out = tmp / f"{mode}.npy"
        cmd = [sys.executable, __file__, "--worker", mode, "--model", model, "--seconds", str(a.seconds),
               "--bandwidth", str(a.bandwidth), "--wav", str(wav), "--out", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{mode}: failed (exit {proc.returncode}): {proc.stderr[-800:]}")
            results[mode] = None
            continue
        results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
        results[mode]["codes"] = np.load(out)
    c, w = results["chunked"], results["whole"]
    print(f"stimulus: {a.seconds:g} s synthetic, {a.bandwidth:g} kbps, model {model}")
    print(f"{'':24s}{'wall s':>10s}{'peak RSS GiB':>15s}{'audio s / s':>14s}")
    for name, r in (("chunked extraction", c), ("whole-file encode", w)):
        if r:
            print(f"{name:24s}{r['seconds']:10.2f}{r['peak_rss'] / GIB:15.2f}{a.seconds / r['seconds']:14.1f}")
    if c and w:
        agree = float((c["codes"] == w["codes"]).mean()) if c["codes"].shape == w["codes"].shape else float("nan")
        print(f"\nthroughput ratio (chunked / whole): {w['seconds'] / c['seconds']:.2f}x   (target >= 1.0x)")
        print(f"peak RSS ratio (chunked / whole):   {c['peak_rss'] / w['peak_rss']:.2f}   "
              f"(chunked {c['peak_rss'] / GIB:.2f} GiB, target <= 1.5 GiB)")
        print(f"code agreement with whole-file:     {100 * agree:.2f}%  (target >= 99.5%); "
              f"frames {c['codes'].shape[1]} vs {w['codes'].shape[1]}")
    write_json(a.json, a.seconds, c, w)


def write_json(path, seconds: float, c: dict | None, w: dict | None) -> None:
    """The figures of bench/benchjson.py (``make bench``): chunked extraction vs the whole-file call."""
    if not path:
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from benchjson import row, write

    rows = []
    if c and w:
        s = f"{seconds:g} s"
        rows.append(row("encode", f"throughput, {s}", "audio s/s", "whole-file encode", seconds / w["seconds"],
                        seconds / c["seconds"], w["seconds"] / c["seconds"], ">= 1.0x", value=1.0))
        same = c["codes"].shape == w["codes"].shape
        agree = 100 * float((c["codes"] == w["codes"]).mean()) if same else float("nan")
        rows.append(row("encode", f"codes equal to whole-file, {s}", "%", "", None, agree, None, ">= 99.5%",
                        on="ours", value=99.5))
        rows.append(row("encode", f"peak RSS, {s}", "GiB", "whole-file encode", w["peak_rss"] / GIB,
                        c["peak_rss"] / GIB, None, "<= 1.5 GiB", on="ours", op="<=", value=1.5))
    write(path, rows)


if __name__ == "__main__":
    main()
