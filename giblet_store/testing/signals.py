"""Test fixtures made in code: synthetic stimuli and a random-weight EnCodec of the real architecture.

A randomly initialised ``EncodecModel`` has all-zero codebooks, so every code would be 0. The model
made here fills each residual codebook from encoder outputs of synthetic audio (first codebook from
the encoder outputs, the next from the residuals left by the first, and so on), so codes vary like
real ones. Never judge audio quality with it: the weights are random.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["synth_audio", "write_wav", "make_test_model", "save_test_model", "STEREO_48KHZ"]

#: ``EncodecConfig`` overrides for a small model of the 48 kHz stereo architecture (facebook/encodec_48khz:
#: normalised 1 s chunks with 1 % overlap, 2 channels, non-causal, time_group_norm, 3/6/12/24 kbps -> 2/4/8/16
#: codebooks of 1024, 150 frames/s); only the widths are smaller, so tests run in seconds
STEREO_48KHZ = {
    "sampling_rate": 48000, "audio_channels": 2, "normalize": True, "chunk_length_s": 1.0, "overlap": 0.01,
    "target_bandwidths": [3.0, 6.0, 12.0, 24.0], "use_causal_conv": False, "norm_type": "time_group_norm",
    "upsampling_ratios": [8, 5, 4, 2], "num_filters": 4, "hidden_size": 32, "codebook_dim": 32,
    "num_lstm_layers": 2, "compress": 2,
}


def synth_audio(seconds: float, sample_rate_hz: int = 24000, seed: int = 0, channels: int = 1) -> np.ndarray:
    """A stimulus-like signal: gliding tones, amplitude-modulated noise, and clicks.

    Returns
    -------
    (channel, sample) float32 in [-1, 1]
    """
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate_hz))
    t = np.arange(n) / sample_rate_hz
    f0 = 220 * 2 ** (np.sin(2 * np.pi * 0.13 * t) * 1.5)
    tone = 0.3 * np.sin(2 * np.pi * np.cumsum(f0) / sample_rate_hz)
    tone += 0.15 * np.sin(2 * np.pi * 3.01 * np.cumsum(f0) / sample_rate_hz)
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6.28))
    noise = 0.1 * env * rng.standard_normal(n)
    clicks = np.zeros(n)
    clicks[rng.integers(0, max(n, 1), size=max(1, int(seconds * 3)))] = 0.8
    x = (tone + noise + clicks).astype(np.float32)
    x /= max(1.0, float(np.abs(x).max()))
    out = np.stack([x] * channels)
    if channels == 2:
        out[1] = np.roll(out[1], 7)
    return out


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate_hz: int, subtype: str = "PCM_16") -> Path:
    """Write (channel, sample) audio with soundfile."""
    import soundfile as sf

    sf.write(str(path), np.asarray(audio).T, sample_rate_hz, subtype=subtype)
    return Path(path)


def make_test_model(seed: int = 0, fill_seconds: float = 30.0, **config):
    """A random-weight ``transformers.EncodecModel`` of the 24 kHz architecture, codebooks filled.

    Parameters
    ----------
    seed : int
        Seeds the weights and the codebook fill.
    fill_seconds : float
        Synthetic audio whose encoder outputs fill the codebooks (>= 14 s gives 1024+ frames).
    **config
        Overrides of ``EncodecConfig`` (defaults are facebook/encodec_24khz's architecture).
    """
    import torch
    from transformers import EncodecConfig, EncodecModel

    torch.manual_seed(seed)
    model = EncodecModel(EncodecConfig(**config)).eval()
    sr = model.config.sampling_rate
    ch = model.config.audio_channels
    audio = np.concatenate([synth_audio(fill_seconds / 2, sr, seed + i, channels=ch) for i in range(2)], axis=1)
    if model.config.normalize:  # what the encoder sees: audio divided by its RMS
        audio = audio / (np.sqrt(np.mean(audio.mean(axis=0) ** 2)) + 1e-8)
    gen = torch.Generator().manual_seed(seed)
    with torch.inference_mode():
        emb = model.encoder(torch.from_numpy(audio)[None])  # (1, dim, frame)
        residual = emb[0].T.clone()  # (frame, dim)
        for layer in model.quantizer.layers:
            k = layer.codebook.codebook_size
            # distinct frames (no near-duplicate entries: ties would make codes flip on rounding)
            n = residual.shape[0]
            idx = torch.randperm(n, generator=gen)[:k] if n >= k else torch.randint(0, n, (k,), generator=gen)
            jitter = 0.05 * residual.std() * torch.randn(k, residual.shape[1], generator=gen)
            embed = residual[idx] + jitter
            layer.codebook.embed.copy_(embed)
            layer.codebook.embed_avg.copy_(embed)
            layer.codebook.cluster_size.fill_(1.0)
            q = layer.decode(layer.encode(residual.T[None]))[0].T
            residual = residual - q
    return model


def save_test_model(directory: str | os.PathLike, seed: int = 0, **config) -> Path:
    """Make a test model and ``save_pretrained`` it to ``directory``; returns the directory."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model = make_test_model(seed=seed, **config)
    model.save_pretrained(str(directory))
    return Path(directory)
