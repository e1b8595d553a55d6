"""Brain to sound: fit fMRI -> EnCodec embeddings, store the reconstruction, quantise, decode, listen, score.

The whole loop of the reference project's goal, small enough for two CPU cores in under a minute:

1. a real recording (../shared/data/encodec_test_24k.wav, 20 s of music, looped to 36 s; with a stereo model
   such as facebook/encodec_48khz, 20 s synthesised at its rate and channels) is encoded to EnCodec codes on
   a 1 s TR grid at the model's lowest bandwidth and dequantised to embeddings (tr, frame, dim);
2. fMRI for two "subjects" is **simulated from the stimulus** (the main components of the per-TR
   embedding means, HRF-convolved with the store's causal SPM kernel, mixed into 300 voxels, plus
   independent noise per subject),
   written as NIfTI and ingested beside it. No real scan was recorded to this music, so the signal
   is planted on purpose: the point is the plumbing, and that decoding finds what was planted;
3. a ridge model maps the subjects' mean fMRI at TRs t+1..t+5 (the haemodynamic delay) to the
   8 principal components of TR t's embedding mean, trained on TRs 0:24 and applied to the held-out
   TRs 26:36 (the recording loops every 20 s, so these replay music heard in training, like a
   repeated test clip; their fMRI noise is new);
4. the predicted embedding means are stored as a ``reconstruction`` entry (provenance: fmri, target, checkpoint
   sha256, training parameters), quantised with the model's own RVQ (``Quantise``), and the held-out
   range is decoded to a wav;
5. it is scored against the original audio and against the same reconstruction with its TRs
   shuffled (SNR, log-spectrogram correlation), with TR-segment identification (top-1 accuracy and
   mean rank percentile against chance), and a PNG shows the spectrograms.

With a random-weight model (tests) the decoded audio is noise and its scores mean nothing; the
identification scores are about the embeddings and do. It prints the figures the README quotes, then a
JSON summary as its last line; ``main(argv)`` returns that summary.
Without --model it tries facebook/encodec_24khz and, when that cannot be loaded (offline), uses a
random-weight EnCodec of the same architecture; the first line printed says which model runs.

    python examples/reconstruct_from_fmri.py --store demo_store --model facebook/encodec_24khz
    python examples/reconstruct_from_fmri.py --store demo48 --model facebook/encodec_48khz

With the 48 kHz model the reconstruction is decoded chunk by chunk, each chunk times the stimulus's stored
scale (the embeddings are of loudness-normalised chunks), and the held-out wav starts at the first frame
of TR 26 (its WAV comment says where).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from giblet_store.cli.demo import example_model
from giblet_store.codec.encodec import load_codec

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data" / "encodec_test_24k.wav"
N_TRS, TR_S, TRAIN, TEST, LAGS = 36, 1.0, (0, 24), (26, 36), (1, 2, 3, 4, 5)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", required=True, help="store directory (created if absent)")
    p.add_argument("--model", default=None, help="EnCodec hub name or save_pretrained directory (default: "
                   "facebook/encodec_24khz, or a random-weight model when it cannot be loaded)")
    p.add_argument("--out", default=None, help="folder for the wavs and the PNG (default: beside the store)")
    p.add_argument("--alpha", type=float, default=10.0, help="ridge penalty")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------- scoring
def score_audio(reference: np.ndarray, degraded: np.ndarray, sr: int) -> dict:
    """SNR, SI-SDR and log-spectral distance (dB) of two equally long mono signals (giblet_store.quality.metrics)."""
    from giblet_store.quality.metrics import lsd_db, si_sdr_db, snr_db

    return {"snr_db": snr_db(reference, degraded), "si_sdr_db": si_sdr_db(reference, degraded),
            "lsd_db": lsd_db(reference, degraded)}


# ---------------------------------------------------------------------------------------- steps
def stimulus(out: Path, codec) -> Path:
    """The recording looped to N_TRS * TR_S seconds; for a model that is not mono (the 48 kHz stereo one), or
    without the shared data, 20 s synthesised at the model's rate and channels, looped the same way."""
    import soundfile as sf

    from giblet_store.testing import synth_audio

    if SHARED.exists() and codec.channels == 1:
        audio, sr = sf.read(str(SHARED), dtype="float32", always_2d=True)
        audio = audio.mean(1, keepdims=True)
    else:
        sr = codec.sample_rate_hz
        audio = synth_audio(20.0, sr, seed=1, channels=codec.channels).T  # (sample, channel)
    n = int(N_TRS * TR_S * sr)
    sf.write(str(out), audio[np.arange(n) % len(audio)], sr, subtype="PCM_16")
    return out


def mono(x: np.ndarray) -> np.ndarray:
    """(sample,) of a (sample,) or (sample, channel) signal: the channels' mean (the metrics take mono)."""
    return x.mean(1) if x.ndim == 2 else x


def stimulus_pcs(store, emb, k: int = 8):
    """Mean and top-``k`` principal axes of the per-TR embedding means over the training TRs."""
    mean = store.open(emb)["embedding_mean"].values[slice(*TRAIN)].astype(np.float64)
    mu = mean.mean(0)
    return mu, np.linalg.svd(mean - mu, full_matrices=False)[2][:k]  # (dim,), (k, dim)


def simulate_fmri(store, emb, mu, pcs, folder: Path, seed: int) -> list[Path]:
    """Two subjects' 4D NIfTI (10 x 10 x 3 voxels, N_TRS volumes of TR_S) driven by the stimulus.

    Voxels mix the stimulus's main components (the per-TR embedding means projected on ``pcs``),
    HRF-convolved by the store (causal SPM kernel), plus independent unit noise per subject.
    """
    import nibabel as nib

    import giblet_store as gs

    bold = store.open(store.derive(emb, gs.Hrf("spm", length_s=16.0)))["embedding_mean"].values
    drive = (bold - mu) @ pcs.T
    drive = (drive - drive.mean(0)) / drive.std(0)
    rng = np.random.default_rng(seed)
    signal = drive @ rng.standard_normal((pcs.shape[0], 300))
    paths = []
    for s in range(2):
        vol = (100 + signal + rng.standard_normal(signal.shape)).T.reshape(10, 10, 3, N_TRS).astype(np.float32)
        img = nib.Nifti1Image(vol, np.diag([3.0, 3.0, 3.0, 1.0]))
        img.header.set_zooms((3.0, 3.0, 3.0, TR_S))
        img.header.set_xyzt_units("mm", "sec")
        paths.append(folder / f"sub-0{s + 1}_bold.nii.gz")
        nib.save(img, paths[-1])
    return paths


def lagged(x: np.ndarray) -> np.ndarray:
    """(tr, voxel) -> (tr, lag * voxel): fMRI at t + lag for each lag (the last TR repeated at the end)."""
    idx = np.minimum(np.arange(len(x))[:, None] + np.array(LAGS)[None, :], len(x) - 1)
    return x[idx].reshape(len(x), -1)


def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float):
    """Kernel ridge (few samples, many outputs): returns predict(x_new)."""
    mx, my = x.mean(0), y.mean(0)
    xc = x - mx
    dual = np.linalg.solve(xc @ xc.T + alpha * np.eye(len(x)), y - my)
    weights = xc.T @ dual  # (feature, output)
    return (lambda z: (z - mx) @ weights + my), {"x_mean": mx, "y_mean": my, "weights": weights}


def spectrogram_png(path: Path, signals: dict, sr: int, ident: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(signals) + 1, figsize=(4 * (len(signals) + 1), 3.2), constrained_layout=True)
    for ax, (name, x) in zip(axes, signals.items()):
        ax.specgram(x, NFFT=512, Fs=sr, noverlap=384, cmap="magma")
        ax.set(title=name, xlabel="s (held-out TRs)", ylabel="Hz")
    im = axes[-1].imshow(ident, cmap="RdBu_r", vmin=-1, vmax=1)
    axes[-1].set(title="r(reconstructed TR, true TR)", xlabel="true TR", ylabel="reconstructed TR")
    fig.colorbar(im, ax=axes[-1])
    fig.savefig(path, dpi=80)
    plt.close(fig)


def score(store, emb, rec, pred, true, wav, decoded, out: Path, args) -> dict:
    """Audio scores vs the original and vs the reconstruction with its TRs shuffled; identification; PNG."""
    import soundfile as sf

    import giblet_store as gs
    from giblet_store.audio.start import recorded_start
    from giblet_store.features.decoding import decode_codes_on_grid
    from giblet_store.training.scores import _corr_matrix

    n = store.open(emb)["n_frames"].values[slice(*TEST)].astype(np.int64)
    perm = np.random.default_rng(args.seed).permutation(len(n))
    while (perm == np.arange(len(n))).any():  # a derangement: no TR keeps its place
        perm = np.random.default_rng(int(perm[0]) + 1).permutation(len(n))
    slots = store.open(emb).sizes["frame"]
    frames = np.where((np.arange(slots)[None, :] < n[:, None])[..., None], pred[perm][:, None, :], np.nan)
    shuffled_codes = gs.quantise(frames, model=args.model, bandwidth_kbps=load_codec(args.model).bandwidths[0])
    # decoded in the held-out TRs' places (48 kHz: times the stimulus's stored scale of each chunk there)
    shuffled = mono(decode_codes_on_grid(store, emb, shuffled_codes, n, np.arange(*TEST), model=args.model).T)
    recon, sr = sf.read(str(decoded), dtype="float32")
    recon = mono(recon)
    full = mono(sf.read(str(wav), dtype="float32")[0])
    start = int(recorded_start(decoded) * sr)  # the held-out TRs' first frame (48 kHz: not TEST[0] * TR_S exactly)
    original = full[start:start + len(recon)]
    ident = gs.identify_reconstruction(store, rec)
    held_true = true[slice(*TEST)]
    ident_shuffled = gs.identify(pred[perm], held_true)
    r = _corr_matrix(pred - pred.mean(0), held_true - held_true.mean(0))
    spectrogram_png(out / "reconstruction.png", {"original": original, "reconstructed": recon,
                                                  "shuffled TRs": shuffled}, sr, r)
    return {
        "scores_vs_original": score_audio(original, recon, sr),
        "scores_shuffled_vs_original": score_audio(original, shuffled, sr),
        "identification": {k: ident[k] for k in ("top1_accuracy", "mean_rank_percentile", "chance_top1",
                                                  "chance_rank_percentile", "n_segments")},
        "identification_shuffled": {k: ident_shuffled[k] for k in ("top1_accuracy", "mean_rank_percentile")},
    }


def figures(summary: dict) -> list[str]:
    """The lines the README quotes: identification against chance and the audio scores, from ``summary``."""
    i, sh = summary["identification"], summary["identification_shuffled"]
    a, b = summary["scores_vs_original"], summary["scores_shuffled_vs_original"]
    return [
        f"identification: top-1 {i['top1_accuracy']:.3g} vs chance {i['chance_top1']:.3g}, mean rank percentile "
        f"{i['mean_rank_percentile']:.3g} vs {i['chance_rank_percentile']:.3g} (shuffled TRs: "
        f"{sh['top1_accuracy']:.3g} / {sh['mean_rank_percentile']:.3g}), {i['n_segments']} held-out TRs",
        f"audio vs the original: SNR {a['snr_db']:.2f} dB, SI-SDR {a['si_sdr_db']:.1f} dB; with shuffled TRs: "
        f"SNR {b['snr_db']:.2f} dB, SI-SDR {b['si_sdr_db']:.1f} dB",
    ]


def main(argv=None) -> dict:
    import giblet_store as gs
    from giblet_store.fmri.ingest import FmriParams, ingest_fmri

    args = parse_args(argv)
    args.model = example_model(args.model)  # first line printed: which model runs
    t0 = time.perf_counter()
    store_dir = Path(args.store).resolve()
    out = Path(args.out).resolve() if args.out else store_dir.parent
    out.mkdir(parents=True, exist_ok=True)
    store = gs.open_store(store_dir)

    # 1. stimulus codes and embeddings; 2. simulated fMRI for two subjects, ingested beside them
    wav = stimulus(out / "stimulus.wav", load_codec(args.model))
    lowest = load_codec(args.model).bandwidths[0]  # the model's lowest bandwidth (24 kHz: 1.5 kbps, 48 kHz: 3)
    codes = gs.extract_codes(store, wav, gs.CodecParams(args.model, lowest), gs.TrGrid(TR_S)).entry
    emb = store.derive(codes, gs.Embeddings(), model=args.model)
    mu, pcs = stimulus_pcs(store, emb)
    niftis = simulate_fmri(store, emb, mu, pcs, out, args.seed)
    fmri = ingest_fmri(store, niftis, ["sub-01", "sub-02"], stimulus=codes,
                       params=FmriParams(zscore_trs=TRAIN)).entry

    # 3. ridge: mean fMRI at t+1..t+5 -> the principal-component scores of TR t's embedding mean
    x = lagged(store.open(fmri)["fmri"].mean("subject").values)
    true = store.open(emb)["embedding_mean"].values  # (tr, dim)
    predict, weights = fit_ridge(x[slice(*TRAIN)], (true[slice(*TRAIN)] - mu) @ pcs.T, args.alpha)
    pred = (predict(x[slice(*TEST)]) @ pcs + mu).astype(np.float32)  # (held-out tr, dim)
    ckpt = out / "ridge.npz"
    np.savez(ckpt, pcs=pcs, mu=mu, **weights)

    # 4. the reconstruction entry, quantised with the model's RVQ, the held-out range decoded
    params = {"alpha": args.alpha, "lags_trs": list(LAGS), "train_trs": list(TRAIN), "n_pcs": int(pcs.shape[0]),
              "seed": args.seed}
    rec, _ = gs.write_reconstruction(store, pred, emb, fmri=fmri, checkpoint=ckpt, training_params=params, trs=TEST,
                                     model_name="kernel ridge: fmri lags -> embedding-mean PCs")
    q = store.derive(rec, gs.Quantise(bandwidth_kbps=lowest), model=args.model)
    held = f"{TEST[0]}:{TEST[1]}"
    decoded = gs.decode_reconstruction(store, q, out / "reconstructed.wav", trs=held, model=args.model)

    # 5. scores: against the original, against shuffled TRs, identification against chance; the PNG
    sc = score(store, emb, rec, pred, true, wav, decoded, out, args)
    summary = {
        "codes_key": codes.key, "embeddings_key": emb.key, "fmri_key": fmri.key, "reconstruction_key": rec.key,
        "quantised_key": q.key, "held_out_trs": list(TEST), "wav": str(decoded), "png": str(out / "reconstruction.png"),
        **sc,
        "model": codes.attrs.get("model_id", codes.attrs.get("model")),  # a random-weight model's audio means nothing
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print("\n".join(figures(summary)))
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
