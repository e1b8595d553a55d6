"""Batch extraction on ``dask.distributed``: many stimuli and long files, resumable and crash-safe.

:func:`run_batch` reads a manifest (:mod:`giblet_store.batch.manifest`), works out on the client which
entries are missing (content keys, as :func:`~giblet_store.features.codes.extract_codes` computes them),
and sends the rest to a ``LocalCluster`` or any scheduler address as one task graph:

``encode`` tasks
    One per encode chunk of a stimulus (``chunk_s`` of audio plus ``context_s`` of left context, the
    same bounds as a single-process extract, so the codes are bit-identical). A worker reads its
    chunk's samples from the shared filesystem itself when the file is already at the model's rate;
    otherwise one ``load`` task resamples the whole file (resampling is only exact over the whole
    stream) and ``slice`` tasks hand each encode task its piece. Every worker loads the model once
    (:func:`~giblet_store.codec.encodec.load_codec` is cached per process) and reuses it.
``write`` tasks
    One per Zarr chunk along ``tr`` of the entry: it gathers the (small) code pieces covering its
    TRs, lays them on the grid and writes that whole chunk (:meth:`Store.write_chunk`), then a
    marker. No two tasks write the same chunk.
``commit`` task
    Publishes the entry once every chunk is written (:meth:`Store.commit`): an atomic rename on
    local disk, the entry's ``zarr.json`` with ``status: complete`` written last on object stores.

A killed client or worker leaves a staged entry whose finished chunks carry markers; the rerun
writes only the missing chunks and publishes bytes identical to an uninterrupted run. Two batches
on one store write identical bytes to the same places and publish once.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..audio.load import AudioInfo
from ..errors import AudioError, ClusterError, GibletStoreError, ParameterError  # noqa: F401
from .manifest import Job, Manifest, load_manifest
from .report import BatchItem, BatchReport, _reason, _replace
from .cluster import _connect, _progress_mode, local_workers
from ..codec.stream import stream_piece_s
from ..params import content_key
from ..validate import file_name_text, int_in_range
from ..store.core import Entry, Store, default_encoding, open_store
from .tasks import (  # the functions workers run
    _commit_task, _encode_task, _load_task, _mel_task, _slice_task, _Source, _write_task,
)
from .chunks import ChunksPlan, plan_chunks, submit_chunk_writes
from .checks import _check_manifest, _readable  # tests patch _check_manifest here
from ..store.verify import cache_hit

__all__ = ["run_batch", "BatchReport", "BatchItem", "ClusterError"]


# ------------------------------------------------------------------------------------ planning
@dataclass
class _CodesPlan:
    job: Job
    item: BatchItem  # params/source filled; status decided later
    key: str
    ds: Any  # xarray.Dataset template (codes is a Dask placeholder)
    attrs: dict
    encoding: dict
    source: _Source
    starts: np.ndarray  # (tr + 1,) int64 stream-frame bounds of each TR
    slots: int
    n_q: int
    tr_chunk: int
    chunk_frames: int
    bounds: list  # (lo, start, stop) samples of each encode chunk
    hop: int
    spec: tuple  # (model name, revision, device) for load_codec on workers
    encode_token: str  # shared by jobs that differ only in their TR grid


def _plan(manifest: Manifest, store: Store, tr_chunk: int | None, checked: tuple | None = None):
    """Split jobs into finished items (cached / failed) and plans for the missing codes entries.

    Raises ManifestError for problems that concern the manifest as a whole (model, bandwidth,
    duplicate content): those are reported before any work starts. ``checked``: what
    :func:`_check_manifest` returned, when it ran already.
    """
    from ..features.codes import codes_key_inputs, resolve_encoder

    models, shas, stamps = checked or _check_manifest(manifest)
    done, plans, mel_jobs = [], [], []
    infos: dict[Path, AudioInfo | AudioError] = {}
    for idx, job in enumerate(manifest.jobs):
        item = BatchItem(str(job.path), job.kind, job.describe(), "failed")
        info = _readable(job, infos)
        if isinstance(info, AudioError):  # a corrupt file fails its own jobs only
            done.append((idx, _replace(item, reason=_reason(info))))
            continue
        if job.kind == "mel":
            hit = _mel_lookup(store, job, shas[job.path])
            if hit is not None:
                done.append((idx, _replace(item, status="cached", key=hit.key, path=hit.path)))
            else:
                mel_jobs.append((idx, job, item))
            continue
        model, identity = models[(job.codec.model, job.codec.revision)]
        if (item := _model_fit(item, info, model)).reason:  # the channel rule: in the note, or refused
            done.append((idx, item))
            continue
        codec, chunking = resolve_encoder(job.codec)  # a normalised model (48 kHz): its own chunks
        job = dataclasses.replace(job, codec=codec)
        inputs = codes_key_inputs(shas[job.path], codec, job.grid, identity, chunking=chunking)
        key = content_key(inputs)
        item = _replace(item, key=key)
        if (hit := cache_hit(store, key, "codes")) is not None:
            done.append((idx, _replace(item, status="cached", path=hit.path)))
            continue
        n_samples = int(round(info.n_samples * model.sample_rate_hz / info.sample_rate_hz))
        if n_samples < model.hop:
            done.append((idx, _replace(item, reason=f"AudioError: {job.path.name} is {info.duration_s * 1000:.2f} ms "
                                       f"long, shorter than one EnCodec hop; nothing to encode")))
            continue
        planner = plan_chunks if chunking is not None else _plan_codes
        plans.append((idx, planner(job, item, key, inputs, info, model, identity, n_samples, manifest.device,
                                   tr_chunk, shas[job.path], stamps[job.path])))
    return done, plans, mel_jobs


def _mel_lookup(store: Store, job: Job, sha: str) -> Entry | None:
    """The cached mel entry of a job (its key is computed without computing the mel)."""
    from ..features.mel import MelParams, mel_key_inputs

    params = MelParams.from_dict(job.mel) if job.mel else MelParams()
    return cache_hit(store, content_key(mel_key_inputs(sha, params, job.grid)), "mel")


def _model_fit(item: BatchItem, info: AudioInfo, model) -> BatchItem:
    """``item`` with a note of the channel rule applied, or a reason when the rule refuses the file."""
    if model.channels == 2 and info.channels > 2:  # as giblet_store.audio.channels refuses it
        return _replace(item, reason=f"AudioError: {item.source} has {info.channels} channels; a stereo model takes "
                        "1 or 2. Mix it down to stereo first")
    if info.channels != model.channels:  # the channel rule (giblet_store.audio.channels), said in the item's note
        return _replace(item, note=f"{info.channels} channel(s) mixed to the model's {model.channels} "
                        f"({'mean' if model.channels == 1 else 'duplicated'})")
    return item


def _plan_codes(job, item, key, inputs, info, model, identity, n_samples, device, tr_chunk, sha,
                stamp) -> _CodesPlan:
    import dask.array as da

    from ..codec.encodec import chunk_bounds
    from ..features.codes import _codes_template

    codec = job.codec
    n_q = model.n_codebooks(codec.bandwidth_kbps)
    n_stream = -(-n_samples // model.hop)  # every chunk but the last is whole hops
    layout = job.grid.layout(n_stream, model.frame_rate)
    placeholder = da.zeros((layout.n_trs, n_q, layout.slots), dtype=np.int16)
    ds, attrs = _codes_template(model, placeholder, layout, info, codec, job.grid, identity, inputs, device, n_q)
    attrs["source_name"] = file_name_text(job.path)
    attrs = {**attrs, "kind": "codes", "key": key}  # the order extract_codes writes them in
    encoding = default_encoding(ds)
    chunks = encoding["codes"].get("chunks") or (max(layout.n_trs, 1), n_q, layout.slots)
    if tr_chunk is not None:
        chunks = (int(tr_chunk), *chunks[1:])
    encoding["codes"]["chunks"] = tuple(chunks)
    source = _Source.of(job.path, info, model, stamp)
    bounds = chunk_bounds(n_samples, model.hop, codec.chunk_s, codec.context_s, model.sample_rate_hz)
    revision = None if "model_sha256" in identity else identity.get("model_revision")
    token = content_key({"source": sha, "model": identity, "bandwidth_kbps": codec.bandwidth_kbps,
                         "chunk_s": codec.chunk_s, "context_s": codec.context_s, "device": device,
                         "encoder": codec.encoder})[:16]
    chunk_frames = max(1, round(codec.chunk_s * model.sample_rate_hz / model.hop))  # as chunk_bounds rounds it
    if codec.encoder == "stream":  # one encode task per file: one pass with carried state
        bounds, chunk_frames = [(0, 0, n_samples)], n_stream
    return _CodesPlan(job, item, key, ds, attrs, encoding, source, layout.starts, layout.slots, n_q,
                      int(chunks[0]), chunk_frames, bounds, model.hop, (model.name, revision, device), token)


# ------------------------------------------------------------------------------------ running
def run_batch(
    manifest: "Manifest | str | os.PathLike | dict",
    store: "Store | str | os.PathLike",
    scheduler: Any = "local",
    workers: int | None = None,
    *,
    progress: Any = None,
    connect_timeout: float = 5.0,
    tr_chunk: int | None = None,
    model: str | None = None,
) -> BatchReport:
    """Extract every entry a manifest asks for that the store does not hold yet.

    Parameters
    ----------
    manifest : Manifest, path to a CSV/YAML/JSON manifest, or a mapping (see :mod:`giblet_store.batch.manifest`)
    store : Store or URL (local directory, ``file://``, ``memory://``, ``s3://``, ...)
    scheduler : ``"local"`` (a new ``LocalCluster``), a scheduler address (``tcp://host:8786``), or a
        ``distributed.Client``
    workers : int, optional
        Workers of the local cluster (default: one per core, one thread each; at most 4 per core).
    progress : None (a bar when stderr is a terminal), True, False, ``"tqdm"`` or ``"distributed"``
        A tqdm bar for a local cluster, ``distributed.progress`` for a scheduler address.
    connect_timeout : float
        Seconds to wait for a scheduler address before failing.
    tr_chunk : int, optional
        TRs per Zarr chunk (and per write task) of codes entries; overrides the manifest's.
        Default: the store's chunking, which makes entries byte-identical to ``extract_codes``'s.
    model : str, optional
        Model for stimuli that name none (see :func:`~giblet_store.batch.manifest.load_manifest`); only
        with a manifest path or mapping.

    Returns
    -------
    BatchReport
        Created / cached / failed per job; ``report.ok`` is False when anything failed. One bad
        stimulus fails only its own entries.

    Raises
    ------
    ManifestError
        The manifest is invalid (every problem listed); nothing was run.
    StoreError
        The store cannot be opened (e.g. its filesystem is not installed).
    ClusterError
        The scheduler cannot be reached (within ``connect_timeout``) or the cluster cannot start.
    """
    import contextlib

    t0 = time.perf_counter()
    manifest, store, tr_chunk, checked = _inputs(manifest, store, tr_chunk, model, scheduler, workers)
    done, plans, mel_jobs = _plan(manifest, store, tr_chunk, checked)
    results = dict(done)
    if plans or mel_jobs:
        in_process = store.url.startswith("memory://")
        with contextlib.ExitStack() as stack:
            client, own = _connect(scheduler, workers, in_process, connect_timeout, stack)
            results.update(_execute(client, store, plans, mel_jobs, _progress_mode(progress, own)))
    items = [results[i] for i in sorted(results)]
    return BatchReport(items, store.url, time.perf_counter() - t0)


def _inputs(manifest, store, tr_chunk, model, scheduler, workers) -> tuple[Manifest, Store, int | None, tuple]:
    """:func:`run_batch`'s arguments: the Manifest, the open Store, TRs per chunk, :func:`_check_manifest`'s result.

    Everything is checked before the store is opened, so a refused batch never creates a store.
    """
    if scheduler is None or (isinstance(scheduler, str) and scheduler == "local"):
        local_workers(workers)
    if not isinstance(manifest, Manifest):
        manifest = load_manifest(manifest, model=model)
    elif model is not None:
        raise ParameterError("model= applies when the manifest is read here; pass load_manifest(..., model=...) "
                             "for a Manifest that is already loaded")
    tr_chunk = manifest.tr_chunk if tr_chunk is None else int_in_range("tr_chunk", tr_chunk, 1)
    checked = _check_manifest(manifest)
    if not isinstance(store, Store):
        store = open_store(store)
    return manifest, store, tr_chunk, checked


def _execute(client, store: Store, plans: list, mel_jobs: list, progress: str | None) -> dict[int, BatchItem]:
    """Stage every planned entry, submit its graph, wait, and turn futures into report items.

    This process holds a lease on every staged entry until its commit has run (the workers encode
    whole files before their first chunk), so ``gc`` never takes a template a batch still needs.
    """
    from ..store.lease import Lease

    with Lease(store.storage) as lease:
        return _stage_submit_wait(client, store, plans, mel_jobs, progress, lease)


def _stage_submit_wait(client, store: Store, plans: list, mel_jobs: list, progress: str | None,
                       lease) -> dict[int, BatchItem]:
    run = uuid.uuid4().hex[:8]
    out: dict[int, BatchItem] = {}
    pending: list = []  # (idx, item, final future, note)
    tasks: list = []  # every future, for progress
    shared: dict[str, Any] = {}  # key -> future, so jobs share loads and encodes

    def submit(fn, *args, key):
        if key not in shared:
            shared[key] = client.submit(fn, *args, key=key, pure=False)
            tasks.append(shared[key])
        return shared[key]

    for idx, plan in plans:
        try:
            lease.add(plan.key)
            staging = store.begin_write(plan.ds, plan.attrs, plan.encoding)
        except Exception as exc:  # this entry only: the others go on
            out[idx] = _replace(plan.item, reason=_reason(exc))
            continue
        if isinstance(staging, Entry):  # another writer finished it since planning
            out[idx] = _replace(plan.item, status="cached", path=staging.path, note="completed by another writer")
            continue
        already = store.done_chunks(staging)
        _, n_chunks = staging.chunk_len("codes")
        resumed = f"resumed: {len(already)} of {n_chunks} chunks were already written" if already else ""
        note = "; ".join(filter(None, (plan.item.note, resumed)))  # the channel rule's note, if any, first
        chunk_writes = submit_chunk_writes if isinstance(plan, ChunksPlan) else _submit_writes
        writes = chunk_writes(submit, store, staging, plan, already, run)
        final = submit(_commit_task, store.url, staging, *writes, key=f"gs-commit-{run}-{plan.key[:16]}")
        pending.append((idx, plan.item, final, note))
    for idx, job, item in mel_jobs:
        fut = submit(_mel_task, store.url, str(job.path), job.mel, job.grid.to_dict(),
                     key=f"gs-mel-{run}-{idx}")
        pending.append((idx, item, fut, ""))
    shared.clear()
    _wait(client, tasks, progress)
    tasks.clear()  # release the futures
    return {**out, **_collect(pending)}


def _submit_writes(submit, store: Store, staging, plan: _CodesPlan, already: set, run: str) -> list:
    """Submit the encode and write tasks of the Zarr chunks of ``plan`` not yet written; the write futures."""
    writes = []
    _, n_chunks = staging.chunk_len("codes")
    for i in range(n_chunks):
        if f"codes.{i}" in already:
            continue
        a, b = i * plan.tr_chunk, min((i + 1) * plan.tr_chunk, len(plan.starts) - 1)
        f_lo, f_hi = int(plan.starts[a]), int(plan.starts[b])
        js = range(f_lo // plan.chunk_frames, (f_hi - 1) // plan.chunk_frames + 1) if f_hi > f_lo else range(0)
        pieces = [_encode_future(submit, plan, j, run) for j in js]
        offset = js[0] * plan.chunk_frames if len(js) else f_lo
        writes.append(submit(_write_task, store.url, staging, i, plan.starts[a: b + 1], plan.slots, plan.n_q,
                             offset, *pieces, key=f"gs-write-{run}-{plan.key[:16]}-{i}"))
    return writes


def _collect(pending: list) -> dict[int, BatchItem]:
    """Report items of finished (or failed) futures: ``(idx, item, future, note)`` each."""
    import distributed

    out = {}
    for idx, item, fut, note in pending:
        if fut.status == "finished":
            key, path, created, *told = fut.result()  # a mel task adds its warnings
            note = "; ".join(n for n in (note, *told) if n)
            out[idx] = _replace(item, status="created" if created else "cached", key=key, path=path,
                                note=note if created else (note or "completed by another writer"))
        else:
            try:
                exc = fut.exception()
            except distributed.client.FutureCancelledError as e:  # pragma: no cover - cluster went away
                exc = e
            out[idx] = _replace(item, reason=_reason(exc))
    return out


def _encode_future(submit, plan: _CodesPlan, j: int, run: str):
    lo, start, stop = plan.bounds[j]
    audio: Any = plan.source
    if not plan.source.exact:
        sid = content_key({"p": plan.source.path, "sr": plan.source.sample_rate_hz, "ch": plan.source.channels})[:12]
        whole = submit(_load_task, plan.source, key=f"gs-load-{run}-{sid}")
        audio = submit(_slice_task, whole, lo, stop, key=f"gs-slice-{run}-{sid}-{lo}-{stop}")
    codec = plan.job.codec
    piece_s = stream_piece_s(codec.chunk_s) if codec.encoder == "stream" else None
    return submit(_encode_task, plan.spec, audio, lo, start, stop, plan.hop, codec.bandwidth_kbps, piece_s,
                  key=f"gs-encode-{run}-{plan.encode_token}-{j}")


def _wait(client, tasks: list, progress: str | None) -> None:
    """Wait for every task; ``tasks`` is emptied so that results are released as they are used."""
    import distributed

    if progress == "distributed":
        distributed.progress(tasks, notebook=False, multi=False, scheduler=client.scheduler.address)
        for _ in distributed.as_completed(tasks, loop=client.loop):  # distributed.wait needs a default client
            pass
        tasks.clear()
        return
    total = len(tasks)
    finished = distributed.as_completed(tasks, loop=client.loop)  # the given client, default or not
    tasks.clear()  # as_completed drops each future once it is yielded
    if progress == "tqdm":
        from tqdm.auto import tqdm

        with tqdm(total=total, unit="task", desc="batch", file=sys.stderr) as bar:
            for _ in finished:
                bar.update(1)
    else:
        for _ in finished:
            pass
