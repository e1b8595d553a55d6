"""Where container audio lands and how long it is: offset, lag and length errors in source samples.

    python bench/aac_alignment.py [--seconds 3.0026]

Each case writes 48 kHz stereo chirps with ``write_movie`` (AAC 96 kbit/s unless PCM), reads them back
with ``load_audio`` at 48 kHz and prints, in samples: the recorded ``audio_offset_s`` less the true
start, the cross-correlation lag of the sound against the source placed at the true start (positive:
late) and the length less the true end. No timing, no model; deterministic for one FFmpeg build.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

SR = 48000

#: (name, suffix, codec, video, delay_s, movie_timescale: None = write_movie's sample-exact default)
CASES = [
    ("mp4 AAC + video, from 0.5 s", "mp4", "aac", True, 0.5, None),
    ("mp4 AAC + video, from 0.5 s, 1 ms edit list", "mp4", "aac", True, 0.5, 1000),
    ("mp4 AAC + video, from 0 s", "mp4", "aac", True, 0.0, None),
    ("m4a AAC", "m4a", "aac", False, 0.0, None),
    ("m4a AAC, from 0.5 s", "m4a", "aac", False, 0.5, None),
    ("mkv AAC + video, from 0.5 s", "mkv", "aac", True, 0.5, None),
    ("mkv PCM + video, from 0.5 s", "mkv", "pcm_s16le", True, 0.5, None),
    ("raw ADTS .aac", "aac", "aac", False, 0.0, None),
]


def chirps(n: int) -> np.ndarray:
    """(2, n) float32: a rising and a falling chirp under a 2.5 Hz envelope, silent for 0.2 s."""
    t = np.arange(n) / SR
    env = 0.15 * (1 + np.sin(2 * np.pi * 2.5 * t)) * (t > 0.2)
    sweep = [np.sin(2 * np.pi * (f0 * t + 0.5 * (f1 - f0) / t[-1] * t * t)) for f0, f1 in ((200, 6000), (5000, 300))]
    return (env * np.stack(sweep)).astype(np.float32)


def best_lag(got: np.ndarray, ref: np.ndarray, max_lag: int = 1200) -> int:
    n = min(len(got), len(ref)) - 2 * max_lag
    scores = [float(np.dot(got[max_lag + k : max_lag + k + n], ref[max_lag : max_lag + n]))
              for k in range(-max_lag, max_lag + 1)]
    return int(np.argmax(scores)) - max_lag


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from giblet_store.audio.load import load_audio
    from giblet_store.testing.video import write_movie

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0026, help="sound length (default: not whole AAC frames)")
    a = ap.parse_args()
    x = chirps(int(round(a.seconds * SR)))
    print(f"{'case':46s} {'offset':>7s} {'lag':>6s} {'length':>7s}   (errors in samples at {SR} Hz)")
    with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, (name, suffix, codec, video, delay_s, scale) in enumerate(CASES):
            path = write_movie(Path(d) / f"{i}.{suffix}", x, SR, codec=codec, video=video, delay_s=delay_s,
                               movie_timescale=scale)
            got, info = load_audio(path, SR, channels=2)
            start = int(round(delay_s * SR))
            ref = np.concatenate([np.zeros(start, np.float32), x[0]])
            print(f"{name:46s} {round(info.offset_s * SR) - start:7d} {best_lag(got[0], ref):6d} "
                  f"{info.n_samples - start - x.shape[1]:7d}")


if __name__ == "__main__":
    main()
