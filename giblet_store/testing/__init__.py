"""Test fixtures made in code that tests and users share: synthetic stimuli, a random-weight
EnCodec of the real architecture, small generated movies, a small BIDS study with fMRIPrep derivatives.

Imports the kernel only (torch, transformers and PyAV are imported where used).
"""

from .bids import BidsStudy, make_bids
from .signals import STEREO_48KHZ, make_test_model, save_test_model, synth_audio, write_wav

__all__ = ["synth_audio", "write_wav", "make_test_model", "save_test_model", "STEREO_48KHZ", "make_bids",
           "BidsStudy"]
