"""Audio file -> codes entry, and codes entry -> audio file.

``extract_codes`` is the main job: hash the source, build the key from every input, return the
entry if it exists (no model run), else load+resample, encode lazily in chunks (one Dask task per
chunk), lay the stream on the TR grid and write the entry through the store's staging.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .audio import audio_info, load_audio, sha256_file
from .codec import CodecParams, codec_for_entry, decode_stream, load_codec, model_identity, prepare_codes
from .errors import AudioError, ParameterError
from .grid import TrGrid, from_tr, grid_attrs, to_tr
from .params import ALGORITHM_VERSION, content_key
from .schema import FORMAT_VERSION
from .store import Entry, Store, default_encoding

#: inputs longer than this are resampled into a temporary memory-mapped file instead of RAM
MEMMAP_ABOVE_S = 60.0

__all__ = ["ExtractResult", "codes_key_inputs", "extract_codes", "decode_entry", "entry_stream"]


@dataclass(frozen=True)
class ExtractResult:
    """One extracted input: the entry and whether it was made now (False: cache hit)."""

    entry: Entry
    created: bool
    source: str


def codes_key_inputs(source_sha256: str, codec: CodecParams, grid: TrGrid, identity: dict) -> dict[str, Any]:
    """Everything that determines a codes entry's bytes: hashed into its key, stored as ``inputs``."""
    codec_d = codec.to_dict()
    codec_d.pop("model")  # the name/path is not identity: the weights are (identity below)
    codec_d.pop("revision")
    if codec_d.get("encoder") == "stream":  # no left context is recomputed; chunk_s can still flip an argmin tie
        codec_d.pop("context_s")
    return {
        "kind": "codes",
        "algorithm_version": ALGORITHM_VERSION,
        "format_version": FORMAT_VERSION,
        "source_sha256": source_sha256,
        "codec": {**codec_d, **identity},
        "grid": grid.to_dict(),
    }


def extract_codes(
    store: Store,
    audio_path: str | os.PathLike,
    codec: CodecParams | None = None,
    grid: TrGrid | None = None,
    device: str = "cpu",
    scheduler: Any = "threads",
) -> ExtractResult:
    """Extract EnCodec codes of ``audio_path`` on ``grid`` into ``store`` (or return the cached entry).

    Parameters
    ----------
    store : Store
    audio_path : path to wav/flac/ogg
    codec : CodecParams (default: facebook/encodec_24khz, 6 kbps, stream encoder in 10 s pieces)
    grid : TrGrid (default: 1.5 s TR, onset 0, as many TRs as the audio fills)
    device : torch device for the encoder (recorded in attributes, not in the key)
    scheduler : Dask scheduler for the chunk tasks ("threads", "sync", or a distributed Client)

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
    info = audio_info(audio_path)  # missing / not audio / empty: fail before any model work
    source_sha = sha256_file(audio_path)
    identity = model_identity(codec.model, codec.revision)
    inputs = codes_key_inputs(source_sha, codec, grid, identity)
    key = content_key(inputs)
    if (hit := store.lookup(key, "codes")) is not None:
        return ExtractResult(hit, False, str(audio_path))

    model = load_codec(codec.model, codec.revision, device)
    n_q = model.n_codebooks(codec.bandwidth_kbps)  # unsupported bandwidth: error before reading audio
    if codec.encoder == "stream":
        from .stream import _check_streamable

        _check_streamable(model, "encoder")  # a non-causal model: error before reading audio
    with tempfile.TemporaryDirectory(prefix="giblet_audio_") as tmp:
        # long inputs are resampled into a file-backed memory map: RSS does not grow with length
        out = os.path.join(tmp, "audio.npy") if info.duration_s > MEMMAP_ABOVE_S else None
        audio, info = load_audio(audio_path, model.sample_rate_hz, model.channels, out=out)
        result = _encode_and_write(store, audio, info, audio_path, model, codec, grid, identity, inputs,
                                   key, device, scheduler, n_q)
        del audio
    return result


def _encode_and_write(store, audio, info, audio_path, model, codec, grid, identity, inputs, key, device,
                      scheduler, n_q) -> ExtractResult:
    if audio.shape[-1] < model.hop:
        raise AudioError(
            f"{str(audio_path)!r} is {info.duration_s * 1000:.2f} ms long, shorter than one EnCodec hop "
            f"({model.hop} samples = {1000 * model.hop / model.sample_rate_hz:.1f} ms); nothing to encode"
        )
    ds, attrs = _codes_dataset(model, audio, info, codec, grid, identity, inputs, device, scheduler, n_q)
    attrs["source_name"] = Path(audio_path).name
    entry, created = store.write(ds, {**attrs, "kind": "codes", "key": key}, default_encoding(ds))
    return ExtractResult(entry, created, str(audio_path))


def _codes_dataset(model, audio, info, codec, grid, identity, inputs, device, scheduler, n_q):
    import dask

    from .codec import encode_stream

    if codec.encoder == "stream":  # one pass with carried state, one chunk in memory (giblet_store.stream)
        from .stream import stream_encode

        stream = stream_encode(model, audio, codec.bandwidth_kbps, codec.chunk_s)
    else:
        stream = encode_stream(model, audio, codec)
        with dask.config.set(scheduler=scheduler) if isinstance(scheduler, str) else _client_ctx(scheduler):
            stream = np.asarray(stream.compute())
    layout = grid.layout(stream.shape[-1], model.frame_rate)
    codes = to_tr(stream, layout, fill=-1)
    return _codes_template(model, codes, layout, info, codec, grid, identity, inputs, device, n_q)


def _codes_template(model, codes, layout, info, codec, grid, identity, inputs, device, n_q):
    """The codes Dataset and attributes for ``codes`` laid out by ``layout``.

    ``codes`` is the (tr, codebook, frame) int16 array, or a Dask placeholder of that shape for a
    chunk-by-chunk write (:mod:`giblet_store.distributed`); everything else is computed here, so a
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
        "codec": "encodec",
        "model": codec.model if "model_id" in identity else Path(codec.model).name,
        **identity,
        "bandwidth_kbps": codec.bandwidth_kbps,
        "sample_rate_hz": model.sample_rate_hz,
        "hop_samples": model.hop,
        "codebook_size": model.codebook_size,
        "n_codebooks": n_q,
        "audio_channels": model.channels,
        "chunk_s": codec.chunk_s,
        "context_s": codec.context_s,
        "encoder": codec.encoder,
        "device": device,
        **grid_attrs(grid, layout, model.frame_rate),
        "hrf": "none",
        "algorithm_version": ALGORITHM_VERSION,
        "inputs": inputs,
    }
    return ds, attrs


class _client_ctx:
    """Run ``compute`` on a distributed Client given as scheduler."""

    def __init__(self, client):
        self.client = client

    def __enter__(self):
        import dask

        self._cm = dask.config.set(scheduler=self.client.get if hasattr(self.client, "get") else self.client)
        return self._cm.__enter__()

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


def _parse_trs(trs, n_trs: int) -> slice:
    if trs is None:
        return slice(0, n_trs)
    if isinstance(trs, str):
        try:
            a, _, b = trs.partition(":")
            trs = (int(a) if a.strip() else 0, int(b) if b.strip() else n_trs)
        except ValueError:
            raise ParameterError(f"TR range {trs!r} is not START:STOP with integers (e.g. 10:20)") from None
    start, stop = trs
    if start < 0 or stop > n_trs or start >= stop:
        raise ParameterError(
            f"TR range {start}:{stop} is outside the entry's TRs 0:{n_trs} (or empty); give 0 <= START < STOP <= {n_trs}"
        )
    return slice(start, stop)


def entry_stream(store: Store, entry: Entry | str, trs=None) -> tuple[np.ndarray, Entry]:
    """The real frames of a codes entry (or a TR range of it) as one stream.

    Returns
    -------
    stream : (codebook, frame) int16
    entry : Entry
    """
    entry = store.get(entry)
    if entry.kind != "codes":
        raise ParameterError(f"entry {entry.key[:16]} is a {entry.kind!r} entry; decoding to audio needs a codes entry")
    ds = store.open(entry)
    sel = _parse_trs(trs, ds.sizes["tr"])
    part = ds.isel(tr=sel)
    return from_tr(part["codes"].values, part["n_frames"].values), entry


def decode_entry(
    store: Store, entry: Entry | str, out_path: str | os.PathLike, trs=None, model: str | None = None, device: str = "cpu"
) -> Path:
    """Decode a codes entry (or TRs ``START:STOP``) to a wav file of exactly ``frames * hop`` samples.

    ``model`` defaults to the entry's own model (hub name); for entries made from a local directory
    give that directory. A different model's weights give a :class:`ParameterError`.
    """
    import soundfile as sf

    from .stream import is_streamable, iter_decode

    stream, entry = entry_stream(store, entry, trs)
    codec = codec_for_entry(entry.attrs, model, device, purpose="decode")
    out = Path(out_path)
    tmp = out.with_name(out.name + ".tmp")
    try:
        if is_streamable(codec.config) is None:  # carried decoder state, written piece by piece: flat memory
            with sf.SoundFile(str(tmp), "w", codec.sample_rate_hz, codec.channels, subtype="FLOAT", format="WAV") as f:
                for piece in iter_decode(codec, prepare_codes(stream, codec.codebook_size)):
                    f.write(piece.T)
        else:
            sf.write(str(tmp), decode_stream(codec, stream).T, codec.sample_rate_hz, subtype="FLOAT", format="WAV")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, out)
    return out
