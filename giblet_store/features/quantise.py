"""Embeddings -> codes through the model's own residual vector quantiser (RVQ), and back.

EnCodec's quantiser is greedy: level 0 takes the nearest codeword (Euclidean) to the embedding,
level 1 the nearest to what is left, and so on for as many levels as the bandwidth gives
(24 kHz: 1.5/3/6/12/24 kbps -> 2/4/8/16/32). :func:`quantise` does exactly that with the model's
codebooks and the same arithmetic as ``EncodecModel.quantizer.encode`` (float32, distance
``|x|^2 - 2 x.e + |e|^2``, first index of the maximum of its negative), so quantising an encoder
output gives the model's codes bit for bit. Greedy also means that re-quantising the *sum* of a
frame's codewords (:func:`dequantise`) does not always give back the same codes; that agreement is
measured, not assumed (see the README).

``Quantise(bandwidth_kbps=...)`` is the derive transform: a reconstruction entry of embeddings
(or per-TR embedding means, repeated over each TR's real frames) -> a reconstruction entry of codes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .derive import register_model_transform
from .derive_plan import Plan
from ..errors import ParameterError
from ..params import Params
from ..validate import finite

__all__ = ["Quantise", "codebooks", "quantise", "dequantise"]

#: frames per distance matrix (frames x 1024 float32): bounds memory on long inputs
BLOCK_FRAMES = 16384


def _model(model):
    """The ``EncodecModel`` of a Codec, a hub name / directory, or a model itself."""
    if hasattr(model, "quantizer"):
        return model
    if hasattr(model, "model") and hasattr(model.model, "quantizer"):  # Codec
        return model.model
    if isinstance(model, str) and model:
        from ..codec.encodec import load_codec

        return load_codec(model).model
    raise ParameterError(
        f"model must be an EnCodec model, a loaded Codec, a hub name or a save_pretrained directory; got {model!r}")


def codebooks(model) -> np.ndarray:
    """The model's codebook vectors, one codebook per RVQ level.

    Parameters
    ----------
    model : Codec, transformers.EncodecModel, or hub name / save_pretrained directory

    Returns
    -------
    (n_q, codebook_size, dim) float32, e.g. (32, 1024, 128) for facebook/encodec_24khz
    """
    m = _model(model)
    return np.stack([layer.codebook.embed.detach().cpu().numpy() for layer in m.quantizer.layers]).astype(np.float32)


def _n_levels(m, bandwidth_kbps) -> int:
    bandwidth_kbps = finite("bandwidth_kbps", bandwidth_kbps)
    offered = [float(b) for b in m.config.target_bandwidths]
    if not any(math.isclose(bandwidth_kbps, b) for b in offered):
        raise ParameterError(f"bandwidth {bandwidth_kbps:g} kbps is not offered by this model; choose one of "
                             f"{', '.join(f'{b:g}' for b in offered)}")
    return int(m.quantizer.get_num_quantizers_for_bandwidth(float(bandwidth_kbps)))


def _rvq(stream, embeds) -> np.ndarray:
    """Greedy RVQ of (frame, dim) float32 with (n_q, size, dim) codebooks -> (n_q, frame) int64."""
    import torch

    from ..codec.encodec import aligned_tensor

    residual = aligned_tensor(stream)
    out = []
    with torch.inference_mode():
        for embed in embeds:
            e = embed.t()
            norms = e.pow(2).sum(0, keepdim=True)
            idx = torch.cat([  # the quantiser's own formula, in blocks of frames
                (-(b.pow(2).sum(1, keepdim=True) - 2 * b @ e + norms)).max(dim=-1).indices
                for b in residual.split(BLOCK_FRAMES)
            ]) if residual.shape[0] else torch.zeros(0, dtype=torch.int64)
            residual = residual - torch.nn.functional.embedding(idx, embed)
            out.append(idx)
    return torch.stack(out).numpy() if out else np.zeros((0, stream.shape[0]), np.int64)


def quantise(embeddings, *, model, bandwidth_kbps: float) -> np.ndarray:
    """Codes of embeddings by the model's greedy residual vector quantiser.

    Parameters
    ----------
    embeddings : (frame, dim) float, or (tr, frame, dim) float with NaN in the slots past each TR's
        real frames (an embeddings entry's or reconstruction's layout)
    model : Codec, transformers.EncodecModel, or hub name / save_pretrained directory
    bandwidth_kbps : one of the model's bandwidths; sets the number of codebooks (levels)

    Returns
    -------
    (codebook, frame) int64, or (tr, codebook, frame) int16 with -1 where the input frame is NaN

    Raises
    ------
    ParameterError
        Wrong dims or embedding size, a frame only partly NaN, NaN in a (frame, dim) stream, an
        unoffered bandwidth.
    """
    import torch

    m = _model(model)
    n_q = _n_levels(m, bandwidth_kbps)
    x = np.asarray(embeddings.detach().cpu().numpy() if hasattr(embeddings, "detach") else embeddings)
    dim = int(m.quantizer.layers[0].codebook.embed.shape[1])
    if x.ndim not in (2, 3) or x.shape[-1] != dim or x.dtype.kind not in "fiu":
        raise ParameterError(f"embeddings must be real (frame, {dim}) or (tr, frame, {dim}) arrays for this model; "
                             f"got shape {x.shape}, dtype {x.dtype}")
    nan = np.isnan(x) if x.dtype.kind == "f" else np.zeros(x.shape, bool)
    empty = nan.all(-1)
    if (nan.any(-1) & ~empty).any() or (x.ndim == 2 and empty.any()) or not np.isfinite(x[~empty]).all():
        raise ParameterError("embeddings hold NaN/inf inside real frames; only whole frames past n_frames may be NaN "
                             "(and only in the (tr, frame, dim) layout)")
    embeds = [layer.codebook.embed.detach().cpu().to(torch.float32) for layer in m.quantizer.layers[:n_q]]
    if x.ndim == 2:
        return _rvq(x, embeds)
    codes = np.full((x.shape[0], n_q, x.shape[1]), -1, np.int16)
    real = ~empty  # (tr, frame)
    q = _rvq(x[real], embeds)  # (n_q, real frames) in TR order: one stream, like an encoder output
    codes.transpose(1, 0, 2)[:, real] = q
    return codes


def dequantise(codes, *, model) -> np.ndarray:
    """Embeddings of codes: the sum over codebooks of each code's vector (``model.quantizer.decode``).

    Parameters
    ----------
    codes : (codebook, frame) int in [0, codebook_size), or (tr, codebook, frame) int with -1 tails
    model : Codec, transformers.EncodecModel, or hub name / save_pretrained directory

    Returns
    -------
    (frame, dim) float32, or (tr, frame, dim) float32 with NaN where the code is -1
    """
    import torch

    m = _model(model)
    c = np.asarray(codes)
    if c.ndim not in (2, 3) or c.dtype.kind not in "iu" or c.shape[-2] > len(m.quantizer.layers):
        raise ParameterError(f"codes must be integer (codebook, frame) or (tr, codebook, frame) with at most "
                             f"{len(m.quantizer.layers)} codebooks; got shape {c.shape}, dtype {c.dtype}")
    stream = c if c.ndim == 2 else c.transpose(1, 0, 2).reshape(c.shape[1], -1)
    valid = (stream >= 0).all(0)
    size = int(m.config.codebook_size)
    if (stream[:, valid] >= size).any() or (c.ndim == 2 and not valid.all()):
        raise ParameterError(f"codes must lie in [0, {size - 1}] (-1 only past n_frames in (tr, codebook, frame))")
    with torch.inference_mode():
        t = torch.from_numpy(np.where(stream >= 0, stream, 0).astype(np.int64))[:, None]
        emb = m.quantizer.decode(t)[0].T.cpu().numpy().astype(np.float32)  # (frame, dim)
    if c.ndim == 2:
        return emb
    emb[~valid] = np.nan
    return emb.reshape(c.shape[0], c.shape[2], -1)


@dataclass(frozen=True)
class Quantise(Params):
    """Derive transform: a reconstruction of embeddings -> a reconstruction of codes (greedy RVQ).

    ``embedding_mean`` reconstructions (tr, dim) are repeated over each TR's real frames first.
    The model is given to :func:`giblet_store.features.derive` (``model=``, default the target's hub model)
    and must have the target's weights.

    Parameters
    ----------
    bandwidth_kbps : float
        One of the model's bandwidths (24 kHz: 1.5, 3, 6, 12, 24); sets the codebook count.
    """

    name: ClassVar[str] = "quantise"
    bandwidth_kbps: float = 6.0

    def __post_init__(self):
        object.__setattr__(self, "bandwidth_kbps", finite("bandwidth_kbps", self.bandwidth_kbps, positive=True))


def _frame_slots(parent) -> int:
    from fractions import Fraction

    return math.ceil(Fraction(parent.attrs["frames_per_tr"]))


def plan_quantise(store, parent, transform: Quantise, model: str | None, device: str) -> Plan:
    """The derive plan of :class:`Quantise` (see :func:`giblet_store.features.derive.derive`)."""
    feature = parent.attrs.get("feature")
    if parent.kind != "reconstruction" or feature not in ("embeddings", "embedding_mean"):
        raise ParameterError(
            f"Quantise turns a reconstruction of embeddings into codes; entry {parent.key[:16]} is a "
            f"{parent.kind!r} entry{f' of {feature}' if feature else ''}. For other arrays call "
            "giblet_store.features.quantise(embeddings, model=..., bandwidth_kbps=...)")
    from ..codec.encodec import codec_for_entry, entry_model_name

    entry_model_name(parent.attrs, model)  # a local-model entry needs model=: say so before anything runs
    codec = codec_for_entry(parent.attrs, model, device, purpose="quantise")
    n_q = _n_levels(codec.model, transform.bandwidth_kbps)

    def build():
        import xarray as xr

        ds = store.open(parent)
        n = ds["n_frames"].values.astype(np.int64)
        x = ds[feature].values
        if feature == "embedding_mean":
            slots = max(_frame_slots(parent), int(n.max(initial=0)))  # 48 kHz: frames_per_tr is a mean
            real = np.arange(slots)[None, :] < n[:, None]
            x = np.where(real[..., None], x[:, None, :], np.nan).astype(np.float32)
        codes = quantise(x, model=codec, bandwidth_kbps=transform.bandwidth_kbps)
        out = xr.Dataset(
            {"codes": (("tr", "codebook", "frame"), codes), "n_frames": (("tr",), n.astype(np.int16))},
            coords={"tr": ds["tr"].values, "tr_start_s": (("tr",), ds["tr_start_s"].values),
                    "codebook": np.arange(n_q, dtype=np.int64), "frame": np.arange(codes.shape[2], dtype=np.int64)})
        out["codes"].attrs.update(description="greedy RVQ codes of the parent's predicted embeddings; -1 where "
                                  "frame >= n_frames[tr]", fill=-1)
        extra: dict[str, Any] = {
            "feature": "codes", "quantised_from": feature, "bandwidth_kbps": transform.bandwidth_kbps,
            "n_codebooks": n_q, "codebook_size": codec.codebook_size,
            "quantiser": "greedy RVQ, nearest codeword per level on the running residual (model.quantizer.encode)",
        }
        return out, extra

    return Plan("reconstruction", {}, build)


register_model_transform(Quantise, plan_quantise)
