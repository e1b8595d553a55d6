"""Batch plans for normalised, chunked models (facebook/encodec_48khz): one task per model chunk.

Such a model encodes a file in its own 1 s chunks, each divided by its own scale and independent of
the others (:mod:`giblet_store.codec.normalised`), so its chunks are the natural tasks:

``encode`` tasks
    One per model chunk ``k``: samples ``k * stride : k * stride + length``, read by range by the
    worker (or sliced from one ``load`` task when the file must be resampled), encoded with the
    function a single-process extract runs per chunk; the result is ``(codes, scale)``.
``write`` tasks
    One per Zarr chunk along ``tr`` of ``codes``: where every frame goes is known before anything is
    encoded (:class:`~giblet_store.features.codes_normalised.FramePlan`, from the chunks' lengths), so
    each gathers the model chunks whose frames fall in its TRs and writes that Zarr chunk whole; one
    more writes ``scales`` (every chunk's scale). ``frame_time_s``, ``frame_chunk``, ``chunk_frames``
    do not depend on the codes and are written with the staged template.

Staging, markers, resume after a kill and publishing are those of every batch entry
(:mod:`giblet_store.store.staging`); the entry equals a single-process ``extract_codes`` byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..params import content_key
from ..store.core import default_encoding
from .tasks import _encode_model_chunk_task, _load_task, _slice_task, _Source, _write_chunk_codes_task, \
    _write_scales_task

__all__: list[str] = []


@dataclass
class ChunksPlan:
    """A codes entry of a normalised model, planned by model chunks (see the module docstring)."""

    job: Any
    item: Any  # BatchItem
    key: str
    ds: Any  # xarray.Dataset template (codes and scales are Dask placeholders)
    attrs: dict
    encoding: dict
    source: _Source
    frames: Any  # FramePlan
    n_q: int
    tr_chunk: int
    spec: tuple  # (model name, revision, device) for load_codec on workers
    encode_token: str  # shared by jobs that differ only in their TR grid
    n_samples: int


def plan_chunks(job, item, key, inputs, info, model, identity, n_samples, device, tr_chunk, sha,
                stamp: tuple) -> ChunksPlan:
    """The plan of one codes entry of a normalised model (``job.codec`` resolved to ``model_chunks``)."""
    import dask.array as da

    from ..codec.normalised import model_chunking
    from ..features.codes import _normalised_template
    from ..features.codes_normalised import FramePlan

    codec, grid = job.codec, job.grid
    ch = model_chunking(model)
    frames = FramePlan.of(ch.chunk_frames(n_samples), ch, grid, warn=False)
    n_q = model.n_codebooks(codec.bandwidth_kbps)
    layout = frames.layout
    placeholder = da.zeros((layout.n_trs, n_q, layout.slots), dtype=np.int16)
    variables = {**frames.variables(), "scales": (("chunk",), da.zeros(len(frames.chunk_frames), dtype=np.float32))}
    ds, attrs = _normalised_template(model, (placeholder, layout, variables, frames.coords()), info, codec, grid,
                                     identity, inputs, device, n_q)
    # the order extract_codes writes them in (n_samples, source_name, kind, key)
    attrs = {**attrs, "n_samples": int(n_samples), "source_name": job.path.name, "kind": "codes", "key": key}
    encoding = default_encoding(ds)
    chunks = encoding["codes"].get("chunks") or (max(layout.n_trs, 1), n_q, layout.slots)
    if tr_chunk is not None:
        chunks = (int(tr_chunk), *chunks[1:])
    encoding["codes"]["chunks"] = tuple(chunks)
    revision = None if "model_sha256" in identity else identity.get("model_revision")
    token = content_key({"source": sha, "model": identity, "bandwidth_kbps": codec.bandwidth_kbps,
                         "encoder": codec.encoder, "chunking": ch.to_dict(), "device": device})[:16]
    cut = (layout.frames_before_grid, layout.frames_after_grid)
    if any(cut):  # extract_codes warns; batch says it in the item's note
        from .report import _replace

        item = _replace(item, note="; ".join(filter(None, (
            item.note, f"{cut[0]} frame(s) precede TR 0 and {cut[1]} follow the last TR (not stored)"))))
    return ChunksPlan(job, item, key, ds, attrs, encoding, _Source.of(job.path, info, model, stamp), frames, n_q,
                      int(chunks[0]), (model.name, revision, device), token, int(n_samples))


def submit_chunk_writes(submit, store, staging, plan: ChunksPlan, already: set, run: str) -> list:
    """Submit the encode and write tasks of the chunks of ``plan`` not yet written; the write futures."""
    encodes: dict[int, Any] = {}

    def encode(k: int):
        if k not in encodes:
            encodes[k] = _encode_future(submit, plan, k, run)
        return encodes[k]

    fp, writes = plan.frames, []
    n_trs = fp.layout.n_trs
    _, n_chunks = staging.chunk_len("codes")
    for i in range(n_chunks):
        if f"codes.{i}" in already:
            continue
        a, b = i * plan.tr_chunk, min((i + 1) * plan.tr_chunk, n_trs)
        lo, hi = fp.frames_of(a, b)
        ks = np.unique(fp.chunk[lo:hi]).tolist()
        writes.append(submit(_write_chunk_codes_task, store.url, staging, i, fp.layout.starts[a: b + 1],
                             fp.chunk[lo:hi], fp.index[lo:hi], fp.layout.slots, plan.n_q, ks,
                             *[encode(k) for k in ks], key=f"gs-write-{run}-{plan.key[:16]}-{i}"))
    if "scales.0" not in already:
        writes.append(submit(_write_scales_task, store.url, staging,
                             *[encode(k) for k in range(len(fp.chunk_frames))],
                             key=f"gs-write-{run}-{plan.key[:16]}-scales"))
    return writes


def _encode_future(submit, plan: ChunksPlan, k: int, run: str):
    ch = plan.frames.chunking
    lo = k * ch.stride
    stop = min(lo + ch.length, plan.n_samples)
    audio: Any = plan.source
    if not plan.source.exact:  # resampled once, whole (resampling is exact only over the whole stream)
        sid = content_key({"p": plan.source.path, "sr": plan.source.sample_rate_hz, "ch": plan.source.channels})[:12]
        whole = submit(_load_task, plan.source, key=f"gs-load-{run}-{sid}")
        audio = submit(_slice_task, whole, lo, stop, key=f"gs-slice-{run}-{sid}-{lo}-{stop}")
    return submit(_encode_model_chunk_task, plan.spec, audio, lo, stop, plan.job.codec.bandwidth_kbps,
                  key=f"gs-encode-{run}-{plan.encode_token}-{k}")
