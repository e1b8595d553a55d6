"""Audio file -> codes entry, and codes entry -> audio file.

``extract_codes`` is the main job: hash the source, build the key from every input, return the
entry if it exists (no model run), re-grid the frames of an entry of the same source, model and
bandwidth that holds the whole stream (:mod:`giblet_store.features.regrid`; no model run), else
load+resample, encode lazily in chunks (one Dask task per chunk), lay the stream on the TR grid and write the entry through the store's staging. A normalised,
chunked model (the 48 kHz one) is encoded in its own chunks instead, each frame laid on the grid by its
own start time, and decoded by overlap-add (:mod:`giblet_store.features.codes_normalised`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..audio.load import audio_info, load_audio, wav_writer, write_wav
from ..store.hashing import HashedFile
from ..bounds import check_grid_bounds
from ..codec.encodec import CodecParams, codec_for_entry, decode_stream, load_codec, model_identity, prepare_codes
from ..errors import AudioError, ParameterError
from ..store.entry import ExtractResult
from .regrid import regrid_codes
from ..grid import TrGrid, from_tr, grid_attrs, parse_tr_range, to_tr
from ..validate import file_name_text
from ..params import ALGORITHM_VERSION, content_key
from ..store.schema import FORMAT_VERSION
from ..scheduling import use_scheduler
from ..store.core import Entry, Store, default_encoding
from ..store.verify import cache_hit

#: inputs longer than this are resampled into a temporary memory-mapped file instead of RAM
MEMMAP_ABOVE_S = 60.0

__all__ = ["ExtractResult", "codes_key_inputs", "extract_codes", "decode_entry", "entry_stream"]


def codes_key_inputs(source_sha256: str, codec: CodecParams, grid: TrGrid, identity: dict,
                     audio_stream: int | None = None, chunking: dict | None = None) -> dict[str, Any]:
    """Everything that determines a codes entry's bytes: hashed into its key, stored as ``inputs``.

    ``audio_stream`` (the stream index of a container read with PyAV) is part of the key only for
    containers, so the keys of files soundfile reads do not change. ``chunking`` (a normalised,
    chunked model's ``chunk_length_s``, ``overlap``, ``normalize``) likewise only for such models.
    """
    codec_d = codec.to_dict()
    codec_d.pop("model")  # the name/path is not identity: the weights are (identity below)
    codec_d.pop("revision")
    if codec_d.get("encoder") in ("stream", "model_chunks"):  # no left context is recomputed
        codec_d.pop("context_s")
    codec_d["chunk_s"] = codec_chunk_s(codec)  # stream: the piece size the encoder is given (it can flip a tie)
    if chunking is not None:
        codec_d["chunking"] = dict(chunking)
    return {
        "kind": "codes",
        "algorithm_version": ALGORITHM_VERSION,
        "format_version": FORMAT_VERSION,
        "source_sha256": source_sha256,
        "codec": {**codec_d, **identity},
        "grid": grid.to_dict(),
    } | ({} if audio_stream is None else {"audio_stream": int(audio_stream)})


def codec_chunk_s(codec: CodecParams) -> float:
    """The chunk (or, for the stream encoder, piece) length in seconds the encode actually uses."""
    from ..codec.stream import stream_piece_s

    return stream_piece_s(codec.chunk_s) if codec.encoder == "stream" else codec.chunk_s


def extract_codes(
    store: Store,
    audio_path: "str | os.PathLike | list[str | os.PathLike]",
    codec: CodecParams | None = None,
    grid: TrGrid | None = None,
    device: str = "cpu",
    scheduler: Any = "threads",
    audio_stream: int | None = None,
) -> "ExtractResult | list[ExtractResult]":
    """Extract EnCodec codes of ``audio_path`` on ``grid`` into ``store`` (or return the cached entry).

    Parameters
    ----------
    store : Store
    audio_path : path to wav/flac/ogg, a video/audio container (mp4, mkv, mov, webm, avi, m4a, mp3, ...), or a list
        A list is checked as a whole (every file exists and is audio) before any is encoded, and
        gives a list of results in the same order.
    codec : CodecParams (default: facebook/encodec_24khz, 6 kbps, stream encoder in 10 s pieces)
    grid : TrGrid (default: 1.5 s TR, onset 0, as many TRs as the audio fills)
    device : torch device for the encoder (recorded in attributes, not in the key)
    scheduler : Dask scheduler for the chunk tasks ("threads", "sync", or a distributed Client)
    audio_stream : container stream index (default: the container's default audio stream); part of
        the key. Stimulus time 0 is the container's time 0: see :mod:`giblet_store.audio.container`

    Returns
    -------
    ExtractResult
        ``entry.open()`` gives codes (tr, codebook, frame) int16 with -1 fill and n_frames (tr).

    Raises
    ------
    AudioError, ParameterError, ModelError, StoreError
        Before anything is written.
    """
    codec = codec or CodecParams()
    grid = grid or TrGrid()
    if isinstance(audio_path, (list, tuple)):
        for p in audio_path:
            audio_info(p, audio_stream)  # every input is checked before the first is encoded
        return [extract_codes(store, p, codec, grid, device, scheduler, audio_stream) for p in audio_path]
    info = audio_info(audio_path, audio_stream)  # missing / not audio / empty: fail before any model work
    with HashedFile(audio_path) as source:  # the key's hash, and the only bytes the decoder reads
        return _extract_one(store, audio_path, source, info, codec, grid, device, scheduler)


def _extract_one(store, audio_path, source: HashedFile, info, codec, grid, device, scheduler) -> ExtractResult:
    source_sha = source.sha256
    identity = model_identity(codec.model, codec.revision)
    codec, chunking = resolve_encoder(codec)
    inputs = codes_key_inputs(source_sha, codec, grid, identity, info.stream, chunking)
    key = content_key(inputs)
    if (hit := cache_hit(store, key, "codes")) is not None:
        return ExtractResult(hit, False, str(audio_path))
    if done := regrid_codes(store, inputs, info, audio_path, codec, grid, identity, key):
        return done  # the frames exist: re-grouped, no model loaded
    model = load_codec(codec.model, codec.revision, device)
    n_q = model.n_codebooks(codec.bandwidth_kbps)  # unsupported bandwidth: error before reading audio
    check_grid_bounds(grid, info.duration_s, model.frame_rate, 2 * n_q, what=repr(str(audio_path)))
    if codec.encoder == "stream":
        from ..codec.stream import _check_streamable

        _check_streamable(model, "encoder")  # a non-causal model: error before reading audio
    return _load_and_encode(store, info, audio_path, model, codec, grid, identity, inputs, key, device,
                            scheduler, n_q, source)


def _load_and_encode(store, info, audio_path, model, codec, grid, identity, inputs, key, device, scheduler,
                     n_q, source: HashedFile) -> ExtractResult:
    # long inputs are resampled into a file-backed memory map: RSS does not grow with length
    # (containers always: their length is known only once decoded). The file has no name (see
    # load.anonymous_file): a killed extract leaves nothing in the temporary folder.
    big = info.duration_s > MEMMAP_ABOVE_S or info.reader != "soundfile"
    audio, info = load_audio(audio_path, model.sample_rate_hz, model.channels,
                             out=tempfile.gettempdir() if big else None, audio_stream=info.stream, source=source)
    result = _encode_and_write(store, audio, info, audio_path, model, codec, grid, identity, inputs,
                               key, device, scheduler, n_q)
    del audio
    return result


def resolve_encoder(codec: CodecParams) -> tuple[CodecParams, dict | None]:
    """The encoder a model takes, and its chunking (None for models encoded in one call).

    A normalised, chunked model (the 48 kHz one) is encoded exactly only by its own chunking: any
    ``encoder`` becomes ``"model_chunks"``, ``chunk_s`` the model's ``chunk_length_s`` and
    ``context_s`` 0 (so attributes say what was done). ``"model_chunks"`` with another model is an error.
    """
    import dataclasses

    from ..codec.normalised import config_chunking

    chunking = config_chunking(codec.model, codec.revision)
    if chunking is not None:
        return dataclasses.replace(codec, encoder="model_chunks", chunk_s=chunking["chunk_length_s"],
                                   context_s=0.0), chunking
    if codec.encoder == "model_chunks":
        raise ParameterError(f"encoder 'model_chunks' needs a model that encodes in its own chunks (the 48 kHz "
                             f"model); {codec.model!r} has no chunk_length_s. Use encoder 'stream' or 'chunked'")
    return codec, None


def _encode_and_write(store, audio, info, audio_path, model, codec, grid, identity, inputs, key, device,
                      scheduler, n_q) -> ExtractResult:
    if audio.shape[-1] < model.hop:
        raise AudioError(
            f"{str(audio_path)!r} is {info.duration_s * 1000:.2f} ms long, shorter than one EnCodec hop "
            f"({model.hop} samples = {1000 * model.hop / model.sample_rate_hz:.1f} ms); nothing to encode. Give at "
            f"least {1000 * model.hop / model.sample_rate_hz:.1f} ms of audio"
        )
    ds, attrs = _codes_dataset(model, audio, info, codec, grid, identity, inputs, device, scheduler, n_q)
    attrs["source_name"] = file_name_text(audio_path)
    entry, created = store.write(ds, {**attrs, "kind": "codes", "key": key}, default_encoding(ds))
    return ExtractResult(entry, created, str(audio_path))


def _codes_dataset(model, audio, info, codec, grid, identity, inputs, device, scheduler, n_q):
    from ..codec.encodec import encode_stream

    if codec.encoder == "model_chunks":  # the model's own normalised chunks, one at a time
        return _normalised_dataset(model, audio, info, codec, grid, identity, inputs, device, n_q)
    if codec.encoder == "stream":  # one pass with carried state, one chunk in memory (giblet_store.codec.stream)
        from ..progress import seconds_bar
        from ..codec.stream import stream_encode, stream_piece_s

        sr = model.sample_rate_hz  # a bar of audio seconds, one step per piece (in a progress_bar block)
        with seconds_bar(audio.shape[-1] / sr) as step:
            stream = stream_encode(model, audio, codec.bandwidth_kbps, stream_piece_s(codec.chunk_s),
                                   on_piece=lambda n: step(n / sr))
    else:
        stream = encode_stream(model, audio, codec)
        with use_scheduler(scheduler):
            stream = np.asarray(stream.compute())
    layout = grid.layout(stream.shape[-1], model.frame_rate)
    codes = to_tr(stream, layout, fill=-1)
    return _codes_template(model, codes, layout, info, codec, grid, identity, inputs, device, n_q)


def _normalised_dataset(model, audio, info, codec, grid, identity, inputs, device, n_q):
    from .codes_normalised import normalised_codes
    from ..codec.normalised import model_chunking

    chunking = model_chunking(model)
    laid = normalised_codes(model, chunking, audio, codec.bandwidth_kbps, grid)
    ds, attrs = _normalised_template(model, laid, info, codec, grid, identity, inputs, device, n_q)
    return ds, {**attrs, "n_samples": int(audio.shape[-1])}


def _normalised_template(model, laid, info, codec, grid, identity, inputs, device, n_q):
    """:func:`_codes_template` plus the variables of a normalised-chunk entry (``laid``: see ``lay_chunks``)."""
    from .codes_normalised import normalised_attrs
    from ..codec.normalised import model_chunking

    codes, layout, variables, coords = laid
    ds, attrs = _codes_template(model, codes, layout, info, codec, grid, identity, inputs, device, n_q)
    ds = ds.assign_coords(coords).assign(variables)
    ds["frame_time_s"].attrs.update(units="s", description="stimulus time at which the frame starts; NaN past n_frames")
    ds["frame_chunk"].attrs.update(description="model chunk the frame belongs to; -1 past n_frames")
    ds["scales"].attrs.update(description="scale each chunk was divided by before encoding (decoded audio x scale)")
    ds["chunk_frames"].attrs.update(description="frames of each chunk")
    ds["chunk_start_s"].attrs.update(units="s", description="stimulus time at which each chunk starts")
    return ds, {**attrs, **normalised_attrs(model_chunking(model), model, grid)}


def _codes_template(model, codes, layout, info, codec, grid, identity, inputs, device, n_q):
    """The codes Dataset and attributes for ``codes`` laid out by ``layout``.

    ``codes`` is the (tr, codebook, frame) int16 array, or a Dask placeholder of that shape for a
    chunk-by-chunk write (:mod:`giblet_store.batch.run`); everything else is computed here, so a
    single-process extract and a batch write the same attributes and coordinates.
    """
    import xarray as xr

    n_trs = layout.n_trs
    ds = xr.Dataset(
        {
            "codes": (("tr", "codebook", "frame"), codes.astype(np.int16, copy=False)),
            "n_frames": (("tr",), layout.n_frames.astype(np.int16)),
        },
        coords={
            "tr": np.arange(n_trs, dtype=np.int64),
            "tr_start_s": (("tr",), grid.tr_start_s(n_trs)),
            "codebook": np.arange(n_q, dtype=np.int64),
            "frame": np.arange(layout.slots, dtype=np.int64),
        },
    )
    ds["codes"].attrs.update(description="EnCodec code indices; -1 where frame >= n_frames[tr]", fill=-1)
    ds["n_frames"].attrs.update(description="real frames in each TR")
    ds["tr_start_s"].attrs.update(units="s", description="stimulus time at which the TR starts")
    attrs = {
        "source_sha256": inputs["source_sha256"],
        "duration_s": info.duration_s,
        "source_sample_rate_hz": info.sample_rate_hz,
        "source_channels": info.channels,
        **info.container_attrs(),
        "codec": "encodec",
        "model": codec.model if "model_id" in identity else Path(codec.model).name,
        **identity,
        "bandwidth_kbps": codec.bandwidth_kbps,
        "sample_rate_hz": model.sample_rate_hz,
        "hop_samples": model.hop,
        "codebook_size": model.codebook_size,
        "n_codebooks": n_q,
        "audio_channels": model.channels,
        "chunk_s": codec_chunk_s(codec),
        "context_s": codec.context_s,
        "encoder": codec.encoder,
        "device": device,
        **grid_attrs(grid, layout, model.frame_rate),
        "hrf": "none",
        "algorithm_version": ALGORITHM_VERSION,
        "inputs": inputs,
    }
    return ds, attrs


def entry_stream(store: Store, entry: Entry | str, trs=None) -> tuple[np.ndarray, Entry]:
    """The real frames of a codes entry (or a TR range of it) as one stream.

    Returns
    -------
    stream : (codebook, frame) int16
    entry : Entry
    """
    entry = store.get(entry, kind="codes", purpose="decoding to audio")
    if "chunk_stride_samples" in entry.attrs:
        raise ParameterError(
            f"entry {entry.key[:16]} holds the codes of a model that encodes in overlapping normalised chunks "
            f"({entry.attrs.get('sample_rate_hz')} Hz, {entry.attrs.get('audio_channels')} channels): they are "
            "no single frame stream; decode it with decode_entry, or read its codes, frame_chunk and scales"
        )
    ds = store.open(entry)
    sel = parse_tr_range(trs, ds.sizes["tr"])
    part = ds.isel(tr=sel)
    return from_tr(part["codes"].values, part["n_frames"].values), entry


def start_comment_of(store: Store, entry: Entry, trs, hop: int, sample_rate_hz: int) -> str:
    """The WAV comment recording where TRs ``trs`` of ``entry`` start in stimulus time (:mod:`giblet_store.audio.start`).

    Their first sample is stimulus sample ``(frames_before_grid + sum(n_frames[:A])) * hop``: the
    frames before the grid, then the real frames of the TRs before ``A``; for an entry with
    ``frame_time_s`` (the 48 kHz model) the start of the earliest frame of TR ``A`` on.
    """
    from ..audio.start import start_comment

    ds = store.open(entry)
    sel = parse_tr_range(trs, ds.sizes["tr"])
    if "frame_time_s" in ds:  # the 48 kHz model's overlapping chunks: each frame's own start
        from .codes_normalised import first_frame_sample

        return start_comment(first_frame_sample(ds, sel, sample_rate_hz), sample_rate_hz, entry.key,
                             (sel.start, sel.stop))
    first = int(entry.attrs.get("frames_before_grid", 0)) + int(ds["n_frames"].values[: sel.start].astype(np.int64).sum())
    return start_comment(first * int(hop), sample_rate_hz, entry.key, (sel.start, sel.stop))


def decode_entry(
    store: Store, entry: Entry | str, out_path: str | os.PathLike, trs=None, model: str | None = None, device: str = "cpu"
) -> Path:
    """Decode a codes entry (or a TR range) to a wav file of exactly ``frames * hop`` samples.

    ``trs`` is ``"START:STOP"``, ``(start, stop)`` or ``slice(start, stop)`` (stop exclusive).
    ``model`` defaults to the entry's own model: its hub name, or for entries made from a local
    directory the directory this machine's model registry remembers (:mod:`giblet_store.codec.registry`).
    A different model's weights give a :class:`ParameterError`.
    """
    from ..codec.stream import is_streamable, iter_decode
    from ..validate import parse_output_path

    parse_output_path(out_path, "output wav")
    entry = store.get(entry, kind="codes", purpose="decoding to audio")
    if "chunk_stride_samples" in entry.attrs:
        return _decode_normalised(store, entry, out_path, trs, model, device)
    stream, entry = entry_stream(store, entry, trs)
    codec = codec_for_entry(entry.attrs, model, device, purpose="decode")
    out = Path(out_path)
    comment = start_comment_of(store, entry, trs, codec.hop, codec.sample_rate_hz)
    if is_streamable(codec.config) is not None:
        return write_wav(out, decode_stream(codec, stream), codec.sample_rate_hz, comment)
    with wav_writer(out, codec.sample_rate_hz, codec.channels, comment) as f:  # decoder state carried: flat memory
        for piece in iter_decode(codec, prepare_codes(stream, codec.codebook_size)):
            f.write(piece.T)
    return out


def _decode_normalised(store: Store, entry: Entry, out_path, trs, model, device) -> Path:
    """:func:`decode_entry` for a normalised-chunk entry (:mod:`giblet_store.features.codes_normalised`)."""
    from .codes_normalised import iter_decode_entry

    ds = store.open(entry)
    sel = parse_tr_range(trs, ds.sizes["tr"])
    codec = codec_for_entry(entry.attrs, model, device, purpose="decode")
    pieces, _ = iter_decode_entry(codec, ds, sel)
    comment = start_comment_of(store, entry, trs, codec.hop, codec.sample_rate_hz)
    with wav_writer(out_path, codec.sample_rate_hz, codec.channels, comment) as f:
        for piece in pieces:
            f.write(piece.T)
    return Path(out_path)
