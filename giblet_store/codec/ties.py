"""Whether two code streams of one signal differ only by argmin ties (the stream encoder's exactness check)."""

from __future__ import annotations

import numpy as np

from ..errors import ParameterError

__all__ = ["tie_report"]


def tie_report(codec, embeddings: np.ndarray, a: np.ndarray, b: np.ndarray) -> dict:
    """How two code streams of one signal differ, and whether each difference is an argmin tie.

    For every frame where ``a`` and ``b`` differ, at the first codebook where they differ (the
    earlier codebooks agree, so both saw the same residual ``r`` of the frame's encoder output ``x``),
    the exact (float64) squared distances ``d_a``, ``d_b`` of ``r`` to the two chosen codewords
    ``e_a``, ``e_b`` give ``margin = |d_a - d_b| / (|r|^2 + max(|e_a|^2, |e_b|^2) + 2 |e_a - e_b| |x|)``:
    the relative float32 error that suffices to flip the choice. The first two terms are the size of
    the terms the quantiser sums in float32 (``|r|^2 - 2 r.e + |e|^2``: its rounding error scales with
    them, not with the distance, which can be 400x smaller); the last is how far a relative
    perturbation of ``x`` (summation order upstream) moves ``d_a - d_b``. A flip by summation order
    has a margin of a few float32 roundings (measured 1e-7 to 5e-7); a real difference (lost
    context, different audio) has margins of 1e-4 and more (1e-3 right after a cut).

    Parameters
    ----------
    codec : Codec
    embeddings : (dim, frame) float32, the whole-file encoder output the codes quantise
    a, b : (codebook, frame) int, the same shape

    Returns
    -------
    dict
        ``frames``, ``differing_frames``, ``agreement`` (fraction of equal codes), ``max_margin`` and
        ``median_margin`` (None when nothing differs).
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ParameterError(f"code streams of different shapes {a.shape} and {b.shape} cannot be compared")
    diff = np.flatnonzero((a != b).any(axis=0))
    margins = []
    layers = codec.model.quantizer.layers
    for f in diff:
        q = int(np.flatnonzero(a[:, f] != b[:, f])[0])
        r = np.asarray(embeddings[:, f], np.float64).copy()
        for i in range(q):
            r -= layers[i].codebook.embed[int(a[i, f])].cpu().numpy()
        book = layers[q].codebook.embed.cpu().numpy().astype(np.float64)
        ea, eb = book[int(a[q, f])], book[int(b[q, f])]
        da, db = float(((r - ea) ** 2).sum()), float(((r - eb) ** 2).sum())
        scale = (r @ r + max(ea @ ea, eb @ eb)
                 + 2 * np.linalg.norm(ea - eb) * np.linalg.norm(np.asarray(embeddings[:, f], np.float64)))
        margins.append(abs(da - db) / max(float(scale), 1e-30))
    return {"frames": int(a.shape[-1]), "differing_frames": int(diff.size), "agreement": float((a == b).mean()),
            "max_margin": max(margins) if margins else None,
            "median_margin": float(np.median(margins)) if margins else None}
