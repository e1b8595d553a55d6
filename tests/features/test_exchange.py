"""Exports (ecdc, acomp, npy, csv) and imports: the .ecdc layout, bit-exact round trips, provenance, bad files."""

import json
import re
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from giblet_store import CodecParams, TrGrid, extract_codes, open_store
from giblet_store.store.hashing import sha256_file
from giblet_store.cli import main
from giblet_store.codec.ecdc import pack_codes, unpack_codes
from giblet_store.features.exchange import export_codes, import_codes
from giblet_store.features.codes import entry_stream

from helpers import snapshot
from hypothesis_profiles import budget  # a test's example budget, scaled by the profile


def _reference_pack(values, bits):
    """The encodec CLI's packer, spelled out: LSB first, whole bytes as soon as they fill, last one padded."""
    out, cur, n = bytearray(), 0, 0
    for v in values:
        cur += v << n
        n += bits
        while n >= 8:
            out.append(cur & 0xFF)
            cur >>= 8
            n -= 8
    if n:
        out.append(cur)
    return bytes(out)


def test_packing_matches_the_layout_by_hand():
    # codebook 0 then 1 of frame 0, then of frame 1: values 1, 2, 1023, 0 at 10 bits
    codes = np.array([[1, 1023], [2, 0]])
    assert pack_codes(codes, 10) == bytes([0x01, 0x08, 0xF0, 0x3F, 0x00])
    np.testing.assert_array_equal(unpack_codes(pack_codes(codes, 10), 10, 2, 2), codes)


@settings(budget(40), deadline=None)
@given(st.integers(1, 16), st.integers(1, 4), st.integers(1, 30), st.data())
def test_packing_equals_the_reference_packer(bits, n_q, n_frames, data):
    values = data.draw(st.lists(st.integers(0, (1 << bits) - 1), min_size=n_q * n_frames, max_size=n_q * n_frames))
    codes = np.array(values, dtype=np.int64).reshape(n_frames, n_q).T
    packed = pack_codes(codes, bits)
    assert packed == _reference_pack(values, bits)
    np.testing.assert_array_equal(unpack_codes(packed, bits, n_q, n_frames), codes)


@pytest.fixture(scope="module")
def made(tmp_path_factory, tone_wav, model_dir):
    """A store with one 1.5 kbps codes entry (2 codebooks: 20 bits per frame, not whole bytes)."""
    store = open_store(tmp_path_factory.mktemp("x") / "store")
    entry = extract_codes(store, tone_wav, CodecParams(str(model_dir), 1.5), TrGrid(1.5)).entry
    return store, entry


def test_ecdc_header_and_body_are_the_encodec_layout(made, tmp_path):
    store, entry = made
    out = export_codes(store, entry, tmp_path / "a.ecdc")
    data = out.read_bytes()
    magic, version, size = struct.unpack("!4sBI", data[:9])
    meta = json.loads(data[9 : 9 + size])
    assert (magic, version) == (b"ECDC", 0)
    assert meta == {"m": "encodec_24khz", "al": 240000, "nc": 2, "lm": False}  # 10 s at 24 kHz
    stream, _ = entry_stream(store, entry)
    assert stream.shape == (2, 750)
    assert data[9 + size :] == _reference_pack(stream.T.ravel().tolist(), 10)


@pytest.mark.parametrize("fmt", ["ecdc", "acomp", "npy"])
def test_round_trip_is_bit_exact_with_provenance(made, tmp_path, model_dir, fmt):
    store, entry = made
    out = export_codes(store, entry, tmp_path / f"codes.{fmt}")
    r = import_codes(store, out, model=str(model_dir), grid=TrGrid(1.5))
    assert r.created and r.entry.key != entry.key
    a, b = store.open(entry), store.open(r.entry)
    np.testing.assert_array_equal(a["codes"].values, b["codes"].values)
    np.testing.assert_array_equal(a["n_frames"].values, b["n_frames"].values)
    attrs = r.entry.attrs
    assert attrs["imported_from"] == {"format": fmt, "source_name": out.name, "source_sha256": sha256_file(out)}
    assert attrs["source_sha256"] == sha256_file(out) and attrs["inputs"]["imported_format"] == fmt
    assert attrs["bandwidth_kbps"] == 1.5 and attrs["n_codebooks"] == 2 and attrs["duration_s"] == 10.0
    again = export_codes(store, r.entry, tmp_path / f"again.{fmt}")
    if fmt != "npy":
        assert again.read_bytes() == out.read_bytes()
    assert import_codes(store, out, model=str(model_dir), grid=TrGrid(1.5)).created is False


def test_tr_range_export_and_acomp_text(made, tmp_path):
    store, entry = made
    part, _ = entry_stream(store, entry, "2:5")
    out = export_codes(store, entry, tmp_path / "p.acomp", trs="2:5")
    lines = out.read_text().splitlines()
    assert lines[:2] == ["1", "1.5"] and len(lines) == 2 + part.shape[1]
    assert lines[2] == f"{part[0, 0]} {part[1, 0]}"
    ecdc = export_codes(store, entry, tmp_path / "p.ecdc", trs="2:5").read_bytes()
    size = struct.unpack("!4sBI", ecdc[:9])[2]
    assert json.loads(ecdc[9 : 9 + size])["al"] == part.shape[1] * 320
    np.testing.assert_array_equal(np.load(export_codes(store, entry, tmp_path / "p.npy", trs="2:5")), part)


def test_csv_rows_carry_frame_time_and_tr(made, tmp_path):
    store, entry = made
    rows = (export_codes(store, entry, tmp_path / "c.csv", trs="1:3").read_text().splitlines())
    n = store.open(entry)["n_frames"].values
    assert rows[0] == "frame,time_s,tr,cb0,cb1" and len(rows) == 1 + n[1] + n[2]
    frame, time_s, tr = rows[1].split(",")[:3]
    assert (int(frame), int(tr)) == (n[0], 1) and float(time_s) == pytest.approx(n[0] / 75, abs=1e-6)
    assert rows[-1].split(",")[2] == "2"


def _ecdc(header: dict, body: bytes, magic=b"ECDC", version=0) -> bytes:
    meta = json.dumps(header).encode()
    return struct.pack("!4sBI", magic, version, len(meta)) + meta + body


def _ecdc_raw(meta: bytes, body: bytes) -> bytes:
    return struct.pack("!4sBI", b"ECDC", 0, len(meta)) + meta + body


def _npy_header(shape: str) -> bytes:
    """A version 1.0 .npy header of an int16 array of ``shape`` (text), padded to 64 bytes."""
    text = f"{{'descr': '<i2', 'fortran_order': False, 'shape': {shape}, }}".encode()
    text += b" " * (118 - len(text)) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


def test_bad_codes_files_exit_2_and_leave_the_store_unchanged(made, tmp_path, model_dir, capsys):
    store, entry = made
    good = export_codes(store, entry, tmp_path / "good.ecdc").read_bytes()
    hdr = {"m": "encodec_24khz", "al": 3200, "nc": 2, "lm": False}  # 10 frames x 2 x 10 bits = 25 bytes
    files = {
        "odd.acomp": (b"1\n1.5\n1 2 3\n", "holds 3 code indices, not a .non-zero. multiple of the 2 codebooks"),
        "magic.ecdc": (b"RIFF" + good[4:], "starts with b'RIFF', not the .ecdc magic"),
        "version.ecdc": (_ecdc(hdr, bytes(25), version=1), "protocol version 1; this reader knows version 0"),
        "lm.ecdc": (_ecdc({**hdr, "lm": True}, bytes(25)), "language model"),
        "cut.ecdc": (_ecdc(hdr, bytes(20)), "holds 20 bytes of codes .* needs 25; the file is truncated"),
        "48k.ecdc": (_ecdc({**hdr, "m": "encodec_48khz"}, bytes(25)), "written by 'encodec_48khz'"),
        "nc.ecdc": (_ecdc({**hdr, "nc": 3}, bytes(38)), "holds 3 codebooks; model model offers 1.5 kbps = 2"),
        "range.acomp": (b"1\n1.5\n1 2 3 4000\n", "code values 1..4000; codes of this model lie in 0..1023"),
        "bw.acomp": (b"1\n5\n1 2\n", "bandwidth 5 kbps is not offered"),
        # issue 21: unclean files
        "inf.ecdc": (_ecdc_raw(json.dumps(hdr).replace("3200", "Infinity").encode(), bytes(25)),
                     "damaged .ecdc header .OverflowError"),
        "deep.ecdc": (struct.pack("!4sBI", b"ECDC", 0, 200_000) + b"[" * 100_000 + b"]" * 100_000,
                      "JSON nested too deeply"),
        "int64.acomp": (b"1\n1.5\n1 99999999999999999999999\n", "'99999999999999999999999' is beyond int64"),
        "word.acomp": (b"1\n1.5\n1 two\n", "'two' is not an integer"),
        "huge.npy": (_npy_header("(2, 1000000000000)") + bytes(400),
                     r"claims a int16 array of shape \(2, 1000000000000\) \(4,000,000,000,000 bytes\) but the file holds "
                     "400 bytes"),
    }
    st_dir = tmp_path / "st"
    assert main(["import", str(tmp_path / "good.ecdc"), "--store", str(st_dir), "--model", str(model_dir)]) == 0
    snap = snapshot(st_dir)
    capsys.readouterr()
    for name, (data, message) in files.items():
        (tmp_path / name).write_bytes(data)
        code = main(["import", str(tmp_path / name), "--store", str(st_dir), "--model", str(model_dir)])
        out, err = capsys.readouterr()
        assert code == 2 and re.search(message, err), (name, err)
        assert "Traceback" not in err and snapshot(st_dir) == snap, name


def test_cli_export_then_import(made, tmp_path, model_dir, capsys):
    store, entry = made
    out = tmp_path / "cli.ecdc"
    assert main(["export", store.url, entry.key[:12], "-o", str(out), "--trs", "0:4"]) == 0
    assert main(["import", str(out), "--store", str(tmp_path / "s2"), "--model", str(model_dir), "--tr", "1.5",
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out.split("\n", 1)[1])["entries"][0]
    assert doc["created"] and doc["attrs"]["imported_from"]["format"] == "ecdc" and doc["attrs"]["n_trs"] == 4
    assert main(["export", store.url, entry.key[:12], "-o", str(tmp_path / "x.bin")]) == 2
    assert "cannot tell the format" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["npy", "ecdc"])
def test_a_codes_file_rewritten_after_it_was_hashed_is_refused(made, tmp_path, model_dir, capsys, monkeypatch, fmt):
    """Issue 21 #3: import parses the very bytes it hashed; a file rewritten in place meanwhile stores nothing."""
    import giblet_store.features.exchange as exchange_mod
    from giblet_store.store.hashing import HashedFile

    store, entry = made
    out = export_codes(store, entry, tmp_path / f"codes.{fmt}")
    other = export_codes(store, entry, tmp_path / f"other.{fmt}", trs="0:3")  # other codes, other size
    target = tmp_path / "st"
    open_store(target)
    before = snapshot(target)

    class SwappedAfterHashing(HashedFile):
        def open(self):
            out.write_bytes(other.read_bytes())  # same inode, rewritten between the hash and the parse
            return super().open()

    monkeypatch.setattr(exchange_mod, "HashedFile", SwappedAfterHashing)
    code = main(["import", str(out), "--store", str(target), "--model", str(model_dir), "--tr", "1.5"])
    err = capsys.readouterr().err
    assert code == 2 and "changed while it was being read" in err and "nothing was stored" in err, err
    assert snapshot(target) == before
    monkeypatch.undo()
    assert main(["import", str(out), "--store", str(target), "--model", str(model_dir), "--tr", "1.5"]) == 0


@pytest.mark.parametrize("args, wanted", [
    (["--n-trs", "2000000"], "n_trs=2000000 is far beyond the stimulus"),
    (["--n-trs", "1000000000"], "n_trs=1000000000 is far beyond the stimulus"),
    (["--tr", "1e-9"], "a TR must hold at least one frame"),
    (["--onset=-1e12"], "more than the 16 GiB limit"),
])
def test_import_applies_the_grid_bounds_extract_applies(made, tmp_path, model_dir, capsys, args, wanted):
    store, entry = made
    out = export_codes(store, entry, tmp_path / "a.ecdc")
    st_dir = tmp_path / "st"
    open_store(st_dir)
    snap = snapshot(tmp_path)
    code = main(["import", str(out), "--store", str(st_dir), "--model", str(model_dir), *args])
    err = capsys.readouterr().err
    assert code == 2 and wanted in err and "a.ecdc" in err, err
    assert snapshot(tmp_path) == snap


def test_acomp_is_parsed_into_a_compact_array(tmp_path, codec):
    """~8 bytes per code at the peak (int32 blocks joined), not one Python string per code (~70 bytes)."""
    import tracemalloc

    from giblet_store.features.exchange import _read_acomp

    n = 1_000_000
    rows = np.random.default_rng(0).integers(0, 1024, (n // 2, 2))
    p = tmp_path / "big.acomp"
    p.write_text("1\n1.5\n" + "\n".join(f"{a} {b}" for a, b in rows.tolist()) + "\n")
    tracemalloc.start()
    try:
        with open(p, "rb") as f:
            stream, bandwidth, _ = _read_acomp(p, codec, f)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(stream, rows.T)
    assert bandwidth == 1.5 and peak < 16 * n, peak / n
