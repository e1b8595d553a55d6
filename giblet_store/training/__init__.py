"""Models of the brain: the PyTorch Dataset, sample plans and splits, predictions, evaluation,
identification scores, reconstructions of the stimulus.

Imports fmri, features, codec, store and the kernel.
"""
