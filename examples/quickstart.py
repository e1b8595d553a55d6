"""Quickstart: a real recording -> EnCodec codes on the fMRI TR grid -> query with xarray.

Run it like a notebook, top to bottom:

    python examples/quickstart.py [--model DIR_OR_HUB_NAME] [--store PATH] [--audio FILE]

Without --model it tries facebook/encodec_24khz and, when that cannot be loaded (offline), uses a
random-weight EnCodec of the same architecture; the first line printed says which model runs.
(Codes and shapes are real with random weights; their meaning is not.)
"""

import argparse
from pathlib import Path

import numpy as np

import giblet_store as gs
from giblet_store.cli.demo import example_model
from giblet_store.codec.encodec import CodecParams, load_codec

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "data" / "encodec_test_24k.wav"

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--model", default=None)
parser.add_argument("--store", default="quickstart_store")
parser.add_argument("--audio", default=None)
args = parser.parse_args()

# %% 1. The model: a hub name or a save_pretrained directory (24 kHz mono or 48 kHz stereo)
model = example_model(args.model)  # first line printed: which model, and whether it is a random-weight stand-in
codec = load_codec(model)  # sample rate, channels, hop, frame rate and bandwidths: from the model, never a table
bandwidth = 6.0 if 6.0 in codec.bandwidths else codec.bandwidths[0]
print(f"model: {codec.sample_rate_hz} Hz, {codec.channels} channel(s), hop {codec.hop}, "
      f"{float(codec.frame_rate):g} frames/s, bandwidths {codec.bandwidths} kbps")

# %% 2. A stimulus: the bundled 20 s music recording if present (mono: for a mono model), else a synthesised one
if args.audio:
    audio = Path(args.audio)
elif SHARED.exists() and codec.channels == 1:
    audio = SHARED
else:
    from giblet_store.testing import synth_audio, write_wav

    sr, ch = codec.sample_rate_hz, codec.channels
    audio = write_wav(Path(args.store).with_suffix(".wav"), synth_audio(20.0, sr, channels=ch), sr)
print(f"stimulus: {audio}")

# %% 3. Extract codes on a 1.5 s TR grid (a second run is a cache hit)
store = gs.open_store(args.store)
result = gs.extract_codes(store, audio, CodecParams(model, bandwidth_kbps=bandwidth), gs.TrGrid(tr_s=1.5))
print(f"{'created' if result.created else 'cached'}: {result.entry.key[:16]} at {result.entry.path}")

# %% 4. Find it again by what it *is* (attributes), never by its path
(entry,) = store.find(kind="codes", bandwidth_kbps=bandwidth, tr_s=1.5,
                      source_sha256=result.entry.attrs["source_sha256"])
ds = entry.open()  # lazy: nothing is read until .values / .compute()
print(ds)

# %% 5. Query with xarray
print(f"codebooks at {bandwidth:g} kbps:", ds.sizes["codebook"])  # 24 kHz, 6 kbps: 8, from the model
print("real frames in TRs 0-5:", ds.n_frames.isel(tr=slice(0, 6)).values.tolist())  # 24 kHz: 113, 112, ...
if "frame_time_s" in ds:  # 48 kHz: overlapping 1 s chunks, each frame at its own start time, scales per chunk
    print("TR 1's first frames start at (s):", ds.frame_time_s.sel(tr=1).values[:3].round(5).tolist(),
          "; chunk scales:", ds.scales.values[:3].round(4).tolist())
tr10 = ds.codes.sel(tr=10)  # (codebook, frame)
real = tr10.isel(frame=slice(0, int(ds.n_frames.sel(tr=10))))
print("TR 10 starts at", float(ds.tr_start_s.sel(tr=10)), "s; first-codebook codes:", real.sel(codebook=0).values[:8])
# distinct first-codebook codes per TR (a cheap measure of acoustic variety), lazily over all TRs
valid = ds.codes.sel(codebook=0).where(ds.frame < ds.n_frames)
variety = valid.to_series().dropna().groupby(level="tr").nunique()
print("distinct codebook-0 codes per TR (first 5):", variety.head().tolist())
assert int(ds.n_frames.sum()) == ds.attrs["n_stream_frames"]  # every frame kept

# %% 6. Back to audio: TRs 2-4, from their first frame's start to their last frame's end
import soundfile as sf  # noqa: E402

out = gs.decode_entry(store, entry, Path(args.store).with_suffix(".tr2-4.wav"), trs="2:5", model=model)
print(f"decoded TRs 2:5 -> {out} ({sf.info(str(out)).frames / codec.sample_rate_hz:.4f} s)")
