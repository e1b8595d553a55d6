"""The first ingest pass in one read of each file: sha256 + non-finite values + mask vote + moments.

:func:`giblet_store.fmri.nifti.scan_series` reads the volumes it needs, after a separate pass has hashed
the file for the entry's key. :func:`scan_and_hash` reads each single-file NIfTI exactly once, front
to back (:class:`giblet_store.fmri.nifti_read.HashedVolumes`): the bytes go to sha256 as they are read
and the volumes the statistics need are scaled from the same buffer. It computes the same
statistics, on the same float64 values in the same blocks, as ``scan_series`` with z-score moments
of a given mask always taken in this pass. Files it cannot read that way (``.hdr``/``.img`` pairs)
fall back to ``sha256_file`` + ``scan_series``.
"""

from __future__ import annotations

import numpy as np

from .nifti import (Moments, add_vote, block_volumes, check_unchanged, count_finite_and_sample, may_be_nonfinite,
                    per_series, scan_series)
from .nifti_check import check_float32_range, may_overflow_float32
from .nifti_read import HashedVolumes, one_read_supported, scale

__all__ = ["scan_and_hash"]


def _scan_one(s, subj, n_trs, given_flat, n_sample, zscore_trs, max_bytes, vote: bool):
    """One file, one read: (sha256, n_finite or None, vote Moments or None, z-score Moments or None)."""
    n_flat = int(np.prod(s.shape))
    check, over = may_be_nonfinite(s), may_overflow_float32(s)
    n_finite = np.zeros(n_flat, np.int32) if check else None
    std_m = Moments(n_flat) if vote else None
    z_m = Moments(len(given_flat)) if (given_flat is not None and zscore_trs) else None
    reader = HashedVolumes(s)
    try:
        for t0, raw in reader.blocks(n_trs, block_volumes(s.shape, max_bytes)):
            k = raw.shape[0]
            x = scale(raw, s) if (check or over or (std_m is not None and t0 < n_sample)) else None
            if over:  # refused here, before anything is written (read_masked checks again as it casts)
                check_float32_range(x, s)
            count_finite_and_sample(x, t0, n_finite, std_m, n_sample, s.path, subj)
            if z_m is not None:
                a, b = max(zscore_trs[0], t0), min(zscore_trs[1], t0 + k)
                if a < b:
                    z_m.add(x[a - t0 : b - t0, given_flat] if x is not None
                            else scale(raw[a - t0 : b - t0][:, given_flat], s))
    except BaseException:
        reader.close()
        raise
    return reader.hexdigest(), n_finite, std_m, z_m


def scan_and_hash(series, subjects, n_trs, given_flat, std_percentile, sample_trs, zscore_trs, max_bytes):
    """:func:`giblet_store.fmri.nifti.scan_series` and each file's sha256, reading each file once.

    ``n_trs`` is one count for every series or one per series (runs of different lengths).

    Returns
    -------
    digests : list of str, sha256 of each file's bytes
    votes, nonfinite, moments, thresholds : as :func:`giblet_store.fmri.nifti.scan_series`; ``moments``
        are always computed for a given mask and z-scoring

    Raises
    ------
    FmriError
        A volume holds no finite value.
    """
    from ..store.hashing import sha256_file

    if not all(one_read_supported(s) for s in series):
        digests = [sha256_file(s.path) for s in series]
        for s in series:
            check_unchanged(s)
        return (digests, *scan_series(series, subjects, n_trs, given_flat, std_percentile, sample_trs,
                                      zscore_trs, max_bytes))
    n_flat = int(np.prod(series[0].shape))
    votes = np.zeros(n_flat, np.int32) if given_flat is None else None
    digests, nonfinite, moments, thresholds = [], [], [], []
    for s, subj, n in zip(series, subjects, per_series(n_trs, len(series))):
        n_sample = n if sample_trs is None else min(sample_trs, n)
        digest, n_finite, std_m, z_m = _scan_one(s, subj, n, given_flat, n_sample, zscore_trs, max_bytes,
                                                 votes is not None)
        digests.append(digest)
        bad = n_finite < n if n_finite is not None else np.zeros(n_flat, bool)
        # as scan_series: (non-finite at some TR, non-finite at some but not every TR: not background)
        partial = bad & (n_finite > 0) if n_finite is not None else bad
        nonfinite.append((np.packbits(bad), np.packbits(partial)))
        if std_m is not None:
            thresholds.append(add_vote(votes, std_m, bad, std_percentile))
        moments.append(z_m)
    for s in series:  # what was hashed is what the header described, and what the write pass will read
        check_unchanged(s)
    return digests, votes, nonfinite, moments, thresholds
