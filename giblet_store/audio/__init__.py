"""Audio in: read files and containers, mix channels, resample exactly, check WAV headers.

Imports the kernel only; knows nothing of the store, codecs or fMRI.
"""
