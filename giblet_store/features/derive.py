"""Derived entries: a transform applied lazily to an entry, written as a new entry that names its parent.

``derive(store, entry, transform)`` validates the request against the parent (before anything is
written), builds the derived entry's key from the parent's key, the transform's parameters and the
options that change the bytes, returns the existing entry when that key is already complete (a cache
hit computes nothing), and otherwise builds a lazy (Dask) Dataset from the lazily opened parent and
writes it through the store's staging. Transforms:

=================  =============  ===========================================================
transform          derived kind   what it does
=================  =============  ===========================================================
``Embeddings()``   embeddings     codes -> sum of each codebook's vector (RVQ dequantisation)
``Hrf(...)``       features       causal double-gamma convolution along ``tr``
``Fir(delays)``    features       FIR delays along a new ``delay`` dimension
``Resample(...)``  features       another TR grid, by stimulus time (or the reference's stretch)
=================  =============  ===========================================================

Which arrays a transform touches: per-TR float variables, i.e. those with the time axis and no
``frame`` axis (``embedding_mean``, ``mel_mean``, any ``features`` array), unless ``variables=``
names others. Codes are categories: HRF on them is refused (derive embeddings first) unless
``reference_codes=True`` asks for the reference project's convolve-round-clip (with a warning);
resampling codes takes whole rows from the nearest earlier TR.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import numpy as np

from .causal_fir import HRF_ALGORITHM_VERSION
from ..errors import ParameterError
from .hrf import INTEGER_CODES_MESSAGE, Fir, Hrf, convolve_causal, delay, hrf_kernel
from ..params import ALGORITHM_VERSION, Params, content_key
from ..bounds import check_output_size
from .resample import Resample, resample_array, resample_plan, target_trs
from ..store.schema import FORMAT_VERSION
from .derive_plan import Plan, carried, select_variables, time_axis, tr_grid, with_tr_start
from ..store.entry import Entry, lineage, parents_of, refresh  # noqa: F401 (lineage, parents_of re-exported)
from ..scheduling import use_scheduler
from ..store.core import Store, default_encoding
from ..store.verify import cache_hit

__all__ = ["Embeddings", "derive", "derive_key", "lineage", "parents_of"]

#: Parent attributes that describe the parent itself, not the data the child inherits.
_NOT_INHERITED = {
    "kind", "key", "status", "format_version", "inputs", "parent", "parent_kind", "transform",
    "transform_params", "variables", "axis", "algorithm_version", "hrf_kernel",
}
#: Attributes of a frame grid that no longer hold after resampling to another TR.
_GRID_ONLY = {"frames_per_tr", "frames_before_grid", "frames_after_grid"}


@dataclass(frozen=True)
class Embeddings(Params):
    """Dequantise a codes entry: ``embeddings`` (tr, frame, dim) float32 and ``embedding_mean`` (tr, dim).

    Each real frame's vector is the sum over codebooks of that code's codebook vector, exactly the
    quantizer output EnCodec's decoder consumes (``model.quantizer.decode``). The model is given to
    :func:`derive` (``model=``, default the entry's hub model); its weights must be the entry's, so
    the key needs no model field (the parent's key already covers the weights).
    """

    name: ClassVar[str] = "embeddings"


# ------------------------------------------------------------------------------------- derive
def derive(store: Store, entry: "Entry | str", transform: Params, **kwargs) -> Entry:
    """Write (or return the cached) entry that ``transform`` derives from ``entry``.

    Parameters
    ----------
    store : Store
    entry : Entry or key (prefix)
    transform : Embeddings, Hrf, Fir or Resample
    variables : list of str, optional
        Data variables to transform (default: the per-TR float variables; codes for a codes entry).
    axis : str, optional
        The time dimension (default ``"tr"``); required for ``fmri`` entries (subject, tr, voxel).
    reference_codes : bool
        Hrf on a codes entry: the reference project's convolve-round-clip (warns). Default False:
        an error pointing to embeddings.
    model, device : str
        Embeddings only: the EnCodec model (hub name or local directory; default the entry's hub
        model) and torch device.
    scheduler : Dask scheduler used while writing ("threads", "sync", or a distributed Client).

    Returns
    -------
    Entry
        ``kind`` embeddings or features; ``attrs["parent"]`` is ``entry``'s key, ``attrs["inputs"]``
        what was hashed into its key. Chain calls: ``store.derive(store.derive(e, Hrf()), Resample(2.0))``.

    Raises
    ------
    EntryNotFoundError
        No such entry, or it was deleted.
    ParameterError
        The transform does not apply to this entry (HRF on codes, unknown variable, kernel longer
        than the series, fmri without ``axis``, ...). Nothing is written.
    """
    return _derive(store, entry, transform, **kwargs)[0]


def derive_key(store: Store, entry: "Entry | str", transform: Params, **kwargs) -> str:
    """The key :func:`derive` would give, without computing or writing anything."""
    parent = refresh(store, entry)
    plan = _plan(store, parent, transform, **_plan_kwargs(kwargs))
    return content_key(_inputs(parent, transform, plan))


def _plan_kwargs(kwargs: dict) -> dict:
    allowed = {"variables", "axis", "reference_codes", "model", "device"}
    unknown = sorted(set(kwargs) - allowed - {"scheduler"})
    if unknown:
        raise ParameterError(f"derive got unknown option(s) {unknown}; expected some of {sorted(allowed | {'scheduler'})}")
    return {k: v for k, v in kwargs.items() if k in allowed}


def _inputs(parent: Entry, transform: Params, plan: Plan) -> dict[str, Any]:
    return {
        "kind": plan.kind,
        "parent": parent.key,
        "transform_name": transform.name,
        "transform": transform.to_dict(),
        "options": plan.options,
        "algorithm_version": ALGORITHM_VERSION,
        "format_version": FORMAT_VERSION,
    }


def _derive(store: Store, entry: "Entry | str", transform: Params, **kwargs) -> tuple[Entry, bool]:
    """:func:`derive`, also saying whether the entry was made now (False: cache hit)."""
    scheduler = kwargs.get("scheduler", "threads")
    parent = refresh(store, entry)
    plan = _plan(store, parent, transform, **_plan_kwargs(kwargs))
    inputs = _inputs(parent, transform, plan)
    key = content_key(inputs)
    if (hit := cache_hit(store, key, plan.kind)) is not None:
        return hit, False
    ds, extra = plan.build()
    attrs = {k: v for k, v in parent.attrs.items() if k not in _NOT_INHERITED | plan.dropped}
    attrs.update(extra)
    attrs.update({
        "kind": plan.kind,
        "key": key,
        "parent": parent.key,
        "parent_kind": parent.kind,
        "transform": transform.name,
        "transform_params": transform.to_dict(),
        "algorithm_version": ALGORITHM_VERSION,
        "inputs": inputs,
    })
    ds, encoding = _prepare(ds)
    with use_scheduler(scheduler):
        return store.write(ds, attrs, encoding)


def _prepare(ds):
    """Drop encodings inherited from the parent's Zarr arrays; align Dask chunks with the Zarr chunks."""
    ds = ds.copy()
    for name in list(ds.coords):
        if name not in ds.dims:
            ds.coords[name] = ds.coords[name].load()
    for var in ds.variables.values():
        var.encoding = {}
    encoding = default_encoding(ds)
    for name, enc in encoding.items():
        if "chunks" in enc and ds[name].chunks is not None:
            ds[name] = ds[name].chunk(dict(zip(ds[name].dims, enc["chunks"])))
    return ds, encoding


# ------------------------------------------------------------------------------------- planning
#: Transforms defined in modules above this one (e.g. :class:`giblet_store.features.quantise.Quantise`):
#: type -> planner(store, parent, transform, model, device) -> Plan. Registered on import.
_MODEL_TRANSFORMS: dict[type, Callable[..., Plan]] = {}


def register_model_transform(cls: type, planner: Callable[..., Plan]) -> None:
    """Let :func:`derive` plan ``cls`` transforms (that take ``model=``) with ``planner``."""
    _MODEL_TRANSFORMS[cls] = planner


def _plan(store, parent: Entry, transform, variables=None, axis=None, reference_codes=False, model=None, device="cpu") -> Plan:
    for cls, planner in _MODEL_TRANSFORMS.items():
        if isinstance(transform, cls):
            if variables is not None or axis is not None or reference_codes:
                raise ParameterError(f"{cls.__name__} takes no variables, axis or reference_codes")
            return planner(store, parent, transform, model, device)
    if isinstance(transform, Embeddings):
        if variables is not None or axis is not None or reference_codes:
            raise ParameterError("Embeddings takes no variables, axis or reference_codes; it dequantises the codes")
        return _plan_embeddings(store, parent, model, device)
    if model is not None:
        raise ParameterError(f"model= applies to Embeddings only, not to {type(transform).__name__}")
    if isinstance(transform, (Hrf, Fir)):
        return _plan_hrf(store, parent, transform, variables, axis, bool(reference_codes))
    if isinstance(transform, Resample):
        if reference_codes:
            raise ParameterError("reference_codes applies to Hrf on codes only")
        return _plan_resample(store, parent, transform, variables, axis)
    raise ParameterError(
        f"cannot derive with {transform!r}; give Embeddings(), Quantise(...), Hrf(...), Fir(delays) or Resample(...)"
    )


def _hrf_variables(parent: Entry, ds, axis: str, transform, variables, reference_codes: bool) -> tuple[list[str], bool]:
    """The variables an HRF/FIR convolves and whether they are integer codes (refused unless
    ``reference_codes`` asks for the reference project's convolve-round-clip)."""
    if parent.attrs.get("hrf", "none") != "none":
        raise ParameterError(
            f"entry {parent.key[:16]} is already HRF-convolved (hrf={parent.attrs['hrf']!r}); derive from "
            f"its parent {str(parent.attrs.get('parent', '?'))[:16]} instead of convolving twice"
        )
    if parent.kind == "codes" and variables is None:
        names = ["codes"]
    else:
        names = select_variables(parent, ds, axis, variables, floats_only=variables is None)
    codes = any(ds[n].dtype.kind in "iub" for n in names)
    if codes:
        if isinstance(transform, Fir):
            raise ParameterError("FIR delays of integer codes are not offered; derive embeddings first and delay those")
        if not reference_codes:
            raise ParameterError(INTEGER_CODES_MESSAGE)
        if int(parent.attrs.get("codebook_size", 0)) < 2:
            raise ParameterError(f"entry {parent.key[:16]} has no codebook_size attribute to clip codes to")
    elif reference_codes:
        raise ParameterError(f"reference_codes applies to integer codes; entry {parent.key[:16]} is {parent.kind!r}")
    return names, codes


def _hrf_kernel(parent: Entry, transform, tr_s: float, n: int) -> tuple[np.ndarray | None, dict]:
    """``(kernel (taps,) float64 or None for FIR, the attributes naming it)``, checked against ``n`` TRs."""
    if isinstance(transform, Hrf):
        taps = transform.n_taps(tr_s)
        if taps > n:
            raise ParameterError(
                f"the {transform.model} HRF kernel is {taps} TRs ({transform.length_s:g} s at TR {tr_s:g} s) "
                f"but entry {parent.key[:16]} has {n} TRs; give a kernel length (Hrf(length_s=...), CLI --hrf-length) "
                f"<= {n * tr_s:g} s, or a longer series"
            )
        kernel = hrf_kernel(transform, tr_s)
        return kernel, {"hrf": transform.model, "hrf_params": transform.to_dict(), "hrf_kernel": kernel.tolist()}
    if transform.max_delay >= n:
        raise ParameterError(
            f"FIR delay {transform.max_delay} TRs is not shorter than entry {parent.key[:16]} ({n} TRs); "
            "use shorter delays or a longer series"
        )
    return None, {"hrf": "fir", "hrf_params": transform.to_dict()}


def _plan_hrf(store, parent: Entry, transform, variables, axis, reference_codes: bool) -> Plan:
    ds = store.open(parent)
    axis = time_axis(parent, ds, axis)
    names, codes = _hrf_variables(parent, ds, axis, transform, variables, reference_codes)
    tr_s, _ = tr_grid(parent)
    kernel, extra = _hrf_kernel(parent, transform, tr_s, ds.sizes[axis])
    codebook_size = int(parent.attrs["codebook_size"]) if codes else None
    if codes:
        warnings.warn(
            "convolving integer codes the reference project's way (convolve, round, clip to "
            f"[0, {codebook_size - 1}]): the result is not a code sequence any model produced; use it "
            "only to compare with the reference. Embeddings are the meaningful input",
            UserWarning,
            stacklevel=6,  # the caller of Store.derive
        )
    options = {"axis": axis, "variables": sorted(names), "integer": "reference" if codes else "error"}
    if kernel is not None:  # the convolution's own version: its output bytes changed with it
        options["hrf_algorithm_version"] = HRF_ALGORITHM_VERSION

    def build():
        out = with_tr_start(carried(ds, names + (["n_frames"] if codes and "n_frames" in ds else []), axis), axis, parent)
        for name in names:
            x = out[name]
            if codes:
                y = convolve_causal(x.astype(np.float64), kernel, axis)
                y = y.round().clip(0, codebook_size - 1).astype(x.dtype)
                if "n_frames" in out and "frame" in x.dims:
                    y = y.where(out["frame"] < out["n_frames"], -1)
                out[name] = y.astype(x.dtype)
            elif kernel is not None:
                out[name] = convolve_causal(x, kernel, axis)
            else:
                out[name] = delay(x, transform, axis)
        desc = (f"{transform.model} HRF, causal" if kernel is not None else f"FIR delays {list(transform.delays)} TRs")
        for name in names:
            out[name].attrs["transform"] = desc
        return out, {**extra, "variables": names, "axis": axis}

    return Plan("features", options, build)


def _plan_resample(store, parent: Entry, transform: Resample, variables, axis) -> Plan:
    ds = store.open(parent)
    axis = time_axis(parent, ds, axis)
    tr_s, onset_s = tr_grid(parent)
    n = ds.sizes[axis]
    if parent.kind == "codes" and variables is None:
        names = ["codes", "n_frames"]
    else:
        names = select_variables(parent, ds, axis, variables, variables is None)
    n_out = target_trs(n, tr_s, onset_s, transform)  # refused before any plan array is allocated
    check_output_size(n_out, sum(ds[v].nbytes for v in names) // max(n, 1),
                      f"resampling {parent.kind} entry {parent.key[:12]} ({n} TRs of {tr_s:g} s)",
                      "give a coarser target TR (--resample-tr) or fewer TRs (--stretch)")
    plans = {}
    for name in names:
        integer = ds[name].dtype.kind in "iub"
        plans[name] = resample_plan(n, tr_s, onset_s, transform, integer)  # raises for linear on codes
    first = next(iter(plans.values()))
    options = {"axis": axis, "variables": sorted(names)}

    def build():
        base = carried(ds, names, axis)
        base = base.drop_vars([c for c in base.coords if axis in base[c].dims])
        out = {}
        for name in names:
            x = base[name]
            ax = x.dims.index(axis)
            y = resample_array(x.data, plans[name], ax, fill=0 if name == "n_frames" else None)
            out[name] = (x.dims, y, dict(x.attrs))
        res = base.drop_vars(names).assign(out)
        res = res.assign_coords({
            axis: np.arange(first.n_trs, dtype=np.int64),
            "tr_start_s": ((axis,), first.onset_s + first.tr_s * np.arange(first.n_trs, dtype=np.float64)),
        })
        methods = {name: p.method for name, p in plans.items()}
        desc = first.describe()
        desc["methods"] = methods
        if any(p.taps.size for p in plans.values()):
            desc["antialias_filter"] = next(p for p in plans.values() if p.taps.size).describe()["antialias_filter"]
        extra = {
            "tr_s": first.tr_s, "onset_s": first.onset_s, "n_trs": first.n_trs,
            "resample": desc,
            "source_grid": {"tr_s": tr_s, "onset_s": onset_s, "n_trs": n},
            "variables": names, "axis": axis,
        }
        return res, extra

    return Plan("features", options, build, dropped=frozenset(_GRID_ONLY))


def _plan_embeddings(store, parent: Entry, model: str | None, device: str) -> Plan:
    if parent.kind != "codes":
        raise ParameterError(
            f"Embeddings dequantise codes; entry {parent.key[:16]} is a {parent.kind!r} entry. "
            "Give the key of a codes entry (`giblet-store ls STORE --kind codes`)"
        )
    from ..codec.encodec import entry_model_name

    entry_model_name(parent.attrs, model)  # a local-model entry needs model=: say so before anything runs

    def build():
        import xarray as xr

        from ..codec.encodec import codec_for_entry

        codec = codec_for_entry(parent.attrs, model, device, purpose="dequantise")
        ds = store.open(parent)
        dim = int(codec.model.quantizer.layers[0].codebook.embed.shape[1])
        spec = codec.spec
        codes = ds["codes"].data
        codes = codes.rechunk({1: -1, 2: -1})
        emb = codes.map_blocks(_dequantise_block, spec, dim, dtype=np.float32, drop_axis=1, new_axis=2,
                               chunks=(codes.chunks[0], codes.chunks[2], (dim,)))
        n = ds["n_frames"]
        e = xr.DataArray(emb, dims=("tr", "frame", "dim"))
        total = e.sum("frame", skipna=True)
        mean = (total / n.clip(min=1)).where(n > 0).astype(np.float32)
        out = xr.Dataset(
            {"embeddings": e, "embedding_mean": mean, "n_frames": n},
            coords={"tr": ds["tr"], "tr_start_s": ds["tr_start_s"], "frame": ds["frame"],
                    "dim": np.arange(dim, dtype=np.int64)},
        )
        out["embeddings"].attrs.update(description="sum over codebooks of each code's codebook vector "
                                       "(RVQ dequantisation); NaN where frame >= n_frames[tr]")
        # the division kept n_frames' labels: replace them (annotate then labels embedding_mean as such)
        out["embedding_mean"].attrs = {"description": "mean of embeddings over the TR's real frames (NaN if none)"}
        extra = {"dequantiser": "rvq-sum (EncodecModel.quantizer.decode)", "embedding_dim": dim, "hrf": "none"}
        if "chunk_stride_samples" in parent.attrs:  # the 48 kHz model: each chunk was divided by its scale
            out, extra = _with_chunk_scales(out, ds), {**extra, "chunk_scale": CHUNK_SCALE_NOTE}
        return out, extra

    return Plan("embeddings", {}, build)


#: what a normalised-chunk (48 kHz) entry's embeddings are, said in its ``chunk_scale`` attribute
CHUNK_SCALE_NOTE = ("not applied: embeddings are of each model chunk divided by its scale (loudness-normalised per "
                    "1 s chunk, as the model encodes); frame_scale holds each frame's chunk scale (multiply to undo "
                    "the normalisation), frame_time_s and frame_chunk its start time and chunk")


def _with_chunk_scales(out, ds):
    """``out`` plus the frame variables of a normalised-chunk codes dataset ``ds``: ``frame_scale``
    (tr, frame) float32 (the scale of the frame's chunk; NaN past n_frames), ``frame_time_s``, ``frame_chunk``."""
    chunk = ds["frame_chunk"].values
    scales = ds["scales"].values.astype(np.float32)
    frame_scale = np.where(chunk >= 0, scales[np.clip(chunk, 0, None)], np.nan).astype(np.float32)
    out = out.assign(frame_scale=(("tr", "frame"), frame_scale), frame_time_s=ds["frame_time_s"].variable,
                     frame_chunk=ds["frame_chunk"].variable)
    out["frame_scale"].attrs = {"description": "scale of the frame's model chunk (the chunk was divided by it before "
                                "encoding); NaN past n_frames"}
    return out


def _dequantise_block(block: np.ndarray, spec: tuple, dim: int) -> np.ndarray:
    """(tr, codebook, frame) int16 codes (-1 tails) -> (tr, frame, dim) float32 (NaN tails)."""
    from ..codec.encodec import dequantise, load_codec

    codes = np.asarray(block)
    t, q, f = codes.shape
    valid = (codes >= 0).all(axis=1)  # (tr, frame)
    flat = np.where(codes >= 0, codes, 0).transpose(1, 0, 2).reshape(q, t * f)
    emb = dequantise(load_codec(*spec), flat).reshape(t, f, dim)
    emb[~valid] = np.nan
    return emb


Store.register_deriver(derive)  # Store.derive calls it (the store never imports the transforms)
