"""EnCodec: load models (hub or a local directory), encode and decode, the exact stream encoder,
the 48 kHz model's normalised chunks, ``.ecdc`` files.

Imports the kernel only (audio arrives as arrays); knows nothing of the store or fMRI.
"""
