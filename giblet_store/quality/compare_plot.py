"""The comparison report's figure: spectrograms side by side, and each metric against bitrate."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_report"]

#: seconds of audio shown in the spectrograms
SHOW_S = 5.0


def _spec_db(path, seconds: float = SHOW_S) -> tuple[np.ndarray, int]:
    """(freq, frame) dB magnitude spectrogram (n_fft 1024, hop 256) of the first ``seconds`` of a file."""
    import librosa
    import soundfile as sf

    y, sr = sf.read(str(path), dtype="float32", always_2d=True)
    y = y[: int(seconds * sr)].mean(axis=1)
    S = np.abs(librosa.stft(y, n_fft=1024, hop_length=256))
    return librosa.amplitude_to_db(S, ref=1.0, amin=1e-5, top_db=None), sr


def plot_report(out: Path, original, decoded: list[tuple[str, Path]], rows: list[dict], variables, title: str) -> Path:
    """Write the PNG: one spectrogram per signal (top rows), one panel per metric against bitrate (bottom).

    Parameters
    ----------
    original : the source audio file
    decoded : [(label, wav path)] in table order
    rows : the table rows (method, bitrate_kbps and one value per variable)
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    signals = [("original", original), *decoded]
    n_spec, n_met = len(signals), len(variables)
    cols = max(n_spec, n_met, 1)
    fig, axes = plt.subplots(2, cols, figsize=(3.2 * cols, 6.4), squeeze=False)
    for ax, (label, path) in zip(axes[0], signals):
        S, sr = _spec_db(path)
        ax.imshow(S, origin="lower", aspect="auto", vmin=-80, vmax=20, cmap="magma",
                  extent=(0, S.shape[1] * 256 / sr, 0, sr / 2000))
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("s")
    axes[0][0].set_ylabel("kHz")
    for ax, v in zip(axes[1], variables):
        for method, marker in (("encodec", "o-"), ("mel+griffin-lim", "s--")):
            pts = [(r["bitrate_kbps"], r[v]) for r in rows if r["method"] == method and r.get(v) is not None]
            if pts:
                x, y = zip(*sorted(pts))
                ax.plot(x, y, marker, label=method)
        ax.set_xscale("log")
        ax.set_title(v, fontsize=9)
        ax.set_xlabel("kbps")
    axes[1][0].legend(fontsize=7)
    for ax in [*axes[0][n_spec:], *axes[1][n_met:]]:
        ax.axis("off")
    fig.suptitle(title if len(title) < 140 else title[:137] + "...", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return Path(out)
