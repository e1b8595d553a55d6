"""Reconstruction entries: a model's predicted stimulus features, on the grid of the stimulus entry they predict.

The other direction from :mod:`giblet_store.training.predictions`: brain activity -> stimulus. A
``reconstruction`` entry holds one ``feature``, laid out exactly like the target stimulus entry:

=================  =========================================  ==================
feature            variable (dims, dtype)                     target entry kind
=================  =========================================  ==================
``codes``          codes (tr, codebook, frame) int16, -1 tail  codes
``embeddings``     embeddings (tr, frame, dim) float32, NaN     embeddings
``embedding_mean`` embedding_mean (tr, dim) float32            embeddings
``mel``            mel (tr, mel_band, frame) float32, NaN       mel
=================  =========================================  ==================

plus ``n_frames`` (tr) int16 and the ``tr_start_s`` coordinate copied from the target, so the frame
layout (and therefore decoding, see :mod:`giblet_store.features.decoding`) is the target's. Provenance like
predictions: the fmri entry and subjects read, the target entry, the model name, the checkpoint's
sha256, the training parameters and the TR list; ``parent`` is ``[fmri_key, target_key]`` so
:func:`giblet_store.lineage` reaches the fmri and the stimulus.
"""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

import numpy as np

from ..errors import ReconstructionError
from ..params import ALGORITHM_VERSION, content_key
from ..store.provenance import ModelProvenance, as_array, digests, tr_range, tr_rows
from ..store.schema import FORMAT_VERSION
from ..store.core import Entry, Store, default_encoding
from ..store.verify import cache_hit

__all__ = ["FEATURES", "write_reconstruction"]

#: feature -> (variable dims, the target kind it must sit on)
FEATURES: dict[str, tuple[tuple[str, ...], str]] = {
    "codes": (("tr", "codebook", "frame"), "codes"),
    "embeddings": (("tr", "frame", "dim"), "embeddings"),
    "embedding_mean": (("tr", "dim"), "embeddings"),
    "mel": (("tr", "mel_band", "frame"), "mel"),
}

#: target attributes a reconstruction carries over (model identity, frame grid, mel parameters)
_CARRIED = (
    "codec", "model", "model_sha256", "model_id", "model_revision", "bandwidth_kbps", "n_codebooks",
    "codebook_size", "sample_rate_hz", "hop_samples", "audio_channels", "frame_rate_hz", "frame_rate",
    "frames_per_tr", "embedding_dim", "mel_params", "n_mels", "n_fft", "db", "source_sha256", "source_name",
    "duration_s", "tr_s", "onset_s",
    "encoder", "chunk_length_samples", "chunk_stride_samples",  # a 48 kHz target: decoded with its chunks' scales
)


def _feature_of(values: np.ndarray, target: Entry, feature: str | None) -> str:
    if feature is None:
        feature = {"codes": "codes", "mel": "mel"}.get(target.kind)
        if target.kind == "embeddings":
            feature = "embedding_mean" if values.ndim == 2 else "embeddings"
    if feature not in FEATURES:
        raise ReconstructionError(
            f"feature {feature!r} is not one of {sorted(FEATURES)}; the target {target.key[:16]} is a "
            f"{target.kind!r} entry")
    want = FEATURES[feature][1]
    if target.kind != want:
        raise ReconstructionError(
            f"a {feature} reconstruction sits on a {want} entry's grid; target {target.key[:16]} is a "
            f"{target.kind!r} entry. Give the {want} entry the model predicts "
            f"(`giblet-store ls STORE --kind {want}`)")
    return feature


def _check_shape(values: np.ndarray, dims, feature: str, tds, target: Entry) -> None:
    want = FEATURES[feature][0]
    if dims is not None and tuple(dims) != want:
        raise ReconstructionError(f"a {feature} reconstruction has dims {want}; got {tuple(dims)}")
    if values.ndim != len(want):
        raise ReconstructionError(
            f"a {feature} reconstruction is {want}, {len(want)} dims; got shape {values.shape}")
    for axis, d in enumerate(want[1:], start=1):
        n = int(tds.sizes[d])
        if values.shape[axis] != n:
            what = {"codebook": "codebook count", "dim": "embedding dim", "frame": "frame slots per TR (grid)",
                    "mel_band": "mel band count"}[d]
            raise ReconstructionError(
                f"the reconstruction's {what} is {values.shape[axis]} (axis {axis}, {d!r}); target "
                f"{target.key[:16]} ({target.kind}) has {n}. Predict on the target's grid")


def _checked_values(values: np.ndarray, feature: str, n_frames: np.ndarray, codebook_size: int) -> np.ndarray:
    """The stored array: int16 codes with -1 tails, or float32 with NaN tails; real slots checked."""
    if values.dtype.kind not in ("iu" if feature == "codes" else "fiu"):
        hint = " (round float predictions, or reconstruct embeddings and quantise)" if feature == "codes" else ""
        raise ReconstructionError(f"{feature} reconstructions must be {'integer' if feature == 'codes' else 'real'}"
                                  f" numbers, got dtype {values.dtype}{hint}")
    if feature == "embedding_mean":
        out = np.ascontiguousarray(values, dtype=np.float32)
        real = np.broadcast_to((n_frames > 0)[:, None], out.shape)
    else:
        frame_axis = 2 if feature in ("codes", "mel") else 1
        slot = np.arange(values.shape[frame_axis])
        real = slot[None, :] < n_frames[:, None]  # (tr, frame)
        real = real[:, None, :] if frame_axis == 2 else real[:, :, None]
        real = np.broadcast_to(real, values.shape)
        if feature == "codes":
            bad = real & ((values < 0) | (values >= codebook_size))
            if bad.any():
                raise ReconstructionError(
                    f"{int(bad.sum())} real code(s) lie outside [0, {codebook_size - 1}] (the codebook); -1 is only "
                    "for slots past n_frames[tr]. Clip the predictions")
            return np.where(real, values, -1).astype(np.int16)
        out = np.where(real, values, np.nan).astype(np.float32)
    if not np.isfinite(out[real]).all():
        raise ReconstructionError(
            f"the reconstruction holds {int((~np.isfinite(out[real])).sum())} NaN/inf value(s) in real frames; "
            "fix the model")
    return out


def _fmri_side(store: Store, fmri, subjects, target: Entry) -> tuple[Entry, list[str]]:
    fe = store.get(fmri)
    if fe.kind != "fmri":
        raise ReconstructionError(f"entry {fe.key[:16]} is a {fe.kind!r} entry; give the fmri entry the model read")
    names = [str(s) for s in fe.attrs.get("subjects", [])] or [str(s) for s in store.open(fe)["subject"].values]
    subj = names if subjects is None else [str(s) for s in np.atleast_1d(subjects)]
    if not subj or len(set(subj)) != len(subj) or any(s not in names for s in subj):
        raise ReconstructionError(f"subjects {subj} are not distinct subjects of fmri entry {fe.key[:16]} ({names})")
    a, b = fe.attrs.get("tr_s"), target.attrs.get("tr_s")
    if not (isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-9)):
        raise ReconstructionError(
            f"fmri entry {fe.key[:16]} has TR {a} s but the target {target.key[:16]} has TR {b} s; a reconstruction "
            "lies on the target's grid, read from fMRI on the same grid (resample one of them first)")
    return fe, subj


def _dataset(values: np.ndarray, feature: str, tds, tr: np.ndarray):
    import xarray as xr

    part = tds.isel(tr=tr)
    dims = FEATURES[feature][0]
    coords: dict[str, Any] = {"tr": tr, "tr_start_s": (("tr",), part["tr_start_s"].values.astype(np.float64))}
    for d in dims[1:]:
        coords[d] = part[d].values if d in part.coords else np.arange(values.shape[dims.index(d)], dtype=np.int64)
    if feature == "mel" and "mel_hz" in part.coords:
        coords["mel_hz"] = (("mel_band",), part["mel_hz"].values)
    ds = xr.Dataset({feature: (dims, values), "n_frames": (("tr",), part["n_frames"].values.astype(np.int16))},
                    coords=coords)
    tail = "-1" if feature == "codes" else "NaN"
    ds[feature].attrs.update(description=f"predicted {feature} of the target stimulus entry; {tail} where "
                             "frame >= n_frames[tr]" if "frame" in dims else f"predicted {feature} per TR")
    ds["n_frames"].attrs.update(description="real frames in each TR (the target's)")
    return ds


def _checked(store: Store, values, target, trs, feature: str | None) -> tuple[Entry, Any, str, np.ndarray, np.ndarray]:
    """(target entry, its dataset, feature, target TR of each row, the array to store), all checked."""
    te = store.get(target)
    arr, dims, _ = as_array(values)
    feature = _feature_of(arr, te, feature)
    tds = store.open(te)
    _check_shape(arr, dims, feature, tds, te)
    tr = tr_rows(trs, arr.shape[0], int(tds.sizes["tr"]), ReconstructionError, "reconstruction")
    n_frames = tds["n_frames"].values[tr].astype(np.int64)
    stored = _checked_values(arr, feature, n_frames, int(te.attrs.get("codebook_size", 0) or 0))
    return te, tds, feature, tr, stored


def write_reconstruction(
    store: Store,
    values,
    target: Entry | str,
    *,
    fmri: Entry | str,
    model_name: str,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_sha256: str | None = None,
    training_params: dict | None = None,
    subjects: Sequence[str] | None = None,
    trs=None,
    feature: str | None = None,
) -> tuple[Entry, bool]:
    """Store a model's predicted stimulus features on the grid of the stimulus entry they predict.

    Parameters
    ----------
    store : Store
    values : array (numpy, torch or xarray) of one feature, rows = TRs of the target:
        codes (tr, codebook, frame) int, embeddings (tr, frame, dim) float, embedding_mean (tr, dim)
        float, or mel (tr, mel_band, frame) float (dB like the target). Slots past the target's
        ``n_frames[tr]`` are ignored (stored as -1 / NaN).
    target : the codes / embeddings / mel entry predicted; its codebook count, embedding dim, mel
        bands and frame slots must match ``values``
    fmri : the fmri entry the model read (on the same TR as the target)
    model_name, checkpoint, checkpoint_sha256, training_params : provenance, as in
        :func:`giblet_store.write_predictions`
    subjects : the fmri subjects the model read (default: all)
    trs : target TR index of each row, or (start, stop) (default: every TR of the target)
    feature : ``codes``, ``embeddings``, ``embedding_mean`` or ``mel`` (default: from the target's kind
        and, for embeddings, the number of dims)

    Returns
    -------
    (Entry, created)
        kind ``reconstruction``; ``parent`` = [fmri key, target key]; ``feature``, ``target_key``,
        ``target_kind``, ``fmri_key``, ``subjects``, ``trs`` ... in attributes.

    Raises
    ------
    ReconstructionError
        A feature, grid, codebook count, dim or TR list that does not fit the target; a target or fmri
        entry of the wrong kind or another TR; non-finite values; codes outside the codebook; missing
        provenance. Nothing is written.
    """
    te, tds, feature, tr, stored = _checked(store, values, target, trs, feature)
    fe, subj = _fmri_side(store, fmri, subjects, te)
    prov = ModelProvenance.of(model_name, checkpoint, checkpoint_sha256, training_params, ReconstructionError)
    inputs = {
        "kind": "reconstruction", "algorithm_version": ALGORITHM_VERSION, "format_version": FORMAT_VERSION,
        "feature": feature, "target_key": te.key, "fmri_key": fe.key, "subjects": subj,
        **prov.to_dict(), **digests(tr, stored),
    }
    key = content_key(inputs)
    if (hit := cache_hit(store, key, "reconstruction")) is not None:
        return hit, False
    ds = _dataset(stored, feature, tds, tr)
    return store.write(ds, _attrs(te, fe, inputs, key, tr, int(tds.sizes["tr"])), default_encoding(ds))


def _attrs(te: Entry, fe: Entry, inputs: dict, key: str, tr: np.ndarray, n_target: int) -> dict:
    attrs = {k: te.attrs[k] for k in _CARRIED if k in te.attrs}
    attrs.update({
        "kind": "reconstruction", "key": key, "feature": inputs["feature"], "parent": [fe.key, te.key],
        "target_key": te.key, "target_kind": te.kind, "fmri_key": fe.key, "subjects": inputs["subjects"],
        "n_subjects": len(inputs["subjects"]), "model_name": inputs["model_name"],
        "checkpoint_sha256": inputs["checkpoint_sha256"], "training_params": inputs["training_params"],
        "n_trs": int(tr.size), "target_n_trs": n_target,
        "tr_range": tr_range(tr), "hrf": "none",
        "algorithm_version": ALGORITHM_VERSION, "inputs": inputs,
    })
    return attrs
