"""The ``.ecdc`` file of the facebookresearch/encodec command line, without its language model (``--lm``).

Layout (big-endian header, then the codes):

- ``b"ECDC"``, a uint8 protocol version (0), a uint32 length, then that many bytes of UTF-8 JSON:
  ``{"m": model name ("encodec_24khz" / "encodec_48khz"), "al": audio length in samples,
  "nc": codebooks, "lm": false}``;
- per segment of the model's chunking (the 24 kHz model has one segment: the whole file), a big-endian
  float32 scale when the model normalises (48 kHz), then the segment's ``ceil(len * frame_rate /
  sample_rate)`` frames' codes bit-packed: frame by frame, codebook by codebook, each code
  ``log2(codebook_size)`` bits (10), least significant bit first, the last byte zero-padded.

Here the codes are packed and unpacked with numpy in one pass (a film's stream is a few MB).
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from ..errors import CodesFileError, ParameterError

__all__ = ["ECDC_MAGIC", "ECDC_VERSION", "EcdcHeader", "pack_codes", "unpack_codes", "write_ecdc", "read_ecdc",
           "write_ecdc_segments", "read_ecdc_segments"]

ECDC_MAGIC = b"ECDC"
ECDC_VERSION = 0
_HEADER = struct.Struct("!4sBI")


@dataclass(frozen=True)
class EcdcHeader:
    """The JSON header: model name, audio length (samples), codebooks, language-model flag."""

    model: str
    audio_length: int
    n_codebooks: int
    use_lm: bool = False

    def to_json(self) -> dict:
        return {"m": self.model, "al": self.audio_length, "nc": self.n_codebooks, "lm": self.use_lm}


def pack_codes(codes: np.ndarray, bits: int) -> bytes:
    """(codebook, frame) ints in [0, 2**bits) -> bytes, frame-major, ``bits`` each, LSB first."""
    values = np.ascontiguousarray(np.asarray(codes).T).ravel().astype(np.uint32)
    if values.size and int(values.max()) >= 1 << bits:
        raise ParameterError(f"a code value {int(values.max())} does not fit in {bits} bits")
    bitarr = ((values[:, None] >> np.arange(bits, dtype=np.uint32)) & 1).astype(np.uint8).ravel()
    return np.packbits(bitarr, bitorder="little").tobytes()


def unpack_codes(data: bytes, bits: int, n_codebooks: int, n_frames: int) -> np.ndarray:
    """Inverse of :func:`pack_codes`: (codebook, frame) int32."""
    n = n_codebooks * n_frames
    bitarr = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")[: n * bits]
    values = (bitarr.reshape(n, bits).astype(np.uint32) << np.arange(bits, dtype=np.uint32)).sum(axis=1)
    return values.reshape(n_frames, n_codebooks).T.astype(np.int32)


def write_ecdc(fo: BinaryIO, header: EcdcHeader, codes: np.ndarray, bits: int) -> None:
    """Write one segment (models without normalisation: the 24 kHz model) of ``codes`` (codebook, frame)."""
    meta = json.dumps(header.to_json()).encode("utf-8")
    fo.write(_HEADER.pack(ECDC_MAGIC, ECDC_VERSION, len(meta)))
    fo.write(meta)
    fo.write(pack_codes(codes, bits))


def _read_header(fo: BinaryIO, name: str) -> EcdcHeader:
    raw = fo.read(_HEADER.size)
    if len(raw) < _HEADER.size:
        raise CodesFileError(f"{name} is {len(raw)} bytes long, too short for an .ecdc header; not an EnCodec file")
    magic, version, size = _HEADER.unpack(raw)
    if magic != ECDC_MAGIC:
        raise CodesFileError(f"{name} starts with {magic!r}, not the .ecdc magic {ECDC_MAGIC!r}; give a file written "
                        "by `encodec` or `giblet-store export --format ecdc`")
    if version != ECDC_VERSION:
        raise CodesFileError(f"{name} is .ecdc protocol version {version}; this reader knows version {ECDC_VERSION} "
                        "only. Re-export it with the encodec command line of facebookresearch/encodec")
    try:
        meta = json.loads(fo.read(size).decode("utf-8"))
        h = EcdcHeader(str(meta["m"])[:100], int(meta["al"]), int(meta["nc"]), bool(meta["lm"]))
    except RecursionError:
        raise CodesFileError(f"{name} has a damaged .ecdc header (JSON nested too deeply; the encodec header is one "
                             "flat object); re-export it") from None
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, OverflowError) as exc:
        # OverflowError: "al": Infinity (json reads it as a float)
        raise CodesFileError(f"{name} has a damaged .ecdc header ({type(exc).__name__}: {str(exc)[:200]}); "
                             "re-export it") from None
    if h.use_lm:
        raise CodesFileError(f"{name} was written with the language model (`encodec --lm`): its codes are entropy "
                        "coded. Decode it with `encodec` and re-encode, or compress without --lm")
    if h.audio_length <= 0 or h.n_codebooks <= 0:
        raise CodesFileError(f"{name} declares {h.audio_length} samples and {h.n_codebooks} codebooks; nothing to read")
    return h


def read_ecdc(fo: BinaryIO, name: str, bits: int, frame_rate: float, sample_rate_hz: int) -> tuple[EcdcHeader, np.ndarray]:
    """Read an ``.ecdc`` of a model without normalisation (one segment).

    Returns
    -------
    header : EcdcHeader
    codes : (codebook, frame) int32, ``ceil(al * frame_rate / sample_rate)`` frames

    Raises
    ------
    CodesFileError
        Another magic or version, the language-model variant, a damaged header, or too few / too many bytes.
    """
    h = _read_header(fo, name)
    n_frames = math.ceil(h.audio_length * frame_rate / sample_rate_hz)
    need = math.ceil(h.n_codebooks * n_frames * bits / 8)
    data = fo.read()
    if len(data) != need:
        raise CodesFileError(
            f"{name} holds {len(data)} bytes of codes but its header ({h.n_codebooks} codebooks, {h.audio_length} "
            f"samples = {n_frames} frames of {bits}-bit codes) needs {need}; the file is "
            f"{'truncated' if len(data) < need else 'not one segment of this model'}")
    return h, unpack_codes(data, bits, h.n_codebooks, n_frames)


_SCALE = struct.Struct("!f")


def write_ecdc_segments(fo: BinaryIO, header: EcdcHeader, segments, bits: int) -> None:
    """Write a normalising model's file: per segment its big-endian float32 scale, then its packed codes.

    ``segments``: [(codes (codebook, frame) int, scale float32)] in the model's chunk order; each segment's
    codes end on a byte boundary (the encodec command line flushes its bit packer per segment).
    """
    meta = json.dumps(header.to_json()).encode("utf-8")
    fo.write(_HEADER.pack(ECDC_MAGIC, ECDC_VERSION, len(meta)))
    fo.write(meta)
    for codes, scale in segments:
        fo.write(_SCALE.pack(float(scale)))
        fo.write(pack_codes(codes, bits))


def read_ecdc_segments(fo: BinaryIO, name: str, bits: int, hop: int, length: int, stride: int):
    """Read a normalising model's ``.ecdc`` (segments of ``length`` samples every ``stride``).

    Returns
    -------
    header : EcdcHeader
    segments : [(codes (codebook, frame) int32, scale float32)], ``ceil(len / hop)`` frames each

    Raises
    ------
    CodesFileError
        Another magic or version, the language-model variant, a damaged header, too few / too many bytes.
    """
    h = _read_header(fo, name)
    data = fo.read()
    segments, at = [], 0
    for offset in range(0, h.audio_length, stride):
        n_frames = -(-min(h.audio_length - offset, length) // hop)
        need = _SCALE.size + math.ceil(h.n_codebooks * n_frames * bits / 8)
        if at + need > len(data):
            raise CodesFileError(f"{name} ends in segment {len(segments)} (byte {len(data)} of the codes, "
                                 f"{at + need} needed for {h.audio_length} samples); the file is truncated")
        (scale,) = _SCALE.unpack(data[at : at + _SCALE.size])
        if not (math.isfinite(scale) and scale > 0):  # decoding multiplies by it: NaN/inf/0/-x audio
            raise CodesFileError(f"{name}: segment {len(segments)} has scale {scale:g}; a normalising model's scale "
                                 "is the segment's positive, finite loudness. The file is damaged: re-export it "
                                 "with the encodec command line")
        codes = unpack_codes(data[at + _SCALE.size : at + need], bits, h.n_codebooks, n_frames)
        segments.append((codes, np.float32(scale)))
        at += need
    if at != len(data):
        raise CodesFileError(f"{name} holds {len(data) - at} bytes after its last segment; it is not one file of "
                             f"this model's chunking ({length} samples every {stride})")
    return h, segments
