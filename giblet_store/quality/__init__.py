"""Audio quality: metrics (SNR, SI-SDR, LSD, mel distance, STOI, PESQ), per-TR scoring in a pool,
and the codec comparison report.

Imports features, codec, audio, store and the kernel; knows nothing of fMRI.
"""
