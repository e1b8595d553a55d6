"""The brain side: NIfTI in and out, masking, runs, ``fmri`` entries, joining with stimulus features.

Imports store and the kernel; knows nothing of audio or codecs.
"""
