"""The .ecdc reader refuses what it cannot decode to finite audio (issue 21 items 8 and the unclean list)."""

from __future__ import annotations

import io
import math
import struct

import numpy as np
import pytest

from giblet_store.codec.ecdc import EcdcHeader, read_ecdc, read_ecdc_segments, write_ecdc_segments
from giblet_store.errors import CodesFileError

HOP, LENGTH, STRIDE, BITS = 320, 48000, 47520, 10  # the 48 kHz model's chunking


def _segments_file(scales) -> bytes:
    buf, al = io.BytesIO(), STRIDE * len(scales)
    frames = [-(-min(al - k * STRIDE, LENGTH) // HOP) for k in range(len(scales))]
    segments = [(np.ones((4, n), np.int32), np.float32(s)) for n, s in zip(frames, scales)]
    write_ecdc_segments(buf, EcdcHeader("encodec_48khz", al, 4), segments, BITS)
    return buf.getvalue()


def test_finite_positive_scales_are_read_back():
    h, segments = read_ecdc_segments(io.BytesIO(_segments_file([0.5, 1e-8])), "a.ecdc", BITS, HOP, LENGTH, STRIDE)
    assert [float(s) for _, s in segments] == pytest.approx([0.5, 1e-8])


@pytest.mark.parametrize("bad", [math.nan, math.inf, 0.0, -0.25])
def test_a_scale_that_decodes_to_nan_or_silence_is_refused(bad):
    data = _segments_file([0.5, bad])
    with pytest.raises(CodesFileError) as err:
        read_ecdc_segments(io.BytesIO(data), "a.ecdc", BITS, HOP, LENGTH, STRIDE)
    assert "a.ecdc: segment 1 has scale" in str(err.value) and "re-export" in str(err.value)


@pytest.mark.parametrize("meta, wanted", [
    (b'{"m": "encodec_24khz", "al": Infinity, "nc": 2, "lm": false}', "OverflowError"),
    (b"[" * 50_000 + b"]" * 50_000, "nested too deeply"),
])
def test_a_header_json_python_cannot_hold_is_a_damaged_header(meta, wanted):
    data = struct.pack("!4sBI", b"ECDC", 0, len(meta)) + meta + bytes(25)
    with pytest.raises(CodesFileError) as err:
        read_ecdc(io.BytesIO(data), "h.ecdc", BITS, 75.0, 24000)
    assert "h.ecdc has a damaged .ecdc header" in str(err.value) and wanted in str(err.value)
