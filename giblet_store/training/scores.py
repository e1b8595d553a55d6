"""How good a model is, on both sides: decoding (stimulus identification) and encoding (R², noise ceiling).

Decoding - :func:`identify`: for each held-out TR, correlate its reconstructed feature vector with the
true vectors of every held-out TR and take the rank of its own (1 = best). Top-1 accuracy, the mean
rank percentile (1 = always first, 0 = always last) and their chance levels (1/n and 0.5).
:func:`identify_reconstruction` does it for a reconstruction entry against its target.

Encoding - :func:`encoding_scores` (used by :func:`giblet_store.evaluate`): per subject and voxel,
R² = 1 - SS_res / SS_tot of the predictions; per voxel the noise ceiling of
:mod:`giblet_store.training.ceiling` (sqrt of the mean pairwise inter-subject correlation: the r a
perfect model of the shared response reaches); r normalised by it where it is reliable; and the
leave-one-subject-out ISC (each subject against the mean of the others), which is not a ceiling.
"""

from __future__ import annotations

import warnings

from typing import Any

import numpy as np

from ..errors import ParameterError

__all__ = ["identify", "identify_reconstruction", "encoding_scores"]


def _rows(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ParameterError(f"{name} must be (segment, feature); got shape {a.shape}")
    return a


def _corr_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r of every row of ``a`` with every row of ``b``; NaN where a row is constant."""
    ac = a - a.mean(1, keepdims=True)
    bc = b - b.mean(1, keepdims=True)
    na, nb = np.sqrt((ac * ac).sum(1)), np.sqrt((bc * bc).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ac @ bc.T) / np.outer(np.where(na > 0, na, np.nan), np.where(nb > 0, nb, np.nan))


def identify(reconstructed, true, *, center: bool = True) -> dict[str, Any]:
    """Segment identification: is each reconstructed segment closest to its own true segment?

    Parameters
    ----------
    reconstructed, true : (segment, feature) float, row i of each is held-out TR i (e.g. per-TR
        embedding means or mel means); at least 2 segments
    center : subtract each feature's mean over the segments (of each set) first, so that what all
        segments share (EnCodec embeddings: r ~ 0.9999 between any two TRs) does not hide what tells
        them apart

    Returns
    -------
    dict
        ``ranks`` (segment,) int, 1 = own segment most correlated (ties count against it);
        ``top1_accuracy``, ``mean_rank_percentile`` ((n - rank) / (n - 1), averaged),
        ``chance_top1`` (1/n), ``chance_rank_percentile`` (0.5), ``n_segments``, ``n_undefined``
        (constant rows: ranked last).
    """
    a, b = _rows(reconstructed, "reconstructed"), _rows(true, "true")
    if a.shape != b.shape or a.shape[0] < 2:
        raise ParameterError(f"reconstructed {a.shape} and true {b.shape} must have the same shape, >= 2 segments")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ParameterError("identification needs finite features (average frames over real frames only)")
    if center:
        a, b = a - a.mean(0), b - b.mean(0)
    c = _corr_matrix(a, b)
    undefined = ~np.isfinite(np.diag(c))
    c = np.where(np.isfinite(c), c, -np.inf)
    own = np.diag(c)
    n = a.shape[0]
    ranks = (c >= own[:, None]).sum(1)  # itself, plus every other segment at least as close
    ranks[undefined] = n
    pct = (n - ranks) / (n - 1)
    return {
        "ranks": ranks.astype(np.int64).tolist(), "top1_accuracy": float(np.mean(ranks == 1)),
        "mean_rank_percentile": float(pct.mean()), "chance_top1": 1.0 / n, "chance_rank_percentile": 0.5,
        "n_segments": int(n), "n_undefined": int(undefined.sum()),
    }


def _per_tr(store, entry, x: np.ndarray, feature: str, model) -> np.ndarray:
    """(tr, feature) vectors of one TR each: frame means of embeddings / mel, dequantised codes' means."""
    if feature == "codes":
        from ..codec.encodec import codec_for_entry
        from ..features.quantise import dequantise

        x = dequantise(x.astype(np.int64), model=codec_for_entry(entry.attrs, model, purpose="dequantise"))
        feature = "embeddings"
    if feature == "embedding_mean":
        return x
    axis = 1 if feature == "embeddings" else 2  # (tr, frame, dim) / (tr, mel_band, frame)
    with np.errstate(invalid="ignore"):
        return np.nanmean(np.where(np.isnan(x).all(axis=axis, keepdims=True), 0.0, x), axis=axis)


def identify_reconstruction(store, entry, trs=None, *, model: str | None = None, center: bool = True) -> dict[str, Any]:
    """:func:`identify` for a reconstruction entry against its target entry's true features.

    Parameters
    ----------
    store : Store
    entry : reconstruction entry (or key)
    trs : (start, stop) target TRs (default: every reconstructed TR); use held-out TRs
    model : codes reconstructions only: the model to dequantise with (default: the target's hub model)

    Returns
    -------
    dict of :func:`identify`, plus ``feature`` (what was compared, per TR) and ``trs`` (the TR indices).
    """
    entry = store.get(entry)
    if entry.kind != "reconstruction":
        raise ParameterError(f"entry {entry.key[:16]} is a {entry.kind!r} entry; identification takes a reconstruction")
    target = store.lookup(entry.attrs["target_key"])
    if target is None:
        raise ParameterError(f"the target {entry.attrs['target_key'][:16]} of reconstruction {entry.key[:16]} is "
                             "not in the store; nothing to identify against")
    ds = store.open(entry)
    tr = ds["tr"].values
    if trs is not None:
        tr = tr[(tr >= int(trs[0])) & (tr < int(trs[1]))]
    feature = entry.attrs["feature"]
    rec = _per_tr(store, entry, ds[feature].sel(tr=tr).values, feature, model)
    tds = store.open(target).sel(tr=tr)
    true_var = {"codes": "codes", "embeddings": "embedding_mean", "mel": "mel_mean"}[target.kind]
    true_feature = "codes" if target.kind == "codes" else "embedding_mean"
    true = _per_tr(store, target, tds[true_var].values, true_feature, model)
    out = identify(rec, true, center=center)
    out.update(feature=f"{feature} (per-TR mean)" if feature != "embedding_mean" else feature,
               trs=[int(t) for t in tr])
    return out


def _pearson_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r along axis -2 (tr) of (..., tr, voxel) arrays; NaN where a series is constant.

    NaN values (censored TRs) are left out pairwise: a TR counts only where both series have it.
    """
    if np.isnan(a).any() or np.isnan(b).any():
        both = ~(np.isnan(a) | np.isnan(b))
        a, b = np.where(both, a, np.nan), np.where(both, b, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a voxel with every TR censored: NaN
            ac, bc = a - np.nanmean(a, -2, keepdims=True), b - np.nanmean(b, -2, keepdims=True)
            den = np.sqrt(np.nansum(ac * ac, -2) * np.nansum(bc * bc, -2))
            return np.where(den > 0, np.nansum(ac * bc, -2) / np.where(den > 0, den, 1.0), np.nan)
    ac, bc = a - a.mean(-2, keepdims=True), b - b.mean(-2, keepdims=True)
    den = np.sqrt((ac * ac).sum(-2) * (bc * bc).sum(-2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ac * bc).sum(-2) / np.where(den > 0, den, 1.0), np.nan)


def _nanmean(x) -> float | None:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else None


def _r2(pred: np.ndarray, fmri: np.ndarray, censored: bool) -> np.ndarray:
    """(subject, voxel) coefficient of determination over TRs (NaN TRs, censored, left out)."""
    s_, m_ = (np.nansum, np.nanmean) if censored else (np.sum, np.mean)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = s_((fmri - pred) ** 2, 1)
        tot = s_((fmri - m_(fmri, 1, keepdims=True)) ** 2, 1)
    return np.where(tot > 0, 1.0 - res / np.where(tot > 0, tot, 1.0), np.nan)


def encoding_scores(pred: np.ndarray, fmri: np.ndarray, r: np.ndarray, subjects: list[str],
                    all_fmri: np.ndarray, all_subjects: list[str], dim: str = "voxel") -> tuple[dict, dict]:
    """R², the noise ceiling of :mod:`giblet_store.training.ceiling` and ceiling-normalised r.

    Parameters
    ----------
    pred, fmri : (subject, tr, voxel) float, the predictions and their targets on the evaluated TRs
    r : (subject, voxel) float, Pearson r of ``pred`` with ``fmri``
    subjects : the subjects along the first axis of ``pred``
    all_fmri : (subject, tr, voxel) float, every subject of the fmri entry on the same TRs
    all_subjects : the subjects of ``all_fmri``
    dim : the space dimension of the variables made ("voxel"; "vertex" on a surface; "parcel" for a parcellated
        target)

    Returns
    -------
    variables : {name: ((dims), float32 array)} - ``r2`` (subject, voxel); ``noise_ceiling`` (voxel,),
        sqrt of the mean pairwise ISC; ``r_normalised`` (subject, voxel) = r / noise_ceiling where the
        ceiling is reliable (>= ``noise_ceiling_min``), else NaN; ``isc_loso`` (subject, voxel), r of each
        subject with the mean of the others (an ISC, not a ceiling)
    attrs : ``scores`` (per subject and ``all``: means over voxels of r, r2, noise_ceiling, isc_loso;
        over reliable voxels only: ``r_normalised_mean``, ``r_over_ceiling`` = mean r / mean ceiling,
        and their count ``n_voxels_normalised``), ``noise_ceiling_method``, ``noise_ceiling_reliable_rule``,
        ``noise_ceiling_min``, ``n_voxels_reliable_ceiling`` and, with one subject, ``noise_ceiling_note``
    """
    from .ceiling import METHOD, RELIABLE_RULE, loso_isc, min_reliable_ceiling, noise_ceiling

    pred, fmri, all_fmri = (np.asarray(a, dtype=np.float64) for a in (pred, fmri, all_fmri))
    censored = bool(np.isnan(fmri).any() or np.isnan(all_fmri).any())  # censored TRs are NaN: left out
    r2 = _r2(pred, fmri, censored)
    # the ceiling on the TRs no subject has censored (a censored TR is NaN in every voxel of its subject)
    shared = ~np.isnan(all_fmri).any(axis=(0, 2)) if censored else slice(None)
    ceiling, _ = noise_ceiling(all_fmri[:, shared])
    c_min = min_reliable_ceiling(all_fmri[:, shared].shape[1], len(all_subjects))
    reliable = np.isfinite(ceiling) & (np.nan_to_num(ceiling) >= c_min)
    with np.errstate(invalid="ignore", divide="ignore"):
        r_norm = np.where(reliable, r / np.where(reliable, ceiling, 1.0), np.nan)
    isc = np.stack([loso_isc(all_fmri[:, shared], all_subjects.index(s)) for s in subjects]) if subjects else r * np.nan
    dims = ("subject", dim)
    variables = {"r2": (dims, r2.astype(np.float32)), "noise_ceiling": ((dim,), ceiling.astype(np.float32)),
                 "r_normalised": (dims, r_norm.astype(np.float32)), "isc_loso": (dims, isc.astype(np.float32))}

    def summary(sel) -> dict:
        good = np.broadcast_to(reliable, r[sel].shape) & np.isfinite(r[sel])
        num = _nanmean(np.where(good, r[sel], np.nan))
        den = _nanmean(np.where(good, np.broadcast_to(ceiling, r[sel].shape), np.nan))
        return {"r_mean": _nanmean(r[sel]), "r2_mean": _nanmean(r2[sel]), "noise_ceiling_mean": _nanmean(ceiling),
                "isc_loso_mean": _nanmean(isc[sel]), "r_normalised_mean": _nanmean(r_norm[sel]),
                "r_over_ceiling": None if num is None or not den else num / den,
                "n_voxels_normalised": int(good.sum())}

    scores = {s: summary(i) for i, s in enumerate(subjects)}
    scores["all"] = summary(slice(None))
    attrs: dict[str, Any] = {"scores": scores, "noise_ceiling_method": METHOD,
                             "noise_ceiling_reliable_rule": RELIABLE_RULE,
                             "noise_ceiling_min": None if not np.isfinite(c_min) else float(c_min),
                             "n_voxels_reliable_ceiling": int(reliable.sum())}
    if len(all_subjects) < 2:
        attrs["noise_ceiling_note"] = "the fmri entry has one subject: no inter-subject ceiling (NaN)"
    return variables, attrs
