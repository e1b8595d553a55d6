"""Feature engineering on a giblet store, notebook style: codes, mel, embeddings, HRF, resampling.

Each ``# %%`` cell runs in a notebook (VS Code / Jupytext) or top to bottom as a script:

1. a real recording (../shared/data/encodec_test_24k.wav, 20 s of music; synthesised audio when the
   shared data is absent) becomes EnCodec codes and a mel spectrogram on a 1.5 s TR grid;
2. the codes are dequantised into embeddings (what a model should consume instead of integer codes);
3. the per-TR embedding means are convolved with a causal SPM HRF, then resampled to a 2.0 s TR;
4. the entries are queried with xarray (``sel``, ``isel``, ``groupby``) and by their attributes;
5. a PNG shows the SPM and Glover kernels on the TR grid and a heatmap of the codes per TR.

Every derived entry records its parent and parameters; running the script twice computes nothing new.
Without --model it tries facebook/encodec_24khz and, when that cannot be loaded (offline), uses a
random-weight EnCodec of the same architecture; the first line printed says which model runs.

    python examples/features.py --store feature_store --model facebook/encodec_24khz
    python examples/features.py --store s --model ./encodec_dir --png features.png

The last line printed is a JSON summary.
"""

# %% imports and arguments
from __future__ import annotations

import argparse
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np

import giblet_store as gs
from giblet_store.audio.channels import ChannelsMixedWarning
from giblet_store.cli.demo import example_model
from giblet_store.codec.encodec import CodecParams, load_codec
from giblet_store.features.derive import Embeddings
from giblet_store.features.hrf import Hrf, hrf_curve, hrf_kernel
from giblet_store.features.mel import MelParams, extract_mel
from giblet_store.features.resample import Resample

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", default="feature_store", help="store directory (created if absent)")
    p.add_argument("--model", default=None,
                   help="EnCodec hub name or save_pretrained directory (default: facebook/encodec_24khz, "
                        "or a random-weight model when it cannot be loaded)")
    p.add_argument("--png", default="features.png", help="figure to write")
    return p.parse_args(argv)


args = parse_args()


def stimulus(codec) -> Path:
    """The shared mono recording for a mono model; otherwise (or without it) 20 s synthesised at the model's rate."""
    wav = SHARED / "encodec_test_24k.wav"
    if wav.exists() and codec.channels == 1:
        return wav
    from giblet_store.testing import synth_audio, write_wav

    sr, ch = codec.sample_rate_hz, codec.channels
    print(f"NOTE: using 20 s of synthesised audio ({sr} Hz, {ch} channel(s), as the model takes)")
    return write_wav(Path(tempfile.mkdtemp()) / "synth_20s.wav", synth_audio(20.0, sr, seed=7, channels=ch), sr)


model = example_model(args.model)  # its first line printed says which model runs
codec = load_codec(model)  # rate, channels, frame rate and bandwidths come from the model
bandwidth = codec.bandwidths[0]  # its lowest (24 kHz: 1.5 kbps, 48 kHz: 3 kbps)
wav = stimulus(codec)
store = gs.open_store(args.store)
grid = gs.TrGrid(tr_s=1.5)
print(f"model: {codec.sample_rate_hz} Hz, {codec.channels} channel(s), {float(codec.frame_rate):g} frames/s, "
      f"{bandwidth:g} kbps")

# %% 1. codes and mel of the same recording, on the same exact TR grid
codes = gs.extract_codes(store, wav, CodecParams(model, bandwidth_kbps=bandwidth), grid).entry
with warnings.catch_warnings():  # a mel spectrogram is mono: a stereo stimulus is averaged (its source_channels says so)
    warnings.simplefilter("ignore", ChannelsMixedWarning)
    mel = extract_mel(store, wav, MelParams(), grid).entry  # dB re a fixed 1.0, never the file's max
print(f"codes {codes.key[:12]}: {dict(codes.open().sizes)}")
print(f"mel   {mel.key[:12]}: {dict(mel.open().sizes)}")

# %% 2. embeddings: dequantise the codes through the model's own quantizer (sum of codebook vectors)
emb = store.derive(codes, Embeddings(), model=model)
print(f"embeddings {emb.key[:12]}: {dict(emb.open().sizes)}")

# %% 3. causal HRF on the per-TR means, then a 2.0 s TR grid
# A 20 s clip has 14 TRs of 1.5 s, shorter than SPM's 32 s kernel, so the kernel is cut to 20 s here;
# a real soundtrack (an episode: ~2000 TRs) keeps the default length.
hrf = Hrf("spm", length_s=20.0)
convolved = store.derive(emb, hrf)
at_2s = store.derive(convolved, Resample(tr_s=2.0))
again = store.derive(store.derive(emb, hrf), Resample(tr_s=2.0))  # chainable, and cached
assert again == at_2s
print("lineage:", " <- ".join(f"{e.kind}:{e.key[:8]}" for e in store.lineage(at_2s)))

# %% 4. query with xarray
ds = at_2s.open().set_xindex("tr_start_s")  # lazy, Dask-backed; index the TRs by stimulus time too
first_10s = ds.sel(tr_start_s=slice(0.0, 9.999))  # sel by label: the TRs starting in the first 10 s
two_dims = ds["embedding_mean"].isel(dim=[0, 1])  # isel by position
blocks = (ds["embedding_mean"]
          .assign_coords(block=("tr", (ds.tr_start_s.values // 6.0).astype(int)))
          .groupby("block").mean())  # 6-s blocks of the stimulus
mel_ds = mel.open()
loud_band = int(mel_ds["mel_mean"].mean("tr").argmax("mel_band"))
print(f"TRs in the first 10 s at 2.0 s: {first_10s.sizes['tr']}; "
      f"6-s blocks: {blocks.sizes['block']}; loudest mel band: {float(mel_ds.mel_hz[loud_band]):.0f} Hz")
print("found by attributes:", [e.key[:8] for e in store.find(kind="features", hrf="spm", tr_s=2.0)])

# %% 5. figure: HRF kernels on the TR grid, and the codes per TR
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4))
t = np.linspace(0, 32, 641)
for model_name, colour in (("spm", "C0"), ("glover", "C1")):
    h = Hrf(model_name)
    k = hrf_kernel(h, grid.tr_s)
    curve = hrf_curve(t, h)
    ax0.plot(t, curve / curve.max() * k.max(), color=colour, lw=1, label=f"{model_name} (curve)")
    ax0.plot(grid.tr_s * np.arange(k.size), k, "o", color=colour, ms=4, label=f"{model_name} taps at TR {grid.tr_s:g} s")
ax0.axhline(0, color="0.7", lw=0.5)
ax0.set(xlabel="time after stimulus (s)", ylabel="weight (taps sum to 1)", title="HRF kernels (causal)")
ax0.legend(fontsize=8)
c = codes.open()
cb0 = np.ma.masked_less(c["codes"].isel(codebook=0).values, 0)  # (tr, frame), -1 tails masked
im = ax1.imshow(cb0.T, aspect="auto", origin="lower", interpolation="nearest", cmap="viridis")
ax1.set(xlabel="TR", ylabel="frame within TR", title=f"codebook 0 codes per TR ({c.sizes['frame']} slots; "
        "blank: no frame)")
fig.colorbar(im, ax=ax1, label="code index")
fig.tight_layout()
fig.savefig(args.png, dpi=100)
print(f"wrote {args.png}")

# %% summary
print(json.dumps({
    "codes_key": codes.key, "mel_key": mel.key, "embeddings_key": emb.key,
    "hrf_key": convolved.key, "resampled_key": at_2s.key, "png": str(Path(args.png).resolve()),
    "n_trs": {"1.5": int(c.sizes["tr"]), "2.0": int(ds.sizes["tr"])},
    "blocks": int(blocks.sizes["block"]), "sample_rate_hz": codec.sample_rate_hz, "bandwidth_kbps": bandwidth,
}))
