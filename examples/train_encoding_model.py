"""Train a small encoding model (stimulus codes -> fMRI) from a giblet store, and store its predictions.

The whole loop on real data, small enough for a CPU in well under two minutes:

1. a real recording (../shared/data/encodec_test_24k.wav, 20 s of music; looped to cover the scan)
   is encoded to EnCodec codes on the scan's TR grid;
2. a real fMRI series (nibabel's functional.nii: 17x21x3 voxels, 20 TRs of 2 s) is ingested beside
   it, z-scored with training-range statistics only;
3. a StoreDataset streams (codes of TRs t-2..t, fMRI at t) samples to a small PyTorch model
   (a codebook embedding averaged over each TR's real frames, then a linear read-out per voxel);
4. predictions of every TR go back into the store with their provenance (model, checkpoint sha256,
   training parameters, feature and fmri keys), and the per-voxel Pearson r on the held-out TRs is
   stored as an evaluation entry and written as a NIfTI map.

The fMRI was not recorded while listening to this music, so expect r near 0 on held-out TRs: the
point is the plumbing (and the training loss going down), not neuroscience.

    python examples/train_encoding_model.py --store demo_store --model facebook/encodec_24khz
    python examples/train_encoding_model.py --store s --model ./encodec_dir --device cuda

Without --model it tries facebook/encodec_24khz and, when that cannot be loaded (offline), uses a
random-weight EnCodec of the same architecture; the first line printed says which model runs. The last
line printed is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from giblet_store.cli.demo import example_model
from giblet_store.codec.encodec import load_codec

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data" / "encodec_test_24k.wav"


def parse_args(argv=None):
    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", required=True, help="store directory (created if absent)")
    p.add_argument("--model", default=None, help="EnCodec hub name or save_pretrained directory (default: "
                   "facebook/encodec_24khz, or a random-weight model when it cannot be loaded)")
    p.add_argument("--audio", default=None, help="stimulus audio (default: the shared 20 s music clip)")
    p.add_argument("--nifti", default=None, help="4D fMRI (default: nibabel's functional.nii)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--window", type=int, default=2, help="previous TRs of stimulus per sample")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="torch device (default: cuda when present)")
    return p.parse_args(argv)


def stimulus_wav(args, seconds: float, out: Path) -> Path:
    """The recording looped to ``seconds`` (a real recording; the loop keeps its bytes deterministic)."""
    import soundfile as sf

    from giblet_store.testing import synth_audio

    if args.audio or SHARED.exists():
        audio, sr = sf.read(str(args.audio or SHARED), dtype="float32", always_2d=True)
        audio = audio.mean(1)
    else:  # no shared data: a synthetic stimulus, said so in the summary
        sr = 24000
        audio = synth_audio(20.0, sr, seed=1)[0]
    n = int(round(seconds * sr))
    sf.write(str(out), np.resize(audio, n), sr, subtype="PCM_16")
    return out


def build_model(n_codebooks: int, codebook_size: int, window: int, n_voxels: int, dim: int = 16):
    import torch
    from torch import nn

    class CodesEncodingModel(nn.Module):
        """codes (B, k+1, codebook, frame) int64 (-1 = no frame) -> (B, voxel)."""

        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(n_codebooks * codebook_size + 1, dim, padding_idx=0)
            self.offsets = nn.Parameter(torch.arange(n_codebooks) * codebook_size + 1, requires_grad=False)
            self.readout = nn.Sequential(nn.LayerNorm((window + 1) * dim), nn.Dropout(0.1),
                                         nn.Linear((window + 1) * dim, n_voxels))

        def forward(self, codes, n_frames):
            real = codes >= 0
            idx = torch.where(real, codes + self.offsets[:, None], torch.zeros_like(codes))
            e = self.embed(idx).sum(2)  # (B, k+1, frame, dim): sum over codebooks
            e = e.sum(2) / n_frames.clamp(min=1)[..., None]  # mean over the real frames of each TR
            return self.readout(e.flatten(1))

    return CodesEncodingModel()


def bundled_functional() -> Path:
    """nibabel's bundled functional.nii, found in the installed package (``nibabel.testing`` would
    import pytest, which a user's environment need not have)."""
    from importlib.resources import files

    path = Path(str(files("nibabel") / "tests" / "data" / "functional.nii"))
    if not path.is_file():
        raise SystemExit(f"nibabel's bundled functional.nii is not at {path}; give --nifti a 4D NIfTI")
    return path


def main(argv=None) -> int:
    import torch
    from torch.utils.data import DataLoader

    import giblet_store as gs
    from giblet_store.codec.encodec import CodecParams
    from giblet_store.fmri.ingest import FmriParams, ingest_fmri
    from giblet_store.fmri.nifti import open_series
    from giblet_store.training.predictions import entry_to_nifti, evaluate, write_predictions
    from giblet_store.training.dataset import StoreDataset, split_trs

    args = parse_args(argv)
    args.model = example_model(args.model)  # first line printed: which model runs
    t_start = time.perf_counter()
    torch.manual_seed(args.seed)
    store_dir = Path(args.store).resolve()
    store = gs.open_store(store_dir)
    nifti = Path(args.nifti) if args.nifti else bundled_functional()
    series = open_series(nifti)
    n_trs, tr_s = series.n_volumes, series.header_tr_s
    if tr_s is None:
        raise SystemExit(f"{nifti} has no TR in its header")

    # 1. stimulus codes on the scan's TR grid, 2. fMRI beside them (z-scored on the training TRs only)
    wav = stimulus_wav(args, n_trs * tr_s, store_dir.with_name(store_dir.name + ".stimulus.wav"))
    codes = gs.extract_codes(store, wav, CodecParams(args.model, load_codec(args.model).bandwidths[0]), gs.TrGrid(tr_s, n_trs=n_trs)).entry
    splits = split_trs(n_trs, (0.6, 0.0, 0.4), gap=args.window)
    train, test = splits["train"], splits["test"]
    fmri = ingest_fmri(store, [nifti], ["sub-01"], params=FmriParams(zscore_trs=train), stimulus=codes).entry

    # 3. stream samples to the model
    feats = (codes, ["codes", "n_frames"])
    ds = StoreDataset(store, fmri, feats, trs=train, window=args.window, seed=args.seed)
    a = codes.attrs
    model = build_model(a["n_codebooks"], a["codebook_size"], args.window, ds.n_voxels).to(args.device)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-2)
    pin = args.device.startswith("cuda")
    loader = DataLoader(ds, batch_size=8, num_workers=0, pin_memory=pin)  # the documented path
    losses = []
    for epoch in range(args.epochs):
        ds.set_epoch(epoch)
        model.train()
        total, count = 0.0, 0
        for b in loader:
            c, nf, y = (b[k].to(args.device, non_blocking=True) for k in ("codes", "n_frames", "fmri"))
            loss = torch.nn.functional.mse_loss(model(c, nf), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, count = total + loss.item() * len(y), count + len(y)
        losses.append(total / count)

    # 4. predictions of every TR with a full window, stored with provenance; r on the held-out TRs
    ckpt = store_dir.with_name(store_dir.name + ".model.pt")
    torch.save(model.state_dict(), ckpt)
    every = StoreDataset(store, fmri, feats, window=args.window, shuffle=False)
    lo, hi = every.sample_trs
    pred = np.zeros((len(every.subjects), hi - lo, every.n_voxels), np.float32)
    model.eval()
    with torch.no_grad():
        for b in DataLoader(every, batch_size=64):
            out = model(b["codes"].to(args.device), b["n_frames"].to(args.device)).cpu().numpy()
            pred[b["subject"].numpy(), b["tr"].numpy() - lo] = out
    params = {"epochs": args.epochs, "lr": 3e-3, "weight_decay": 1e-2, "batch_size": 8, "window": args.window,
              "seed": args.seed, "train_trs": list(train), "test_trs": list(test), "device": args.device}
    pe, _ = write_predictions(store, pred, fmri, model_name="CodesEncodingModel(embed16, linear)", checkpoint=ckpt,
                              training_params=params, features=[codes], trs=(lo, hi))
    ev, _ = evaluate(store, pe, trs=test)
    r_map = entry_to_nifti(store, ev, store_dir.with_name(store_dir.name + ".r_map.nii.gz"))
    summary = {
        "device": args.device, "stimulus": wav.name, "nifti": nifti.name, "tr_s": tr_s, "n_trs": n_trs,
        "n_voxels": ds.n_voxels, "train_trs": list(train), "test_trs": list(test),
        "losses": [round(x, 5) for x in losses], "test_r_mean": ev.attrs["r_mean_all"],
        "codes_key": codes.key, "fmri_key": fmri.key, "predictions_key": pe.key, "evaluation_key": ev.key,
        "r_map": str(r_map), "seconds": round(time.perf_counter() - t_start, 1),
    }
    print(f"train loss {losses[0]:.4f} -> {losses[-1]:.4f} over {args.epochs} epochs on {args.device}; "
          f"held-out mean r = {ev.attrs['r_mean_all']:.4f} (unrelated stimulus: ~0 expected)")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
