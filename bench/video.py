"""Codes from a movie (mp4, AAC, PyAV streamed decode) vs from the wav of the same audio: throughput, peak RSS.

    python bench/video.py [--seconds 600] [--bandwidth 6] [--model DIR] [--decode-only]

The bench writes a synthetic stimulus as a 24 kHz PCM wav, and the same samples as an mp4 (a small
MPEG-4 video and 48 kHz stereo AAC audio, as a film would carry). Each path runs ``extract_codes`` (decode +
resample + chunked encode + store write) in its own subprocess, so peak RSS is its own; the model is
a random-weight 24 kHz EnCodec unless ``--model`` is given. ``--decode-only`` times ``load_audio``
alone (the part that differs between the paths). Peak RSS is sampled during the job (after the model
is loaded); CPU time counts every thread of the process. Targets (issue 10): mp4 peak RSS within 200 MiB
of the wav path; throughput >= 0.8x the wav path.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchjson: the shared bench helpers
from benchjson import cpu_s as _cpu_s  # noqa: E402

MIB = 1024**2




class _RssSampler:
    """Highest resident set size (bytes, /proc/self/statm) seen every 20 ms while inside."""

    def __enter__(self):
        import os
        import threading

        self.page, self.peak, self.stop = os.sysconf("SC_PAGE_SIZE"), 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.start = self._now()
        self.thread.start()
        return self

    def _now(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _run(self):
        while not self.stop.wait(0.02):
            self.peak = max(self.peak, self._now())

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def child(path: str, model: str, bandwidth: float, decode_only: bool) -> None:
    from giblet_store import CodecParams, open_store
    from giblet_store.audio.load import load_audio
    from giblet_store.codec.encodec import load_codec
    from giblet_store.features.codes import extract_codes

    load_codec(model)  # model load is not what is compared
    t0, c0 = time.perf_counter(), _cpu_s()
    with _RssSampler() as rss:
        if decode_only:
            with tempfile.TemporaryDirectory() as tmp:
                audio, info = load_audio(path, 24000, 1, out=str(Path(tmp) / "a.npy"))
                n = int(audio.shape[-1])
                del audio
        else:
            store = open_store(tempfile.mkdtemp(prefix="bench_video_") + "/store")
            entry = extract_codes(store, path, CodecParams(model, bandwidth)).entry
            n = int(entry.attrs["n_trs"])
    dt, cpu = time.perf_counter() - t0, _cpu_s() - c0
    print(json.dumps({"seconds": dt, "cpu_s": cpu, "peak_rss": max(rss.peak, rss.start), "rss_before": rss.start,
                      "n": n}))


def make_inputs(tmp: Path, seconds: float) -> tuple[Path, Path]:
    import soxr

    from giblet_store.testing import synth_audio, write_wav
    from giblet_store.testing.video import write_movie

    wav, mp4 = tmp / "stim.wav", tmp / "stim.mp4"
    parts = [synth_audio(min(60.0, seconds - s), 24000, seed=int(s)) for s in np.arange(0, seconds, 60.0)]
    audio = np.concatenate(parts, axis=1)
    write_wav(wav, audio, 24000)
    hi = soxr.resample(audio[0], 24000, 48000).astype(np.float32)
    write_movie(mp4, np.stack([hi, hi]), 48000, codec="aac", bit_rate=192000, fps=5, block=4096)
    return wav, mp4


def _run(path: Path, model: str, bandwidth: float, decode_only: bool) -> dict:
    cmd = [sys.executable, __file__, "--child", str(path), "--model", model, "--bandwidth", str(bandwidth)]
    cmd += ["--decode-only"] if decode_only else []
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{path.name} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--bandwidth", type=float, default=6.0)
    ap.add_argument("--model", default=None)
    ap.add_argument("--decode-only", action="store_true")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a.child, a.model, a.bandwidth, a.decode_only)
    with tempfile.TemporaryDirectory(prefix="bench_video_") as tmp:
        tmp = Path(tmp)
        model = a.model
        if model is None:
            from giblet_store.testing import save_test_model

            model = str(save_test_model(tmp / "model"))
        t0 = time.perf_counter()
        wav, mp4 = make_inputs(tmp, a.seconds)
        print(f"made {a.seconds:.0f} s stimulus: wav {wav.stat().st_size / MIB:.1f} MiB, mp4 (AAC 48 kHz stereo "
              f"+ video) {mp4.stat().st_size / MIB:.1f} MiB in {time.perf_counter() - t0:.1f} s")
        w = _run(wav, model, a.bandwidth, a.decode_only)
        m = _run(mp4, model, a.bandwidth, a.decode_only)
    what = "load_audio" if a.decode_only else "extract_codes"
    for name, r in (("wav", w), ("mp4", m)):
        print(f"{name}: {what} {r['seconds']:.1f} s wall, {r['cpu_s']:.1f} s CPU ({a.seconds / r['seconds']:.1f}x real "
              f"time), peak RSS {r['peak_rss'] / MIB:.0f} MiB (before: {r['rss_before'] / MIB:.0f} MiB)")
    print(f"mp4/wav throughput ratio: {w['seconds'] / m['seconds']:.2f}x wall, {w['cpu_s'] / m['cpu_s']:.2f}x CPU time "
          "(target >= 0.8x; on a shared machine trust the CPU-time ratio)")
    print(f"mp4 - wav peak RSS: {(m['peak_rss'] - w['peak_rss']) / MIB:+.0f} MiB (target <= +200 MiB)")


if __name__ == "__main__":
    main()
