"""A movie's soundtrack -> codes on the TR grid -> .ecdc / acomp files -> back into the store.

    python examples/movie_codes.py [--model DIR_OR_HUB_NAME] [--store PATH] [--movie FILE]

Without --movie it makes a small mp4 (a tiny video and AAC audio of the bundled speech recording, or
synthetic sound) whose audio starts 0.5 s after the video, as a late soundtrack would. Stimulus time 0
is the container's time 0, so the codes start with 0.5 s of silence and the offset is recorded.
Without --model it tries facebook/encodec_24khz and, when that cannot be loaded (offline), uses a
random-weight EnCodec of the same architecture; the first line printed says which model runs.
"""

import argparse
from pathlib import Path

import numpy as np

import giblet_store as gs
from giblet_store.cli.demo import example_model
from giblet_store.codec.encodec import load_codec

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "data" / "arctic_a0007.wav"

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--model", default=None, help="hub name or save_pretrained directory")
parser.add_argument("--store", default="movie_store")
parser.add_argument("--movie", default=None)
args = parser.parse_args()
args.model = example_model(args.model)  # first line printed: which model runs

# %% 1. A movie: the one given, or a small mp4 made here with PyAV
if args.movie:
    movie = Path(args.movie)
else:
    from giblet_store.testing import synth_audio
    from giblet_store.testing.video import write_movie

    if SHARED.exists():
        import soundfile as sf

        sound, sr = sf.read(str(SHARED), dtype="int16", always_2d=True)
        sound = sound.T
    else:
        sound, sr = synth_audio(4.0, 16000), 16000
    movie = write_movie(Path(args.store).with_suffix(".mp4"), sound, sr, codec="aac", delay_s=0.5)
print(f"movie: {movie}")

# %% 2. Codes of its default audio stream on a 1.5 s TR grid, at the model's lowest bandwidth
LOWEST = load_codec(args.model).bandwidths[0]  # from the model: 24 kHz 1.5 kbps, 48 kHz 3 kbps
store = gs.open_store(args.store)
r = gs.extract_codes(store, movie, gs.CodecParams(args.model, bandwidth_kbps=LOWEST), gs.TrGrid(tr_s=1.5))
a = r.entry.attrs
print(f"{'created' if r.created else 'cached'}: {r.entry.key[:16]} from audio stream {a['audio_stream']} "
      f"({a['audio_codec']} in {a['container_format']}), first sample at {a['audio_offset_s']:.3f} s")
ds = r.entry.open()
print(f"codes {dict(ds.codes.sizes)}, real frames per TR: {ds.n_frames.values.tolist()}")

# %% 3. Out to the encodec command line's .ecdc and acomp's text, and back in (bit for bit)
for fmt in ("ecdc", "acomp"):
    path = gs.export_codes(store, r.entry, Path(args.store).with_suffix(f".{fmt}"))
    back = gs.import_codes(store, path, model=args.model, grid=gs.TrGrid(tr_s=1.5)).entry
    same = np.array_equal(back.open().codes.values, ds.codes.values)
    print(f"{fmt}: {path.name} ({path.stat().st_size} bytes) -> entry {back.key[:16]}, identical codes: {same}, "
          f"imported_from {back.attrs['imported_from']['format']}")
