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

from ..bounds import check_grid_bounds
from ..grid import TrGrid, to_tr
from ..params import content_key
from ..store.core import Entry, Store, default_encoding
from ..store.entry import ExtractResult

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
        if _without_grid(a["inputs"]) == want:
            return e
    return None


class _ModelFacts(NamedTuple):
    """What the codes template reads from a model, taken from the parent's attributes instead."""

    sample_rate_hz: int
    hop: int
    codebook_size: int
    channels: int
    frame_rate: Fraction


def regrid_codes(store: Store, parent: Entry, info, audio_path, codec, grid: TrGrid, identity: dict, inputs: dict,
                 key: str) -> ExtractResult:
    """Write the codes entry ``key`` (``grid``) from ``parent``'s frame stream (see the module)."""
    from .codes import _codes_template, entry_stream

    a = parent.attrs
    facts = _ModelFacts(int(a["sample_rate_hz"]), int(a["hop_samples"]), int(a["codebook_size"]),
                        int(a["audio_channels"]), Fraction(a["frame_rate"]))
    n_q = int(a["n_codebooks"])
    check_grid_bounds(grid, info.duration_s, facts.frame_rate, 2 * n_q, what=repr(str(audio_path)))
    stream, _ = entry_stream(store, parent)
    layout = grid.layout(stream.shape[-1], facts.frame_rate)
    codes = to_tr(stream, layout, fill=-1)
    ds, attrs = _codes_template(facts, codes, layout, info, codec, grid, identity, inputs, a.get("device", "cpu"), n_q)
    attrs.update(source_name=Path(audio_path).name, regridded_from=parent.key)
    entry, created = store.write(ds, {**attrs, "kind": "codes", "key": key}, default_encoding(ds))
    return ExtractResult(entry, created, str(audio_path))


def regrid_mel(store: Store, parent: Entry, info, audio_path, params, grid: TrGrid, inputs: dict,
               key: str) -> ExtractResult:
    """Write the mel entry ``key`` (``grid``) from ``parent``'s frames, as a fresh extract would."""
    from ..grid import from_tr
    from .mel import _mel_dataset

    pds = store.open(parent)
    stream = from_tr(pds["mel"].values, pds["n_frames"].values)
    ds, attrs = _mel_dataset(stream, params, grid, info, inputs)
    attrs.update(source_name=Path(audio_path).name, regridded_from=parent.key)
    entry, created = store.write(ds, {**attrs, "kind": "mel", "key": key}, default_encoding(ds))
    return ExtractResult(entry, created, str(audio_path))
