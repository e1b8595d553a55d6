"""Censored (scrubbed) TRs in training: which (subject, tr) samples a loader and a split leave out.

An fmri entry cleaned with scrubbing (:mod:`giblet_store.fmri.clean`) keeps every TR and marks the
scrubbed ones in its ``censored`` (subject, tr) bool variable. By default
:class:`~giblet_store.training.dataset.StoreDataset` serves no censored (subject, tr) sample and
:func:`~giblet_store.training.sample_runs.split_trs` given the entry shares its splits by uncensored
samples; ``include_censored=True`` serves and counts them as any other TR. An entry without the
variable has nothing censored. Torch-free.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import ParameterError
from ..store.core import Entry

__all__ = ["censored_mask", "drop_censored", "sample_at", "weighted_bounds", "trim_ranges"]


def censored_mask(fds, subject_index: np.ndarray | None = None, include: bool = False) -> np.ndarray | None:
    """(subject, tr) bool of the fmri Dataset's ``censored`` (rows ``subject_index``, default all), or None
    when ``include`` or nothing is censored."""
    if include or "censored" not in fds.variables:
        return None
    cens = np.asarray(fds["censored"].values, dtype=bool)
    if subject_index is not None:
        cens = cens[np.asarray(subject_index, dtype=np.int64)]
    return cens if cens.any() else None


def entry_censored(entry: Entry, include: bool = False) -> np.ndarray | None:
    """:func:`censored_mask` of an fmri entry (every subject)."""
    if include:
        return None
    if entry.kind != "fmri":
        raise ParameterError(f"entry {entry.key[:16]} is a {entry.kind!r} entry; give the fmri entry whose "
                             "censored TRs the split leaves out")
    return censored_mask(entry.open())


def drop_censored(g: dict, censored: np.ndarray | None) -> dict:
    """Group ``g`` (per-sample ``unit``, ``row``, ``subject`` (position), ``tr``, ``run``) without the
    samples ``censored[subject, tr]`` marks."""
    if censored is None or not len(g["tr"]):
        return g
    keep = ~censored[g["subject"], g["tr"]]
    if keep.all():
        return g
    return {k: (v if k == "parts" else v[keep]) for k, v in g.items()}


def sample_at(i: int, sample_index: np.ndarray, censored: np.ndarray | None) -> tuple[int, int]:
    """(subject position, tr) of sample ``i`` in canonical order (subject-major, then TR), censored skipped."""
    if censored is None:
        s_pos, t = divmod(i, sample_index.size)
        return s_pos, int(sample_index[t])
    counts = (~censored[:, sample_index]).sum(axis=1)
    s_pos = int(np.searchsorted(np.cumsum(counts), i, side="right"))
    before = int(counts[:s_pos].sum())
    return s_pos, int(sample_index[np.flatnonzero(~censored[s_pos, sample_index])[i - before]])


def n_uncensored(sample_index: np.ndarray, n_subjects: int, censored: np.ndarray | None) -> int:
    """Samples served: subjects x TRs, less the censored (subject, tr)."""
    if censored is None:
        return n_subjects * int(sample_index.size)
    return int((~censored[:, sample_index]).sum())


def weighted_bounds(weights: np.ndarray, start: int, fractions: Sequence[float], gap: int) -> list[tuple[int, int]]:
    """Contiguous (start, stop) ranges over ``weights[start:]`` (samples per TR) with ``gap`` TRs between
    them, split i holding about ``fractions[i] / sum`` of the samples (the samples of the gaps left out).

    Each boundary is placed where the samples counted so far come nearest their share of the
    samples outside the gaps (the gaps' samples estimated at the mean TR's)."""
    n = len(weights) - start
    k = len(fractions)
    usable = n - gap * (k - 1)
    total_f = float(sum(fractions))
    w = weights[start:].astype(np.float64)
    target_total = w.sum() * usable / n
    out, pos, got, acc = [], start, 0.0, 0.0
    for i, f in enumerate(fractions):
        acc += f
        if i == k - 1:
            stop = start + n
        else:
            cum = got + np.cumsum(w[pos - start : n - (gap + 1) * (k - 1 - i)])  # room for the later splits
            want = target_total * acc / total_f
            stop = pos + 1 + int(np.argmin(np.abs(cum - want)))
            got = float(cum[stop - pos - 1])
        out.append((pos, stop))
        pos = stop + gap
    return out


def trim_ranges(ranges: list[tuple[int, int]], empty: np.ndarray) -> list[tuple[int, int]]:
    """``ranges`` without the TRs at their ends that ``empty`` (tr,) marks (censored in every subject);
    a range with nothing else left is dropped."""
    out = []
    for a, b in ranges:
        live = np.flatnonzero(~empty[a:b])
        if live.size:
            out.append((a + int(live[0]), a + int(live[-1]) + 1))
    return out
