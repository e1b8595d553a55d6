"""Codes out of the store in the formats other tools read, and codes files into the store.

Formats (``fmt``; by default from the file suffix):

``ecdc``
    The facebookresearch/encodec command line's file without ``--lm`` (:mod:`giblet_store.codec.ecdc`):
    ``encodec out.ecdc out.wav`` decodes an export of a ``facebook/encodec_24khz`` entry, and of a
    ``facebook/encodec_48khz`` one (whole entries only: per model chunk its scale, then its codes).
    Entries of the 48 kHz model go out (and come in) as ``.ecdc`` only: their chunks overlap.
``acomp``
    Text: line 1 the channels, line 2 the bandwidth (kbps), then one line per time step (frame) with
    that frame's code index for each codebook, separated by spaces. On import every whitespace-
    separated integer after line 2 is read in that order, so their count must be a multiple of the
    bandwidth's codebooks.
``npy``
    The code stream, (codebook, frame) int16, as ``np.save`` writes it.
``csv`` (export only)
    One row per frame: ``frame`` (index in the source's code stream), ``time_s`` (its stimulus
    time, frame / frame rate), ``tr`` and one column per codebook ``cb0, cb1, ...``.

Exports hold the real frames of the entry or of a TR range (``trs``), never the -1 fill. An import
becomes a codes entry on a TR grid whose key covers the file's sha256, the format, the model's
weights and the grid; its ``imported_from`` attribute says where the codes came from.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np

from ..audio.load import AudioInfo
from ..bounds import check_grid_bounds
from .exchange_read import acomp_values, check_npy_extent
from ..store.hashing import HashedFile
from ..codec.encodec import DEFAULT_MODEL, CodecParams, load_codec
from ..codec.ecdc import EcdcHeader, read_ecdc, read_ecdc_segments, write_ecdc, write_ecdc_segments
from ..errors import CodesFileError, ParameterError
from .codes import _codes_template, codes_key_inputs, entry_stream
from ..store.entry import ExtractResult
from ..grid import parse_tr_range
from ..grid import TrGrid, to_tr
from ..params import content_key
from ..store.core import Entry, Store, default_encoding
from ..validate import file_name_text, parse_output_path
from ..store.verify import cache_hit

__all__ = ["EXPORT_FORMATS", "IMPORT_FORMATS", "export_codes", "import_codes"]

EXPORT_FORMATS = ("acomp", "ecdc", "npy", "csv")
IMPORT_FORMATS = ("acomp", "ecdc", "npy")
_SUFFIX = {".ecdc": "ecdc", ".acomp": "acomp", ".txt": "acomp", ".npy": "npy", ".csv": "csv"}
#: the encodec command line's names of the models it ships (sample rate, channels)
ECDC_MODELS = {(24000, 1): "encodec_24khz", (48000, 2): "encodec_48khz"}


def _format(path, fmt: str | None, allowed: tuple[str, ...]) -> str:
    fmt = fmt or _SUFFIX.get(Path(path).suffix.lower())
    if fmt not in allowed:
        what = (f"cannot tell the format of {str(path)!r}" if fmt is None
                else f"format {fmt!r} is not one of {', '.join(allowed)}")
        raise ParameterError(f"{what}; give --format {'|'.join(allowed)} (or a .{' / .'.join(allowed)} suffix)")
    return fmt


def _bits(codebook_size: int) -> int:
    return max(1, math.ceil(math.log2(int(codebook_size))))


# ------------------------------------------------------------------------------------ export
def _ecdc_bytes(attrs: dict, stream: np.ndarray, whole: bool) -> bytes:
    sr, hop = int(attrs["sample_rate_hz"]), int(attrs["hop_samples"])
    name = ECDC_MODELS.get((sr, int(attrs["audio_channels"])))
    if name != "encodec_24khz":
        raise ParameterError(f"entry {attrs['key'][:16]} is {sr} Hz, {attrs['audio_channels']} channel(s) in one "
                             "stream; the encodec command line has no such model (.ecdc names encodec_24khz or "
                             "encodec_48khz); export it as npy, acomp or csv")
    n = stream.shape[1]
    length = int(round(float(attrs["duration_s"]) * sr)) if whole else n * hop
    if -(-length // hop) != n:  # frames outside the grid were left out: the audio is the frames' span
        length = n * hop
    buf = io.BytesIO()
    write_ecdc(buf, EcdcHeader(name, length, stream.shape[0], False), stream, _bits(attrs["codebook_size"]))
    return buf.getvalue()


def _acomp_bytes(attrs: dict, stream: np.ndarray) -> bytes:
    lines = [str(int(attrs["audio_channels"])), f"{float(attrs['bandwidth_kbps']):g}"]
    lines += [" ".join(map(str, col)) for col in stream.T.tolist()]
    return ("\n".join(lines) + "\n").encode("ascii")


def _csv_bytes(store: Store, entry: Entry, stream: np.ndarray, trs) -> bytes:
    ds = store.open(entry)
    sel = parse_tr_range(trs, ds.sizes["tr"])
    n_frames = ds["n_frames"].values.astype(np.int64)
    first = int(entry.attrs.get("frames_before_grid", 0)) + int(n_frames[: sel.start].sum())
    frame = first + np.arange(stream.shape[1])
    tr = np.repeat(np.arange(sel.start, sel.stop), n_frames[sel])
    rate = float(entry.attrs["frame_rate_hz"])
    head = "frame,time_s,tr," + ",".join(f"cb{k}" for k in range(stream.shape[0]))
    rows = [f"{f},{f / rate:.6f},{t}," + ",".join(map(str, c))
            for f, t, c in zip(frame.tolist(), tr.tolist(), stream.T.tolist())]
    return ("\n".join([head, *rows]) + "\n").encode("ascii")


def export_codes(store: Store, entry: Entry | str, out_path: str | os.PathLike, fmt: str | None = None,
                 trs=None) -> Path:
    """Write the real frames of a codes entry (or of TRs ``START:STOP``) to ``out_path`` in ``fmt``.

    Parameters
    ----------
    entry : a codes entry or key (prefix)
    fmt : ``acomp``, ``ecdc``, ``npy`` or ``csv``; default from the suffix of ``out_path``
    trs : ``"START:STOP"`` or (start, stop): only these TRs' frames

    Returns
    -------
    Path written (atomically: a temporary file renamed into place).

    Raises
    ------
    ParameterError
        Not a codes entry, an unknown format, a TR range outside the entry; a 48 kHz entry in another
        format than a whole-file ``ecdc``.
    """
    out = parse_output_path(out_path, "export file")  # its folder exists: nothing fails after the work
    fmt = _format(out, fmt, EXPORT_FORMATS)
    entry = store.get(entry, kind="codes", purpose="decoding to audio")  # the wording entry_stream gives
    if "chunk_stride_samples" in entry.attrs:  # a normalised chunked model (48 kHz): segments with scales
        data = _normalised_ecdc_bytes(store, entry, fmt, trs)
    else:
        data = _stream_bytes(store, entry, fmt, trs)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    return out


def _stream_bytes(store: Store, entry: Entry, fmt: str, trs) -> bytes:
    stream, entry = entry_stream(store, entry, trs)
    if fmt == "ecdc":
        return _ecdc_bytes(entry.attrs, stream, trs is None)
    if fmt == "acomp":
        return _acomp_bytes(entry.attrs, stream)
    if fmt == "csv":
        return _csv_bytes(store, entry, stream, trs)
    buf = io.BytesIO()
    np.save(buf, stream.astype(np.int16), allow_pickle=False)
    return buf.getvalue()


def _normalised_ecdc_bytes(store: Store, entry: Entry, fmt: str, trs) -> bytes:
    """The ``.ecdc`` of a normalised-chunk entry: per chunk its scale and codes, as the encodec CLI writes."""
    from .codes_normalised import entry_chunks

    a = entry.attrs
    if fmt != "ecdc" or trs is not None:
        raise ParameterError(
            f"entry {entry.key[:16]} holds a normalised chunked model's codes ({a['sample_rate_hz']} Hz, "
            f"{a['audio_channels']} channels): overlapping chunks with per-chunk scales, which only a whole-file "
            ".ecdc holds; export it with --format ecdc and no --trs (or read codes, frame_chunk and scales)")
    name = ECDC_MODELS.get((int(a["sample_rate_hz"]), int(a["audio_channels"])))
    if name != "encodec_48khz":
        raise ParameterError(f"entry {entry.key[:16]} is {a['sample_rate_hz']} Hz, {a['audio_channels']} channel(s) "
                             "in normalised chunks; the encodec command line has no such model, so no .ecdc")
    buf = io.BytesIO()
    header = EcdcHeader(name, int(a["n_samples"]), int(a["n_codebooks"]), False)
    write_ecdc_segments(buf, header, entry_chunks(store.open(entry)), _bits(a["codebook_size"]))
    return buf.getvalue()


# ------------------------------------------------------------------------------------ import
def _bandwidth_for(codec, n_codebooks: int, name: str) -> float:
    """The model's bandwidth that uses ``n_codebooks`` codebooks."""
    for b in codec.bandwidths:
        if codec.n_codebooks(b) == n_codebooks:
            return b
    offered = ", ".join(f"{b:g} kbps = {codec.n_codebooks(b)}" for b in codec.bandwidths)
    raise CodesFileError(f"{name} holds {n_codebooks} codebooks; model {Path(codec.name).name} offers {offered}; "
                         "give the model the codes were made with (--model)")


def _read_ecdc_file(path: Path, codec, f) -> tuple[np.ndarray, float, int]:
    header, stream = read_ecdc(f, path.name, _bits(codec.codebook_size), codec.frame_rate, codec.sample_rate_hz)
    mine = ECDC_MODELS.get((codec.sample_rate_hz, codec.channels))
    if header.model != mine:
        raise CodesFileError(f"{path.name} was written by {header.model!r}; the model given is {mine or codec.name!r} "
                             f"({codec.sample_rate_hz} Hz, {codec.channels} ch). Give the matching model (--model)")
    return stream, _bandwidth_for(codec, header.n_codebooks, path.name), header.audio_length


def _read_acomp(path: Path, codec, f) -> tuple[np.ndarray, float, int]:
    try:  # ``f`` reads through the source's HashedFile: the bytes parsed are the bytes hashed
        channels, bandwidth = int(f.readline(100)), float(f.readline(100))
        values = acomp_values(f)
    except (ValueError, OverflowError) as exc:
        raise CodesFileError(f"{path.name} is not an acomp text file (line 1: channels, line 2: bandwidth in kbps, "
                             f"then integer code indices): {str(exc)[:200]}") from None
    if not math.isfinite(bandwidth):
        raise CodesFileError(f"{path.name} gives bandwidth {bandwidth:g} kbps on line 2; give the kbps the codes were "
                             "made at")
    if channels != codec.channels:
        raise CodesFileError(f"{path.name} has {channels} channel(s); model {Path(codec.name).name} has "
                             f"{codec.channels}. Give the model the codes were made with (--model)")
    n_q = codec.n_codebooks(bandwidth)
    if values.size == 0 or values.size % n_q:
        raise CodesFileError(f"{path.name} holds {values.size} code indices, not a (non-zero) multiple of the "
                             f"{n_q} codebooks of {bandwidth:g} kbps; the file is cut or damaged")
    stream = values.reshape(-1, n_q).T
    return stream, bandwidth, stream.shape[1] * codec.hop


def _read_npy(path: Path, codec, f) -> tuple[np.ndarray, float, int]:
    check_npy_extent(path)
    try:
        stream = np.load(f, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise CodesFileError(f"{path.name} is not a .npy file numpy reads ({exc})") from None
    if stream.ndim != 2 or stream.dtype.kind not in "iu" or stream.shape[1] == 0:
        raise CodesFileError(f"{path.name} holds a {stream.dtype} array of shape {stream.shape}; expected a "
                             "(codebook, frame) integer code stream")
    return stream, _bandwidth_for(codec, stream.shape[0], path.name), stream.shape[1] * codec.hop


_READERS = {"ecdc": _read_ecdc_file, "acomp": _read_acomp, "npy": _read_npy}


def _hashed_read(path: Path, read):
    """``(read(f), sha256)``: ``f`` reads the file through a :class:`HashedFile`, so the sha256 in the key
    covers exactly the bytes parsed; a file rewritten meanwhile raises :class:`SourceChangedError`."""
    with HashedFile(path) as source:
        try:
            with source.open() as f:
                out = read(f)
        except Exception:
            source.raise_if_changed()  # a parse error on changed bytes: say that, not "damaged"
            raise
        source.raise_if_changed()
    return out, source.sha256


def _check_values(stream: np.ndarray, codebook_size: int, name: str) -> np.ndarray:
    if stream.min() < 0 or stream.max() >= codebook_size:
        raise CodesFileError(f"{name} holds code values {int(stream.min())}..{int(stream.max())}; codes of this "
                             f"model lie in 0..{codebook_size - 1}. Give the model the codes were made with")
    return stream.astype(np.int16)


def import_codes(store: Store, path: str | os.PathLike, model: str = DEFAULT_MODEL, grid: TrGrid | None = None,
                 fmt: str | None = None, device: str = "cpu") -> ExtractResult:
    """Make a codes entry on ``grid`` from a codes file (or return the entry it already made).

    Parameters
    ----------
    path : ``.ecdc`` (no --lm), acomp text or ``.npy`` (codebook, frame) file
    model : hub name or save_pretrained directory of the model that made the codes (its codebook count
        per bandwidth and weights identify the entry; decoding uses it)
    grid : TrGrid (default 1.5 s TR); fmt : ``ecdc``, ``acomp`` or ``npy`` (default from the suffix)

    Raises
    ------
    CodesFileError, ParameterError, ModelError
        Before anything is written: a file that is not its format, codes the model cannot have made.
    """
    path = Path(path)
    fmt = _format(path, fmt, IMPORT_FORMATS)
    if not path.is_file():
        raise CodesFileError(f"codes file {str(path)!r} does not exist or is not a file; check the path")
    grid = grid or TrGrid()
    codec = load_codec(model, None, device)
    if codec.config.chunk_length_s is not None:
        return _import_normalised(store, path, model, codec, grid, fmt, device)
    (stream, bandwidth, length), sha = _hashed_read(path, lambda f: _READERS[fmt](path, codec, f))
    sr = codec.sample_rate_hz
    check_grid_bounds(grid, length / sr, codec.frame_rate, 2 * stream.shape[0], what=repr(str(path)))
    stream = _check_values(stream, codec.codebook_size, path.name)
    params = CodecParams(model=model, bandwidth_kbps=bandwidth, chunk_s=length / sr, context_s=0.0)
    inputs = {**codes_key_inputs(sha, params, grid, codec.identity), "imported_format": fmt}
    key = content_key(inputs)
    if (hit := cache_hit(store, key, "codes")) is not None:
        return ExtractResult(hit, False, str(path))
    layout = grid.layout(stream.shape[1], codec.frame_rate)
    info = AudioInfo(str(path), sr, codec.channels, length)
    ds, attrs = _codes_template(codec, to_tr(stream, layout, fill=-1), layout, info, params, grid, codec.identity,
                                inputs, device, stream.shape[0])
    attrs["source_name"] = file_name_text(path)
    attrs["imported_from"] = {"format": fmt, "source_name": file_name_text(path), "source_sha256": sha}
    entry, created = store.write(ds, {**attrs, "kind": "codes", "key": key}, default_encoding(ds))
    return ExtractResult(entry, created, str(path))


def _import_normalised(store: Store, path: Path, model: str, codec, grid: TrGrid, fmt: str, device: str):
    """:func:`import_codes` of an ``.ecdc`` of a normalised chunked model (the 48 kHz one)."""
    from .codes import _normalised_template
    from .codes_normalised import lay_chunks
    from ..codec.normalised import config_chunking, model_chunking

    mine = ECDC_MODELS.get((codec.sample_rate_hz, codec.channels))
    if fmt != "ecdc":
        raise CodesFileError(f"model {Path(codec.name).name} encodes in normalised chunks with per-chunk scales, "
                             f"which a .{fmt} file does not hold; import an .ecdc written for it")
    ch = model_chunking(codec)
    (header, segments), sha = _hashed_read(path, lambda f: read_ecdc_segments(
        f, path.name, _bits(codec.codebook_size), ch.hop, ch.length, ch.stride))
    if header.model != mine:
        raise CodesFileError(f"{path.name} was written by {header.model!r}; the model given is {mine or codec.name!r} "
                             f"({codec.sample_rate_hz} Hz, {codec.channels} ch). Give the matching model (--model)")
    bandwidth = _bandwidth_for(codec, header.n_codebooks, path.name)
    check_grid_bounds(grid, header.audio_length / codec.sample_rate_hz, codec.frame_rate, 2 * header.n_codebooks,
                      what=repr(str(path)))
    parts = [_check_values(c, codec.codebook_size, path.name) for c, _ in segments]
    chunking = config_chunking(model)
    params = CodecParams(model=model, bandwidth_kbps=bandwidth, chunk_s=chunking["chunk_length_s"], context_s=0.0,
                         encoder="model_chunks")
    inputs = {**codes_key_inputs(sha, params, grid, codec.identity, None, chunking), "imported_format": fmt}
    key = content_key(inputs)
    if (hit := cache_hit(store, key, "codes")) is not None:
        return ExtractResult(hit, False, str(path))
    laid = lay_chunks(parts, [s for _, s in segments], ch, grid)
    info = AudioInfo(str(path), codec.sample_rate_hz, codec.channels, header.audio_length)
    ds, attrs = _normalised_template(codec, laid, info, params, grid, codec.identity, inputs, device, len(parts[0]))
    attrs.update(source_name=file_name_text(path), n_samples=header.audio_length,
                 imported_from={"format": fmt, "source_name": file_name_text(path), "source_sha256": sha})
    entry, created = store.write(ds, {**attrs, "kind": "codes", "key": key}, default_encoding(ds))
    return ExtractResult(entry, created, str(path))
