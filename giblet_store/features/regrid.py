"""Codes (or mel) on another TR grid without encoding again: the frames of an entry holding the whole stream.

EnCodec's frame stream does not depend on the TR grid (only its assignment to TRs does), so a codes
request at another onset or number of TRs is answered from an entry of the same source, model
weights, bandwidth, encoder, pieces and chunking whose grid kept every frame (``frames_before_grid``
and ``frames_after_grid`` 0): its stream is read back (:func:`~giblet_store.grid.from_tr`) and laid on
the new grid (:meth:`~giblet_store.grid.TrGrid.layout`, :func:`~giblet_store.grid.to_tr`). The entry
gets the key a fresh encode would have and the same codes, bit for bit; ``regridded_from`` names the
entry whose frames it re-grouped. The model is not loaded. Entries of a model that encodes in its own
normalised chunks (frames laid by their own start times) are always encoded. Mel spectrograms are
re-grouped the same way (:func:`regrid_mel`: same source and every mel parameter; the audio is not read).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..bounds import check_grid_bounds
from ..grid import TrGrid, to_tr
from ..params import content_key
from ..store.core import Entry, Store, default_encoding
from ..store.entry import ExtractResult
from ..store.verify import cache_hit

__all__ = ["whole_stream_parent", "regrid_codes", "regrid_mel"]


def _without_grid(inputs: dict) -> str:
    return content_key({k: v for k, v in inputs.items() if k != "grid"})


def whole_stream_parent(store: Store, inputs: dict) -> Entry | None:
    """An entry of ``inputs["kind"]`` (codes or mel) whose key inputs equal ``inputs`` but for the grid and
    that holds every frame, or None."""
    if inputs.get("codec", {}).get("encoder") == "model_chunks":
        return None
    want = _without_grid(inputs)
    for e in sorted(store.find(kind=inputs["kind"], source_sha256=inputs["source_sha256"]), key=lambda e: e.key):
        a = e.attrs
        if ("chunk_stride_samples" in a or not isinstance(a.get("inputs"), dict)
                or int(a.get("frames_before_grid", -1)) != 0 or int(a.get("frames_after_grid", -1)) != 0):
            continue
        if _without_grid(a["inputs"]) == want and (whole := cache_hit(store, e.key, inputs["kind"])) is not None:
            return whole  # checked as a cache hit is: a damaged entry is quarantined, not served
    return None


class _ModelFacts(NamedTuple):
    """What the codes template reads from a model, taken from the parent's attributes instead."""

    sample_rate_hz: int
    hop: int
    codebook_size: int
    channels: int
    frame_rate: Fraction


def _whole(stream, parent: Entry, missing) -> bool:
    """The stream read back is the parent's whole stream: as many frames as it recorded, none of them
    a fill value (a lost chunk reads as fill: then the request is encoded instead)."""
    return stream.shape[-1] == int(parent.attrs.get("n_stream_frames", -1)) and not missing(stream).any()


def regrid_codes(store: Store, inputs: dict, info, audio_path, codec, grid: TrGrid, identity: dict,
                 key: str) -> ExtractResult | None:
    """Write the codes entry ``key`` (``grid``) from the frame stream of :func:`whole_stream_parent` (see
    the module); None when there is none or its frames do not read back whole (then encode)."""
    from .codes import _codes_template, entry_stream

    if (parent := whole_stream_parent(store, inputs)) is None:
        return None
    a = parent.attrs
    facts = _ModelFacts(int(a["sample_rate_hz"]), int(a["hop_samples"]), int(a["codebook_size"]),
                        int(a["audio_channels"]), Fraction(a["frame_rate"]))
    n_q = int(a["n_codebooks"])
    check_grid_bounds(grid, info.duration_s, facts.frame_rate, 2 * n_q, what=repr(str(audio_path)))
    stream, _ = entry_stream(store, parent)
    if not _whole(stream, parent, lambda x: x < 0):
        return None
    layout = grid.layout(stream.shape[-1], facts.frame_rate)
    codes = to_tr(stream, layout, fill=-1)
    ds, attrs = _codes_template(facts, codes, layout, info, codec, grid, identity, inputs, a.get("device", "cpu"), n_q)
    attrs.update(source_name=Path(audio_path).name, regridded_from=parent.key)
    entry, created = store.write(ds, {**attrs, "kind": "codes", "key": key}, default_encoding(ds))
    return ExtractResult(entry, created, str(audio_path))


def regrid_mel(store: Store, inputs: dict, info, audio_path, params, grid: TrGrid, key: str) -> ExtractResult | None:
    """Write the mel entry ``key`` (``grid``) from the frames of :func:`whole_stream_parent`, as a fresh
    extract would (None: there is none, or its frames do not read back whole)."""
    from ..grid import from_tr
    from .mel import _mel_dataset

    if (parent := whole_stream_parent(store, inputs)) is None:
        return None
    pds = store.open(parent)
    stream = from_tr(pds["mel"].values, pds["n_frames"].values)
    if not _whole(stream, parent, np.isnan):
        return None
    ds, attrs = _mel_dataset(stream, params, grid, info, inputs)
    attrs.update(source_name=Path(audio_path).name, regridded_from=parent.key)
    entry, created = store.write(ds, {**attrs, "kind": "mel", "key": key}, default_encoding(ds))
    return ExtractResult(entry, created, str(audio_path))
