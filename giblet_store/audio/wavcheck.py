"""Checks on an audio file before it is decoded: readable by this user, and (WAV) not truncated.

libsndfile quietly accepts a WAV whose ``data`` chunk is shorter than its header says (a copy cut
off mid-transfer) and reports the samples that are there, so a truncated stimulus would be encoded
as if complete and its TR grid silently shortened. :func:`check_wav_complete` compares the header
with the file's size and refuses the file instead.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from ..errors import AudioError

__all__ = ["check_readable", "check_wav_complete", "wav_data_chunk", "ogg_links", "check_ogg_single"]


def check_readable(path: Path) -> None:
    """Open ``path`` for reading, or raise :class:`AudioError` saying permission is denied.

    A pipe, socket or device is refused before it is opened (reading a FIFO waits for a writer forever).
    """
    if Path(path).exists() and not Path(path).is_dir() and not Path(path).is_file():
        raise AudioError(f"{str(path)!r} is not a regular file (a pipe, socket or device); expected an audio file. "
                         "Save the stream to a file first")
    try:
        with open(path, "rb") as f:
            f.read(1)
    except PermissionError:
        raise AudioError(
            f"cannot read audio file {str(path)!r}: permission denied; make it readable (chmod a+r) or copy it "
            "somewhere you can read"
        ) from None
    except IsADirectoryError:
        raise AudioError(f"{str(path)!r} is a directory; expected an audio file (wav, flac, ogg)") from None


def wav_data_chunk(path: Path) -> tuple[int, int, int] | None:
    """``(data offset, declared data bytes, bytes per frame)`` of a RIFF/WAVE file, or None if not one.

    In an RF64/BW64 file the ``data`` chunk's size is 0xFFFFFFFF and the real (64-bit) one is in ``ds64``.
    """
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64", b"BW64") or head[8:12] != b"WAVE":
            return None
        block_align = ds64_data = None
        while True:
            hdr = f.read(8)
            if len(hdr) < 8:
                return None
            cid, size = hdr[:4], struct.unpack("<I", hdr[4:])[0]
            if cid == b"ds64" and head[:4] != b"RIFF":
                body = f.read(size + (size & 1))
                if len(body) >= 16:
                    ds64_data = struct.unpack("<Q", body[8:16])[0]
                continue
            if cid == b"data" and size == 0xFFFFFFFF and ds64_data is not None:
                return f.tell(), ds64_data, block_align or 0
            if cid == b"fmt ":
                fmt = f.read(size + (size & 1))
                if len(fmt) >= 14:
                    block_align = struct.unpack("<H", fmt[12:14])[0]
                continue
            if cid == b"data":
                return f.tell(), size, block_align or 0
            f.seek(size + (size & 1), os.SEEK_CUR)


def check_wav_complete(path: Path, sample_rate_hz: int) -> None:
    """Refuse a WAV whose ``data`` chunk is shorter on disk than its header declares.

    Raises
    ------
    AudioError
        Naming the declared and present durations.
    """
    try:
        found = wav_data_chunk(path)
    except OSError:
        return
    if found is None:
        return
    offset, declared, align = found
    if declared in (0, 0xFFFFFFFF) or align <= 0:  # streaming writers leave the size unset (RF64: ds64 holds it)
        return
    present = os.path.getsize(path) - offset
    if present < declared:
        sr = max(int(sample_rate_hz), 1)
        raise AudioError(
            f"{str(path)!r} is truncated: its WAV header declares {declared // align} samples "
            f"({declared // align / sr:.3f} s) but the file holds {present // align} ({present // align / sr:.3f} s); "
            "the copy was cut short. Copy or export the file again"
        )


def ogg_links(path: Path) -> int:
    """How many logical streams of a (single-stream) Ogg file follow one another (1 unless chained).

    A chained Ogg (``cat a.ogg b.ogg``) starts a new logical stream (a page with the
    beginning-of-stream flag) after pages of the previous one; libsndfile reads only the first.
    Pages are walked by their headers (27 bytes + segment table); their bodies are skipped.
    """
    links, in_body, pos = 0, True, 0
    with open(path, "rb") as f:
        while True:
            f.seek(pos)
            head = f.read(27)
            if len(head) < 27 or head[:4] != b"OggS":
                return max(links, 1)
            table = f.read(head[26])
            bos = bool(head[5] & 0x02)
            if bos and in_body:  # a beginning-of-stream page after data pages (or the first): a new link
                links += 1
            in_body = not bos
            pos += 27 + head[26] + sum(table)


def check_ogg_single(path: Path, fmt: str) -> None:
    """Refuse a chained Ogg file for soundfile, which would decode only its first part (silently truncated)."""
    if fmt != "OGG":
        return
    try:
        n = ogg_links(path)
    except OSError:
        return
    if n > 1:
        raise AudioError(
            f"{str(path)!r} is a chained Ogg file: {n} streams one after another (files joined end to end, e.g. "
            "with cat), which soundfile would read only the first of, silently dropping the rest. Decode every "
            "part and write the audio as one stream (e.g. one flac or wav file)"
        )
