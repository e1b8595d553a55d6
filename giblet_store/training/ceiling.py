"""The noise ceiling: the Pearson r a perfect model of the shared response would reach, per voxel.

Estimator (pairwise inter-subject correlation, equal-SNR model; Lage-Castellanos et al. 2019,
"Methods for computing the maximum performance of computational models of fMRI responses", PLoS
Comput Biol 15(3): e1006397). Each subject's series at a voxel is ``y_i = s + e_i``: one response
``s`` shared by every subject (what the stimulus drives) plus noise ``e_i`` independent of ``s`` and
of the other subjects, of the same variance ``var_n`` in every subject. Then, for two subjects,

    r(y_i, y_j) = var_s / (var_s + var_n)                          (the pairwise ISC)
    r(y_i, s)   = sqrt(var_s / (var_s + var_n)) = sqrt(r(y_i, y_j))

and a model ``p`` that shares no noise with the data gives r(p, y_i) = cov(p, s) / (sd_p sd_y)
= r(p, s) * r(s, y_i) <= r(s, y_i). So the ceiling is ``sqrt(mean over pairs of r(y_i, y_j))``
and r / ceiling estimates r(p, s), the model's correlation with the shared response itself (1 for
a perfect model). It is one value per voxel, the same for every subject.

The old leave-one-subject-out ISC, r(y_i, mean of the n - 1 others), is *not* this ceiling: it
correlates two noisy series, ``r_loso = sqrt(r_pair) * sqrt(SB(r_pair, n - 1))`` with the
Spearman-Brown ``SB(r, k) = k r / (1 + (k - 1) r)``, so it is lower, and a perfect model beat it
(r / r_loso = 1 / sqrt(SB) > 1). It is kept, honestly named, as ``isc_loso``.

What it cannot know: with unequal noise across subjects, r(y_i, y_j) = rho_i rho_j and the
ceiling is about the subjects' geometric-mean reliability (a low-noise subject can pass 1, a noisy
one stays below). A voxel whose mean pairwise r is <= 0 shows no shared response: its ceiling is
NaN (undefined, not 0, so nothing is divided by it), as is a voxel where some subject's series is
constant on the evaluated TRs, and with one subject every voxel.

Reliable voxels (:func:`reliable`): the square root amplifies the sampling noise of a small mean
pairwise r, so normalised r is kept (and averaged) only where the ceiling is at least
``max(0.1, sqrt(tanh(1.645 / sqrt((n_trs - 3) * n_pairs))))``: the ceiling is >= 0.1 and the mean
pairwise r is above its one-sided 5 % level with no shared response (Fisher z of n_pairs
correlations, each with standard error 1 / sqrt(n_trs - 3); it assumes independent TRs, so with
autocorrelated BOLD it is lenient).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["METHOD", "RELIABLE_RULE", "pairwise_isc", "noise_ceiling", "min_reliable_ceiling", "loso_isc"]

METHOD = ("pairwise inter-subject correlation, equal-SNR model (Lage-Castellanos et al. 2019): "
          "ceiling = sqrt(mean over subject pairs of Pearson r(y_i, y_j)), per voxel, on the evaluated TRs; "
          "the r a perfect model of the shared response reaches; NaN where the mean pairwise r is <= 0 or a "
          "subject's series is constant")
RELIABLE_RULE = ("r_normalised is kept and averaged only where noise_ceiling >= noise_ceiling_min = "
                 "max(0.1, sqrt(tanh(1.645 / sqrt((n_trs - 3) * n_pairs)))): mean pairwise r above its one-sided "
                 "5% level with no shared response (independent TRs assumed)")
MIN_CEILING = 0.1


def _standardised(x: np.ndarray) -> np.ndarray:
    """(..., tr, voxel) centred and scaled to unit norm along tr; NaN where a series is constant."""
    c = x - x.mean(-2, keepdims=True)
    norm = np.sqrt((c * c).sum(-2, keepdims=True))
    with np.errstate(invalid="ignore", divide="ignore"):
        return c / np.where(norm > 0, norm, np.nan)


def pairwise_isc(all_fmri) -> np.ndarray:
    """Mean over subject pairs of Pearson r(y_i, y_j), per voxel (NaN with < 2 subjects or a constant series).

    Parameters
    ----------
    all_fmri : (subject, tr, voxel) float
    """
    z = _standardised(np.asarray(all_fmri, dtype=np.float64))
    n = z.shape[0]
    if n < 2:
        return np.full(z.shape[-1], np.nan)
    total = z.sum(0)  # sum_{i<j} z_i . z_j = (|sum z_i|^2 - sum |z_i|^2) / 2, and |z_i|^2 = 1
    return ((total * total).sum(0) - n) / (n * (n - 1))


def noise_ceiling(all_fmri) -> tuple[np.ndarray, np.ndarray]:
    """The ceiling (voxel,) and the mean pairwise r it comes from (voxel,); see the module docstring."""
    mean_r = pairwise_isc(all_fmri)
    with np.errstate(invalid="ignore"):
        ceiling = np.where(mean_r > 0, np.sqrt(np.where(mean_r > 0, mean_r, 0.0)), np.nan)
    return ceiling, mean_r


def min_reliable_ceiling(n_trs: int, n_subjects: int) -> float:
    """The smallest ceiling counted as reliable on ``n_trs`` TRs of ``n_subjects`` (inf if none can be)."""
    n_pairs = n_subjects * (n_subjects - 1) // 2
    if n_pairs < 1 or n_trs < 4:
        return math.inf
    return max(MIN_CEILING, math.sqrt(math.tanh(1.645 / math.sqrt((n_trs - 3) * n_pairs))))


def loso_isc(all_fmri, index: int) -> np.ndarray:
    """Pearson r of subject ``index`` with the mean of the others, per voxel (the ISC; not a ceiling)."""
    x = np.asarray(all_fmri, dtype=np.float64)
    others = [j for j in range(x.shape[0]) if j != index]
    if not others:
        return np.full(x.shape[-1], np.nan)
    a, b = _standardised(x[index]), _standardised(x[others].mean(0))
    return (a * b).sum(0)
