"""Channel layout: mix a block of samples to what a model takes (mono, or stereo)."""

from __future__ import annotations

import numpy as np

from .errors import AudioError

__all__ = ["mix_channels"]


def mix_channels(block: np.ndarray, channels: int, path) -> np.ndarray:
    """(sample, channel) -> (sample, ``channels``): mean to mono, or mono duplicated to stereo."""
    if channels == 1:
        return block.mean(axis=1, keepdims=True) if block.shape[1] != 1 else block
    if block.shape[1] == 1:
        return np.repeat(block, 2, axis=1)
    if block.shape[1] > 2:
        raise AudioError(f"{str(path)!r} has {block.shape[1]} channels; a stereo model takes 1 or 2")
    return block
