"""Channel layout: mix a block of samples to what a model takes (mono, or stereo), and say so.

The rule (a :class:`ChannelsMixedWarning` names what was done; entries keep ``source_channels``):

- mono model (24 kHz), 2 or more channels in: their mean (equal weights);
- stereo model (48 kHz), mono in: the one channel on both;
- stereo model, more than 2 channels in: refused (which two of 5.1 or 7.1 are left/right is not
  knowable from the samples); mix it down to stereo first.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import AudioError

__all__ = ["mix_channels", "check_channels", "ChannelsMixedWarning", "MONO_PURPOSES"]


class ChannelsMixedWarning(UserWarning):
    """The source's channels were mixed to the model's (stereo averaged to mono, or mono duplicated)."""


#: what is done with the mean of several channels, by what the audio is read for (the warning's words)
MONO_PURPOSES = {
    "encode": "the model takes mono: their mean is encoded",
    "mel": "the mel spectrogram is taken of their mean (mono)",
    "score": "the quality metrics score their mean (mono)",
}


def check_channels(source_channels: int, channels: int, path, purpose: str = "encode") -> None:
    """Apply the channel rule before reading: warn what will be done, or refuse.

    ``purpose`` (a key of :data:`MONO_PURPOSES`) words what a mix to mono is for: only ``"encode"``
    involves a model.

    Raises
    ------
    AudioError
        More than 2 channels for a stereo model.
    """
    if source_channels == channels:
        return
    if channels == 2 and source_channels > 2:
        raise AudioError(f"{str(path)!r} has {source_channels} channels; a stereo model takes 1 or 2. Mix it down "
                         "to stereo first (e.g. ffmpeg -i IN -ac 2 OUT.wav)")
    if channels == 1:
        what = f"has {source_channels} channels and {MONO_PURPOSES[purpose]}"
    else:
        what = "is mono and the model takes stereo: the channel is encoded on both"
    kept = "" if purpose == "score" else f" (source_channels={source_channels} in the entry's attributes)"
    warnings.warn(f"{str(path)!r} {what}{kept}", ChannelsMixedWarning, stacklevel=3)


def mix_channels(block: np.ndarray, channels: int, path) -> np.ndarray:
    """(sample, channel) -> (sample, ``channels``): mean to mono, or mono duplicated to stereo."""
    if channels == 1:
        return block.mean(axis=1, keepdims=True) if block.shape[1] != 1 else block
    if block.shape[1] == 1:
        return np.repeat(block, 2, axis=1)
    if block.shape[1] > 2:
        raise AudioError(f"{str(path)!r} has {block.shape[1]} channels; a stereo model takes 1 or 2")
    return block
