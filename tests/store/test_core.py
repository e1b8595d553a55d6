"""The store: creation, keys, cache hits, staging, search, lazy open, validation, versions."""

import json
import os
import shutil

import numpy as np
import pytest

from giblet_store import open_store
from giblet_store.codec.encodec import CodecParams, encode_stream, load_codec
from giblet_store.errors import (AmbiguousKeyError, EntryNotFoundError, FormatVersionError, NotAStoreError,
                                 ParameterError, SchemaError, StoreError)
from giblet_store.features.codes import decode_entry, entry_stream, extract_codes
from giblet_store.grid import TrGrid, from_tr
from giblet_store.testing import synth_audio, write_wav
from helpers import snapshot


def edit_attrs(store, entry, **changes):
    """Rewrite an entry's zarr.json attributes in place (None deletes)."""
    from pathlib import Path

    path = Path(store.root) / entry.path / "zarr.json"
    meta = json.loads(path.read_text())
    for k, v in changes.items():
        if v is None:
            del meta["attributes"][k]
        else:
            meta["attributes"][k] = v
    path.write_text(json.dumps(meta))


@pytest.fixture
def params(model_dir):
    return CodecParams(str(model_dir), 1.5, chunk_s=4, context_s=2)


@pytest.fixture
def count_encoder(codec):
    calls = []
    # the first convolution runs in every encode (the stream encoder walks the layers, not encoder.forward)
    handle = codec.model.encoder.layers[0].conv.register_forward_hook(lambda *a: calls.append(1))
    yield calls
    handle.remove()


def test_extract_then_open_is_lazy_and_labelled(store, tone_wav, params, codec):
    r = extract_codes(store, tone_wav, params, TrGrid(1.5))
    assert r.created
    ds = r.entry.open()
    import dask.array as da

    assert isinstance(ds.codes.data, da.Array)  # lazy
    assert ds.codes.dims == ("tr", "codebook", "frame") and ds.codes.dtype == np.int16
    assert ds.sizes == {"tr": 7, "codebook": 2, "frame": 113}
    a = r.entry.attrs
    assert a["kind"] == "codes" and a["status"] == "complete" and a["n_codebooks"] == 2
    assert a["frames_per_tr"] == "225/2" and a["tr_s"] == 1.5 and a["hrf"] == "none"
    assert len(a["key"]) == 64 and a["source_name"] == "tone.wav"
    # the stored codes are the code stream, laid on the grid: concatenated real frames give it back
    from giblet_store.audio.load import load_audio

    from giblet_store.codec.stream import stream_encode

    assert a["encoder"] == params.encoder == "stream"  # the default: exact, one pass with carried state
    stream = stream_encode(codec, load_audio(tone_wav, 24000)[0], params.bandwidth_kbps, params.chunk_s)
    np.testing.assert_array_equal(from_tr(ds.codes.values, ds.n_frames.values), stream)
    assert int(ds.n_frames.sum()) == 750 and (ds.codes.values[1, :, 112] == -1).all()


def test_codes_compressor_is_blosc_zstd_bitshuffle(store, tone_wav, params):
    e = extract_codes(store, tone_wav, params, TrGrid(1.5)).entry
    meta = json.loads((store.zstore.root / e.path / "codes" / "zarr.json").read_text())
    blosc = [c for c in meta["codecs"] if c["name"] == "blosc"][0]["configuration"]
    assert blosc["cname"] == "zstd" and blosc["shuffle"] == "bitshuffle"
    assert meta["data_type"] == "int16" and meta["chunk_grid"]["configuration"]["chunk_shape"][1:] == [2, 113]


def test_cache_hit_runs_no_model(store, tone_wav, params, count_encoder):
    first = extract_codes(store, tone_wav, params, TrGrid(1.5))
    n = len(count_encoder)
    assert n > 0
    again = extract_codes(store, tone_wav, params, TrGrid(1.5))
    assert not again.created and again.entry == first.entry and again.entry.path == first.entry.path
    assert len(count_encoder) == n  # no encoder call on a cache hit


def test_any_change_gives_a_new_entry_and_keeps_the_old(store, tmp_path, params):
    wav = write_wav(tmp_path / "stim.wav", synth_audio(3.0, 24000, seed=1), 24000)
    a = extract_codes(store, wav, params, TrGrid(1.5)).entry
    b = extract_codes(store, wav, params, TrGrid(2.0)).entry
    c = extract_codes(store, wav, CodecParams(params.model, 3.0, chunk_s=4, context_s=2), TrGrid(1.5)).entry
    d = extract_codes(store, wav, params, TrGrid(1.5, n_trs=2)).entry  # a "debug run" never replaces
    write_wav(wav, synth_audio(3.0, 24000, seed=2), 24000)  # same name, new bytes
    e = extract_codes(store, wav, params, TrGrid(1.5)).entry
    assert len({x.key for x in (a, b, c, d, e)}) == 5
    assert {x.key for x in store.entries()} == {x.key for x in (a, b, c, d, e)}
    assert a.open().sizes["tr"] == 2 and d.open().sizes["tr"] == 2  # both still there, intact


def test_find_by_attributes(store, tmp_path, params):
    wav = write_wav(tmp_path / "s.wav", synth_audio(2.0, 24000), 24000)
    e15 = extract_codes(store, wav, params, TrGrid(1.5)).entry
    e20 = extract_codes(store, wav, params, TrGrid(2.0)).entry
    assert store.find(kind="codes", bandwidth_kbps=1.5, tr_s=1.5) == [e15]
    assert store.find(tr_s=2) == [e20]
    assert set(store.find(kind="codes", source_name="s.wav")) == {e15, e20}
    assert store.find(kind="codes", bandwidth_kbps=6) == []
    assert store.find(**{"inputs.grid.tr_s": 2.0}) == [e20]
    # issue 20 item 13: a typo found nothing ([]), silently; a string for a number found nothing too
    with pytest.raises(ParameterError, match=r"no codes entry has an attribute 'bandwith_kbps' \(did you mean "
                                             r"'bandwidth_kbps'.*\); the codes entry attributes are: .*source_name"):
        store.find(kind="codes", bandwith_kbps=6)
    with pytest.raises(ParameterError, match="no entry has an attribute 'no_such_attr'"):
        store.find(no_such_attr=1)
    assert store.find(kind="codes", bandwidth_kbps="1.5", tr_s="1.5") == [e15]
    assert set(store.find(kind="codes", tr_s=["2", 1.5])) == {e15, e20}
    with pytest.raises(ParameterError, match=r"bandwidth_kbps is a number in every codes entry \(e.g. 1.5\); "
                                             r"got 'six'. Give a number"):
        store.find(kind="codes", bandwidth_kbps="six")
    assert store.find(kind="mel", bandwith_kbps=6) == []  # no mel entries: nothing to check the name against


def test_get_by_prefix(store, tmp_path, params):
    wav = write_wav(tmp_path / "s.wav", synth_audio(2.0, 24000), 24000)
    entries = [extract_codes(store, wav, params, TrGrid(tr)).entry for tr in (1.0, 1.25, 1.5, 1.75, 2.0)]
    e = entries[0]
    assert store.get(e.key[:10]) == e and store.get(e.key) == e
    with pytest.raises(EntryNotFoundError, match="no complete entry"):
        store.get("f" * 64 if not e.key.startswith("f") else "0" * 64)
    with pytest.raises(EntryNotFoundError, match="not a key"):
        store.get("not-hex!")
    # add entries until two keys share a first hex digit (at most 17 are needed)
    for tr in np.arange(2.25, 6.5, 0.25):
        firsts = [x.key[0] for x in store.entries()]
        shared = [d for d in set(firsts) if firsts.count(d) >= 2]
        if shared:
            break
        extract_codes(store, wav, params, TrGrid(float(tr)))
    digit = shared[0]
    with pytest.raises(AmbiguousKeyError, match=f"key prefix '{digit}' matches {firsts.count(digit)} entries"):
        store.get(digit)


def test_failed_write_leaves_store_unchanged(store, tone_wav, params, monkeypatch):
    extract_codes(store, tone_wav, params, TrGrid(1.5))
    before = snapshot(store.root)
    import xarray as xr

    real = xr.Dataset.to_zarr

    def crash(self, *a, **k):
        real(self, *a, **k)  # the bytes land in staging, then the process "dies"
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(xr.Dataset, "to_zarr", crash)
    with pytest.raises(OSError, match="simulated"):
        extract_codes(store, tone_wav, params, TrGrid(2.0))
    assert snapshot(store.root) == before
    staging = os.path.join(store.root, "_staging")
    assert [d for d in os.listdir(staging) if os.path.isdir(os.path.join(staging, d))] == []


def test_incomplete_entries_are_invisible(store, tone_wav, params):
    e = extract_codes(store, tone_wav, params, TrGrid(1.5)).entry
    edit_attrs(store, e, status="writing")
    assert store.entries() == [] and store.find(kind="codes") == [] and store.lookup(e.key) is None
    with pytest.raises(EntryNotFoundError):
        store.get(e.key)


def test_newer_entry_format_is_refused(store, tone_wav, params):
    e = extract_codes(store, tone_wav, params, TrGrid(1.5)).entry
    edit_attrs(store, e, format_version=99)
    with pytest.raises(FormatVersionError, match="format_version 99.*Upgrade giblet_store"):
        store.open(e.key)


def test_newer_store_format_is_refused(tmp_path):
    s = open_store(tmp_path / "s")
    meta_path = tmp_path / "s" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["giblet_store"]["format_version"] = 7
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(FormatVersionError, match="format_version 7"):
        open_store(s.url)


def test_schema_violation_writes_nothing(store, tone_wav, params):
    e = extract_codes(store, tone_wav, params, TrGrid(1.5)).entry
    before = snapshot(store.root)
    ds = store.open(e).load()
    ds["codes"] = ds.codes.astype(np.int32)  # the schema says int16
    with pytest.raises(SchemaError, match="codes.schema.json at variables/codes/dtype"):
        store.write(ds, {**e.attrs, "key": "a" * 64})
    assert snapshot(store.root) == before


def test_open_validates_against_schema(store, tone_wav, params):
    e = extract_codes(store, tone_wav, params, TrGrid(1.5)).entry
    edit_attrs(store, e, bandwidth_kbps=None)
    with pytest.raises(SchemaError, match="'bandwidth_kbps' is a required property"):
        store.open(e.key)


def test_store_path_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotAStoreError, match="regular file"):
        open_store(tmp_path / "f")


def test_directory_that_is_not_a_store(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "thesis.tex").write_text("x")
    with pytest.raises(NotAStoreError, match="not a giblet store"):
        open_store(tmp_path / "d")
    assert os.listdir(tmp_path / "d") == ["thesis.tex"]


def test_read_only_and_missing(tmp_path):
    with pytest.raises(StoreError, match="no giblet store"):
        open_store(tmp_path / "missing", mode="r")
    assert not (tmp_path / "missing").exists()
    s = open_store(tmp_path / "s")
    with pytest.raises(StoreError, match="read-only"):
        open_store(s.url, mode="r").clean_staging()


def test_unknown_filesystem_protocol():
    with pytest.raises(StoreError, match="no filesystem for protocol 'nosuchfs'"):
        open_store("nosuchfs://bucket/store")


def test_memory_url_store(tone_wav, params):
    import uuid

    s = open_store(f"memory://giblet-{uuid.uuid4().hex}")
    r = extract_codes(s, tone_wav, params, TrGrid(1.5))
    assert r.created and not extract_codes(s, tone_wav, params, TrGrid(1.5)).created
    assert s.find(kind="codes", tr_s=1.5) == [r.entry]
    assert s.open(r.entry).codes.shape == (7, 2, 113)


def test_store_pickles_by_url(store, tone_wav, params):
    import pickle

    e = extract_codes(store, tone_wav, params, TrGrid(1.5)).entry
    s2 = pickle.loads(pickle.dumps(store))
    assert s2.url == store.url and s2.lookup(e.key) == e


def test_decode_tr_range(store, tone_wav, params, tmp_path, model_dir):
    import soundfile as sf

    e = extract_codes(store, tone_wav, params, TrGrid(1.5)).entry
    out = decode_entry(store, e.key[:12], tmp_path / "o.wav", trs="2:5", model=str(model_dir))
    n_frames = e.open().n_frames.values
    info = sf.info(str(out))
    assert info.frames == int(n_frames[2:5].sum()) * 320 and info.samplerate == 24000
    stream, _ = entry_stream(store, e, (0, 7))
    assert stream.shape == (2, 750)


@pytest.mark.parametrize("trs", ["5:99", "-1:3", "4:4", "a:b"])
def test_decode_tr_range_outside(store, tone_wav, params, tmp_path, model_dir, trs):
    e = extract_codes(store, tone_wav, params, TrGrid(1.5)).entry
    with pytest.raises(ParameterError, match="TR range"):
        decode_entry(store, e, tmp_path / "o.wav", trs=trs, model=str(model_dir))
    assert not (tmp_path / "o.wav").exists()


def test_decode_with_other_weights_is_refused(store, tone_wav, params, tmp_path):
    from giblet_store.testing import save_test_model

    e = extract_codes(store, tone_wav, params, TrGrid(1.5)).entry
    other = save_test_model(tmp_path / "other", seed=1)
    with pytest.raises(ParameterError, match="not the one that made entry"):
        decode_entry(store, e, tmp_path / "o.wav", model=str(other))


def test_long_input_path_through_a_memory_map_gives_the_same_entry(tmp_path, tone_wav, params, monkeypatch):
    import giblet_store.features.codes as ex

    a = extract_codes(open_store(tmp_path / "a"), tone_wav, params, TrGrid(1.5)).entry
    monkeypatch.setattr(ex, "MEMMAP_ABOVE_S", 0.0)
    b = extract_codes(open_store(tmp_path / "b"), tone_wav, params, TrGrid(1.5)).entry
    assert a.key == b.key
    np.testing.assert_array_equal(a.open().codes.values, b.open().codes.values)


def test_staged_writes_are_a_collaborator_not_a_base_class(tmp_path):
    from giblet_store.store.staging import StagedWriter
    from giblet_store.store.core import Store

    store = open_store(tmp_path / "s")
    assert Store.__mro__ == (Store, object)  # no mixin: staging reaches the store through store.staged
    assert isinstance(store.staged, StagedWriter) and store.staged.store is store
