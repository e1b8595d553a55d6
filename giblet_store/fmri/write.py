"""The last steps of an fMRI ingest: the final mask, the z-score statistics, and the lazy array.

:func:`final_mask` applies the vote (computed mask) and the NaN policy; :func:`zscore_stats` gives
each series' per-voxel mean/std over its training TRs; :func:`lazy_fmri` is the (subject, tr, voxel)
float32 Dask array, runs concatenated along ``tr``, one task per stored chunk.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import FmriError
from .nifti import done, read_masked, voxel_moments
from ..validate import NanPolicy

__all__ = ["final_mask", "zscore_stats", "lazy_fmri", "read_pieces"]


def _nonfinite_error(label, n_bad, where, given: bool) -> FmriError:
    return FmriError(
        f"subject {label!r}: {n_bad} voxel(s) of the "
        f"{'mask' if given else 'brain (finite at other TRs)'} are NaN/inf at some TR (e.g. voxel "
        f"ijk {where}); pass nan_policy='mask' (CLI: --nan-policy mask) to drop them from the mask, "
        "or give a mask without them"
    )


def final_mask(shape, labels, given_flat, votes, nonfinite, mask_params, nan_policy) -> tuple[np.ndarray, int]:
    """(voxel_flat,) bool mask after the vote (computed) and the NaN policy; and the voxels dropped.

    ``labels`` name the series (one vote each: with runs, every (subject, run) votes).
    """
    n_flat = int(np.prod(shape))
    if given_flat is not None:
        mask_flat = np.zeros(n_flat, bool)
        mask_flat[given_flat] = True
    else:
        need = max(1, math.ceil(mask_params.min_subject_fraction * len(labels) - 1e-9))
        mask_flat = votes >= need
        if not mask_flat.any():
            raise FmriError(
                f"the computed mask is empty: no voxel has a temporal std above the {mask_params.std_percentile:g}th "
                f"percentile in {need} of {len(labels)} subject(s). Are the series constant? Give a mask instead"
            )
    dropped_flat = np.zeros(n_flat, bool)
    for label, (packed, partial) in zip(labels, nonfinite):
        if given_flat is not None:
            bad = np.unpackbits(packed, count=n_flat).astype(bool) & mask_flat
        else:  # the vote skipped them; a voxel NaN at every TR is background, one NaN at some TRs is not
            bad = np.unpackbits(partial, count=n_flat).astype(bool)
        if bad.any():
            ijk = np.unravel_index(np.flatnonzero(bad)[:3], shape, order="F")
            where = [tuple(int(c[i]) for c in ijk) for i in range(len(ijk[0]))]
            if nan_policy == NanPolicy.ERROR:
                raise _nonfinite_error(label, int(bad.sum()), where, given_flat is not None)
            dropped_flat |= bad  # a voxel bad in two subjects is one voxel dropped
            mask_flat &= ~bad
    dropped = int(dropped_flat.sum())
    if dropped and not mask_flat.any():
        raise FmriError("every voxel of the mask is NaN/inf at some TR; nothing is left to store")
    return mask_flat, dropped


def zscore_stats(series, moments, mask_flat, given_flat, flat, z, block_bytes):
    """Per series, (voxel,) mean and std (0 -> 1) over TRs ``z``; and how many stds were 0.

    ``moments`` from the scan are used where it accumulated them (a given mask); otherwise the
    training TRs are read again, only those, gathering only mask voxels.
    """
    stats = []
    for s, m in zip(series, moments):
        if m is not None:  # accumulated by the scan over the given mask's voxels
            keep = mask_flat[given_flat]
            stats.append(tuple(v[keep] for v in m.mean_std()))
        else:
            stats.append(voxel_moments([s], flat, z, block_bytes)[0].mean_std())
    mean, std = np.stack([m for m, _ in stats]), np.stack([s for _, s in stats])
    n_const = int((std == 0).sum())
    return mean, np.where(std == 0, 1.0, std), n_const


def read_pieces(pieces, flat, block_bytes, _after=None) -> np.ndarray:
    """(1, tr, voxel) float32: the ``(series, a, b, mean, std)`` pieces read and joined along tr."""
    parts = [read_masked(s, a, b, flat, mean, std, block_bytes) for s, a, b, mean, std in pieces]
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def _pieces(layout, i: int, a: int, b: int, mean, std) -> list:
    """The pieces of subject ``i``'s global TRs ``a:b``: one per run they reach."""
    out = []
    for j, (off, n) in enumerate(zip(layout.offsets, layout.run_trs)):
        lo, hi = max(a, off), min(b, off + n)
        if lo < hi:
            k = i * layout.n_runs + j
            out.append((layout.series[k], lo - off, hi - off, None if mean is None else mean[k],
                        None if std is None else std[k]))
    return out


def lazy_fmri(layout, flat, mean, std, chunk_trs, block_bytes, parallel_reads):
    """(subject, tr, voxel) float32 Dask array, runs concatenated along tr, one task per stored chunk.

    When a series is a .nii.gz the reads form ``parallel_reads`` chains (subject i on chain i %
    parallel_reads, its chunks in order, its runs' files one after the other), so at most that many
    blocks are being read at once whatever the number of subjects or threads, and a .nii.gz is
    decompressed once, front to back. Uncompressed series (the cleaned runs of a denoised ingest) are
    read without chains: a chain is the graph's critical path, so Dask runs its reads ahead of the
    writes and, when reading is faster than compressing, holds the read chunks (measured: 2 subjects x
    2 runs x 300 TRs x 100,000 voxels peaked at 716 MiB chained, 297 MiB not).
    ``mean``/``std``: (series, voxel) or None.
    """
    import dask
    import dask.array as da

    gz = any(str(s.path).endswith(".gz") for s in layout.series)
    chains: list = [None] * max(1, int(parallel_reads))
    per_subject = []
    for i in range(len(layout.subjects)):
        blocks = []
        for a in range(0, layout.n_trs, chunk_trs):
            b = min(layout.n_trs, a + chunk_trs)
            c = i % len(chains)
            d = dask.delayed(read_pieces)(_pieces(layout, i, a, b, mean, std), flat, block_bytes, chains[c])
            chains[c] = dask.delayed(done)(d) if gz else None
            blocks.append(da.from_delayed(d, shape=(1, b - a, len(flat)), dtype=np.float32))
        per_subject.append(da.concatenate(blocks, axis=1))
    return da.concatenate(per_subject, axis=0)
