"""Compare EnCodec bandwidths with mel + Griffin-Lim on a real recording: CSV, Markdown and PNG report.

1. take the first ``--seconds`` of ../shared/data/arctic_a0007.wav (CMU ARCTIC speech; synthesised
   audio when the shared data is absent);
2. encode it with EnCodec at each bandwidth and take mel spectrograms at each size, as store entries;
3. decode both back to audio (EnCodec decoder; Griffin-Lim), score each against the original (SNR,
   SI-SDR, log-spectral and mel distance, STOI/ESTOI, PESQ wb/nb), kept as quality entries;
4. write compare.csv, compare.md and compare.png in ``--out``.

With a random-weight model (the offline test model) the report's first line says so, and nothing in
it says anything about EnCodec's quality. Without --model it tries facebook/encodec_24khz and, when that cannot be loaded (offline), uses a
random-weight EnCodec of the same architecture; the first line printed says which model runs.

    python examples/compare_codecs.py --model facebook/encodec_24khz --out report
    python examples/compare_codecs.py --model ./encodec_dir --bandwidths 1.5,6 --n-mels 64,128 --seconds 3

The last line printed is a JSON summary.
"""

# %% imports and arguments
from __future__ import annotations

import argparse
import json
from pathlib import Path

import soundfile as sf

import giblet_store as gs
from giblet_store.cli.demo import example_model
from giblet_store.testing import synth_audio, write_wav

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="hub name or save_pretrained directory")
    p.add_argument("--bandwidths", default=None, help="kbps, comma-separated (default: all the model offers)")
    p.add_argument("--n-mels", default="64,128,512")
    p.add_argument("--seconds", type=float, default=10.0, help="how much of the recording to compare")
    p.add_argument("--out", default="compare_report")
    return p.parse_args(argv)


# %% the stimulus: a real recording, cut to --seconds
def stimulus(out_dir: Path, seconds: float) -> Path:
    src = SHARED / "arctic_a0007.wav"
    out_dir.mkdir(parents=True, exist_ok=True)
    if src.exists():
        y, sr = sf.read(str(src), dtype="float32", always_2d=True)
        return write_wav(out_dir / "stimulus.wav", y[: int(seconds * sr)].T, sr, subtype="FLOAT")
    return write_wav(out_dir / "stimulus.wav", synth_audio(seconds, 24000, seed=11), 24000, subtype="FLOAT")


# %% the comparison
def main(argv=None) -> dict:
    args = parse_args(argv)
    model = example_model(args.model)  # first line printed: which model runs
    out = Path(args.out)
    wav = stimulus(out, args.seconds)
    bws = [float(b) for b in args.bandwidths.split(",")] if args.bandwidths else None
    rep = gs.compare_codecs(wav, out, model=model, bandwidths=bws,
                            n_mels=[int(n) for n in args.n_mels.split(",")])
    print(rep.markdown.read_text())
    summary = {"first_line": rep.first_line, "untrained": rep.untrained, "csv": str(rep.csv),
               "markdown": str(rep.markdown), "png": str(rep.png),
               "rows": [{k: r[k] for k in ("method", "setting", "bitrate_kbps", "bytes_per_audio_minute",
                                           "stoi", "pesq_wb", "quality_key")} for r in rep.rows]}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
