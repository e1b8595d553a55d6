"""Stimulus features in the store: codes and mel per TR, embeddings, HRF/FIR, resampling,
quantising reconstructions, decoding entries to audio, codes files in and out.

Imports store, audio, codec and the kernel; knows nothing of fMRI, training or batch.
"""
